"""The agent manager: queueing with priorities, one run per agent at a time, pause, resume,
cancel, connector events, and states that survive a restart (real DuckDB)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError

import pytest
from agent_fakes import Clock, ScriptedEngine, call, definition

from app.agents.autonomy import AutonomyStore
from app.agents.definitions import AgentDefinition
from app.agents.lifecycle import AgentEvent, AgentState
from app.agents.loop import AgentLoop, RunResult, Trigger
from app.agents.manager import AgentManager
from app.agents.outbox import Outbox
from app.agents.runtime_errors import AgentBusyError, UnknownAgentError
from app.agents.tools_registry import ToolBox
from app.agents.trace import RunState, TraceStore
from app.engine.types import Priority
from app.integrations.base import ConnectorEvent
from app.memory.db import Database

S = AgentState
MANUAL = Trigger("manual", request="Sort today's mail")


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


class FakeLoop:
    """A loop that waits at its gate, then ends in ``ends``; records what it ran."""

    def __init__(self, log: list[tuple[str, str, Priority | None]], agent_id: str) -> None:
        self.log = log
        self.agent_id = agent_id
        self.gate = threading.Event()
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.ends = RunState.SUCCEEDED

    def run(self, trigger: Trigger, priority: Priority | None = None) -> RunResult:
        self.log.append((self.agent_id, trigger.kind, priority))
        self.started.set()
        assert self.gate.wait(10)
        state = RunState.CANCELLED if self.cancelled.is_set() else self.ends
        return RunResult(f"run-{len(self.log)}", self.agent_id, state)

    def cancel(self) -> None:
        self.cancelled.set()
        self.gate.set()


class Loops:
    """Makes a FakeLoop per run; ``open`` lets runs through without waiting."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, Priority | None]] = []
        self.made: list[FakeLoop] = []
        self.open = False
        self.ends = RunState.SUCCEEDED

    def __call__(self, agent: AgentDefinition) -> FakeLoop:
        loop = FakeLoop(self.log, agent.id)
        loop.ends = self.ends
        if self.open:
            loop.gate.set()
        self.made.append(loop)
        return loop

    def latest_started(self) -> FakeLoop:
        eventually(lambda: bool(self.made) and self.made[-1].started.is_set())
        return self.made[-1]


AGENTS = [
    definition("inbox"),
    definition("digest", triggers=("schedule", "order.created")),
    definition("helper", priority=Priority.INTERACTIVE),
]


@pytest.fixture
def loops() -> Loops:
    return Loops()


@pytest.fixture
def events() -> list[AgentEvent]:
    return []


@pytest.fixture
def manager(db: Database, loops: Loops, events: list[AgentEvent]) -> Iterator[AgentManager]:
    started = AgentManager(
        AGENTS, loops, Clock(), trace=TraceStore(db), on_event=events.append, max_pending=3
    )
    started.start()
    yield started
    for loop in loops.made:
        loop.gate.set()
    started.close()


def test_a_run_goes_queued_running_idle_with_an_event_each(
    manager: AgentManager, loops: Loops, events: list[AgentEvent]
) -> None:
    loops.open = True
    result = manager.run("inbox", MANUAL).result(10)
    assert result.state is RunState.SUCCEEDED
    assert manager.wait_idle(10)
    assert [(e.old, e.new) for e in events if e.agent_id == "inbox"] == [
        (S.IDLE, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.IDLE),
    ]
    assert events[-1].run_id == result.run_id


def test_manual_runs_are_interactive_and_triggered_runs_background(
    manager: AgentManager, loops: Loops
) -> None:
    loops.open = True
    manager.run("inbox", MANUAL).result(10)
    manager.run("inbox", Trigger("mail.received")).result(10)
    assert [p for _, _, p in loops.log] == [Priority.INTERACTIVE, Priority.BACKGROUND]


def test_a_manual_run_overtakes_queued_background_runs(manager: AgentManager, loops: Loops) -> None:
    manager.run("inbox", Trigger("mail.received"))
    first = loops.latest_started()  # the one worker is busy
    manager.run("digest", Trigger("schedule"))
    manager.run("helper", MANUAL)
    loops.open = True
    first.gate.set()
    assert manager.wait_idle(10)
    assert [agent for agent, _, _ in loops.log] == ["inbox", "helper", "digest"]


def test_an_agent_runs_one_trigger_at_a_time_and_the_list_is_bounded(
    manager: AgentManager, loops: Loops
) -> None:
    futures = [manager.run("inbox", Trigger("mail.received", {"n": 0}))]
    first = loops.latest_started()
    futures += [manager.run("inbox", Trigger("mail.received", {"n": i})) for i in (1, 2, 3)]
    with pytest.raises(AgentBusyError, match="3 runs waiting"):
        manager.run("inbox", MANUAL)  # max_pending=3 wait behind the running one
    assert manager.state("inbox") is S.RUNNING
    assert len(loops.made) == 1
    loops.open = True
    first.gate.set()
    assert [f.result(10).state for f in futures] == [RunState.SUCCEEDED] * 4
    assert [kind for _, kind, _ in loops.log] == ["mail.received"] * 4


