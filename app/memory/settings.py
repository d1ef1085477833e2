"""Office settings: small JSON values under string keys, kept in the database.

Settings live in the office's DuckDB file rather than a separate config file
so that a backup of that one file is a backup of the whole office. Secrets
never go here: credentials belong in the OS keyring.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime

from app.memory.db import Database, to_db_time, utc_now

log = logging.getLogger("soloist.memory")

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


class Settings:
    """Read and write settings; every call is its own short transaction."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock

    def get(self, key: str, default: JsonValue = None) -> JsonValue:
        """The value stored under ``key``, or ``default`` when there is none."""
        row = self._db.fetchone("SELECT value FROM settings WHERE key = ?", [key])
        if row is None:
            return default
        value: JsonValue = json.loads(row[0])
        return value

    def set(self, key: str, value: JsonValue) -> None:
        """Store ``value`` under ``key``, replacing any earlier value.

        Raises ``TypeError`` or ``ValueError`` (a caller's bug) for a value
        JSON cannot hold exactly, such as a set or NaN.
        """
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        self._db.execute(
            """
            INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
            ON CONFLICT (key) DO UPDATE
                SET value = excluded.value, updated_at = excluded.updated_at
            """,
            [key, text, to_db_time(self._clock())],
        )
        log.debug("setting %s saved (%d bytes)", key, len(text))

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        with self._db.transaction():
            existed = self._db.fetchone("SELECT 1 FROM settings WHERE key = ?", [key])
            self._db.execute("DELETE FROM settings WHERE key = ?", [key])
        return existed is not None
