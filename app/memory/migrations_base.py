"""One schema version of the office database (kept apart so schema files can import it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

MigrationStep = Callable[[duckdb.DuckDBPyConnection], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: SQL statements, or a callable for data changes."""

    version: int
    description: str
    apply: tuple[str, ...] | MigrationStep

    def run(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Apply this migration on ``conn`` (inside the caller's transaction)."""
        if callable(self.apply):
            self.apply(conn)
            return
        for statement in self.apply:
            conn.execute(statement)
