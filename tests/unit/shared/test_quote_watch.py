"""An owner's lease on the watched codes (shared/platform/quote_watch.py): sent when the codes change and when the
lease is due for renewal, never otherwise; a PUT that fails is sent again at the next check."""

from __future__ import annotations

from typing import Any

from shared.platform.quote_watch import MAX_CODES, QuoteWatch


class Owner:
    def __init__(self) -> None:
        self.codes: set[str] = set()
        self.puts: list[tuple[str, list[str], int]] = []
        self.fail = 0  # PUTs to fail before one goes through
        self.now = 1000.0

    async def read(self) -> set[str]:
        return set(self.codes)

    async def put(self, owner: str, codes: list[str], ttl_s: int) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the data service did not answer")
        self.puts.append((owner, codes, ttl_s))


def watch(owner: Owner, **kw: Any) -> QuoteWatch:
    return QuoteWatch("execution:h:1", owner.read, owner.put, renew_s=30, ttl_s=90, monotonic=lambda: owner.now, **kw)


async def test_sent_on_change_and_on_renewal_only() -> None:
    owner = Owner()
    lease = watch(owner)
    owner.codes = {"600000.SH", "000001.SZ"}
    await lease.check()
    assert owner.puts == [("execution:h:1", ["000001.SZ", "600000.SH"], 90)]  # sorted
    owner.now += 10
    await lease.check()  # unchanged, 10 s < 30 s: nothing sent
    assert len(owner.puts) == 1
    owner.codes.discard("000001.SZ")
    await lease.check()  # changed: sent at once
    assert owner.puts[-1][1] == ["600000.SH"]
    owner.now += 30
    await lease.check()  # unchanged, but 30 s since the last PUT: renewed
    assert [p[1] for p in owner.puts] == [["000001.SZ", "600000.SH"], ["600000.SH"], ["600000.SH"]]
    owner.codes.clear()
    await lease.check()  # none watched any more: [] sent (the data service drops this owner's codes)
    assert owner.puts[-1][1] == []


async def test_a_failed_put_is_sent_again_at_the_next_check() -> None:
    owner = Owner()
    lease = watch(owner)
    owner.codes = {"600000.SH"}
    owner.fail = 2
    await lease.check()
    await lease.check()
    assert (owner.puts, lease.failures, lease.sent) == ([], 2, None)
    await lease.check()  # the data service back: sent, without waiting for the renewal
    assert (owner.puts, lease.failures) == ([("execution:h:1", ["600000.SH"], 90)], 2)


async def test_more_codes_than_the_limit_are_cut_to_the_first_300_by_code() -> None:
    owner = Owner()
    lease = watch(owner)
    owner.codes = {f"{600000 + i:06d}.SH" for i in range(MAX_CODES + 5)}
    await lease.check()
    [(_, codes, _)] = owner.puts
    assert (len(codes), codes[0], codes[-1]) == (300, "600000.SH", "600299.SH")


async def test_the_gateway_watches_the_union_of_its_sockets_codes() -> None:
    from gateway.ws import EventHub

    hub = EventHub()
    first, second = hub.add(None), hub.add(None)  # type: ignore[arg-type]  # the user is not read here
    first.codes = {"600000.SH", "000001.SZ"}
    second.codes = {"600000.SH", "300750.SZ"}
    assert await hub.watched_codes() == {"600000.SH", "000001.SZ", "300750.SZ"}
    hub.remove(first)
    assert await hub.watched_codes() == {"600000.SH", "300750.SZ"}
