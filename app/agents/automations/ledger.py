"""The run ledger: one row per (automation, scheduled slot, kind), the truth about what ran.

APScheduler only wakes the scheduler up; whether a slot has run is decided
here. ``claim`` inserts the row in a transaction and the primary key makes
the insert succeed for exactly one claimer, whether the others are threads
on other connections or a Soloist restarted mid-run. A run then moves
through ``RunState``; every change is committed before and after the work,
so a process that dies mid-run leaves its row ``claimed`` or ``running``.
Start-up marks such rows ``abandoned`` (``abandon_unfinished``): they are
recorded and shown, never re-run automatically.

Slots skipped by the missed-slot policy are recorded as one ``skipped`` row
at the latest of them, standing for ``skipped_slots`` slots, so a long
downtime costs one row and the ledger's last slot still moves past them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import duckdb

from app.agents.automations.slots import SkipReason
from app.memory.db import Database, from_db_time, to_db_time, utc_now
from app.memory.errors import QueryError

__all__ = ["Claim", "Ledger", "RunKind", "RunRecord", "RunState", "TransitionError"]

log = logging.getLogger("soloist.automations")

_MAX_ERROR = 500
_COLUMNS = (
    "automation_id, scheduled_for, kind, state, claimed_at, started_at, finished_at, "
    "skipped_slots, first_skipped, skip_reason, error"
)


class RunKind(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"


class RunState(StrEnum):
    """The life cycle of one run; ``TRANSITIONS`` holds every allowed change."""

    CLAIMED = "claimed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # by the missed-slot policy; written as such, never run
    ABANDONED = "abandoned"  # the process died while it was claimed or running

    @property
    def finished(self) -> bool:
        return not TRANSITIONS[self]


TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.CLAIMED: frozenset({RunState.RUNNING, RunState.ABANDONED}),
    RunState.RUNNING: frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.ABANDONED}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.SKIPPED: frozenset(),
    RunState.ABANDONED: frozenset(),
}
UNFINISHED = tuple(state for state in RunState if not state.finished)


class TransitionError(RuntimeError):
    """A run was moved to a state its current state does not lead to (a bug)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The right, held by one claimer only, to run one slot of one automation."""

    automation_id: str
    scheduled_for: datetime
    kind: RunKind = RunKind.SCHEDULED


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One ledger row."""

    automation_id: str
    scheduled_for: datetime
    kind: RunKind
    state: RunState
    claimed_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    skipped_slots: int = 0
    first_skipped: datetime | None = None
    skip_reason: SkipReason | None = None
    error: str | None = None

    @property
    def claim(self) -> Claim:
        return Claim(self.automation_id, self.scheduled_for, self.kind)


Listener = Callable[[RunRecord], None]


