"""A security's shares in risk's hot book (`services.risk.state.book.Lots`): held and sellable by session (T+1), kept
right as buys, sells and corporate actions come (each read is remembered until the next change), and buys older
than a week before a newer one folded into the shares sellable in any session, as execution's snapshot folds them."""

from datetime import date

from services.risk.state.book import Lots

MON, TUE, WED = date(2024, 12, 2), date(2024, 12, 3), date(2024, 12, 4)


def test_held_and_sellable_follow_every_change() -> None:
    lots = Lots(base=100)
    assert (lots.qty, lots.sellable_before_sells(TUE)) == (100, 100)
    lots.buy(MON, 300)  # sellable from Tuesday
    assert (lots.qty, lots.sellable_before_sells(MON), lots.sellable_before_sells(TUE)) == (400, 100, 400)
    lots.buy(TUE, 200)  # read again after each change, not as remembered before it
    assert (lots.qty, lots.sellable_before_sells(TUE), lots.sellable_before_sells(WED)) == (600, 400, 600)
    lots.sell(250)
    assert (lots.qty, lots.sellable_before_sells(TUE), lots.sellable_before_sells(WED)) == (350, 150, 350)
    lots.adjust(35)  # a bonus share: sellable at once
    assert (lots.qty, lots.sellable_before_sells(TUE)) == (385, 185)


def test_a_buy_a_week_after_another_folds_the_older_one_into_the_base() -> None:
    lots = Lots()
    lots.buy(MON, 300)
    lots.buy(date(2024, 12, 9), 100)  # exactly 7 days later: Monday's is kept apart still
    assert lots.bought_by_session == {MON: 300, date(2024, 12, 9): 100}
    lots.buy(date(2024, 12, 10), 200)  # more than 7 days after Monday: folded, sellable in any session to come
    assert (lots.base, lots.bought_by_session) == (300, {date(2024, 12, 9): 100, date(2024, 12, 10): 200})
    assert (lots.qty, lots.sellable_before_sells(date(2024, 12, 10))) == (600, 400)
