"""Schema version 11: the outbox: actions, approvals and autonomy levels.

Owned by ``app.agents``; appended to ``app.memory.migrations.MIGRATIONS``.
Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

OUTBOX = Migration(
    11,
    "the outbox: actions, approvals and autonomy levels",
    (),
)
