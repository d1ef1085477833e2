"""The ``automations`` table: create, read, change and delete automation definitions.

Only definitions live here; what ran is the ledger's (``ledger.py``).
Enabling an automation again or changing its schedule moves its
``active_since`` to now, so slots from before are never treated as missed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from app.agents.automations.models import (
    Automation,
    AutomationNotFoundError,
    CronSchedule,
    IntervalSchedule,
    MissedSlotPolicy,
    Schedule,
)
from app.memory.db import Database, from_db_time, to_db_time, utc_now

__all__ = ["AutomationStore"]

log = logging.getLogger("soloist.automations")

_COLUMNS = (
    "id, name, target, payload, schedule_kind, cron_expression, time_zone, interval_seconds, "
    "interval_anchor, missed_policy, enabled, max_lateness_seconds, active_since"
)


class AutomationStore:
    """CRUD on automation definitions; ``clock`` is the seam for tests."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock

    def add(
        self,
        name: str,
        target: str,
        schedule: Schedule,
        *,
        payload: Mapping[str, object] | None = None,
        policy: MissedSlotPolicy = MissedSlotPolicy.RUN_ONCE,
        enabled: bool = True,
        max_lateness: timedelta | None = None,
    ) -> Automation:
        """Create an automation; its first slot is the first one after now."""
        automation = Automation(
            id=uuid.uuid4().hex,
            name=name,
            target=target,
            schedule=schedule,
            active_since=self._clock(),
            payload=dict(payload or {}),
            policy=policy,
            enabled=enabled,
            max_lateness=max_lateness,
        )
        now = to_db_time(self._clock())
        self._db.execute(
            f"INSERT INTO automations ({_COLUMNS}, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*_row(automation), now, now],
        )
        log.info("automation %s added (%s)", automation.id, schedule.describe())
        return automation

    def get(self, automation_id: str) -> Automation:
        row = self._db.fetchone(f"SELECT {_COLUMNS} FROM automations WHERE id = ?", [automation_id])
        if row is None:
            raise AutomationNotFoundError(automation_id)
        return _automation(row)

    def list(self, *, enabled_only: bool = False) -> list[Automation]:
        """Every automation (or only enabled ones), by name."""
        where = "WHERE enabled" if enabled_only else ""
        rows = self._db.fetchall(f"SELECT {_COLUMNS} FROM automations {where} ORDER BY name, id")
        return [_automation(row) for row in rows]

    def update(self, automation: Automation) -> Automation:
        """Save a changed definition; a new schedule or re-enabling restarts ``active_since``."""
        with self._db.transaction():
            before = self.get(automation.id)
            restarted = automation.schedule != before.schedule or (
                automation.enabled and not before.enabled
            )
            active_since = self._clock() if restarted else before.active_since
            saved = replace(automation, active_since=active_since)
            self._db.execute(
                "UPDATE automations SET name = ?, target = ?, payload = ?, schedule_kind = ?, "
                "cron_expression = ?, time_zone = ?, interval_seconds = ?, interval_anchor = ?, "
                "missed_policy = ?, enabled = ?, max_lateness_seconds = ?, active_since = ?, "
                "updated_at = ? WHERE id = ?",
                [*_row(saved)[1:], to_db_time(self._clock()), saved.id],
            )
        log.info("automation %s updated", saved.id)
        return saved

    def set_enabled(self, automation_id: str, enabled: bool) -> Automation:
        return self.update(replace(self.get(automation_id), enabled=enabled))

    def delete(self, automation_id: str) -> None:
        """Delete an automation and its run history."""
        with self._db.transaction():
            self.get(automation_id)
            self._db.execute("DELETE FROM automation_runs WHERE automation_id = ?", [automation_id])
            self._db.execute("DELETE FROM automations WHERE id = ?", [automation_id])
        log.info("automation %s deleted", automation_id)


# -- rows -------------------------------------------------------------------------------
def _row(a: Automation) -> list[object]:
    cron = a.schedule if isinstance(a.schedule, CronSchedule) else None
    interval = a.schedule if isinstance(a.schedule, IntervalSchedule) else None
    return [
        a.id,
        a.name,
        a.target,
        a.payload_json(),
        "cron" if cron else "interval",
        cron.expression if cron else None,
        cron.timezone if cron else None,
        int(interval.every.total_seconds()) if interval else None,
        to_db_time(interval.anchor) if interval else None,
        a.policy.value,
        a.enabled,
        int(a.max_lateness.total_seconds()) if a.max_lateness is not None else None,
        to_db_time(a.active_since),
    ]


def _schedule(kind: str, expression: Any, zone: Any, seconds: Any, anchor: Any) -> Schedule:
    if kind == "cron":
        return CronSchedule(expression, zone)
    return IntervalSchedule(timedelta(seconds=seconds), from_db_time(anchor))


def _automation(row: tuple[Any, ...]) -> Automation:
    (id_, name, target, payload, kind, expression, zone, seconds, anchor) = row[:9]
    (policy, enabled, lateness, active_since) = row[9:]
    return Automation(
        id=id_,
        name=name,
        target=target,
        schedule=_schedule(kind, expression, zone, seconds, anchor),
        active_since=from_db_time(active_since),
        payload=json.loads(payload),
        policy=MissedSlotPolicy(policy),
        enabled=bool(enabled),
        max_lateness=timedelta(seconds=lateness) if lateness is not None else None,
    )
