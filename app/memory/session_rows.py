"""The rows of the session tier, as frozen dataclasses, and their life cycle.

Reprs show ids, sizes and times, never the JSON an agent wrote: a step or
a tool result may hold an email or a prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.memory.db import from_db_time
from app.memory.settings import JsonValue


class RunStatus(StrEnum):
    """An agent run's life cycle: RUNNING, then one of the finished states.

    The only transitions are RUNNING → SUCCEEDED | FAILED | CANCELLED; a
    finished run never changes again (``SessionStore.finish_run``).
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


@dataclass(frozen=True, slots=True)
class Session:
    """A sequence of events numbered 1, 2, … by ``seq``; ``last_seq`` is the newest."""

    id: str
    title: str
    conversation_id: str | None
    last_seq: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AgentRun:
    """One run of an agent in a session; its start and finish are session events."""

    id: str
    session_id: str
    agent_id: str
    status: RunStatus
    error: str | None
    started_seq: int
    finished_seq: int | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True, repr=False)
class Step:
    """A step of a run: ``seq`` in the session, ``step_no`` in the run."""

    session_id: str
    seq: int
    run_id: str
    step_no: int
    kind: str
    content: JsonValue
    created_at: datetime

    def __repr__(self) -> str:
        return (
            f"Step(session_id={self.session_id!r}, seq={self.seq}, run_id={self.run_id!r}, "
            f"step_no={self.step_no}, kind={self.kind!r}, {_size(self.content)})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class ToolResult:
    """What a tool returned to a run; ``step_seq`` is the calling step's seq."""

    session_id: str
    seq: int
    run_id: str
    step_seq: int | None
    tool: str
    ok: bool
    output: JsonValue
    error: str | None
    created_at: datetime

    def __repr__(self) -> str:
        return (
            f"ToolResult(session_id={self.session_id!r}, seq={self.seq}, "
            f"run_id={self.run_id!r}, tool={self.tool!r}, ok={self.ok}, {_size(self.output)})"
        )


SessionEvent = Step | ToolResult


@dataclass(frozen=True, slots=True, repr=False)
class AgentState:
    """One version of an agent's state (versions count 1, 2, … per agent)."""

    agent_id: str
    version: int
    state: JsonValue
    run_id: str | None
    created_at: datetime

    def __repr__(self) -> str:
        return (
            f"AgentState(agent_id={self.agent_id!r}, version={self.version}, "
            f"run_id={self.run_id!r}, {_size(self.state)})"
        )


@dataclass(frozen=True, slots=True)
class KvSnapshotRef:
    """A KV snapshot of the working tier holding the session's events up to ``seq``."""

    session_id: str
    seq: int
    snapshot_key: str
    token_count: int
    model_identity: str
    run_id: str | None
    created_at: datetime


# -- columns and row mappers -------------------------------------------------
SESSION_COLUMNS = "id, title, conversation_id, last_seq, created_at, updated_at"
RUN_COLUMNS = (
    "id, session_id, agent_id, status, error, started_seq, finished_seq, started_at, finished_at"
)
STEP_COLUMNS = "session_id, seq, run_id, step_no, kind, content, created_at"
TOOL_RESULT_COLUMNS = "session_id, seq, run_id, step_seq, tool, ok, output, error, created_at"
STATE_COLUMNS = "agent_id, version, state, run_id, created_at"
SNAPSHOT_COLUMNS = "session_id, seq, snapshot_key, token_count, model_identity, run_id, created_at"

Row = tuple[Any, ...]


def to_json(value: JsonValue) -> str:
    """JSON text for a column; ``TypeError``/``ValueError`` for what JSON cannot hold."""
    return json.dumps(value, allow_nan=False, ensure_ascii=False)


def session_from(row: Row) -> Session:
    sid, title, conversation_id, last_seq, created, updated = row
    return Session(
        sid, title, conversation_id, int(last_seq), from_db_time(created), from_db_time(updated)
    )


def run_from(row: Row) -> AgentRun:
    rid, sid, agent_id, status, error, started_seq, finished_seq, started, finished = row
    return AgentRun(
        rid,
        sid,
        agent_id,
        RunStatus(status),
        error,
        int(started_seq),
        None if finished_seq is None else int(finished_seq),
        from_db_time(started),
        None if finished is None else from_db_time(finished),
    )


def step_from(row: Row) -> Step:
    sid, seq, run_id, step_no, kind, content, created = row
    return Step(
        sid, int(seq), run_id, int(step_no), kind, json.loads(content), from_db_time(created)
    )


def tool_result_from(row: Row) -> ToolResult:
    sid, seq, run_id, step_seq, tool, ok, output, error, created = row
    return ToolResult(
        sid,
        int(seq),
        run_id,
        None if step_seq is None else int(step_seq),
        tool,
        bool(ok),
        json.loads(output),
        error,
        from_db_time(created),
    )


def state_from(row: Row) -> AgentState:
    agent_id, version, state, run_id, created = row
    return AgentState(agent_id, int(version), json.loads(state), run_id, from_db_time(created))


def snapshot_from(row: Row) -> KvSnapshotRef:
    sid, seq, key, tokens, identity, run_id, created = row
    return KvSnapshotRef(sid, int(seq), key, int(tokens), identity, run_id, from_db_time(created))


def _size(value: JsonValue) -> str:
    """``json_chars=N``: how big a JSON value is, without showing it."""
    try:
        return f"json_chars={len(to_json(value))}"
    except (TypeError, ValueError):
        return "json_chars=?"
