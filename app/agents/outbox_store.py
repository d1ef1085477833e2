"""The outbox's rows in DuckDB: actions, decisions and the log of every state change.

Mechanism only: the outbox (:mod:`app.agents.outbox`) decides, this module
reads and writes. Every state change goes through :meth:`OutboxStore.move`,
which checks the transition table, updates the row only if it is still in
the state the caller saw, and appends to ``outbox_transitions``; callers
wrap it in ``Database.transaction()`` with whatever else must commit with it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from app.agents.autonomy import Autonomy
from app.agents.errors import ActionNotFoundError, IllegalTransitionError
from app.agents.outbox_states import (
    ActionRecord,
    ActionState,
    ApprovalRecord,
    OutboxEvent,
    check_transition,
    event_for,
)
from app.agents.taint import FieldOrigin, Origin
from app.integrations.base import JsonObject, PreparedAction, Risk
from app.memory.db import Database, Row, from_db_time, to_db_time

log = logging.getLogger("soloist.agents.outbox")

_ACTION_COLUMNS = (
    "id, agent_id, run_id, action, account_id, payload, preview, risk, idempotency_key, "
    "content_hash, state, autonomy, origins, untrusted_labels, approval_id, outcome_summary, "
    "external_id, outcome_data, error, attempts, next_attempt_at, created_at, updated_at, "
    "expires_at"
)
_APPROVAL_COLUMNS = "id, action_id, decided_by, decision, reason, content_hash, decided_at"
_SELECT = (
    f"SELECT {', '.join('a.' + c.strip() for c in _ACTION_COLUMNS.split(','))}, "
    f"{', '.join('p.' + c.strip() for c in _APPROVAL_COLUMNS.split(','))} "
    "FROM outbox_actions a LEFT JOIN outbox_approvals p ON p.id = a.approval_id"
)
# Columns a state change may set along with the state.
_SETTABLE = frozenset(
    {
        "payload", "preview", "idempotency_key", "content_hash", "origins", "approval_id",
        "outcome_summary", "external_id", "outcome_data", "error", "attempts", "next_attempt_at",
    }
)  # fmt: skip


class OutboxStore:
    """Reads and writes the outbox tables of one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing ---------------------------------------------------------------
    def insert(
        self,
        *,
        agent_id: str,
        run_id: str,
        prepared: PreparedAction,
        content_hash: str,
        state: ActionState,
        autonomy: Autonomy,
        origins: Sequence[FieldOrigin],
        untrusted_labels: Sequence[str],
        now: datetime,
        expires_at: datetime | None,
    ) -> str:
        """Add a new action in ``state``; returns its id."""
        action_id = uuid.uuid4().hex
        check_transition(action_id, None, state)
        at = to_db_time(now)
        with self.db.transaction():
            self.db.execute(
                f"INSERT INTO outbox_actions ({_ACTION_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, 0, "
                "NULL, ?, ?, ?)",
                (
                    action_id, agent_id, run_id, prepared.action, prepared.account_id,
                    dump_json(prepared.payload), prepared.preview, int(prepared.risk),
                    prepared.idempotency_key, content_hash, int(state), int(autonomy),
                    dump_origins(origins), json.dumps(list(untrusted_labels)), at, at,
                    None if expires_at is None else to_db_time(expires_at),
                ),
            )  # fmt: skip
            self._log(action_id, None, state, None, at)
        return action_id

    def decide(
        self,
        action_id: str,
        *,
        decided_by: str,
        decision: str,
        reason: str | None,
        content_hash: str,
        now: datetime,
    ) -> str:
        """Record a decision; returns its id (the caller points the action at it)."""
        approval_id = uuid.uuid4().hex
        self.db.execute(
            f"INSERT INTO outbox_approvals ({_APPROVAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (approval_id, action_id, decided_by, decision, reason, content_hash, to_db_time(now)),
        )
        return approval_id

    def move(
        self,
        record: ActionRecord,
        new: ActionState,
        now: datetime,
        note: str | None = None,
        **columns: object,
    ) -> OutboxEvent:
        """Change the state of ``record`` (as read in this transaction) and log it."""
        check_transition(record.id, record.state, new)
        unknown = set(columns) - _SETTABLE
        if unknown:
            raise ValueError(f"not settable with a state change: {sorted(unknown)}")
        at = to_db_time(now)
        assignments = "".join(f", {name} = ?" for name in columns)
        with self.db.transaction():
            changed = self.db.fetchall(
                f"UPDATE outbox_actions SET state = ?, updated_at = ?{assignments} "
                "WHERE id = ? AND state = ? RETURNING id",
                (int(new), at, *columns.values(), record.id, int(record.state)),
            )
            if not changed:
                raise IllegalTransitionError(
                    f"action {record.id} is no longer {record.state.name}; not moved to {new.name}"
                )
            self._log(record.id, record.state, new, note, at)
        return event_for(record, new, record.state)

    def _log(
        self, action_id: str, old: ActionState | None, new: ActionState, note: str | None, at: Any
    ) -> None:
        self.db.execute(
            "INSERT INTO outbox_transitions "
            "SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ? "
            "FROM outbox_transitions WHERE action_id = ?",
            (action_id, None if old is None else int(old), int(new), note, at, action_id),
        )

    # -- reading ---------------------------------------------------------------
    def get(self, action_id: str) -> ActionRecord:
        row = self.db.fetchone(f"{_SELECT} WHERE a.id = ?", (action_id,))
        if row is None:
            raise ActionNotFoundError(f"no action {action_id} in the outbox")
        return _record(row)

    def select(self, where: str = "TRUE", params: Sequence[object] = ()) -> list[ActionRecord]:
        """Actions matching a condition on ``a.`` (actions) and ``p.`` (decision), oldest first."""
        rows = self.db.fetchall(f"{_SELECT} WHERE {where} ORDER BY a.created_at, a.rowid", params)
        return [_record(row) for row in rows]

    def transitions(self, action_id: str) -> list[tuple[ActionState | None, ActionState, str]]:
        """The state changes of one action, in order: (from, to, note)."""
        rows = self.db.fetchall(
            "SELECT from_state, to_state, note FROM outbox_transitions WHERE action_id = ? "
            "ORDER BY seq",
            (action_id,),
        )
        return [
            (None if r[0] is None else ActionState(r[0]), ActionState(r[1]), r[2] or "")
            for r in rows
        ]


