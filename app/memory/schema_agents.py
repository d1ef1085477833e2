"""Schema version 10: agent runs, steps and traces.

Owned by ``app.agents``; appended to ``app.memory.migrations.MIGRATIONS``.
Never edit once shipped: add a new version.

The names ``agent_runs`` and ``run_steps`` are the session tier's (v3: an
agent's context across restarts); these tables are the *trace*: what each
run and step did, for the Activity window, metrics and budgets. A trace
step holds sizes, ids and hashes of its inputs, never a prompt's text.
``agent_status`` keeps each agent's life-cycle state, so it survives a
restart. No foreign keys (see schema_crm); every time is naive UTC,
supplied by Python.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

AGENTS = Migration(
    10,
    "agent runs, steps and traces",
    (
        """
        CREATE TABLE agent_trace_runs (
            id                TEXT PRIMARY KEY,  -- uuid4 hex
            agent_id          TEXT NOT NULL,
            trigger           TEXT NOT NULL,     -- manual, schedule, mail.received...
            state             TEXT NOT NULL,     -- running, succeeded, waiting_for_approval...
            session_id        TEXT NOT NULL,
            started_at        TIMESTAMP NOT NULL,
            finished_at       TIMESTAMP,         -- NULL while running
            prompt_tokens     INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            device_s          DOUBLE NOT NULL DEFAULT 0,
            steps             INTEGER NOT NULL DEFAULT 0,
            error             TEXT,
            outcome           TEXT               -- a short summary: ids and counts
        )
        """,
        "CREATE INDEX agent_trace_runs_agent ON agent_trace_runs (agent_id, started_at)",
        """
        CREATE TABLE agent_trace_steps (
            run_id            TEXT NOT NULL,
            seq               INTEGER NOT NULL CHECK (seq >= 1),
            kind              TEXT NOT NULL,     -- perceive, recall, reason, act, learn
            inputs            JSON NOT NULL,     -- sizes, ids and labels, never raw text
            memory_ids        JSON NOT NULL,     -- recalled memory ids
            prompt_sha256     TEXT,
            prompt_chars      INTEGER,
            prompt_tokens     INTEGER,
            completion_tokens INTEGER,
            model_output      TEXT,              -- the tool-call JSON, secrets redacted
            tool              TEXT,
            tool_args_sha256  TEXT,
            result            JSON,              -- a summary: sizes, ids, states
            started_at        TIMESTAMP NOT NULL,
            elapsed_s         DOUBLE NOT NULL,
            device_s          DOUBLE NOT NULL DEFAULT 0,
            error             TEXT,
            PRIMARY KEY (run_id, seq)
        )
        """,
        """
        CREATE TABLE agent_status (
            agent_id   TEXT PRIMARY KEY,
            state      TEXT NOT NULL,
            run_id     TEXT,
            updated_at TIMESTAMP NOT NULL
        )
        """,
    ),
)
