"""Schema version 12: automations and their run ledger.

Owned by ``app.agents``; appended to ``app.memory.migrations.MIGRATIONS``.
Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

AUTOMATIONS = Migration(
    12,
    "automations and their run ledger",
    (
        """
        CREATE TABLE automations (
            id                   TEXT PRIMARY KEY,  -- uuid4 hex
            name                 TEXT NOT NULL,
            target               TEXT NOT NULL,     -- e.g. agent:<agent-id>
            payload              JSON NOT NULL,
            schedule_kind        TEXT NOT NULL,     -- cron | interval
            cron_expression      TEXT,
            time_zone            TEXT,
            interval_seconds     BIGINT,
            interval_anchor      TIMESTAMP,         -- UTC
            missed_policy        TEXT NOT NULL,     -- run_once | run_each | skip
            enabled              BOOLEAN NOT NULL,
            max_lateness_seconds BIGINT,            -- NULL: no limit
            active_since         TIMESTAMP NOT NULL,  -- UTC, slots before it are not due
            created_at           TIMESTAMP NOT NULL,  -- UTC
            updated_at           TIMESTAMP NOT NULL   -- UTC
        )
        """,
        """
        CREATE TABLE automation_runs (
            automation_id TEXT NOT NULL,
            scheduled_for TIMESTAMP NOT NULL,  -- UTC, the slot (a manual run: when asked)
            kind          TEXT NOT NULL,       -- scheduled | manual
            state         TEXT NOT NULL,       -- claimed ... abandoned (ledger.RunState)
            claimed_at    TIMESTAMP NOT NULL,  -- UTC
            started_at    TIMESTAMP,           -- UTC
            finished_at   TIMESTAMP,           -- UTC
            skipped_slots INTEGER NOT NULL,    -- a skipped row stands for this many slots
            first_skipped TIMESTAMP,           -- UTC, the oldest of them
            skip_reason   TEXT,
            error         TEXT,                -- exception type and message of a failed run
            PRIMARY KEY (automation_id, scheduled_for, kind)
        )
        """,
    ),
)
