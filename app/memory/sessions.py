"""The session tier: agent runs, their steps and tool results, agent state and
references to the working tier's KV snapshots.

Causal order
    Every event of a session (a run's start and finish, a step, a tool
    result, a snapshot reference) takes the next number of the session's one
    counter, ``sessions.last_seq``, bumped in the transaction that writes the
    event. The database lock serialises those transactions, so two threads
    writing to one session get distinct, gap-free numbers in commit order,
    and reading by ``seq`` is reading in causal order across runs and tables.

Agent state
    JSON, versioned per agent. A writer says which version it read
    (``expected_version``; 0 for none yet) and a stale writer gets
    ``AgentStateConflictError`` instead of overwriting a newer state.

Rehydration
    ``latest_snapshot`` names the KV snapshot to restore, and
    ``read_session(after_seq=ref.seq)`` the events that came after it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from app.memory.db import Database, to_db_time, utc_now
from app.memory.errors import (
    AgentStateConflictError,
    RunFinishedError,
    RunNotFoundError,
    SessionNotFoundError,
)
from app.memory.session_rows import (
    RUN_COLUMNS,
    SESSION_COLUMNS,
    SNAPSHOT_COLUMNS,
    STATE_COLUMNS,
    STEP_COLUMNS,
    TOOL_RESULT_COLUMNS,
    AgentRun,
    AgentState,
    KvSnapshotRef,
    RunStatus,
    Session,
    SessionEvent,
    Step,
    ToolResult,
    run_from,
    session_from,
    snapshot_from,
    state_from,
    step_from,
    to_json,
    tool_result_from,
)
from app.memory.settings import JsonValue

__all__ = [
    "AgentRun",
    "AgentState",
    "KvSnapshotRef",
    "RunStatus",
    "Session",
    "SessionEvent",
    "SessionStore",
    "Step",
    "ToolResult",
]

log = logging.getLogger("soloist.memory")


class SessionStore:
    """Sessions, runs, steps, tool results, agent state and snapshot refs.

    Each public method is one transaction. ``clock`` is a seam for tests.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock

    # -- sessions ------------------------------------------------------
    def create_session(self, title: str = "", conversation_id: str | None = None) -> Session:
        """Start an empty session, for a conversation or for background work."""
        now = self._now()
        session = Session(uuid.uuid4().hex, title, conversation_id, 0, now, now)
        self._db.execute(
            f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, 0, ?, ?)",
            [session.id, title, conversation_id, to_db_time(now), to_db_time(now)],
        )
        log.info("session %s created", session.id)
        return session

    def get_session(self, session_id: str) -> Session:
        """The session with this id; ``SessionNotFoundError`` if none."""
        row = self._db.fetchone(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", [session_id]
        )
        if row is None:
            raise SessionNotFoundError(session_id)
        return session_from(row)

    def read_session(self, session_id: str, after_seq: int = 0) -> list[SessionEvent]:
        """The session's steps and tool results with ``seq > after_seq``, in seq order."""
        with self._db.transaction():
            self.get_session(session_id)
            params = [session_id, after_seq]
            steps = self._db.fetchall(
                f"SELECT {STEP_COLUMNS} FROM run_steps WHERE session_id = ? AND seq > ?", params
            )
            results = self._db.fetchall(
                f"SELECT {TOOL_RESULT_COLUMNS} FROM tool_results WHERE session_id = ? AND seq > ?",
                params,
            )
        events: list[SessionEvent] = [step_from(row) for row in steps]
        events.extend(tool_result_from(row) for row in results)
        return sorted(events, key=lambda event: event.seq)

    # -- runs ----------------------------------------------------------
    def start_run(self, session_id: str, agent_id: str) -> AgentRun:
        """Start a run of ``agent_id`` in the session; its start takes a seq."""
        now = self._now()
        with self._db.transaction():
            seq = self._next_seq(session_id, now)
            run = AgentRun(
                uuid.uuid4().hex,
                session_id,
                agent_id,
                RunStatus.RUNNING,
                None,
                seq,
                None,
                now,
                None,
            )
            self._db.execute(
                f"INSERT INTO agent_runs ({RUN_COLUMNS}) "
                "VALUES (?, ?, ?, ?, NULL, ?, NULL, ?, NULL)",
                [run.id, session_id, agent_id, run.status.value, seq, to_db_time(now)],
            )
        log.info("run %s of agent %s started in session %s", run.id, agent_id, session_id)
        return run

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None) -> AgentRun:
        """Record how a running run ended; its finish takes a seq.

        ``RunFinishedError`` if it had already finished: the first ending stays.
        """
        if not status.finished:
            raise ValueError(f"a run finishes as succeeded, failed or cancelled, not {status}")
        now = self._now()
        with self._db.transaction():
            run = self._running(run_id)
            seq = self._next_seq(run.session_id, now)
            self._db.execute(
                "UPDATE agent_runs SET status = ?, error = ?, finished_seq = ?, finished_at = ? "
                "WHERE id = ?",
                [status.value, error, seq, to_db_time(now), run_id],
            )
            finished = self.get_run(run_id)
        log.info("run %s finished: %s", run_id, status.value)
        return finished

    def get_run(self, run_id: str) -> AgentRun:
        """The run with this id; ``RunNotFoundError`` if none."""
        row = self._db.fetchone(f"SELECT {RUN_COLUMNS} FROM agent_runs WHERE id = ?", [run_id])
        if row is None:
            raise RunNotFoundError(run_id)
        return run_from(row)

    def runs(self, session_id: str) -> list[AgentRun]:
        """The session's runs in the order they started."""
        with self._db.transaction():
            self.get_session(session_id)
            rows = self._db.fetchall(
                f"SELECT {RUN_COLUMNS} FROM agent_runs WHERE session_id = ? ORDER BY started_seq",
                [session_id],
            )
        return [run_from(row) for row in rows]

    # -- steps and tool results ----------------------------------------
    def append_step(self, run_id: str, kind: str, content: JsonValue) -> Step:
        """Save the next step of a running run."""
        if not kind:
            raise ValueError("a step needs a kind")
        text = to_json(content)
        now = self._now()
        with self._db.transaction():
            run = self._running(run_id)
            seq = self._next_seq(run.session_id, now)
            row = self._db.fetchone(
                "SELECT coalesce(max(step_no), 0) + 1 FROM run_steps WHERE run_id = ?", [run_id]
            )
            step_no = int(row[0]) if row is not None else 1
            step = Step(run.session_id, seq, run_id, step_no, kind, content, now)
            self._db.execute(
                f"INSERT INTO run_steps ({STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [run.session_id, seq, run_id, step_no, kind, text, to_db_time(now)],
            )
        log.debug("run %s: step %d saved as seq %d (%d chars)", run_id, step_no, seq, len(text))
        return step

    def append_tool_result(
        self,
        run_id: str,
        tool: str,
        output: JsonValue,
        *,
        ok: bool = True,
        error: str | None = None,
        step_seq: int | None = None,
    ) -> ToolResult:
        """Save what ``tool`` returned to a running run (``step_seq``: the calling step)."""
        text = to_json(output)
        now = self._now()
        with self._db.transaction():
            run = self._running(run_id)
            if step_seq is not None:
                self._check_step_of_run(run, step_seq)
            seq = self._next_seq(run.session_id, now)
            result = ToolResult(run.session_id, seq, run_id, step_seq, tool, ok, output, error, now)
            self._db.execute(
                f"INSERT INTO tool_results ({TOOL_RESULT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run.session_id, seq, run_id, step_seq, tool, ok, text, error, to_db_time(now)],
            )
        log.debug("run %s: %s result saved as seq %d (%d chars)", run_id, tool, seq, len(text))
        return result

    # -- agent state ---------------------------------------------------
    def put_state(
        self,
        agent_id: str,
        state: JsonValue,
        expected_version: int,
        run_id: str | None = None,
    ) -> AgentState:
        """Save the agent's next state version; ``expected_version`` is the one read (0: none).

        ``AgentStateConflictError`` if another writer saved a version since.
        """
        text = to_json(state)
        now = self._now()
        with self._db.transaction():
            latest = self.get_state(agent_id)
            actual = latest.version if latest is not None else 0
            if actual != expected_version:
                raise AgentStateConflictError(agent_id, expected_version, actual)
            saved = AgentState(agent_id, actual + 1, state, run_id, now)
            self._db.execute(
                f"INSERT INTO agent_state ({STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                [agent_id, saved.version, text, run_id, to_db_time(now)],
            )
        log.debug("agent %s: state v%d saved (%d chars)", agent_id, saved.version, len(text))
        return saved

    def get_state(self, agent_id: str, version: int | None = None) -> AgentState | None:
        """The agent's latest state, or the given version; None when there is none."""
        params: list[object] = [agent_id]
        if version is None:
            sql = "ORDER BY version DESC LIMIT 1"
        else:
            sql = "AND version = ?"
            params.append(version)
        row = self._db.fetchone(
            f"SELECT {STATE_COLUMNS} FROM agent_state WHERE agent_id = ? {sql}", params
        )
        return None if row is None else state_from(row)

    # -- KV snapshot references ----------------------------------------
    def record_snapshot(
        self,
        session_id: str,
        snapshot_key: str,
        token_count: int,
        model_identity: str,
        run_id: str | None = None,
    ) -> KvSnapshotRef:
        """Note that a KV snapshot holds the session as of now; it takes a seq."""
        if token_count < 0:
            raise ValueError(f"token_count must be 0 or more, got {token_count}")
        now = self._now()
        with self._db.transaction():
            seq = self._next_seq(session_id, now)
            ref = KvSnapshotRef(
                session_id, seq, snapshot_key, token_count, model_identity, run_id, now
            )
            self._db.execute(
                f"INSERT INTO kv_snapshots ({SNAPSHOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    session_id,
                    seq,
                    snapshot_key,
                    token_count,
                    model_identity,
                    run_id,
                    to_db_time(now),
                ],
            )
        log.debug(
            "session %s: snapshot %s (%d tokens) at seq %d",
            session_id,
            snapshot_key[:12],
            token_count,
            seq,
        )
        return ref

    def latest_snapshot(
        self, session_id: str, model_identity: str | None = None
    ) -> KvSnapshotRef | None:
        """The session's newest snapshot ref (of that model, if given); None if none."""
        sql = "" if model_identity is None else "AND model_identity = ?"
        params = [session_id] if model_identity is None else [session_id, model_identity]
        with self._db.transaction():
            self.get_session(session_id)
            row = self._db.fetchone(
                f"SELECT {SNAPSHOT_COLUMNS} FROM kv_snapshots WHERE session_id = ? {sql} "
                "ORDER BY seq DESC LIMIT 1",
                params,
            )
        return None if row is None else snapshot_from(row)

    # -- mechanism -----------------------------------------------------
    def _now(self) -> datetime:
        """The clock's time in UTC, as it will read back from the database."""
        return self._clock().astimezone(UTC)

    def _next_seq(self, session_id: str, now: datetime) -> int:
        """Bump the session's counter and return it; call inside the writer's transaction.

        Not ``UPDATE … RETURNING``: DuckDB runs that as delete and insert,
        which the foreign keys pointing at the session refuse.
        """
        self._db.execute(
            "UPDATE sessions SET last_seq = last_seq + 1, updated_at = greatest(updated_at, ?) "
            "WHERE id = ?",
            [to_db_time(now), session_id],
        )
        row = self._db.fetchone("SELECT last_seq FROM sessions WHERE id = ?", [session_id])
        if row is None:
            raise SessionNotFoundError(session_id)
        return int(row[0])

    def _running(self, run_id: str) -> AgentRun:
        """The run, if it is still running; ``RunFinishedError`` otherwise."""
        run = self.get_run(run_id)
        if run.status.finished:
            raise RunFinishedError(run_id, run.status.value)
        return run

    def _check_step_of_run(self, run: AgentRun, step_seq: int) -> None:
        row = self._db.fetchone(
            "SELECT 1 FROM run_steps WHERE session_id = ? AND seq = ? AND run_id = ?",
            [run.session_id, step_seq, run.id],
        )
        if row is None:
            raise ValueError(f"seq {step_seq} is not a step of run {run.id}")
