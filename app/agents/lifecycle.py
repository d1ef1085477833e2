"""An agent as a managed process: its states, the allowed changes, an event on each.

The transitions live in one table (``TRANSITIONS``) so the UI, the manager
and the tests read the same rules. ``AgentStateMachine`` is the mechanism:
it checks a change against the table, records it under a lock and tells
its listeners with an ``AgentEvent``. Persisting the state is the
manager's job (``app.agents.manager``), so this module stays pure.

    IDLE ──run──▶ QUEUED ──▶ RUNNING ──▶ IDLE
                    │           ├──▶ WAITING_FOR_APPROVAL ──▶ IDLE / QUEUED
                    │           └──▶ FAILED ──▶ IDLE / QUEUED
    any but RUNNING ──pause──▶ PAUSED ──resume──▶ IDLE
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.agents.runtime_errors import AgentStateError
from app.memory.db import utc_now

__all__ = ["TRANSITIONS", "AgentEvent", "AgentState", "AgentStateMachine", "can_change"]

log = logging.getLogger("soloist.agents")


class AgentState(StrEnum):
    """Where an agent is in its life cycle."""

    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    PAUSED = "paused"
    FAILED = "failed"


_S = AgentState

TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    _S.IDLE: frozenset({_S.QUEUED, _S.PAUSED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.IDLE, _S.PAUSED}),
    # A run ends idle, waiting for the owner, or failed. A paused agent
    # finishes its current step first: RUNNING -> PAUSED is its end.
    _S.RUNNING: frozenset({_S.IDLE, _S.WAITING_FOR_APPROVAL, _S.FAILED, _S.PAUSED}),
    _S.WAITING_FOR_APPROVAL: frozenset({_S.IDLE, _S.QUEUED, _S.PAUSED}),
    _S.PAUSED: frozenset({_S.IDLE}),
    _S.FAILED: frozenset({_S.IDLE, _S.QUEUED, _S.PAUSED}),
}
"""Every allowed change: ``TRANSITIONS[current]`` holds the states it may go to."""


def can_change(current: AgentState, wanted: AgentState) -> bool:
    """True when the table allows ``current -> wanted``."""
    return wanted in TRANSITIONS[current]


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """One change of one agent's state; ``run_id`` names the run it belongs to, if any."""

    agent_id: str
    old: AgentState
    new: AgentState
    at: datetime
    run_id: str | None = None
    reason: str = ""


Listener = Callable[[AgentEvent], None]


class AgentStateMachine:
    """One agent's state; ``change`` refuses what ``TRANSITIONS`` does not allow."""

    def __init__(
        self,
        agent_id: str,
        state: AgentState = AgentState.IDLE,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.agent_id = agent_id
        self._state = state
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    @property
    def state(self) -> AgentState:
        return self._state

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after each change (outside the lock); returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def change(
        self, wanted: AgentState, *, run_id: str | None = None, reason: str = ""
    ) -> AgentEvent:
        """Go to ``wanted``; ``AgentStateError`` when the table does not allow it."""
        with self._lock:
            event = self._change_locked(wanted, run_id, reason)
        self._announce(event)
        return event

    def change_if(
        self,
        current: AgentState,
        wanted: AgentState,
        *,
        run_id: str | None = None,
        reason: str = "",
    ) -> AgentEvent | None:
        """Change only when the state is still ``current``; None when it is not."""
        with self._lock:
            if self._state is not current:
                return None
            event = self._change_locked(wanted, run_id, reason)
        self._announce(event)
        return event

    def _change_locked(self, wanted: AgentState, run_id: str | None, reason: str) -> AgentEvent:
        old = self._state
        if not can_change(old, wanted):
            raise AgentStateError(self.agent_id, old.value, wanted.value)
        self._state = wanted
        return AgentEvent(self.agent_id, old, wanted, self._clock(), run_id, reason)

    def _announce(self, event: AgentEvent) -> None:
        log.info(
            "agent %s: %s -> %s (run %s)", self.agent_id, event.old, event.new, event.run_id or "-"
        )
        for listener in list(self._listeners):
            listener(event)

    def __repr__(self) -> str:
        return f"AgentStateMachine({self.agent_id!r}, {self._state.value})"
