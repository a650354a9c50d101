"""The return state machine: every allowed move records one Event, every other move changes nothing."""
from __future__ import annotations

import pytest

from connector.returns import lifecycle
from connector.returns.lifecycle import STATES, TRANSITIONS, IllegalTransition, transition
from connector.returns.models import Return

LEGAL = [(s, t) for s in STATES for t in sorted(TRANSITIONS[s])]
ILLEGAL = [(s, t) for s in STATES for t in STATES if t not in TRANSITIONS[s]]


def make_return(state: str) -> Return:
    return Return(shop_id=1, order_id=1, email="a@example.com", currency="EUR", state=state)


def test_every_state_has_its_moves_listed():
    assert set(TRANSITIONS) == set(STATES)
    assert all(targets <= set(STATES) for targets in TRANSITIONS.values())


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_legal_move_changes_state_and_writes_one_state_event(current, target):
    ret = make_return(current)
    event = transition(ret, target, actor="merchant:ana")
    assert ret.state == target
    assert ret.events == [event]
    assert event.kind == "state"
    assert event.actor == "merchant:ana"
    assert event.data == {"from": current, "to": target}
    assert event.shop_id == 1


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_illegal_move_raises_and_changes_nothing(current, target):
    ret = make_return(current)
    lifecycle.record(ret, "note", actor="system", data={"text": "before"})
    before = list(ret.events)
    with pytest.raises(IllegalTransition) as excinfo:
        transition(ret, target, actor="system")
    assert (excinfo.value.current, excinfo.value.target) == (current, target)
    assert ret.state == current
    assert ret.events == before


@pytest.mark.parametrize("current", STATES)
def test_unknown_target_raises(current):
    ret = make_return(current)
    with pytest.raises(IllegalTransition):
        transition(ret, "teleported", actor="system")
    assert ret.state == current
    assert ret.events == []


def test_extra_data_and_visibility_are_kept_on_the_event():
    ret = make_return(lifecycle.REQUESTED)
    event = transition(ret, lifecycle.REJECTED, actor="merchant:ana", data={"note": "worn"}, public=False)
    assert event.data == {"from": "requested", "to": "rejected", "note": "worn"}
    assert event.public is False


def test_full_happy_path_leaves_one_event_per_move():
    ret = make_return(lifecycle.DRAFT)
    path = [lifecycle.REQUESTED, lifecycle.APPROVED, lifecycle.LABEL_READY, lifecycle.IN_TRANSIT,
            lifecycle.RECEIVED, lifecycle.INSPECTED, lifecycle.REFUNDED, lifecycle.CLOSED]
    for target in path:
        transition(ret, target, actor="system")
    assert [e.data["to"] for e in ret.events] == path