class Ledger:
    """Reads and writes ``automation_runs``; ``listener`` hears of every row written."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utc_now,
        listener: Listener | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._listener = listener

    # -- claiming ------------------------------------------------------------------
    def claim(
        self, automation_id: str, scheduled_for: datetime, kind: RunKind = RunKind.SCHEDULED
    ) -> Claim | None:
        """Claim a slot; None when someone (this process or an earlier one) already has."""
        record = RunRecord(automation_id, scheduled_for, kind, RunState.CLAIMED, self._clock())
        if not self._insert(record):
            log.debug("automation %s slot %s already claimed", automation_id, scheduled_for)
            return None
        return record.claim

    def record_skipped(
        self,
        automation_id: str,
        first: datetime,
        last: datetime,
        count: int,
        reason: SkipReason,
    ) -> bool:
        """Record ``count`` slots from ``first`` to ``last`` as skipped; False if already done."""
        record = RunRecord(
            automation_id,
            last,
            RunKind.SCHEDULED,
            RunState.SKIPPED,
            self._clock(),
            finished_at=self._clock(),
            skipped_slots=count,
            first_skipped=first,
            skip_reason=reason,
        )
        return self._insert(record)

    def _insert(self, record: RunRecord) -> bool:
        try:
            with self._db.transaction():
                self._db.execute(
                    f"INSERT INTO automation_runs ({_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _row(record),
                )
        except QueryError as exc:
            if _lost_race(exc):
                return False
            raise
        self._notify(record)
        return True

    # -- moving a run on -----------------------------------------------------------
    def start(self, claim: Claim) -> RunRecord:
        """The claimed run begins (committed before the work starts)."""
        return self._move(claim, RunState.RUNNING, started=True)

    def finish(self, claim: Claim, state: RunState, error: str | None = None) -> RunRecord:
        """The run ended as ``state`` (SUCCEEDED or FAILED)."""
        detail = error[:_MAX_ERROR] if error else None
        return self._move(claim, state, error=detail)

    def abandon_unfinished(self) -> list[RunRecord]:
        """Mark every claimed or running row abandoned: call only when no run can be alive."""
        rows = self._db.fetchall(
            f"SELECT {_COLUMNS} FROM automation_runs WHERE state IN (?, ?)", list(UNFINISHED)
        )
        abandoned = [self._move(_record(row).claim, RunState.ABANDONED) for row in rows]
        for record in abandoned:
            log.warning(
                "automation %s run for %s was cut short (abandoned, not re-run)",
                record.automation_id,
                record.scheduled_for.isoformat(),
            )
        return abandoned

    def _move(
        self, claim: Claim, state: RunState, *, started: bool = False, error: str | None = None
    ) -> RunRecord:
        now = self._clock()
        with self._db.transaction():
            current = self._get(claim)
            if state not in TRANSITIONS[current.state]:
                raise TransitionError(f"a run cannot go from {current.state} to {state}")
            self._db.execute(
                "UPDATE automation_runs SET state = ?, "
                "started_at = CASE WHEN ? THEN ? ELSE started_at END, "
                "finished_at = CASE WHEN ? THEN ? ELSE finished_at END, error = ? "
                "WHERE automation_id = ? AND scheduled_for = ? AND kind = ?",
                [
                    state.value,
                    started,
                    to_db_time(now),
                    state.finished,
                    to_db_time(now),
                    error,
                    *_key(claim),
                ],
            )
            record = self._get(claim)
        self._notify(record)
        return record

    # -- reading ------------------------------------------------------------------------
    def get(self, claim: Claim) -> RunRecord:
        return self._get(claim)

    def _get(self, claim: Claim) -> RunRecord:
        row = self._db.fetchone(
            f"SELECT {_COLUMNS} FROM automation_runs "
            "WHERE automation_id = ? AND scheduled_for = ? AND kind = ?",
            _key(claim),
        )
        if row is None:
            raise LookupError(f"no ledger row for automation {claim.automation_id}")
        return _record(row)

    def history(self, automation_id: str, limit: int = 50) -> list[RunRecord]:
        """The latest ``limit`` rows of an automation, newest slot first."""
        rows = self._db.fetchall(
            f"SELECT {_COLUMNS} FROM automation_runs WHERE automation_id = ? "
            "ORDER BY scheduled_for DESC, kind LIMIT ?",
            [automation_id, limit],
        )
        return [_record(row) for row in rows]

    def last_slot(self, automation_id: str) -> datetime | None:
        """The latest scheduled slot in the ledger, whatever its state (manual runs aside)."""
        row = self._db.fetchone(
            "SELECT max(scheduled_for) FROM automation_runs WHERE automation_id = ? AND kind = ?",
            [automation_id, RunKind.SCHEDULED.value],
        )
        return from_db_time(row[0]) if row and row[0] is not None else None

    def last_run(self, automation_id: str) -> RunRecord | None:
        """The latest row that is not a skip: the last run and its outcome."""
        rows = self._db.fetchall(
            f"SELECT {_COLUMNS} FROM automation_runs WHERE automation_id = ? AND state <> ? "
            "ORDER BY claimed_at DESC, scheduled_for DESC LIMIT 1",
            [automation_id, RunState.SKIPPED.value],
        )
        return _record(rows[0]) if rows else None

    def _notify(self, record: RunRecord) -> None:
        if self._listener is not None:
            self._listener(record)


# -- rows -------------------------------------------------------------------------------
def _key(claim: Claim) -> list[object]:
    return [claim.automation_id, to_db_time(claim.scheduled_for), claim.kind.value]


def _opt_time(value: datetime | None) -> datetime | None:
    return to_db_time(value) if value is not None else None


def _row(r: RunRecord) -> list[object]:
    return [
        r.automation_id,
        to_db_time(r.scheduled_for),
        r.kind.value,
        r.state.value,
        to_db_time(r.claimed_at),
        _opt_time(r.started_at),
        _opt_time(r.finished_at),
        r.skipped_slots,
        _opt_time(r.first_skipped),
        r.skip_reason.value if r.skip_reason else None,
        r.error,
    ]


def _db_time(value: datetime | None) -> datetime | None:
    return from_db_time(value) if value is not None else None


def _record(row: tuple[Any, ...]) -> RunRecord:
    (automation_id, slot, kind, state, claimed, started, finished, count, first, reason, error) = (
        row
    )
    return RunRecord(
        automation_id,
        from_db_time(slot),
        RunKind(kind),
        RunState(state),
        from_db_time(claimed),
        _db_time(started),
        _db_time(finished),
        count,
        _db_time(first),
        SkipReason(reason) if reason else None,
        error,
    )


def _lost_race(exc: QueryError) -> bool:
    """True when the insert failed because another claimer has the row (a key or write conflict)."""
    cause = exc.__cause__
    return isinstance(cause, duckdb.ConstraintException | duckdb.TransactionException)
