"""Schema version 10: agent runs, steps and traces.

Owned by ``app.agents``; appended to ``app.memory.migrations.MIGRATIONS``.
Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

AGENTS = Migration(
    10,
    "agent runs, steps and traces",
    (),
)
