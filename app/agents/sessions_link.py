"""An agent's context across restarts: its steps in the session tier, recalled next run.

Each agent has one session in the session tier (``app.memory.sessions``),
found by its title, which is the agent's stable session key
(``agent-<id>``, the same key the engine request carries so the engine's KV
snapshot of that session is reused). Every run of the agent is a run in
that session; each act step (the tool called, its arguments, a summary of
the result) and the run's outcome are appended to it. The next run, even
after a restart, recalls the last ``recall_steps`` of those into its prompt,
framed as untrusted data (arguments and answers may repeat outside text).

The link never fails a run: a session-tier error is logged (type only) and
the run goes on without that piece of context.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from app.memory.db import Database, utc_now
from app.memory.errors import StoreError
from app.memory.sessions import RunStatus, SessionStore, Step

__all__ = ["AgentSessions", "session_key", "step_line"]

log = logging.getLogger("soloist.agents")

ACT = "act"
OUTCOME = "outcome"
_EXCERPT_CHARS = 300
_STATUS = {
    "succeeded": RunStatus.SUCCEEDED,
    "waiting_for_approval": RunStatus.SUCCEEDED,
    "cancelled": RunStatus.CANCELLED,
    "interrupted": RunStatus.CANCELLED,
}


def session_key(agent_id: str) -> str:
    """The agent's stable session key: the session tier's title and the engine's session id."""
    return f"agent-{agent_id}"


def step_line(kind: str, content: Any) -> str | None:
    """One recalled line of a stored step; None for kinds that are not recalled."""
    if not isinstance(content, dict):
        return None
    run = str(content.get("run_id", ""))[:8]
    if kind == ACT:
        args = json.dumps(content.get("arguments", {}), sort_keys=True, ensure_ascii=False)
        line = f"run {run}: called {content.get('tool')} {args}"
        line += f" -> {json.dumps(content.get('result', {}), sort_keys=True)}"
        if content.get("error"):
            line += f" (error: {content['error']})"
        if content.get("excerpt"):
            line += f"; result began: {content['excerpt']}"
        return line
    if kind == OUTCOME:
        line = f"run {run} ({content.get('trigger')}) ended {content.get('state')}"
        line += f": {content.get('reason', '')}"
        if content.get("answer"):
            line += f". Answer: {content['answer']}"
        return line
    return None


class AgentSessions:
    """The agents' sessions in the session tier; one instance per office, thread-safe."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utc_now,
        recall_steps: int = 12,
        redactor: Callable[[str], str] = lambda text: text,
    ) -> None:
        self._db = db
        self._store = SessionStore(db, clock)
        self._recall_steps = recall_steps
        self._redact = redactor
        self._lock = threading.Lock()
        self._sessions: dict[str, str] = {}  # session key -> session tier id
        self._runs: dict[str, str] = {}  # trace run id -> session tier run id

    # -- the loop's side ---------------------------------------------------------------
    def recall(self, key: str) -> list[str]:
        """The last steps of this session, oldest first, as lines for the prompt."""
        try:
            session_id = self._session_id(key)
            last = self._store.get_session(session_id).last_seq
            window = max(0, last - 4 * self._recall_steps)
            events = self._store.read_session(session_id, after_seq=window)
        except StoreError as exc:
            log.warning("session %s could not be read (%s)", key, type(exc).__name__)
            return []
        lines = [step_line(e.kind, e.content) for e in events if isinstance(e, Step)]
        return [line for line in lines if line][-self._recall_steps :]

    def begin(self, key: str, agent_id: str, run_id: str) -> None:
        """A run of ``agent_id`` (trace id ``run_id``) starts in the session ``key``."""
        try:
            run = self._store.start_run(self._session_id(key), agent_id)
        except StoreError as exc:
            log.warning("run %s: no session context (%s)", run_id, type(exc).__name__)
            return
        with self._lock:
            self._runs[run_id] = run.id

    def act(self, run_id: str, content: Mapping[str, Any]) -> None:
        """Append one act step (tool, arguments, result summary, excerpt) to the run."""
        excerpt = content.get("excerpt")
        if isinstance(excerpt, str) and len(excerpt) > _EXCERPT_CHARS:
            content = {**content, "excerpt": excerpt[:_EXCERPT_CHARS] + "..."}
        self._append(run_id, ACT, content)

    def finish(self, run_id: str, content: Mapping[str, Any]) -> None:
        """Append the run's outcome and finish it in the session tier."""
        self._append(run_id, OUTCOME, content)
        with self._lock:
            session_run = self._runs.pop(run_id, None)
        if session_run is None:
            return
        status = _STATUS.get(str(content.get("state")), RunStatus.FAILED)
        try:
            self._store.finish_run(session_run, status)
        except StoreError as exc:
            log.warning("run %s: session run not finished (%s)", run_id, type(exc).__name__)

    # -- start-up ----------------------------------------------------------------------
    def interrupt_running(self) -> int:
        """Cancel session runs a dead process left running (at start, nothing runs yet)."""
        rows = self._db.fetchall(
            "SELECT r.id FROM agent_runs r JOIN sessions s ON s.id = r.session_id "
            "WHERE r.status = 'running' AND s.conversation_id IS NULL AND s.title LIKE 'agent-%'"
        )
        for row in rows:
            self._store.finish_run(str(row[0]), RunStatus.CANCELLED, "the office stopped mid-run")
        return len(rows)

    # -- mechanism ---------------------------------------------------------------------
    def _append(self, run_id: str, kind: str, content: Mapping[str, Any]) -> None:
        with self._lock:
            session_run = self._runs.get(run_id)
        if session_run is None:
            return
        value = json.loads(self._redact(json.dumps({"run_id": run_id, **content}, default=str)))
        try:
            self._store.append_step(session_run, kind, value)
        except StoreError as exc:
            log.warning("run %s: step not kept in its session (%s)", run_id, type(exc).__name__)

    def _session_id(self, key: str) -> str:
        """The session tier's id of ``key``, found by title or made (once)."""
        with self._lock:
            known = self._sessions.get(key)
            if known is not None:
                return known
            row = self._db.fetchone(
                "SELECT id FROM sessions WHERE title = ? AND conversation_id IS NULL "
                "ORDER BY created_at, id LIMIT 1",
                [key],
            )
            session_id = str(row[0]) if row is not None else self._store.create_session(key).id
            self._sessions[key] = session_id
            return session_id

    def __repr__(self) -> str:
        return f"AgentSessions(sessions={len(self._sessions)}, running={len(self._runs)})"
