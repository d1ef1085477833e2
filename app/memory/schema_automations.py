"""Schema version 12: automations and their run ledger.

Owned by ``app.agents``; appended to ``app.memory.migrations.MIGRATIONS``.
Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

AUTOMATIONS = Migration(
    12,
    "automations and their run ledger",
    (),
)
