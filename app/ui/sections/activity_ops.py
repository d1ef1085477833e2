"""What the Activity section reads and writes: the trace log, a page at a time (no Qt).

The trace store answers "the newest runs of one agent"; the Activity log
needs more (every agent, a state, runs that called a tool whose name holds
some text, an offset), so this module queries the trace tables itself,
read-only, and returns the store's own :class:`RunRecord`. Only one page is
read at a time; an export reads every matching run in batches and writes
the file on the caller's (worker) thread.

Exported cells that a spreadsheet would take for a formula (``=``, ``+``,
``-``, ``@``) are prefixed with ``'``: outcomes and errors may quote text
an agent read from outside.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from app.agents.errors import AgentError
from app.agents.trace import RunRecord, RunState
from app.memory.db import Database, from_db_time
from app.office import Office

__all__ = [
    "CSV_COLUMNS",
    "PAGE_SIZE",
    "ActivityFilter",
    "ActivityPage",
    "ExportError",
    "export",
    "page",
    "safe_cell",
    "where_clause",
]

PAGE_SIZE = 50
EXPORT_BATCH = 500
CSV_COLUMNS = (
    "id", "agent_id", "trigger", "state", "started_at", "finished_at", "duration_s", "steps",
    "prompt_tokens", "completion_tokens", "device_s", "tools", "outcome", "error",
)  # fmt: skip
_RUN_SQL = (
    "SELECT r.id, r.agent_id, r.trigger, r.state, r.session_id, r.started_at, r.finished_at, "
    "r.prompt_tokens, r.completion_tokens, r.device_s, r.steps, r.error, r.outcome "
    "FROM agent_trace_runs r"
)
_STEP_SQL = (
    "SELECT run_id, seq, kind, started_at, elapsed_s, device_s, prompt_tokens, "
    "completion_tokens, tool, tool_args_sha256, result, prompt_sha256, prompt_chars, error "
    "FROM agent_trace_steps WHERE run_id IN ({ids}) ORDER BY run_id, seq"
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class ActivityFilter:
    """Which runs to show; empty fields match everything."""

    agent_id: str = ""
    state: RunState | None = None
    tool_text: str = ""  # part of a tool name any step of the run called (any case)


@dataclass(frozen=True, slots=True)
class ActivityPage:
    """One page of runs, newest first, and what the filter controls offer."""

    runs: tuple[RunRecord, ...]
    tools: dict[str, str]  # run id -> the tools it called, in order, once each
    total: int  # runs matching the filter, on every page
    number: int  # 0 = the newest page
    size: int = PAGE_SIZE
    agents: tuple[str, ...] = field(default=())  # every agent with runs in the trace

    @property
    def first(self) -> int:
        """The 1-based position of the page's first run (0 when empty)."""
        return self.number * self.size + 1 if self.runs else 0

    @property
    def has_newer(self) -> bool:
        return self.number > 0

    @property
    def has_older(self) -> bool:
        return (self.number + 1) * self.size < self.total


def where_clause(chosen: ActivityFilter) -> tuple[str, list[object]]:
    """The SQL condition on ``agent_trace_runs r`` for a filter, and its parameters."""
    parts: list[str] = []
    params: list[object] = []
    if chosen.agent_id:
        parts.append("r.agent_id = ?")
        params.append(chosen.agent_id)
    if chosen.state is not None:
        parts.append("r.state = ?")
        params.append(chosen.state.value)
    text = chosen.tool_text.strip()
    if text:
        parts.append(
            "EXISTS (SELECT 1 FROM agent_trace_steps s WHERE s.run_id = r.id "
            "AND contains(lower(s.tool), lower(?)))"
        )
        params.append(text)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


