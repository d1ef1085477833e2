"""Agents as managed processes: a state machine each, a bounded queue, workers.

``run(agent_id, trigger)`` never runs anything on the caller's thread: it
adds the trigger to the agent's pending list (bounded), moves the agent to
QUEUED and puts it on a priority queue served by ``workers`` threads. A
manual run is INTERACTIVE and goes first; scheduled and event-triggered
runs are BACKGROUND. An agent runs one trigger at a time; triggers that
come while it runs wait in its list and start after it.

States are saved in the trace store on every change, so they survive a
restart: at ``start()`` an agent found RUNNING or QUEUED becomes IDLE (its
run is marked INTERRUPTED; the queued triggers were in memory only), a
PAUSED, FAILED or WAITING_FOR_APPROVAL agent stays so. A waiting agent goes
back to IDLE when the owner has answered its last action
(``owner_answered``, called by the runtime). The agent's context
(what it had read and done) is in the session tier and the trace.

Pausing a running agent stops its loop at the next step boundary and the
agent ends PAUSED; cancelling stops it and drops what was pending.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from app.agents.definitions import AgentDefinition
from app.agents.lifecycle import AgentEvent, AgentState, AgentStateMachine
from app.agents.loop_steps import RunResult, Trigger
from app.agents.runtime_errors import AgentBusyError, UnknownAgentError
from app.agents.trace import RunState, TraceStore
from app.engine.types import Priority
from app.integrations.base import ConnectorEvent
from app.memory.db import utc_now

__all__ = ["AgentManager", "RunnableLoop"]

log = logging.getLogger("soloist.agents")

S = AgentState
_END_STATES = {
    RunState.WAITING_FOR_APPROVAL: S.WAITING_FOR_APPROVAL,
    RunState.FAILED: S.FAILED,
}


class RunnableLoop(Protocol):
    """What the manager needs of an ``AgentLoop``."""

    def run(self, trigger: Trigger, priority: Priority | None = None) -> RunResult: ...

    def cancel(self) -> None: ...


@dataclass
class _Agent:
    definition: AgentDefinition
    machine: AgentStateMachine
    pending: deque[tuple[Trigger, Future[RunResult]]] = field(default_factory=deque)
    loop: RunnableLoop | None = None
    pause_wanted: bool = False


class AgentManager:
    """Every defined agent's state, queue and runs; see the module docstring."""

    def __init__(
        self,
        definitions: Iterable[AgentDefinition],
        make_loop: Callable[[AgentDefinition], RunnableLoop],
        clock: Callable[[], datetime] = utc_now,
        *,
        trace: TraceStore | None = None,
        workers: int = 1,
        max_pending: int = 8,
        on_event: Callable[[AgentEvent], None] | None = None,
        still_waiting: Callable[[str], bool] = lambda _agent_id: True,
    ) -> None:
        self._make_loop = make_loop
        self._still_waiting = still_waiting  # has the agent an action the owner has not answered?
        self._clock = clock
        self._trace = trace
        self._workers = workers
        self._max_pending = max_pending
        self._on_event = on_event
        self._lock = threading.RLock()
        self._queue: queue.PriorityQueue[tuple[int, int, str]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Condition(self._lock)
        self._agents: dict[str, _Agent] = {}
        saved = trace.statuses() if trace is not None else {}
        for definition in definitions:
            state = _restored(saved.get(definition.id, (S.IDLE.value, None))[0])
            machine = AgentStateMachine(definition.id, state, clock=clock)
            machine.subscribe(self._changed)
            self._agents[definition.id] = _Agent(definition, machine)

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Mark runs left RUNNING by a previous process INTERRUPTED, then start the workers."""
        if self._trace is not None:
            for run in self._trace.interrupt_running():
                log.info("agent %s: run %s was interrupted by a restart", run.agent_id, run.id)
            for agent in self._agents.values():
                self._trace.save_status(agent.definition.id, agent.machine.state.value, None)
        for number in range(self._workers):
            thread = threading.Thread(
                target=self._work, name=f"soloist-agent-worker-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def close(self, timeout_s: float = 30.0) -> None:
        """Cancel what runs, drop what waits, stop the workers."""
        for agent_id in list(self._agents):
            self.cancel(agent_id)
        for _ in self._threads:
            self._queue.put((-1, next(self._order), ""))
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()

    # -- questions -------------------------------------------------------------------
    def state(self, agent_id: str) -> AgentState:
        return self._agent(agent_id).machine.state

    def states(self) -> dict[str, AgentState]:
        return {agent_id: a.machine.state for agent_id, a in self._agents.items()}

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or running (tests, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(self._nothing_to_do, timeout_s)

    def _nothing_to_do(self) -> bool:
        return all(
            a.machine.state not in (S.QUEUED, S.RUNNING) and not a.pending
            for a in self._agents.values()
        )

    # -- commands --------------------------------------------------------------------
    def run(self, agent_id: str, trigger: Trigger) -> Future[RunResult]:
        """Queue a run; the future resolves when it ends. ``AgentBusyError`` if paused or full."""
        agent = self._agent(agent_id)
        future: Future[RunResult] = Future()
        with self._lock:
            if agent.machine.state is S.PAUSED:
                raise AgentBusyError(f"Agent {agent_id} is paused; resume it to run it.")
            if len(agent.pending) >= self._max_pending:
                raise AgentBusyError(f"Agent {agent_id} has {len(agent.pending)} runs waiting.")
            agent.pending.append((trigger, future))
            self._queue_if_ready(agent)
        return future

    def pause(self, agent_id: str) -> None:
        """Pause: a queued agent waits, a running one stops at its next step."""
        agent = self._agent(agent_id)
        with self._lock:
            state = agent.machine.state
            if state is S.RUNNING:
                agent.pause_wanted = True
                if agent.loop is not None:
                    agent.loop.cancel()
            elif state is not S.PAUSED:
                agent.machine.change(S.PAUSED, reason="paused")

    def resume(self, agent_id: str) -> None:
        agent = self._agent(agent_id)
        with self._lock:
            agent.pause_wanted = False
            if agent.machine.change_if(S.PAUSED, S.IDLE, reason="resumed") is not None:
                self._queue_if_ready(agent)

    def cancel(self, agent_id: str) -> None:
        """Drop the agent's waiting triggers and stop its run in progress."""
        agent = self._agent(agent_id)
        with self._lock:
            while agent.pending:
                agent.pending.popleft()[1].cancel()
            agent.machine.change_if(S.QUEUED, S.IDLE, reason="cancelled")
            if agent.loop is not None:
                agent.loop.cancel()
            self._idle.notify_all()

    def owner_answered(self, agent_id: str) -> bool:
        """The agent's last waiting action was answered: WAITING_FOR_APPROVAL -> IDLE."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return False
        with self._lock:
            event = agent.machine.change_if(
                S.WAITING_FOR_APPROVAL, S.IDLE, reason="the owner answered"
            )
            if event is not None:
                self._queue_if_ready(agent)
        return event is not None

    def pause_all_background(self) -> list[str]:
        """Pause every agent of BACKGROUND priority (the owner needs the machine)."""
        paused = [
            a.definition.id
            for a in self._agents.values()
            if a.definition.priority is Priority.BACKGROUND
        ]
        for agent_id in paused:
            self.pause(agent_id)
        return paused

    def resume_all(self) -> None:
        for agent_id in list(self._agents):
            self.resume(agent_id)

    def on_connector_event(self, event: ConnectorEvent) -> list[str]:
        """Queue a run of every agent whose triggers include ``event.kind``."""
        started = []
        for agent in self._agents.values():
            if event.kind not in agent.definition.triggers:
                continue
            data = {"account_id": event.account_id, **event.data}
            try:
                self.run(agent.definition.id, Trigger(event.kind, data))
                started.append(agent.definition.id)
            except AgentBusyError as exc:
                log.info("agent %s: %s not queued: %s", agent.definition.id, event.kind, exc)
        return started

    # -- mechanism -------------------------------------------------------------------
    def _agent(self, agent_id: str) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgentError(agent_id)
        return agent

    def _queue_if_ready(self, agent: _Agent) -> None:
        """With the lock held: an agent with pending triggers and free goes to the queue."""
        if not agent.pending or agent.machine.state in (S.QUEUED, S.RUNNING, S.PAUSED):
            return
        agent.machine.change(S.QUEUED)
        trigger = agent.pending[0][0]
        priority = Priority.INTERACTIVE if trigger.kind == "manual" else Priority.BACKGROUND
        self._queue.put((int(priority), next(self._order), agent.definition.id))

    def _work(self) -> None:
        while True:
            _, _, agent_id = self._queue.get()
            if not agent_id:
                return
            self._run_next(self._agents[agent_id])

    def _run_next(self, agent: _Agent) -> None:
        with self._lock:
            if agent.machine.state is not S.QUEUED or not agent.pending:
                return
            trigger, future = agent.pending.popleft()
            if not future.set_running_or_notify_cancel():
                agent.machine.change(S.IDLE)
                self._queue_if_ready(agent)
                return
            agent.machine.change(S.RUNNING)
        result, error = self._run_loop(agent, trigger)
        with self._lock:
            agent.loop = None
            agent.machine.change(self._end_state(agent, result), run_id=_run_id(result))
            agent.pause_wanted = False
            self._queue_if_ready(agent)
            self._idle.notify_all()
        if error is not None:
            future.set_exception(error)
        else:
            assert result is not None
            future.set_result(result)

    def _run_loop(
        self, agent: _Agent, trigger: Trigger
    ) -> tuple[RunResult | None, BaseException | None]:
        priority = Priority.INTERACTIVE if trigger.kind == "manual" else Priority.BACKGROUND
        try:
            loop = self._make_loop(agent.definition)
            with self._lock:
                agent.loop = loop
                if agent.pause_wanted:
                    loop.cancel()
            return loop.run(trigger, priority), None
        except Exception as exc:  # a bug in the loop's making: the agent fails, visibly
            log.exception("agent %s: the run could not be started", agent.definition.id)
            return None, exc

    def _end_state(self, agent: _Agent, result: RunResult | None) -> AgentState:
        if agent.pause_wanted:
            return S.PAUSED
        if result is None:
            return S.FAILED
        state = _END_STATES.get(result.state, S.IDLE)
        if state is S.WAITING_FOR_APPROVAL and not self._still_waiting(agent.definition.id):
            return S.IDLE  # the owner answered before the run had ended
        return state

    def _changed(self, event: AgentEvent) -> None:
        if self._trace is not None:
            self._trace.save_status(event.agent_id, event.new.value, event.run_id)
        if self._on_event is not None:
            self._on_event(event)

    def __repr__(self) -> str:
        return f"AgentManager(agents={len(self._agents)}, workers={len(self._threads)})"


def _restored(saved: str) -> AgentState:
    """The state an agent starts in after a restart (see the module docstring)."""
    try:
        state = AgentState(saved)
    except ValueError:
        return S.IDLE
    return S.IDLE if state in (S.QUEUED, S.RUNNING) else state


def _run_id(result: RunResult | None) -> str | None:
    return None if result is None else result.run_id
