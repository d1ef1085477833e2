"""The trace of every agent run and step, for the Activity window, metrics and budgets.

One row per run (``agent_trace_runs``: trigger, state, tokens, device time,
outcome) and one per step (``agent_trace_steps``: perceive, recall,
reason, act, learn). A step keeps what explains a decision without keeping
what must not be kept: sizes, ids and labels of its inputs, the ids of the
memories recalled, the prompt's sha256 and size (never its text), the
model's output (the tool-call JSON; traced by design, with stored secrets
redacted when a redactor is given), the tool called with a hash of its
arguments, a summary of its result, timings and tokens.

Budgets read from here (tokens today, runs this hour), so a restart does
not reset them. The agents' life-cycle states are kept here too
(``agent_status``), so they survive a restart.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.memory.db import Database, from_db_time, to_db_time, utc_now

__all__ = [
    "AgentRunStats",
    "RunRecord",
    "RunState",
    "StepKind",
    "StepRecord",
    "TraceStep",
    "TraceStore",
    "secret_redactor",
]

log = logging.getLogger("soloist.agents")

Redactor = Callable[[str], str]


class RunState(StrEnum):
    """How a run stands or ended; RUNNING is the only unfinished one."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"  # a final answer
    WAITING_FOR_APPROVAL = "waiting_for_approval"  # an action waits for the owner
    STOPPED = "stopped"  # step limit, time limit or a repeated call
    REFUSED = "refused"  # over budget: nothing ran
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # found running after a restart


class StepKind(StrEnum):
    PERCEIVE = "perceive"
    RECALL = "recall"
    REASON = "reason"
    ACT = "act"
    LEARN = "learn"


