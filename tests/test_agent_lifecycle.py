"""The agent life cycle: the one transition table, an event on each change, illegal
changes refused, and a compare-and-change that loses races cleanly."""

from __future__ import annotations

import threading

import pytest
from agent_fakes import T0, Clock

from app.agents.lifecycle import (
    TRANSITIONS,
    AgentEvent,
    AgentState,
    AgentStateMachine,
    can_change,
)
from app.agents.runtime_errors import AgentStateError

S = AgentState
ALLOWED = [(old, new) for old, targets in TRANSITIONS.items() for new in sorted(targets)]
REFUSED = [(old, new) for old in S for new in S if new not in TRANSITIONS[old]]


def test_the_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(S)
    assert all(targets <= set(S) for targets in TRANSITIONS.values())


@pytest.mark.parametrize(("old", "new"), ALLOWED)
def test_allowed_changes_emit_one_event(old: AgentState, new: AgentState) -> None:
    events: list[AgentEvent] = []
    machine = AgentStateMachine("inbox", old, clock=Clock())
    machine.subscribe(events.append)
    event = machine.change(new, run_id="r1", reason="test")
    assert machine.state is new
    assert events == [event]
    assert event == AgentEvent("inbox", old, new, T0, "r1", "test")


@pytest.mark.parametrize(("old", "new"), REFUSED)
def test_illegal_changes_raise_and_change_nothing(old: AgentState, new: AgentState) -> None:
    events: list[AgentEvent] = []
    machine = AgentStateMachine("inbox", old)
    machine.subscribe(events.append)
    with pytest.raises(AgentStateError, match=f"from {old.value} to {new.value}"):
        machine.change(new)
    assert machine.state is old
    assert events == []


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (S.IDLE, S.RUNNING, False),  # a run is always queued first
        (S.RUNNING, S.QUEUED, False),
        (S.PAUSED, S.RUNNING, False),  # resume goes through IDLE
        (S.RUNNING, S.WAITING_FOR_APPROVAL, True),
        (S.WAITING_FOR_APPROVAL, S.QUEUED, True),
        (S.FAILED, S.QUEUED, True),
        (S.RUNNING, S.PAUSED, True),
    ],
)
def test_the_rules_that_matter(old: AgentState, new: AgentState, allowed: bool) -> None:
    assert can_change(old, new) is allowed


def test_change_if_only_changes_from_the_expected_state() -> None:
    machine = AgentStateMachine("inbox", S.QUEUED)
    assert machine.change_if(S.IDLE, S.QUEUED) is None
    assert machine.state is S.QUEUED
    event = machine.change_if(S.QUEUED, S.RUNNING)
    assert event is not None and event.new is S.RUNNING


def test_one_of_many_racing_threads_wins() -> None:
    machine = AgentStateMachine("inbox", S.QUEUED)
    wins: list[AgentEvent] = []
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        event = machine.change_if(S.QUEUED, S.RUNNING)
        if event is not None:
            wins.append(event)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(wins) == 1
    assert machine.state is S.RUNNING


def test_unsubscribe_stops_the_events() -> None:
    events: list[AgentEvent] = []
    machine = AgentStateMachine("inbox")
    unsubscribe = machine.subscribe(events.append)
    machine.change(S.QUEUED)
    unsubscribe()
    machine.change(S.RUNNING)
    assert [e.new for e in events] == [S.QUEUED]
