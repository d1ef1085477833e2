"""Schema version 8: the local CRM.

Owned by the connector that uses these tables; appended to
``app.memory.migrations.MIGRATIONS``. Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

CRM = Migration(
    8,
    "the local CRM",
    (),
)