# -- mapping --------------------------------------------------------------------
def dump_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dump_origins(origins: Sequence[FieldOrigin]) -> str:
    return dump_json([[o.path, o.origin.value, list(o.sources)] for o in origins])


def _load_origins(text: str) -> tuple[FieldOrigin, ...]:
    return tuple(
        FieldOrigin(path, Origin(origin), tuple(sources))
        for path, origin, sources in json.loads(text)
    )


def _time(value: datetime | None) -> datetime | None:
    return None if value is None else from_db_time(value)


def _record(row: Row) -> ActionRecord:
    approval = None
    if row[24] is not None:
        approval = ApprovalRecord(
            row[24], row[25], row[26], row[27], row[28], row[29], from_db_time(row[30])
        )
    return ActionRecord(
        id=row[0],
        agent_id=row[1],
        run_id=row[2],
        action=row[3],
        account_id=row[4],
        payload=cast(JsonObject, json.loads(row[5])),
        preview=row[6],
        risk=Risk(row[7]),
        idempotency_key=row[8],
        content_hash=row[9],
        state=ActionState(row[10]),
        autonomy=Autonomy(row[11]),
        origins=_load_origins(row[12]),
        untrusted_labels=tuple(json.loads(row[13])),
        approval=approval,
        outcome_summary=row[15],
        external_id=row[16],
        error=row[18],
        attempts=int(row[19]),
        next_attempt_at=_time(row[20]),
        created_at=from_db_time(row[21]),
        updated_at=from_db_time(row[22]),
        expires_at=_time(row[23]),
    )


# -- what the parts of the outbox share ----------------------------------------------
@dataclass(frozen=True, slots=True)
class OutboxContext:
    """The store, the clock, the event sink and the crash-test checkpoint, shared."""

    store: OutboxStore
    clock: Callable[[], datetime]
    emit: Callable[[OutboxEvent], None]
    checkpoint: Callable[[str], None]

    @property
    def db(self) -> Database:
        return self.store.db

    def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Hand committed changes to the listener; a failing listener changes nothing."""
        for event in events:
            log.info("action %s %s: %s", event.action_id, event.action, event.state.name)
            try:
                self.emit(event)
            except Exception:  # a listener's bug must not undo or stop the outbox
                log.exception("outbox listener failed on %s for %s", event.kind, event.action_id)
