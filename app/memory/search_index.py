"""The search index of one office database, kept in step with it: ``LiveIndex``.

Three parts answer a query (``search.HybridSearch``): the ``Catalog`` of
slots and filter columns, a ``VectorIndex`` of one embedding model's
vectors, both in RAM, and the ``KeywordSide`` (``memory_text`` and its fts
index, in the search file). DuckDB's ``memory_versions`` stays the truth;
all three are rebuilt from it.

Loading reads every current version with its vector in one snapshot,
through numpy (``Database.fetchnumpy``), on a cursor of its own, and brings
``memory_text`` up to date in the same transaction, so the catalog and the
table agree. Changes arriving meanwhile are only remembered (``refresh``
defers them) and applied once the snapshot is in.

Following writes. ``refresh(version_ids)`` reads those versions back (by
primary key: ~3 ms for a few at 100,000) and applies each that is still
its memory's current one to all three (a tombstone removes the memory; a
superseded version is left to the change that superseded it), under one
lock: one writer at a time, reading the newest state, so applying a change
twice or late is harmless. ``memory_text`` is written before the keyword notes, as
``KeywordSide`` requires, and the RAM parts only after it commits: a failed
refresh leaves the catalog unchanged, and the next refresh or ``resync``
(a diff of every current version against the catalog) applies it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.memory.db import Database
from app.memory.errors import StoreError
from app.memory.fts import RefreshPolicy
from app.memory.search import HybridSearch, SearchFilter, SearchResult, SearchUnavailableError
from app.memory.search_catalog import (
    CATALOG_SQL,
    VERSIONS_SQL,
    Catalog,
    CurrentRows,
    SlotChange,
    vector_objects,
)
from app.memory.search_keywords import (
    SEARCH_CATALOG,
    TEXT_TABLE,
    KeywordSide,
    KeywordState,
    attach_search_file,
)
from app.memory.vector_index import VectorIndex
from app.memory.vectors import Vector

__all__ = ["LiveIndex"]

log = logging.getLogger("soloist.memory.search")

_TEXTS = f"{SEARCH_CATALOG}.main.{TEXT_TABLE}"
_LIVE = "SELECT id FROM memory_versions WHERE valid_to IS NULL AND NOT tombstone"
_SYNC_TEXTS = (
    f"DELETE FROM {_TEXTS} WHERE version_id NOT IN ({_LIVE})",
    f"""INSERT INTO {_TEXTS} SELECT v.id, v.memory_id, v.text FROM memory_versions v
    WHERE v.valid_to IS NULL AND NOT v.tombstone
      AND v.id NOT IN (SELECT version_id FROM {_TEXTS})""",
)
_ALL_VECTORS = "SELECT version_id, vector FROM memory_vectors WHERE model = ?"
_ONE_VECTOR = "SELECT model, vector FROM memory_vectors WHERE version_id = ?"  # by key
_SOME_VECTORS = (
    "SELECT version_id, vector FROM memory_vectors "
    "WHERE model = ? AND version_id IN (SELECT unnest(?::VARCHAR[]))"
)
_DIFF_SQL = """
    SELECT v.memory_id, v.id AS version_id, v.tombstone, x.version_id IS NOT NULL AS has_vector
    FROM memory_versions v LEFT JOIN memory_vectors x ON x.version_id = v.id AND x.model = ?
    WHERE v.valid_to IS NULL