@dataclass(frozen=True, slots=True)
class TraceStep:
    """What one step did; the loop fills what applies to its kind."""

    kind: StepKind
    started_at: datetime
    elapsed_s: float
    inputs: Mapping[str, Any] = field(default_factory=dict)
    memory_ids: tuple[str, ...] = ()
    prompt_sha256: str | None = None
    prompt_chars: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model_output: str | None = None
    tool: str | None = None
    tool_args_sha256: str | None = None
    result: Mapping[str, Any] | None = None
    device_s: float = 0.0
    error: str | None = None

    def __repr__(self) -> str:
        return f"TraceStep({self.kind.value}, tool={self.tool!r}, elapsed_s={self.elapsed_s:.3f})"


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A stored step: its run, number, and what it did."""

    run_id: str
    seq: int
    step: TraceStep


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    agent_id: str
    trigger: str
    state: RunState
    session_id: str
    started_at: datetime
    finished_at: datetime | None
    prompt_tokens: int
    completion_tokens: int
    device_s: float
    steps: int
    error: str | None
    outcome: str | None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class AgentRunStats:
    """One agent's runs over a period, for the Agents window's metrics."""

    agent_id: str
    runs: int
    by_state: Mapping[str, int]
    tokens: int
    device_s: float
    mean_duration_s: float
    max_duration_s: float


_RUN_COLUMNS = (
    "id, agent_id, trigger, state, session_id, started_at, finished_at, prompt_tokens, "
    "completion_tokens, device_s, steps, error, outcome"
)
_STEP_COLUMNS = (
    "run_id, seq, kind, inputs, memory_ids, prompt_sha256, prompt_chars, prompt_tokens, "
    "completion_tokens, model_output, tool, tool_args_sha256, result, started_at, elapsed_s, "
    "device_s, error"
)


def secret_redactor(secrets: Iterable[str], mark: str = "[redacted]") -> Redactor:
    """A redactor replacing each of ``secrets`` (longest first; 4+ characters) by ``mark``."""
    known = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in known:
            text = text.replace(secret, mark)
        return text

    return redact


class TraceStore:
    """Runs and steps of every agent; each public method is one transaction."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utc_now,
        redactor: Redactor | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._redact = redactor or (lambda text: text)

    # -- runs --------------------------------------------------------------------
    def start_run(self, agent_id: str, trigger: str, session_id: str = "") -> RunRecord:
        run_id = uuid.uuid4().hex
        now = to_db_time(self._clock())
        self._db.execute(
            "INSERT INTO agent_trace_runs (id, agent_id, trigger, state, session_id, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [run_id, agent_id, trigger, RunState.RUNNING.value, session_id or run_id, now],
        )
        log.info("run %s of agent %s started (%s)", run_id, agent_id, trigger)
        return self.run(run_id)

    def finish_run(
        self, run_id: str, state: RunState, *, error: str | None = None, outcome: str | None = None
    ) -> RunRecord:
        """Record how a run ended (only a RUNNING run changes; the first ending stays)."""
        if state is RunState.RUNNING:
            raise ValueError("a run finishes in a state other than running")
        self._db.execute(
            "UPDATE agent_trace_runs SET state = ?, finished_at = ?, error = ?, outcome = ? "
            "WHERE id = ? AND state = ?",
            [
                state.value,
                to_db_time(self._clock()),
                _opt(self._redact, error),
                _opt(self._redact, outcome),
                run_id,
                RunState.RUNNING.value,
            ],
        )
        record = self.run(run_id)
        log.info("run %s finished: %s (%d tokens)", run_id, record.state, record.tokens)
        return record

    def run(self, run_id: str) -> RunRecord:
        row = self._db.fetchone(
            f"SELECT {_RUN_COLUMNS} FROM agent_trace_runs WHERE id = ?", [run_id]
        )
        if row is None:
            raise KeyError(f"no traced run {run_id}")
        return _run_from(row)

    def runs(self, agent_id: str | None = None, limit: int = 50) -> list[RunRecord]:
        """The newest runs first, of one agent or of all."""
        where, params = ("WHERE agent_id = ?", [agent_id]) if agent_id else ("", [])
        rows = self._db.fetchall(
            f"SELECT {_RUN_COLUMNS} FROM agent_trace_runs {where} "
            "ORDER BY started_at DESC, id LIMIT ?",
            [*params, limit],
        )
        return [_run_from(row) for row in rows]

    def interrupt_running(self) -> list[RunRecord]:
        """Mark every RUNNING run INTERRUPTED (at start: nothing can be running yet)."""
        with self._db.transaction():
            rows = self._db.fetchall(
                "SELECT id FROM agent_trace_runs WHERE state = ?", [RunState.RUNNING.value]
            )
            ids = [str(row[0]) for row in rows]
            for run_id in ids:
                self.finish_run(run_id, RunState.INTERRUPTED, error="the office stopped mid-run")
        return [self.run(run_id) for run_id in ids]

    # -- steps -------------------------------------------------------------------
    def add_step(self, run_id: str, step: TraceStep) -> int:
        """Append a step to the run; returns its seq (1, 2, ...). Adds its cost to the run."""
        with self._db.transaction():
            row = self._db.fetchone(
                "SELECT coalesce(max(seq), 0) + 1 FROM agent_trace_steps WHERE run_id = ?",
                [run_id],
            )
            seq = int(row[0]) if row is not None else 1
            self._db.execute(
                f"INSERT INTO agent_trace_steps ({_STEP_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, seq, *self._step_values(step)],
            )
            self._db.execute(
                "UPDATE agent_trace_runs SET steps = steps + 1, "
                "prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?, "
                "device_s = device_s + ? WHERE id = ?",
                [step.prompt_tokens or 0, step.completion_tokens or 0, step.device_s, run_id],
            )
        log.debug("run %s: step %d %s in %.3f s", run_id, seq, step.kind, step.elapsed_s)
        return seq

    def _step_values(self, step: TraceStep) -> list[object]:
        return [
            step.kind.value,
            json.dumps(dict(step.inputs)),
            json.dumps(list(step.memory_ids)),
            step.prompt_sha256,
            step.prompt_chars,
            step.prompt_tokens,
            step.completion_tokens,
            _opt(self._redact, step.model_output),
            step.tool,
            step.tool_args_sha256,
            None if step.result is None else self._redact(json.dumps(dict(step.result))),
            to_db_time(step.started_at),
            step.elapsed_s,
            step.device_s,
            _opt(self._redact, step.error),
        ]

    def steps(self, run_id: str) -> list[StepRecord]:
        rows = self._db.fetchall(
            f"SELECT {_STEP_COLUMNS} FROM agent_trace_steps WHERE run_id = ? ORDER BY seq",
            [run_id],
        )
        return [_step_from(row) for row in rows]

    # -- budgets and metrics -------------------------------------------------------
    def tokens_since(self, agent_id: str, since: datetime) -> int:
        row = self._db.fetchone(
            "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM agent_trace_runs "
            "WHERE agent_id = ? AND started_at >= ?",
            [agent_id, to_db_time(since)],
        )
        return int(row[0]) if row is not None else 0

    def runs_since(self, agent_id: str, since: datetime) -> int:
        """Runs started since ``since``, refused ones excepted (they cost nothing)."""
        row = self._db.fetchone(
            "SELECT count(*) FROM agent_trace_runs "
            "WHERE agent_id = ? AND started_at >= ? AND state <> ?",
            [agent_id, to_db_time(since), RunState.REFUSED.value],
        )
        return int(row[0]) if row is not None else 0

    def stats(self, since: datetime | None = None) -> list[AgentRunStats]:
        """Per agent: runs by state, tokens, device time and durations since ``since``."""
        where, params = ("WHERE started_at >= ?", [to_db_time(since)]) if since else ("", [])
        rows = self._db.fetchall(
            "SELECT agent_id, state, count(*), sum(prompt_tokens + completion_tokens), "
            "sum(device_s), avg(epoch(finished_at) - epoch(started_at)), "
            "max(epoch(finished_at) - epoch(started_at)) "
            f"FROM agent_trace_runs {where} GROUP BY agent_id, state ORDER BY agent_id, state",
            params,
        )
        return _stats_from(rows)

    # -- life-cycle states ---------------------------------------------------------
    def save_status(self, agent_id: str, state: str, run_id: str | None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO agent_status (agent_id, state, run_id, updated_at) "
            "VALUES (?, ?, ?, ?)",
            [agent_id, state, run_id, to_db_time(self._clock())],
        )

    def statuses(self) -> dict[str, tuple[str, str | None]]:
        """Each agent's last saved (state, run id)."""
        rows = self._db.fetchall("SELECT agent_id, state, run_id FROM agent_status")
        return {str(r[0]): (str(r[1]), None if r[2] is None else str(r[2])) for r in rows}


