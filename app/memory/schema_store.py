"""Schema version 9: HubSpot sync state and the store (orders, customers, products, refunds).

Owned by the connector that uses these tables; appended to
``app.memory.migrations.MIGRATIONS``. Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

STORE = Migration(
    9,
    "HubSpot sync state and the store (orders, customers, products, refunds)",
    (),
)