"""
_REFRESH_BATCH = 2_000
_POINT_READS = 32  # up to this many vectors are read one by one (by key: ~0.5 ms each)


class LiveIndex:
    """Catalog, vectors and keywords of ``db``'s current memories; see the module docstring.

    ``on_unembedded`` is called when a live memory has no vector of the
    model (the service then embeds it in the background).
    """

    def __init__(
        self,
        db: Database,
        search_file: Path,
        *,
        policy: RefreshPolicy,
        candidates: int,
        on_unembedded: Callable[[], None],
    ) -> None:
        self._db = db
        self._search_file = search_file
        self._policy = policy
        self._on_unembedded = on_unembedded
        self.catalog = Catalog()
        self._hybrid = HybridSearch(db, self.catalog, candidates=candidates)
        self.vectors: VectorIndex | None = None
        self.keywords: KeywordSide | None = None
        self._model = ""
        self._cursors: list[Database] = []
        self._bulk: Database | None = None
        self._lock = threading.RLock()  # one writer of catalog, vectors, memory_text, notes
        self._defer_lock = threading.Lock()
        self._live = False  # until loaded, changes are only remembered
        self._deferred: set[str] = set()
        self._closed = False

    # -- life cycle ------------------------------------------------------------
    def load(self, model: str) -> None:
        """Read the catalog and ``model``'s vectors; apply the changes that came meanwhile."""
        started = time.perf_counter()
        self._model = model
        bulk = self._cursor()
        attach_search_file(bulk, self._search_file)
        self._bulk = bulk
        keyword_db = self._cursor()
        keyword_db.execute(f"USE {SEARCH_CATALOG}")
        self.keywords = KeywordSide(keyword_db, self._policy)
        with self._lock:
            with bulk.transaction():  # memory_text, catalog and vectors from one snapshot
                for statement in _SYNC_TEXTS:
                    bulk.execute(statement)
                rows = CurrentRows.of(bulk.fetchnumpy(CATALOG_SQL))
                changes = self.catalog.put(rows)
                vectors = bulk.fetchnumpy(_ALL_VECTORS, [model])
            unembedded = self._build_vectors(changes, vectors)
            with self._defer_lock:
                self._live = True
                deferred, self._deferred = self._deferred, set()
            self._apply(deferred)
        log.info(
            "memory search: %d memories, %d vectors (%s) loaded in %.0f ms",
            len(self.catalog),
            0 if self.vectors is None else len(self.vectors),
            model,
            (time.perf_counter() - started) * 1000,
        )
        if unembedded:
            self._on_unembedded()

    def open_keywords(self) -> None:
        """Load (or first build) the keyword index; the slow part of loading."""
        if self.keywords is not None:
            self.keywords.open()

    def upkeep(self) -> None:
        """Rebuild the keyword index when its refresh policy (or a bulk change) asks."""
        if self.keywords is not None:
            self.keywords.rebuild_if_due()

    def interrupt(self) -> None:
        """Stop what the cursors run (closing), and let no new cursor stay open."""
        self._closed = True
        if self.keywords is not None:
            self.keywords.close()
        for cursor in list(self._cursors):
            cursor.interrupt()

    def close(self) -> None:
        self.interrupt()
        for cursor in self._cursors:
            try:
                cursor.close()
            except StoreError as exc:  # closing anyway; the database outlives this index
                log.debug("closing a search cursor: %s", exc)

    @property
    def rebuilding(self) -> bool:
        keywords = self.keywords
        return keywords is not None and keywords.state is KeywordState.REBUILDING

    # -- searching ------------------------------------------------------------------
    def search(
        self, text: str, query_vector: Vector | None, where: SearchFilter, k: int
    ) -> SearchResult:
        vectors = self.vectors if query_vector is not None else None
        return self._hybrid.search(
            text,
            query_vector=query_vector,
            vectors=vectors,
            keywords=self.keywords,
            flt=where,
            k=k,
        )

    # -- following writes -----------------------------------------------------------------
    def refresh(self, version_ids: Collection[str]) -> None:
        """Apply these versions where they are current (deferred until loaded)."""
        with self._defer_lock:
            if not self._live:
                self._deferred.update(version_ids)
                return
        self._apply(version_ids)

    def resync(self) -> int:
        """Apply every change the catalog missed; how many memories changed."""
        with self._lock:
            changed = self._diff(self._require_bulk().fetchnumpy(_DIFF_SQL, [self._model]))
        self._apply(changed)
        if changed:
            log.info("search index resynced: %d memories changed", len(changed))
        return len(changed)

    # -- mechanism -------------------------------------------------------------------------
    def _cursor(self) -> Database:
        cursor = self._db.cursor()
        self._cursors.append(cursor)
        if self._closed:  # closed meanwhile: interrupt() did not see this one
            cursor.close()
        return cursor

    def _require_bulk(self) -> Database:
        if self._bulk is None:
            raise SearchUnavailableError("the search index is not loaded")
        return self._bulk

    def _build_vectors(self, changes: list[SlotChange], columns: dict[str, Any]) -> bool:
        """The vector index from every vector of the model; whether a live memory lacks one."""
        slot_of = self.catalog.slot_of_version
        pairs = [
            (slot, vector)
            for version_id, vector in zip(
                columns["version_id"].tolist(), vector_objects(columns["vector"]), strict=True
            )
            if vector is not None and (slot := slot_of(version_id)) is not None
        ]
        if pairs:
            index = VectorIndex(len(pairs[0][1]))
            index.build_from([slot for slot, _ in pairs], np.stack([v for _, v in pairs]))
            self.vectors = index
        return len(pairs) < len(changes)

    def _apply(self, version_ids: Collection[str]) -> None:
        """Refresh in batches, each under the lock (a big resync lets writes in between)."""
        ids = sorted(version_ids)
        for start in range(0, len(ids), _REFRESH_BATCH):
            with self._lock:
                self._refresh_batch(ids[start : start + _REFRESH_BATCH])

    def _refresh_batch(self, version_ids: list[str]) -> None:
        """Read these versions back; apply the current ones, drop memories now deleted."""
        bulk = self._require_bulk()
        current = self.catalog.current_version
        with bulk.transaction():
            columns = bulk.fetchnumpy(VERSIONS_SQL, [version_ids])
            is_current = np.asarray(columns["current"], np.bool_)
            tombstone = np.asarray(columns["tombstone"], np.bool_)
            rows = CurrentRows.of(columns, is_current & ~tombstone)
            gone = columns["memory_id"][is_current & tombstone].tolist()
            vectors = self._vectors_of(bulk, rows.version_ids)
            fresh = [
                i
                for i, (m, v) in enumerate(zip(rows.memory_ids, rows.version_ids, strict=True))
                if current(m) != v
            ]
            _write_texts(bulk, rows, fresh, [m for m in gone if current(m) is not None])
        changes = self.catalog.put(rows)
        removed = self.catalog.drop(gone)
        self._apply_vectors(changes, [vectors.get(v) for v in rows.version_ids], removed)
        self._note_keywords(changes, rows.texts, removed)

    def _vectors_of(self, bulk: Database, version_ids: list[str]) -> dict[str, Vector]:
        """The model's vectors of these versions: one by one by key, or in one scan."""
        found: dict[str, Vector] = {}
        if len(version_ids) <= _POINT_READS:
            for version_id in version_ids:
                for model, vector in bulk.fetchall(_ONE_VECTOR, [version_id]):
                    if model == self._model:
                        found[version_id] = np.asarray(vector, np.float32)
            return found
        columns = bulk.fetchnumpy(_SOME_VECTORS, [self._model, version_ids])
        values = vector_objects(columns["vector"])
        for version_id, vector in zip(columns["version_id"].tolist(), values, strict=True):
            if vector is not None:
                found[version_id] = vector
        return found

    def _apply_vectors(
        self, changes: list[SlotChange], vectors: list[Vector | None], removed: list[SlotChange]
    ) -> None:
        index = self.vectors
        unembedded = [c.slot for c, v in zip(changes, vectors, strict=True) if v is None]
        if index is not None:
            for slot in unembedded + [c.slot for c in removed]:
                index.remove(slot)
        pairs = [(c.slot, v) for c, v in zip(changes, vectors, strict=True) if v is not None]
        if pairs:
            if index is None:
                index = self.vectors = VectorIndex(len(pairs[0][1]))
            index.upsert_many([slot for slot, _ in pairs], np.stack([v for _, v in pairs]))
        if unembedded:
            self._on_unembedded()

    def _note_keywords(
        self, changes: list[SlotChange], texts: list[str], removed: list[SlotChange]
    ) -> None:
        keywords = self.keywords
        if keywords is None:
            return
        notes: list[tuple[str, str | None]] = []
        for change, text in zip(changes, texts, strict=True):
            if change.new_version is None or change.old_version == change.new_version:
                continue
            if change.old_version is not None:
                notes.append((change.old_version, None))
            notes.append((change.new_version, text))
        notes += [(c.old_version, None) for c in removed if c.old_version is not None]
        if len(notes) > self._policy.min_writes:  # a bulk change: one rebuild beats notes
            keywords.want_rebuild()
            return
        for version_id, noted in notes:
            keywords.note(version_id, noted)

    def _diff(self, columns: dict[str, npt.NDArray[Any]]) -> set[str]:
        """Current versions (tombstones too) whose memory the catalog has otherwise."""
        known = self.catalog.live_memories()
        index = self.vectors
        changed: set[str] = set()
        for memory_id, version_id, tombstone, has_vector in zip(
            columns["memory_id"].tolist(),
            columns["version_id"].tolist(),
            columns["tombstone"].tolist(),
            columns["has_vector"].tolist(),
            strict=True,
        ):
            held = known.get(memory_id)
            if tombstone:
                stale = held is not None
            else:
                stale = held != version_id or bool(
                    has_vector and (index is None or self.catalog.slot(memory_id) not in index)
                )
            if stale:
                changed.add(version_id)
        return changed


def _write_texts(bulk: Database, rows: CurrentRows, fresh: list[int], gone: list[str]) -> None:
    """``memory_text``: one row per changed memory's current version, none for the gone."""
    changed = [rows.memory_ids[i] for i in fresh] + gone
    if changed:
        bulk.execute(
            f"DELETE FROM {_TEXTS} WHERE memory_id IN (SELECT unnest(?::VARCHAR[]))", [changed]
        )
    if fresh:
        bulk.execute(
            f"INSERT INTO {_TEXTS} SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
            "unnest(?::VARCHAR[])",
            [
                [rows.version_ids[i] for i in fresh],
                [rows.memory_ids[i] for i in fresh],
                [rows.texts[i] for i in fresh],
            ],
        )
