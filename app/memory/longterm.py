"""The long-term tier: memories kept as versions that are never overwritten.

A memory (fact, note, document chunk, email summary, CRM fact) has a stable
id, a kind and a scope. Each change inserts a version that supersedes the
previous one; a delete inserts a tombstone; a rollback inserts a copy of an
older version. So history is append-only, and every version carries its
provenance (``Provenance``) and the time it was written.

Reading at a moment (``as_of``) picks, per memory, the version whose
``[valid_from, valid_to)`` holds that moment. ``valid_from`` never goes back
within one memory, even if the clock does, so the intervals tile time.

All of a write (the version, its provenance, its vector) is one
transaction: it is visible whole or not at all. Change listeners
(``on_change``) are called after the commit, in commit order: the store's
write lock is held from the transaction through the calls, so an index in
RAM that follows them never applies an older write over a newer one. Call
the writing methods outside any ``db.transaction()`` of your own: inside
one, the listeners would hear of writes before they commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from app.memory.db import Database, utc_now
from app.memory.errors import (
    MemoryConflictError,
    MemoryDeletedError,
    MemoryVersionNotFoundError,
)
from app.memory.memory_rows import (
    VERSION_SELECT,
    ChangeOp,
    MemoryVersion,
    RunRollback,
    version_from,
)
from app.memory.memory_versions import (
    Draft,
    Metadata,
    all_versions,
    current_query,
    fetch_version,
    held_at,
    insert_memory,
    latest_version,
    metadata_json,
    missing_vectors_query,
    numbered_version,
    restore,
    undo_trailing,
    write_version,
)
from app.memory.provenance import Provenance, check_kind, check_scope
from app.memory.vectors import (
    Embedding,
    VectorLike,
    VectorSet,
    load_vectors,
    model_dimension,
    store_vector,
)

__all__ = ["ChangeListener", "ChangeOp", "MemoryStore", "MemoryVersion", "RunRollback"]

log = logging.getLogger("soloist.memory")

ChangeListener = Callable[[str, str, ChangeOp], None]
Change = tuple[str, str, ChangeOp]


class MemoryStore:
    """Add, change, delete, read and roll back memories; their vectors too.

    Each public method is one transaction. ``clock`` is a seam for tests.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock
        self._write_lock = threading.RLock()
        self._listeners: list[ChangeListener] = []

    def on_change(self, callback: ChangeListener) -> Callable[[], None]:
        """Call ``callback(memory_id, version_id, op)`` after each committed change.

        Returns a function that unsubscribes it.
        """
        with self._write_lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._write_lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    # -- writing -------------------------------------------------------
    def add(
        self,
        text: str,
        kind: str,
        scope: str,
        provenance: Provenance,
        *,
        metadata: Metadata | None = None,
        vector: Embedding | None = None,
    ) -> MemoryVersion:
        """Remember something new; returns its first version."""
        draft = Draft(ChangeOp.ADD, text, metadata_json(metadata or {}))
        check_kind(kind)
        check_scope(scope)
        with self._writing() as changes:
            now = self._now()
            memory_id = insert_memory(self._db, kind, scope, now)
            written = write_version(
                self._db, memory_id, None, draft, provenance=provenance, now=now
            )
            if vector is not None:
                store_vector(self._db, written.id, vector, now)
            changes.append((memory_id, written.id, ChangeOp.ADD))
        return written

    def update(
        self,
        memory_id: str,
        text: str,
        provenance: Provenance,
        *,
        metadata: Metadata | None = None,
        vector: Embedding | None = None,
        expected_version: int | None = None,
    ) -> MemoryVersion:
        """Write a new version of a live memory (``metadata`` None keeps the old).

        ``expected_version`` (the version the caller read) makes it refuse,
        with ``MemoryConflictError``, to write over a newer change.
        """
        given = None if metadata is None else metadata_json(metadata)
        with self._writing() as changes:
            now = self._now()
            latest = self._latest(memory_id, expected_version)
            if latest.tombstone:
                raise MemoryDeletedError(memory_id)
            meta = given if given is not None else metadata_json(latest.metadata)
            draft = Draft(ChangeOp.UPDATE, text, meta)
            written = write_version(
                self._db, memory_id, latest, draft, provenance=provenance, now=now
            )
            if vector is not None:
                store_vector(self._db, written.id, vector, now)
            changes.append((memory_id, written.id, ChangeOp.UPDATE))
        return written

    def delete(
        self, memory_id: str, provenance: Provenance, *, expected_version: int | None = None
    ) -> MemoryVersion:
        """Write a tombstone; deleting a deleted memory returns its tombstone unchanged."""
        with self._writing() as changes:
            latest = self._latest(memory_id, expected_version)
            if latest.tombstone:
                return latest
            draft = Draft(ChangeOp.DELETE, None)
            written = write_version(
                self._db, memory_id, latest, draft, provenance=provenance, now=self._now()
            )
            changes.append((memory_id, written.id, ChangeOp.DELETE))
        return written

    def rollback_memory(
        self, memory_id: str, to_version: int, provenance: Provenance
    ) -> MemoryVersion:
        """Make version ``to_version`` current again by writing a copy of it.

        A copy of a tombstone deletes; a copy of live text brings the memory
        back, vectors included. Rolling back to the current version writes
        nothing and returns it.
        """
        with self._writing() as changes:
            latest = self._latest(memory_id)
            target = numbered_version(self._db, memory_id, to_version)
            if target.version == latest.version:
                return latest
            written = restore(self._db, latest, target, provenance, self._now())
            changes.append((memory_id, written.id, ChangeOp.RESTORE))
        return written

    def rollback_run(self, run_id: str, provenance: Provenance) -> RunRollback:
        """Undo what one run wrote to memory, as new versions.

        For each memory whose latest version is the run's, the run's trailing
        versions are undone: the version before them is restored, or the
        memory is tombstoned if the run created it. Memories someone else
        changed after the run are left alone and listed in ``skipped``.
        """
        written: list[MemoryVersion] = []
        skipped: list[str] = []
        with self._writing() as changes:
            now = self._now()
            rows = self._db.fetchall(
                "SELECT DISTINCT memory_id FROM memory_versions WHERE run_id = ? ORDER BY 1",
                [run_id],
            )
            for (memory_id,) in rows:
                versions = all_versions(self._db, memory_id)
                if versions[-1].provenance.run_id != run_id:
                    skipped.append(memory_id)
                    continue
                undone = undo_trailing(self._db, versions, run_id, provenance, now)
                if undone is not None:
                    written.append(undone)
                    changes.append((memory_id, undone.id, undone.op))
        log.info(
            "run %s rolled back: %d versions written, %d memories skipped",
            run_id,
            len(written),
            len(skipped),
        )
        return RunRollback(tuple(written), tuple(skipped))

    # -- reading -------------------------------------------------------
    def get(self, memory_id: str, as_of: datetime | None = None) -> MemoryVersion | None:
        """The memory's live version now (or at ``as_of``); None if deleted or not yet written.

        ``MemoryNotFoundError`` if no memory has this id.
        """
        when, params = held_at(as_of)
        with self._db.transaction():
            self._latest(memory_id)
            found = fetch_version(self._db, f"v.memory_id = ? AND {when}", [memory_id, *params])
        return None if found is None or found.tombstone else found

    def history(self, memory_id: str) -> list[MemoryVersion]:
        """Every version of the memory, tombstones and restores included, oldest first."""
        return all_versions(self._db, memory_id)

    def current(
        self,
        scope: str | Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        as_of: datetime | None = None,
        limit: int | None = None,
    ) -> list[MemoryVersion]:
        """Live memories now (or at ``as_of``), newest change first.

        ``scope`` is one scope or several (an agent sees ``global``, its own
        and its contacts'); ``kinds`` filters by kind.
        """
        sql, params = current_query(scope, kinds, as_of, limit)
        return [version_from(row) for row in self._db.fetchall(sql, params)]

    def find_by_hash(self, digest: str, scope: str) -> list[MemoryVersion]:
        """Live memories of ``scope`` whose text has this ``content_hash``."""
        check_scope(scope)
        rows = self._db.fetchall(
            f"{VERSION_SELECT} WHERE v.content_hash = ? AND m.scope = ? "
            "AND v.valid_to IS NULL ORDER BY v.valid_from, v.id",
            [digest, scope],
        )
        return [version_from(row) for row in rows]

    # -- vectors -------------------------------------------------------
    def set_vector(self, version_id: str, model: str, vector: VectorLike) -> None:
        """Store ``model``'s vector of a version (re-embedding replaces it)."""
        embedding = Embedding.of(model, vector)
        with self._writing() as changes:
            found = fetch_version(self._db, "v.id = ?", [version_id])
            if found is None:
                raise MemoryVersionNotFoundError(version_id)
            if found.tombstone:
                raise ValueError(f"version {version_id} is a tombstone; it has no text to embed")
            store_vector(self._db, version_id, embedding, self._now())
            changes.append((found.memory_id, version_id, ChangeOp.VECTOR))

    def vectors(self, model: str) -> VectorSet:
        """``model``'s vectors of the live current versions, to build an index in RAM."""
        return load_vectors(self._db, model)

    def versions_missing_vectors(self, model: str, limit: int | None = None) -> list[MemoryVersion]:
        """Live current versions without a vector of ``model``: what to (re-)embed."""
        rows = self._db.fetchall(missing_vectors_query(limit), [model])
        return [version_from(row) for row in rows]

    def embedding_dimension(self, model: str) -> int | None:
        """The dimension stored for ``model``; None before its first vector."""
        return model_dimension(self._db, model)

    # -- mechanism -----------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[list[Change]]:
        """One write transaction; then tell the listeners, still holding the write lock."""
        with self._write_lock:
            changes: list[Change] = []
            with self._db.transaction():
                yield changes
            for memory_id, version_id, op in changes:
                log.debug("memory %s: %s (version %s)", memory_id, op.value, version_id)
                self._notify(memory_id, version_id, op)

    def _notify(self, memory_id: str, version_id: str, op: ChangeOp) -> None:
        for listener in list(self._listeners):
            try:
                listener(memory_id, version_id, op)
            except Exception:  # a listener's bug must not undo or hide a committed write
                log.exception("memory change listener %r failed", listener)

    def _now(self) -> datetime:
        """The clock's time in UTC, as it will read back from the database."""
        return self._clock().astimezone(UTC)

    def _latest(self, memory_id: str, expected_version: int | None = None) -> MemoryVersion:
        """The current version; ``MemoryConflictError`` if the caller expected another."""
        latest = latest_version(self._db, memory_id)
        if expected_version is not None and expected_version != latest.version:
            raise MemoryConflictError(memory_id, expected_version, latest.version)
        return latest