def page(
    office: Office, chosen: ActivityFilter, number: int = 0, size: int = PAGE_SIZE
) -> ActivityPage:
    """Page ``number`` (0: newest; past the last: the last) of the runs matching ``chosen``."""
    db = office.db
    where, params = where_clause(chosen)
    row = db.fetchone(f"SELECT count(*) FROM agent_trace_runs r{where}", params)
    total = int(row[0]) if row else 0
    last = max(0, (total - 1) // size)
    number = min(max(0, number), last)
    runs = _runs(db, where, params, size, number * size)
    agents = db.fetchall("SELECT DISTINCT agent_id FROM agent_trace_runs ORDER BY agent_id")
    return ActivityPage(
        tuple(runs), _tools(db, [r.id for r in runs]), total, number, size,
        agents=tuple(str(a[0]) for a in agents),
    )  # fmt: skip


def _runs(
    db: Database, where: str, params: list[object], limit: int, offset: int
) -> list[RunRecord]:
    rows = db.fetchall(
        f"{_RUN_SQL}{where} ORDER BY r.started_at DESC, r.id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return [_run(row) for row in rows]


def _run(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        id=str(row[0]), agent_id=str(row[1]), trigger=str(row[2]), state=RunState(row[3]),
        session_id=str(row[4]), started_at=from_db_time(row[5]),
        finished_at=None if row[6] is None else from_db_time(row[6]),
        prompt_tokens=int(row[7]), completion_tokens=int(row[8]), device_s=float(row[9]),
        steps=int(row[10]), error=row[11], outcome=row[12],
    )  # fmt: skip


def _steps(db: Database, run_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    if not run_ids:
        return []
    marks = ", ".join("?" for _ in run_ids)
    return db.fetchall(_STEP_SQL.format(ids=marks), list(run_ids))


def _tools(db: Database, run_ids: Sequence[str]) -> dict[str, str]:
    called: dict[str, list[str]] = {}
    for step in _steps(db, run_ids):
        tool = step[8]
        names = called.setdefault(str(step[0]), [])
        if tool and tool not in names:
            names.append(str(tool))
    return {run_id: ", ".join(names) for run_id, names in called.items()}


# -- export ------------------------------------------------------------------------------
def _batches(db: Database, chosen: ActivityFilter) -> Iterator[list[RunRecord]]:
    where, params = where_clause(chosen)
    offset = 0
    while batch := _runs(db, where, params, EXPORT_BATCH, offset):
        yield batch
        offset += len(batch)


def _time(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()


def _record(run: RunRecord, tools: str) -> dict[str, object]:
    return {
        "id": run.id, "agent_id": run.agent_id, "trigger": run.trigger, "state": run.state.value,
        "started_at": _time(run.started_at), "finished_at": _time(run.finished_at),
        "duration_s": run.duration_s, "steps": run.steps, "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens, "device_s": run.device_s, "tools": tools,
        "outcome": run.outcome, "error": run.error,
    }  # fmt: skip


def _step(row: Sequence[Any]) -> dict[str, object]:
    return {
        "seq": int(row[1]), "kind": row[2], "started_at": _time(from_db_time(row[3])),
        "elapsed_s": row[4], "device_s": row[5], "prompt_tokens": row[6],
        "completion_tokens": row[7], "tool": row[8], "tool_args_sha256": row[9],
        "result": None if row[10] is None else json.loads(row[10]),
        "prompt_sha256": row[11], "prompt_chars": row[12], "error": row[13],
    }  # fmt: skip


def safe_cell(value: object) -> object:
    """A cell a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class ExportError(AgentError):
    """The export file could not be written; nothing was left half written."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"Could not write {path.name} ({reason}); nothing was exported. "
            "Choose another folder and try again."
        )


def export(office: Office, chosen: ActivityFilter, path: Path) -> int:
    """Write every run matching ``chosen`` to ``path`` (``.json``: with steps; else CSV).

    Returns how many runs were written. Runs off the UI thread; the file is
    written beside ``path`` first and moved into place when complete.
    """
    part = path.with_name(f".{path.name}.part")
    write = _write_json if path.suffix.lower() == ".json" else _write_csv
    try:
        count = write(office.db, chosen, part)
        part.replace(path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise ExportError(path, exc.strerror or type(exc).__name__) from exc
    return count


def _write_csv(db: Database, chosen: ActivityFilter, path: Path) -> int:
    written = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, CSV_COLUMNS)
        writer.writeheader()
        for batch in _batches(db, chosen):
            tools = _tools(db, [run.id for run in batch])
            for run in batch:
                row = _record(run, tools.get(run.id, ""))
                writer.writerow({key: safe_cell(value) for key, value in row.items()})
            written += len(batch)
    return written


def _write_json(db: Database, chosen: ActivityFilter, path: Path) -> int:
    records: list[dict[str, object]] = []
    for batch in _batches(db, chosen):
        ids = [run.id for run in batch]
        tools = _tools(db, ids)
        steps: dict[str, list[dict[str, object]]] = {}
        for step in _steps(db, ids):
            steps.setdefault(str(step[0]), []).append(_step(step))
        records.extend(
            {**_record(run, tools.get(run.id, "")), "steps": steps.get(run.id, [])} for run in batch
        )
    with path.open("w", encoding="utf-8") as out:
        json.dump({"runs": records}, out, indent=2)
    return len(records)
