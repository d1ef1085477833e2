"""The keyword side of memory search: BM25 over the current texts, in a file of its own.

DuckDB's fts builds an index over a *table*, so the current version of
each live memory has a row in ``memory_text`` (version id, memory id,
text), kept in step by ``app.memory.service``. That table and its fts
index live in the *search file* (``office.search.duckdb`` beside the
office file), attached to the office database's instance: they are
derived data, rebuilt from the office file when missing, damaged or
stale, and never backed up. Keeping them out of the office file matters:
a backup copies the office file while holding the office connection's
lock, and the keyword index is rebuilt (~10 s at 100,000 memories) on a
connection of its own (``Database.cursor()``), which must not write there.

Rebuilds never make writes wait. ``KeywordIndex`` holds one lock through
a rebuild, so ``note`` does not call it then: notes wait in a backlog and
are applied, in order, when the rebuild ends. Every note follows the write
of its row to ``memory_text``, so a rebuild either saw that row or finds
the note in its backlog; applying a note twice is harmless. Searches do
not wait either: while the index loads or rebuilds, ``search`` returns
None and the query runs on vectors alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Container
from enum import StrEnum
from pathlib import Path

from app.memory.db import Database
from app.memory.errors import StoreError
from app.memory.fts import FtsError, KeywordIndex, RefreshPolicy, fts_schema, refresh_due

__all__ = ["SEARCH_CATALOG", "TEXT_TABLE", "KeywordSide", "KeywordState", "search_file_for"]

log = logging.getLogger("soloist.memory.search")

SEARCH_CATALOG = "soloist_search"
TEXT_TABLE = "memory_text"
TEXT_TABLE_SQL = f"""
    CREATE TABLE IF NOT EXISTS {SEARCH_CATALOG}.main.{TEXT_TABLE} (
        version_id TEXT PRIMARY KEY,  -- the current version of a live memory
        memory_id  TEXT NOT NULL,
        text       TEXT NOT NULL
    )
