"""Schema version 11: the outbox: actions, approvals and autonomy levels.

Owned by ``app.agents``; appended to ``app.memory.migrations.MIGRATIONS``.
Never edit once shipped: add a new version.

No foreign keys (DuckDB checks them on UPDATE of the parent and the outbox
updates its rows often) and no indexes beyond the primary keys: the tables
stay small and an index on a column that is updated costs more than a scan.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

OUTBOX = Migration(
    11,
    "the outbox: actions, approvals and autonomy levels",
    (
        # One row per side effect an agent asked for. ``payload`` is the exact
        # JSON ``execute`` sends; ``content_hash`` is the SHA-256 of (action,
        # account_id, payload, idempotency_key) and is re-computed before the
        # call. ``state`` is ``app.agents.outbox_states.ActionState``.
        """
        CREATE TABLE outbox_actions (
            id               TEXT PRIMARY KEY,   -- uuid4 hex
            agent_id         TEXT NOT NULL,
            run_id           TEXT NOT NULL,
            action           TEXT NOT NULL,      -- dotted name: email.send
            account_id       TEXT NOT NULL,
            payload          TEXT NOT NULL,      -- JSON object
            preview          TEXT NOT NULL,
            risk             INTEGER NOT NULL,   -- app.integrations.base.Risk
            idempotency_key  TEXT NOT NULL,
            content_hash     TEXT NOT NULL,      -- sha256 hex
            state            INTEGER NOT NULL,
            autonomy         INTEGER NOT NULL,   -- the level that decided, after policy
            origins          TEXT NOT NULL,      -- JSON [[path, origin, [labels]], ...]
            untrusted_labels TEXT NOT NULL,      -- JSON [label, ...] the run read
            approval_id      TEXT,               -- the decision in force, or NULL
            outcome_summary  TEXT,
            external_id      TEXT,
            outcome_data     TEXT,               -- JSON object or NULL
            error            TEXT,               -- one readable line, or NULL
            attempts         INTEGER NOT NULL,
            next_attempt_at  TIMESTAMP,          -- UTC; NULL: now
            created_at       TIMESTAMP NOT NULL, -- UTC
            updated_at       TIMESTAMP NOT NULL, -- UTC
            expires_at       TIMESTAMP           -- UTC; NULL: never
        )
        """,
        # Every decision on an action: the owner's (approved, edited, rejected)
        # or the autonomy's, or the clock's (expired), with the hash decided on.
        """
        CREATE TABLE outbox_approvals (
            id           TEXT PRIMARY KEY,   -- uuid4 hex
            action_id    TEXT NOT NULL,
            decided_by   TEXT NOT NULL,      -- owner:ui, owner:cli, autonomy:2, clock
            decision     TEXT NOT NULL,      -- approved, edited, rejected, expired
            reason       TEXT,
            content_hash TEXT NOT NULL,
            decided_at   TIMESTAMP NOT NULL  -- UTC
        )
        """,
        # Every state change of every action, for the Activity view and audits.
        """
        CREATE TABLE outbox_transitions (
            action_id  TEXT NOT NULL,
            seq        INTEGER NOT NULL,     -- per action, from 1
            from_state INTEGER,              -- NULL when the action was created
            to_state   INTEGER NOT NULL,
            note       TEXT,
            changed_at TIMESTAMP NOT NULL,   -- UTC
            PRIMARY KEY (action_id, seq)
        )
        """,
        # The owner's autonomy choice per agent and tool; absent: the agent's default.
        """
        CREATE TABLE autonomy_levels (
            agent_id   TEXT NOT NULL,
            tool       TEXT NOT NULL,
            level      INTEGER NOT NULL,     -- app.agents.autonomy.Autonomy
            updated_at TIMESTAMP NOT NULL,   -- UTC
            PRIMARY KEY (agent_id, tool)
        )
        """,
        # Every change of an autonomy level: who, where, when, old -> new.
        """
        CREATE TABLE autonomy_changes (
            id         TEXT PRIMARY KEY,     -- uuid4 hex
            agent_id   TEXT NOT NULL,
            tool       TEXT NOT NULL,
            old_level  INTEGER,              -- NULL: was the agent's default
            new_level  INTEGER NOT NULL,
            changed_by TEXT NOT NULL,        -- owner:ui, owner:cli
            who        TEXT NOT NULL,
            changed_at TIMESTAMP NOT NULL    -- UTC
        )
        """,
    ),
)
