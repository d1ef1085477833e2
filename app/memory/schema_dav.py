"""Schema version 7: contacts and calendars (CardDAV, CalDAV).

Owned by the connector that uses these tables; appended to
``app.memory.migrations.MIGRATIONS``. Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

DAV = Migration(
    7,
    "contacts and calendars (CardDAV, CalDAV)",
    (),
)
