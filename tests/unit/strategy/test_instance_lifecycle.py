"""The lifecycle of a strategy instance (services/strategy/lifecycle.py): every (state, action) pair, the allowed
ones against the table written out by hand from the issue, every other one a 409 `illegal_transition` naming where
the instance is and where the action would take it."""

from __future__ import annotations

import pytest

from services.strategy.lifecycle import (
    Action,
    IllegalTransition,
    State,
    check_deletable,
    check_params_editable,
    next_state,
)
from shared.platform.errors import Conflict

C, R, P, S, F = State.CREATED, State.RUNNING, State.PAUSED, State.STOPPED, State.FAILED
ALLOWED = {
    (C, Action.START): R,
    (R, Action.PAUSE): P,
    (P, Action.RESUME): R,
    (C, Action.STOP): S,
    (R, Action.STOP): S,
    (P, Action.STOP): S,
    (F, Action.STOP): S,
    (R, Action.FAIL): F,
    (P, Action.FAIL): F,
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", list(Action))
def test_each_action_from_each_state(state: State, action: Action) -> None:
    if (state, action) in ALLOWED:
        assert next_state(state, action) is ALLOWED[(state, action)]
        return
    with pytest.raises(IllegalTransition) as refused:
        next_state(state, action)
    assert refused.value.status_code == 409 and refused.value.code == "illegal_transition"
    assert refused.value.details["from"] == state.value
    assert refused.value.details["action"] == action.value


def test_the_refusal_names_both_states() -> None:
    with pytest.raises(IllegalTransition) as refused:
        next_state(State.STOPPED, Action.START)
    assert refused.value.body() == {
        "code": "illegal_transition",
        "message": "cannot start an instance that is stopped (stopped -> running is not allowed)",
        "details": {"from": "stopped", "to": "running", "action": "start"},
    }


def test_stopped_is_final() -> None:
    for action in Action:
        with pytest.raises(IllegalTransition):
            next_state(State.STOPPED, action)


def test_only_a_stopped_instance_is_deleted() -> None:
    check_deletable(State.STOPPED)
    for state in (C, R, P, F):
        with pytest.raises(IllegalTransition) as refused:
            check_deletable(state)
        assert refused.value.details == {"from": state.value, "to": "deleted", "action": "delete"}


def test_parameters_change_only_while_nothing_runs_them() -> None:
    check_params_editable(State.PAUSED)
    check_params_editable(State.CREATED)
    for state in (R, S, F):
        with pytest.raises(Conflict) as refused:
            check_params_editable(state)
        assert refused.value.code == "instance_not_paused" and refused.value.status_code == 409