"""

Hit = tuple[str, float]


def search_file_for(db_path: Path) -> Path:
    """Where the search file of the office database at ``db_path`` lives."""
    return db_path.with_name(f"{db_path.stem}.search.duckdb")


def attach_search_file(db: Database, path: Path) -> None:
    """Attach the search file to ``db``'s instance (once), creating its table.

    A file DuckDB cannot open is derived data: it is removed and made again.
    """
    literal = str(path).replace("'", "''")  # ATTACH takes no parameters
    try:
        db.execute(f"ATTACH IF NOT EXISTS '{literal}' AS {SEARCH_CATALOG}")
    except StoreError as exc:
        log.warning("search file unreadable (%s); building it again", type(exc).__name__)
        for stale in (path, path.with_name(path.name + ".wal")):
            stale.unlink(missing_ok=True)
        db.execute(f"ATTACH IF NOT EXISTS '{literal}' AS {SEARCH_CATALOG}")
    db.execute(TEXT_TABLE_SQL)


class KeywordState(StrEnum):
    """The keyword side's life cycle.

    LOADING -> READY | REBUILDING | UNAVAILABLE (no fts extension);
    READY -> REBUILDING -> READY | BROKEN (a failed rebuild, retried: BROKEN -> REBUILDING);
    any -> CLOSED. Only READY answers searches.
    """

    LOADING = "loading"
    READY = "ready"
    REBUILDING = "rebuilding"
    BROKEN = "broken"
    UNAVAILABLE = "unavailable"
    CLOSED = "closed"


class KeywordSide:
    """``KeywordIndex`` over ``memory_text``, with writes that never wait on a rebuild.

    ``runner`` is a cursor whose default catalog is the search file (``USE``).
    """

    def __init__(
        self, runner: Database, policy: RefreshPolicy | None = None, retry_s: float = 60.0
    ) -> None:
        self._runner = runner
        self._retry_s = retry_s
        self._failed_at = 0.0
        self._policy = policy or RefreshPolicy()
        self._index = KeywordIndex(runner, TEXT_TABLE, "version_id", "text", policy=self._policy)
        self._cond = threading.Condition()
        self._state = KeywordState.LOADING
        self._searching = 0
        self._backlog: list[tuple[str, str | None]] = []
        self._rebuild_wanted = False

    @property
    def state(self) -> KeywordState:
        return self._state

    @property
    def pending(self) -> int:
        """Writes the DuckDB index has not seen (scored from RAM until the next rebuild)."""
        return self._index.pending

    # -- life cycle ----------------------------------------------------------
    def open(self) -> None:
        """Load the index (building it if there is none) and catch up with the table."""
        try:
            self._index.open()
            stale, gone = self._stale()
        except FtsError as exc:
            self._end_loading(KeywordState.UNAVAILABLE)
            log.warning("%s", exc)
            return
        except StoreError as exc:
            if self._end_loading(KeywordState.BROKEN):
                log.warning("keyword index could not be opened (%s); retrying later", exc)
            return
        if refresh_due(len(stale) + len(gone), self._documents(), None, self._policy):
            self._rebuild(from_state=KeywordState.LOADING)
            return
        for version_id, text in stale:  # still LOADING: notes go to the backlog meanwhile
            self._apply(version_id, text)
        for version_id in gone:
            self._apply(version_id, None)
        self._end_loading(KeywordState.READY)

    def close(self) -> None:
        with self._cond:
            self._state = KeywordState.CLOSED
            self._backlog.clear()
            self._cond.notify_all()

    def want_rebuild(self) -> None:
        """Rebuild at the next ``rebuild_if_due`` (after many writes at once)."""
        with self._cond:
            self._rebuild_wanted = True

    def rebuild_if_due(self) -> bool:
        """Rebuild when asked to, after a failure, or when the refresh policy says so."""
        with self._cond:
            state, wanted = self._state, self._rebuild_wanted
        if state is KeywordState.BROKEN:
            due = time.monotonic() - self._failed_at >= self._retry_s
        else:
            due = state is KeywordState.READY and (wanted or self._index.refresh_due())
        if due:
            self._rebuild(from_state=state)
        return due

    # -- writes and searches -------------------------------------------------------
    def note(self, version_id: str, text: str | None) -> None:
        """``version_id`` now has ``text`` in ``memory_text`` (None: its row is gone)."""
        with self._cond:
            if self._state is KeywordState.READY:
                self._apply(version_id, text)
            elif self._state in (KeywordState.LOADING, KeywordState.REBUILDING):
                self._backlog.append((version_id, text))
            # BROKEN: the next rebuild reads the row; UNAVAILABLE, CLOSED: nothing to do

    def search(self, query: str, k: int, allowed: Container[str] | None) -> list[Hit] | None:
        """The ``k`` best (version id, BM25); None while the index cannot answer."""
        with self._cond:
            if self._state is not KeywordState.READY:
                return None
            self._searching += 1
        try:
            return [(str(i), s) for i, s in self._index.search(query, k, allowed)]
        except StoreError as exc:
            log.warning("keyword search failed: %s", type(exc).__name__)
            return None
        finally:
            with self._cond:
                self._searching -= 1
                self._cond.notify_all()

    # -- mechanism -------------------------------------------------------------
    def _apply(self, version_id: str, text: str | None) -> None:
        """Tell the index of one write; if that fails, a rebuild reads the table instead."""
        try:
            if text is None:
                self._index.note_delete(version_id)
            else:
                self._index.note_write(version_id, text)
        except StoreError as exc:
            log.warning("keyword index missed a write (%s); it will be rebuilt", exc)
            self._rebuild_wanted = True

    def _rebuild(self, from_state: KeywordState) -> None:
        """Rebuild with searches held off and notes kept in the backlog."""
        with self._cond:
            if self._state is not from_state:
                return
            self._state = KeywordState.REBUILDING
            self._rebuild_wanted = False
            self._backlog.clear()  # the rebuild reads their rows; newer notes land here
            while self._searching:
                self._cond.wait()
        started = time.perf_counter()
        try:
            self._index.rebuild()
        except StoreError as exc:
            failed = self._end_loading(KeywordState.BROKEN)
            if failed:
                log.warning("keyword index rebuild failed (%s); retrying later", exc)
            return
        self._end_loading(KeywordState.READY)
        log.info(
            "keyword index rebuilt: %d documents in %.2f s",
            self._documents(),
            time.perf_counter() - started,
        )

    def _end_loading(self, state: KeywordState) -> bool:
        """Leave LOADING/REBUILDING for ``state``, applying the backlog; False if closed."""
        with self._cond:
            if self._state is KeywordState.CLOSED:
                return False
            self._state = state
            if state is KeywordState.BROKEN:
                self._failed_at = time.monotonic()
            if state is KeywordState.READY:
                for version_id, text in self._backlog:
                    self._apply(version_id, text)
            self._backlog.clear()
            self._cond.notify_all()
            return True

    def _stale(self) -> tuple[list[tuple[str, str]], list[str]]:
        """Rows the DuckDB index lacks (or holds stale), and its documents with no row."""
        docs = f"{fts_schema(TEXT_TABLE)}.docs"
        stale = self._runner.fetchall(
            f"SELECT t.version_id, t.text FROM {TEXT_TABLE} t "
            f"WHERE NOT EXISTS (SELECT 1 FROM {docs} d WHERE d.name = t.version_id)"
        )
        gone = self._runner.fetchall(
            f"SELECT d.name FROM {docs} d "
            f"WHERE NOT EXISTS (SELECT 1 FROM {TEXT_TABLE} t WHERE t.version_id = d.name)"
        )
        return [(str(v), str(t)) for v, t in stale], [str(row[0]) for row in gone]

    def _documents(self) -> int:
        row = self._runner.fetchone(f"SELECT count(*) FROM {TEXT_TABLE}")
        return int(row[0]) if row else 0

    def __repr__(self) -> str:
        return f"KeywordSide({self._state.value}, {self.pending} pending)"
