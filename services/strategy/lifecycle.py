"""The states of a strategy instance and the moves between them, without I/O: which action takes which state where,
and the 409 `illegal_transition` for any other move.

    created --start--> running --pause--> paused --resume--> running
    created | running | paused | failed --stop--> stopped
    running | paused --fail--> failed          (the runner: the strategy raised, or its bar could not be processed)

`stopped` is final: the only thing left to do with a stopped instance is to delete it. A failed instance sends no
orders, but may still have open ones: stopping it is how they are cancelled (and how it becomes deletable).
"""

from __future__ import annotations

from enum import StrEnum

from shared.platform.errors import Conflict


class State(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


class Action(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    FAIL = "fail"


# action -> (the states it may be taken from, the state it leads to)
MOVES: dict[Action, tuple[frozenset[State], State]] = {
    Action.START: (frozenset({State.CREATED}), State.RUNNING),
    Action.PAUSE: (frozenset({State.RUNNING}), State.PAUSED),
    Action.RESUME: (frozenset({State.PAUSED}), State.RUNNING),
    Action.STOP: (frozenset({State.CREATED, State.RUNNING, State.PAUSED, State.FAILED}), State.STOPPED),
    Action.FAIL: (frozenset({State.RUNNING, State.PAUSED}), State.FAILED),
}
# Only a stopped instance may be deleted (its orders cancelled or kept by the stop, nothing left running).
DELETABLE = frozenset({State.STOPPED})
# Its parameters change only while nothing runs them: a new version each time.
PARAMS_EDITABLE = frozenset({State.CREATED, State.PAUSED})


class IllegalTransition(Conflict):
    """409 `illegal_transition`, naming the state the instance is in and the one the action would lead to."""

    def __init__(self, current: State, action: str, target: str) -> None:
        super().__init__(
            "illegal_transition",
            f"cannot {action} an instance that is {current.value} ({current.value} -> {target} is not allowed)",
        )
        self.details = {"from": current.value, "to": target, "action": action}


def next_state(current: State, action: Action) -> State:
    """The state `action` leads to from `current`; IllegalTransition when it may not be taken there."""
    allowed_from, target = MOVES[action]
    if current not in allowed_from:
        raise IllegalTransition(current, action.value, target.value)
    return target


def check_deletable(current: State) -> None:
    if current not in DELETABLE:
        raise IllegalTransition(current, "delete", "deleted")


def check_params_editable(current: State) -> None:
    if current not in PARAMS_EDITABLE:
        raise Conflict(
            "instance_not_paused",
            f"the parameters change only while the instance is paused (or not yet started); it is {current.value}: "
            "pause it first",
            state=current.value,
        )