def _opt(redact: Redactor, text: str | None) -> str | None:
    return None if text is None else redact(text)


def _run_from(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        id=row[0],
        agent_id=row[1],
        trigger=row[2],
        state=RunState(row[3]),
        session_id=row[4],
        started_at=from_db_time(row[5]),
        finished_at=None if row[6] is None else from_db_time(row[6]),
        prompt_tokens=int(row[7]),
        completion_tokens=int(row[8]),
        device_s=float(row[9]),
        steps=int(row[10]),
        error=row[11],
        outcome=row[12],
    )


def _step_from(row: tuple[Any, ...]) -> StepRecord:
    step = TraceStep(
        kind=StepKind(row[2]),
        inputs=json.loads(row[3]),
        memory_ids=tuple(json.loads(row[4])),
        prompt_sha256=row[5],
        prompt_chars=row[6],
        prompt_tokens=row[7],
        completion_tokens=row[8],
        model_output=row[9],
        tool=row[10],
        tool_args_sha256=row[11],
        result=None if row[12] is None else json.loads(row[12]),
        started_at=from_db_time(row[13]),
        elapsed_s=float(row[14]),
        device_s=float(row[15]),
        error=row[16],
    )
    return StepRecord(row[0], int(row[1]), step)


def _stats_from(rows: list[tuple[Any, ...]]) -> list[AgentRunStats]:
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(str(row[0]), []).append(row)
    stats = []
    for agent_id, group in grouped.items():
        runs = sum(int(r[2]) for r in group)
        finished = [(int(r[2]), r[5], r[6]) for r in group if r[5] is not None]
        done = sum(n for n, _, _ in finished)
        mean = sum(n * float(avg) for n, avg, _ in finished) / done if done else 0.0
        stats.append(
            AgentRunStats(
                agent_id=agent_id,
                runs=runs,
                by_state={str(r[1]): int(r[2]) for r in group},
                tokens=sum(int(r[3] or 0) for r in group),
                device_s=sum(float(r[4] or 0) for r in group),
                mean_duration_s=mean,
                max_duration_s=max((float(m) for _, _, m in finished), default=0.0),
            )
        )
    return stats
