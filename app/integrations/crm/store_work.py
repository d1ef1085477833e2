"""The CRM's work records in DuckDB: deals and their stage history,
activities, follow-ups, notes, and the ledger of applied actions.

Kept apart from people and companies (``store.py``) so each file reads on
its own; ``CrmStore`` is both. The clock and the id factory are seams for
tests. Every deal move goes through ``models.can_move`` and leaves a row in
``crm_deal_stages``, so a deal's path can be shown.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from app.integrations.crm.models import (
    Activity,
    ActivityKind,
    Deal,
    DealStage,
    FollowUp,
    Note,
    StageChange,
    allowed_stages,
    can_move,
)
from app.memory.db import Database, Row, from_db_time, to_db_time, utc_now

log = logging.getLogger("soloist.integrations.crm")

Clock = Callable[[], datetime]


class CrmNotFoundError(LookupError):
    """A record the caller named does not exist (or was deleted)."""


class StageTransitionError(ValueError):
    """A deal cannot move from its stage to the one asked for."""


def _t(value: datetime | None) -> datetime | None:
    return None if value is None else to_db_time(value)


def _ft(value: datetime | None) -> datetime | None:
    return None if value is None else from_db_time(value)


_DEAL_COLS = (
    "id, title, stage, person_id, company_id, value_cents, currency, created_at, updated_at, "
    "closed_at"
)
_ACTIVITY_COLS = "id, kind, subject, body, occurred_at, person_id, deal_id, created_at"
_FOLLOW_UP_COLS = "id, title, due_at, done_at, person_id, deal_id, created_at"
_NOTE_COLS = "id, body, person_id, deal_id, company_id, created_at, updated_at"


class WorkStore:
    """Deals, activities, follow-ups, notes and applied actions."""

    def __init__(
        self,
        db: Database,
        clock: Clock = utc_now,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.db = db
        self._clock = clock
        self._new_id = new_id

    def now(self) -> datetime:
        return self._clock()

    def new_id(self) -> str:
        return self._new_id()

    # -- deals ---------------------------------------------------------------------
    def add_deal(self, deal: Deal) -> Deal:
        now = self.now()
        deal_id = deal.id or self.new_id()
        closed = now if deal.stage.is_closed else None
        with self.db.transaction():
            self.db.execute(
                f"INSERT INTO crm_deals ({_DEAL_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (deal_id, deal.title, deal.stage.label, deal.person_id, deal.company_id,
                 deal.value_cents, deal.currency, _t(now), _t(now), _t(closed)),
            )  # fmt: skip
            self._record_stage(deal_id, None, deal.stage, now)
        log.info("deal %s added at stage %s", deal_id, deal.stage.label)
        return self.get_deal(deal_id)

    def get_deal(self, deal_id: str) -> Deal:
        row = self.db.fetchone(f"SELECT {_DEAL_COLS} FROM crm_deals WHERE id = ?", (deal_id,))
        if row is None:
            raise CrmNotFoundError(f"no deal {deal_id}")
        return _deal(row)

    def list_deals(
        self,
        stage: DealStage | None = None,
        *,
        open_only: bool = False,
        person_id: str | None = None,
    ) -> list[Deal]:
        sql = f"SELECT {_DEAL_COLS} FROM crm_deals WHERE 1 = 1"
        params: list[object] = []
        if stage is not None:
            sql += " AND stage = ?"
            params.append(stage.label)
        if open_only:
            sql += " AND closed_at IS NULL"
        if person_id is not None:
            sql += " AND person_id = ?"
            params.append(person_id)
        return [_deal(r) for r in self.db.fetchall(sql + " ORDER BY updated_at DESC", params)]

    def move_deal(self, deal_id: str, stage: DealStage) -> Deal:
        """Move a deal to ``stage`` (``StageTransitionError`` if not allowed)."""
        with self.db.transaction():
            deal = self.get_deal(deal_id)
            if not can_move(deal.stage, stage):
                allowed = ", ".join(s.label for s in sorted(allowed_stages(deal.stage)))
                old, new = deal.stage.label, stage.label
                raise StageTransitionError(
                    f"a {old} deal cannot move to {new}; it can go to {allowed}"
                )
            now = self.now()
            closed = now if stage.is_closed else None
            self.db.execute(
                "UPDATE crm_deals SET stage = ?, updated_at = ?, closed_at = ? WHERE id = ?",
                (stage.label, _t(now), _t(closed), deal_id),
            )
            self._record_stage(deal_id, deal.stage, stage, now)
        log.info("deal %s moved %s -> %s", deal_id, deal.stage.label, stage.label)
        return self.get_deal(deal_id)

    def stage_history(self, deal_id: str) -> list[StageChange]:
        rows = self.db.fetchall(
            "SELECT deal_id, seq, from_stage, to_stage, changed_at FROM crm_deal_stages "
            "WHERE deal_id = ? ORDER BY seq",
            (deal_id,),
        )
        return [
            StageChange(
                r[0],
                r[1],
                DealStage.parse(r[2]) if r[2] else None,
                DealStage.parse(r[3]),
                from_db_time(r[4]),
            )
            for r in rows
        ]

    def _record_stage(
        self, deal_id: str, old: DealStage | None, new: DealStage, when: datetime
    ) -> None:
        self.db.execute(
            "INSERT INTO crm_deal_stages SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ? "
            "FROM crm_deal_stages WHERE deal_id = ?",
            (deal_id, old.label if old else None, new.label, _t(when), deal_id),
        )

    # -- activities ----------------------------------------------------------------
    def add_activity(self, activity: Activity) -> Activity:
        activity_id = activity.id or self.new_id()
        self.db.execute(
            f"INSERT INTO crm_activities ({_ACTIVITY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (activity_id, activity.kind.value, activity.subject, activity.body,
             _t(activity.occurred_at), activity.person_id, activity.deal_id, _t(self.now())),
        )  # fmt: skip
        log.info("activity %s (%s) logged", activity_id, activity.kind.value)
        return self._activities("id = ?", (activity_id,))[0]

    def list_activities(
        self, *, person_id: str | None = None, deal_id: str | None = None
    ) -> list[Activity]:
        where, params = _links(person_id, deal_id)
        return self._activities(where, params)

    def get_activity(self, activity_id: str) -> Activity | None:
        found = self._activities("id = ?", (activity_id,))
        return found[0] if found else None

    def _activities(self, where: str, params: tuple[object, ...]) -> list[Activity]:
        rows = self.db.fetchall(
            f"SELECT {_ACTIVITY_COLS} FROM crm_activities WHERE {where} ORDER BY occurred_at DESC",
            params,
        )
        return [
            Activity(
                r[0],
                ActivityKind(r[1]),
                r[2],
                from_db_time(r[4]),
                r[3],
                r[5],
                r[6],
                from_db_time(r[7]),
            )
            for r in rows
        ]

    # -- follow-ups ----------------------------------------------------------------
    def add_follow_up(self, follow_up: FollowUp) -> FollowUp:
        follow_up_id = follow_up.id or self.new_id()
        self.db.execute(
            f"INSERT INTO crm_follow_ups ({_FOLLOW_UP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (follow_up_id, follow_up.title, _t(follow_up.due_at), _t(follow_up.done_at),
             follow_up.person_id, follow_up.deal_id, _t(self.now())),
        )  # fmt: skip
        log.info("follow-up %s added", follow_up_id)
        return self._follow_ups("id = ?", (follow_up_id,))[0]

    def get_follow_up(self, follow_up_id: str) -> FollowUp | None:
        found = self._follow_ups("id = ?", (follow_up_id,))
        return found[0] if found else None

    def complete_follow_up(self, follow_up_id: str, done: bool = True) -> FollowUp:
        if self.get_follow_up(follow_up_id) is None:
            raise CrmNotFoundError(f"no follow-up {follow_up_id}")
        done_at = _t(self.now()) if done else None
        self.db.execute(
            "UPDATE crm_follow_ups SET done_at = ? WHERE id = ?", (done_at, follow_up_id)
        )
        return self._follow_ups("id = ?", (follow_up_id,))[0]

    def follow_ups_due(self, before: datetime, *, include_done: bool = False) -> list[FollowUp]:
        where = "due_at <= ?" + ("" if include_done else " AND done_at IS NULL")
        return self._follow_ups(where, (_t(before),))

    def list_follow_ups(
        self, *, person_id: str | None = None, deal_id: str | None = None
    ) -> list[FollowUp]:
        where, params = _links(person_id, deal_id)
        return self._follow_ups(where, params)

    def _follow_ups(self, where: str, params: tuple[object, ...]) -> list[FollowUp]:
        rows = self.db.fetchall(
            f"SELECT {_FOLLOW_UP_COLS} FROM crm_follow_ups WHERE {where} ORDER BY due_at", params
        )
        return [
            FollowUp(r[0], r[1], from_db_time(r[2]), _ft(r[3]), r[4], r[5], _ft(r[6])) for r in rows
        ]

    # -- notes ---------------------------------------------------------------------
    def add_note(self, note: Note) -> Note:
        note_id = note.id or self.new_id()
        now = _t(self.now())
        self.db.execute(
            f"INSERT INTO crm_notes ({_NOTE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (note_id, note.body, note.person_id, note.deal_id, note.company_id, now, now),
        )
        log.info("note %s added (%d chars)", note_id, len(note.body))
        return self._notes("id = ?", (note_id,))[0]

    def get_note(self, note_id: str) -> Note | None:
        found = self._notes("id = ?", (note_id,))
        return found[0] if found else None

    def list_notes(self, *, person_id: str | None = None, deal_id: str | None = None) -> list[Note]:
        where, params = _links(person_id, deal_id)
        return self._notes(where, params)

    def _notes(self, where: str, params: tuple[object, ...]) -> list[Note]:
        rows = self.db.fetchall(
            f"SELECT {_NOTE_COLS} FROM crm_notes WHERE {where} ORDER BY created_at DESC, id",
            params,
        )
        return [Note(r[0], r[1], r[2], r[3], r[4], _ft(r[5]), _ft(r[6])) for r in rows]

    # -- applied actions (idempotency) ---------------------------------------------
    def applied_outcome(self, key: str) -> dict[str, Any] | None:
        row = self.db.fetchone("SELECT outcome FROM crm_applied_actions WHERE key = ?", (key,))
        if row is None:
            return None
        outcome: dict[str, Any] = json.loads(row[0])
        return outcome

    def record_applied(self, key: str, action: str, outcome: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO crm_applied_actions VALUES (?, ?, ?, ?)",
            (key, action, json.dumps(outcome), _t(self.now())),
        )


def _links(person_id: str | None, deal_id: str | None) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    params: list[object] = []
    if person_id is not None:
        clauses.append("person_id = ?")
        params.append(person_id)
    if deal_id is not None:
        clauses.append("deal_id = ?")
        params.append(deal_id)
    return (" AND ".join(clauses) or "1 = 1"), tuple(params)


def _deal(row: Row) -> Deal:
    return Deal(
        id=row[0], title=row[1], stage=DealStage.parse(row[2]), person_id=row[3],
        company_id=row[4], value_cents=row[5], currency=row[6],
        created_at=from_db_time(row[7]), updated_at=from_db_time(row[8]), closed_at=_ft(row[9]),
    )  # fmt: skip