def test_end_states_follow_the_run(manager: AgentManager, loops: Loops) -> None:
    loops.open = True
    loops.ends = RunState.WAITING_FOR_APPROVAL
    manager.run("inbox", MANUAL).result(10)
    eventually(lambda: manager.state("inbox") is S.WAITING_FOR_APPROVAL)
    loops.ends = RunState.FAILED
    manager.run("inbox", MANUAL).result(10)
    eventually(lambda: manager.state("inbox") is S.FAILED)
    loops.ends = RunState.SUCCEEDED
    manager.run("inbox", MANUAL).result(10)  # a failed agent can run again
    eventually(lambda: manager.state("inbox") is S.IDLE)


def test_a_paused_agent_refuses_runs_and_resumes(manager: AgentManager, loops: Loops) -> None:
    loops.open = True
    manager.pause("inbox")
    assert manager.state("inbox") is S.PAUSED
    with pytest.raises(AgentBusyError, match="paused"):
        manager.run("inbox", MANUAL)
    manager.resume("inbox")
    assert manager.run("inbox", MANUAL).result(10).state is RunState.SUCCEEDED


def test_pausing_a_queued_agent_holds_its_run_until_resumed(
    manager: AgentManager, loops: Loops
) -> None:
    manager.run("digest", Trigger("schedule"))
    blocker = loops.latest_started()
    waiting = manager.run("inbox", MANUAL)
    assert manager.state("inbox") is S.QUEUED
    manager.pause("inbox")
    loops.open = True
    blocker.gate.set()
    eventually(lambda: manager.state("digest") is S.IDLE)
    assert manager.state("inbox") is S.PAUSED and not waiting.done()
    manager.resume("inbox")
    assert waiting.result(10).state is RunState.SUCCEEDED


def test_pausing_a_running_agent_stops_its_loop_and_it_ends_paused(
    manager: AgentManager, loops: Loops
) -> None:
    manager.run("inbox", MANUAL)
    running = loops.latest_started()
    manager.pause("inbox")
    assert running.cancelled.is_set()
    eventually(lambda: manager.state("inbox") is S.PAUSED)


def test_cancel_drops_waiting_runs_and_stops_the_running_one(
    manager: AgentManager, loops: Loops
) -> None:
    current = manager.run("inbox", MANUAL)
    running = loops.latest_started()
    waiting = manager.run("inbox", Trigger("mail.received"))
    manager.cancel("inbox")
    assert running.cancelled.is_set()
    with pytest.raises(CancelledError):
        waiting.result(10)
    assert current.result(10).state is RunState.CANCELLED
    eventually(lambda: manager.state("inbox") is S.IDLE)


def test_pause_all_background_and_resume_all(manager: AgentManager) -> None:
    assert manager.pause_all_background() == ["inbox", "digest"]
    assert manager.states() == {"inbox": S.PAUSED, "digest": S.PAUSED, "helper": S.IDLE}
    manager.resume_all()
    assert set(manager.states().values()) == {S.IDLE}


def test_a_connector_event_runs_the_agents_it_triggers(manager: AgentManager, loops: Loops) -> None:
    loops.open = True
    started = manager.on_connector_event(ConnectorEvent("order.created", "shop", {"order": "7"}))
    assert started == ["digest"]
    assert manager.wait_idle(10)
    assert loops.log == [("digest", "order.created", Priority.BACKGROUND)]
    assert manager.on_connector_event(ConnectorEvent("calendar.changed", "dav")) == []


def test_an_unknown_agent_is_named(manager: AgentManager) -> None:
    with pytest.raises(UnknownAgentError, match="'nobody'"):
        manager.run("nobody", MANUAL)


def test_states_survive_a_restart_and_a_running_agent_comes_back_idle(
    db: Database, loops: Loops
) -> None:
    trace = TraceStore(db)
    first = AgentManager(AGENTS, loops, trace=trace)
    first.start()
    first.pause("digest")
    first.run("inbox", MANUAL)
    loops.latest_started()  # inbox is RUNNING when the office "dies"
    left_running = trace.start_run("inbox", "manual")  # the run a real loop had traced
    assert trace.statuses()["inbox"][0] == "running"

    second = AgentManager(AGENTS, Loops(), trace=trace)
    second.start()
    try:
        assert second.states() == {"inbox": S.IDLE, "digest": S.PAUSED, "helper": S.IDLE}
        assert trace.run(left_running.id).state is RunState.INTERRUPTED
        assert trace.statuses()["inbox"][0] == "idle"
    finally:
        for loop in loops.made:
            loop.gate.set()
        first.close()
        second.close()


def test_the_manager_runs_the_real_loop(db: Database) -> None:
    trace = TraceStore(db)
    outbox = Outbox(db, lambda account, name: pytest.fail("no action here"), AutonomyStore(db))
    engine = ScriptedEngine(call("final", answer="Nothing to do."))

    def make_loop(agent: AgentDefinition) -> AgentLoop:
        box = ToolBox(agent.tools)
        return AgentLoop(agent, engine, None, box, outbox, trace, lambda c: "/m.gguf")

    manager = AgentManager(AGENTS, make_loop, trace=trace)
    manager.start()
    try:
        result = manager.run("inbox", MANUAL).result(10)
    finally:
        manager.close()
    assert result.state is RunState.SUCCEEDED and result.answer == "Nothing to do."
    assert engine.requests[0].priority is Priority.INTERACTIVE
    assert trace.runs("inbox")[0].id == result.run_id
