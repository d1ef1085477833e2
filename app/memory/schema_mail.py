"""Schema version 6: connector accounts and email.

Owned by the connector that uses these tables; appended to
``app.memory.migrations.MIGRATIONS``. Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

MAIL = Migration(
    6,
    "connector accounts and email",
    (
        # One row per configured account of any connector kind. ``config`` is JSON
        # of non-secret settings (host, port, user name); secrets live in the keyring.
        """
        CREATE TABLE connector_accounts (
            id          TEXT PRIMARY KEY,
            kind        TEXT NOT NULL,
            name        TEXT NOT NULL,
            config      TEXT NOT NULL,
            enabled     BOOLEAN NOT NULL,
            created_at  TIMESTAMP NOT NULL,
            updated_at  TIMESTAMP NOT NULL
        )
        """,
    ),
)
