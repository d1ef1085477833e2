"""The memory service the office uses: remember, search, ingest, re-embed.

``MemoryService`` keeps long-term memories searchable, through a
``LiveIndex`` (catalog and vectors in RAM, keywords in the search file
beside the office file) that follows DuckDB, which stays the truth.

Start. ``start()`` returns at once. A thread ("soloist-memory-index")
makes the embedder (``embedder_factory``, which must not load the model),
reads every current version and the model's vectors in one snapshot through
numpy and brings ``memory_text`` up to date in the same transaction (~3 s
at 100,000 memories on two busy cores, half of it building the vector
index): the service is SEARCHABLE. It then opens the keyword index
(building it the first time, ~5-10 s at 100,000) and is READY. A search waits for
SEARCHABLE up to ``ready_timeout_s`` and then raises ``SearchNotReadyError``;
until READY (and while the keyword index rebuilds) it runs on vectors
alone, and ``SearchResult`` says which sides answered. The embedding model
loads on first use, a query or a memory to embed, never on the start path.

Writes. The service listens to its ``store``: after each commit the index
reads the version back and applies it (``LiveIndex.refresh``, ~15 ms at
100,000), so the next search sees the write; use ``service.store`` (or
``remember``) to write.
Writes made without that listener (ingestion writes in bulk statements in
transactions of its own; another ``MemoryStore``) are caught by
``resync()``, a diff of every current (memory, version, has-vector) against
the catalog (~0.2 s at 100,000): after each ingest run, every few seconds
during one, and every ``resync_every_s``. After a crash, the next start
reads everything again.

Embeddings. ``remember`` embeds first and writes the memory even if the
embedder fails. Any live memory without a vector of the current model (an
embedder failure, a write without a vector, a change of model) is embedded
by a second thread ("soloist-memory-embed") in batches, retrying after
``retry_s``. The index holds the current model's vectors only and queries
are embedded by that model, so two models' spaces never mix.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from pathlib import Path

from app.memory.db import Database, utc_now
from app.memory.embedding_job import EmbedderFactory, MemoryEmbedder
from app.memory.errors import StoreError
from app.memory.fts import RefreshPolicy
from app.memory.ingest import IngestOptions, Ingestor
from app.memory.ingest_types import IngestProgress, IngestReport, ProgressCallback
from app.memory.longterm import ChangeOp, MemoryStore, MemoryVersion
from app.memory.memory_versions import Metadata
from app.memory.provenance import GLOBAL_SCOPE, Provenance, check_kind, check_scope
from app.memory.search import (
    DEFAULT_CANDIDATES,
    EmptyQueryError,
    SearchFilter,
    SearchNotReadyError,
    SearchResult,
    SearchUnavailableError,
)
from app.memory.search_index import LiveIndex
from app.memory.search_keywords import search_file_for
from app.memory.vectors import Vector

__all__ = ["EmbedderFactory", "MemoryService", "ServiceState", "ServiceStats"]

log = logging.getLogger("soloist.memory.search")

_INGEST_RESYNC_S = 5.0


class ServiceState(IntEnum):
    """The service's life cycle; its transitions are ``_NEXT``.

    NEW -> LOADING -> SEARCHABLE (vectors loaded: searches answer) -> READY
    (the keyword index too); FAILED when loading fails; CLOSED at the end.
    """

    NEW = 0
    LOADING = 1
    SEARCHABLE = 2
    READY = 3
    FAILED = 4
    CLOSED = 5


_NEXT: dict[ServiceState, frozenset[ServiceState]] = {
    ServiceState.NEW: frozenset({ServiceState.LOADING, ServiceState.CLOSED}),
    ServiceState.LOADING: frozenset(
        {ServiceState.SEARCHABLE, ServiceState.FAILED, ServiceState.CLOSED}
    ),
    ServiceState.SEARCHABLE: frozenset(
        {ServiceState.READY, ServiceState.FAILED, ServiceState.CLOSED}
    ),
    ServiceState.READY: frozenset({ServiceState.CLOSED}),
    ServiceState.FAILED: frozenset({ServiceState.CLOSED}),
    ServiceState.CLOSED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """What the service holds now, for the Memory window and ``soloist memory``."""

    state: ServiceState
    model: str | None
    memories: int
    vectors: int
    keywords: str
    keyword_pending: int
    embedded: int  # memories embedded in the background since start


class MemoryService:
    """Long-term memories of one office database, searchable; see the module docstring.

    One service per database. ``embedder_factory`` is called once (on the
    loading thread when started) and must not load the model itself;
    ``clock`` and the timings are seams for tests.
    """

    def __init__(
        self,
        db: Database,
        embedder_factory: EmbedderFactory,
        *,
        clock: Callable[[], datetime] = utc_now,
        search_file: Path | None = None,
        ready_timeout_s: float = 30.0,
        tick_s: float = 1.0,
        resync_every_s: float = 300.0,
        retry_s: float = 30.0,
        embed_batch: int = 32,
        candidates: int = DEFAULT_CANDIDATES,
        keyword_policy: RefreshPolicy | None = None,
        ingest_options: IngestOptions | None = None,
        on_state: Callable[[ServiceState], None] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._ready_timeout_s = ready_timeout_s
        self._tick_s = tick_s
        self._resync_every_s = resync_every_s
        self._ingest_options = ingest_options
        self._on_state = on_state
        self.store = MemoryStore(db, clock)
        self._embeddings = MemoryEmbedder(
            embedder_factory,
            self.store,
            db,
            on_embedded=self._on_embedded,
            clock=clock,
            batch=embed_batch,
            retry_s=retry_s,
        )
        self._index = LiveIndex(
            db,
            search_file or search_file_for(db.path),
            policy=keyword_policy or RefreshPolicy(),
            candidates=candidates,
            on_unembedded=self._embeddings.want,
        )
        self._ingestor: Ingestor | None = None
        self._load_error = ""
        self._state = ServiceState.NEW
        self._told = ServiceState.NEW  # the last state on_state was called with
        self._state_cond = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._resync_wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # -- life cycle --------------------------------------------------------------
    def start(self) -> None:
        """Load the index on a background thread; returns at once."""
        if not self._set_state(ServiceState.LOADING):
            return
        self._unsubscribe = self.store.on_change(self._on_change)
        self._thread = threading.Thread(
            target=self._index_loop, name="soloist-memory-index", daemon=True
        )
        self._thread.start()
        self._embeddings.start()

    @property
    def state(self) -> ServiceState:
        return self._state

    @property
    def model(self) -> str:
        """The embedding model whose vectors are searched (makes the embedder if need be)."""
        return self._embeddings.model

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait until READY (or FAILED/CLOSED); whether it is READY."""
        with self._state_cond:
            self._state_cond.wait_for(lambda: self._told >= ServiceState.READY, timeout_s)
            return self._told is ServiceState.READY

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Wait until loaded with no background embedding, resync or rebuild due."""
        deadline = time.monotonic() + timeout_s
        while self._busy():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stats(self) -> ServiceStats:
        vectors, keywords = self._index.vectors, self._index.keywords
        return ServiceStats(
            state=self._state,
            model=self._embeddings.model if self._state >= ServiceState.SEARCHABLE else None,
            memories=len(self._index.catalog),
            vectors=0 if vectors is None else len(vectors),
            keywords="loading" if keywords is None else keywords.state.value,
            keyword_pending=0 if keywords is None else keywords.pending,
            embedded=self._embeddings.embedded,
        )

    def close(self) -> None:
        """Stop the threads and close the index's cursors; the database stays open."""
        if not self._set_state(ServiceState.CLOSED):
            return
        self._stop.set()
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._index.interrupt()
        self._embeddings.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._index.close()
        log.info("memory service closed")

    # -- memories ----------------------------------------------------------------
    def remember(
        self,
        text: str,
        kind: str = "note",
        scope: str = GLOBAL_SCOPE,
        provenance: Provenance | None = None,
        metadata: Metadata | None = None,
    ) -> MemoryVersion:
        """Embed ``text`` and write it as a new memory; returns its first version.

        If the embedder fails the memory is written all the same and
        embedded in the background later.
        """
        check_kind(kind)
        check_scope(scope)
        if not text.strip():
            raise ValueError("a memory needs some text")
        vector = self._embeddings.embedding_or_none(text)
        return self.store.add(
            text, kind, scope, provenance or Provenance(), metadata=metadata, vector=vector
        )

    def search(
        self,
        query: str,
        k: int = 10,
        where: SearchFilter | None = None,
        *,
        timeout_s: float | None = None,
    ) -> SearchResult:
        """The ``k`` memories that best match ``query`` among those ``where`` allows.

        Raises ``EmptyQueryError`` for a blank query, ``SearchNotReadyError``
        if the index is still loading after ``timeout_s`` (default
        ``ready_timeout_s``), ``SearchUnavailableError`` if it failed.
        """
        text = query.strip()
        if not text:
            raise EmptyQueryError()
        if k < 1:
            raise ValueError(f"k must be 1 or more, got {k}")
        self._await_searchable(self._ready_timeout_s if timeout_s is None else timeout_s)
        started = time.perf_counter()
        result = self._index.search(text, self._query_vector(text), where or SearchFilter(), k)
        log.debug(
            "search: %d hits (vector %s, keyword %s) in %.1f ms",
            len(result),
            result.vector_searched,
            result.keyword_searched,
            (time.perf_counter() - started) * 1000,
        )
        return result

    def ingest(
        self,
        folder: str | os.PathLike[str],
        scope: str = GLOBAL_SCOPE,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> IngestReport:
        """Index a folder (``Ingestor``), then bring the search index in step with it."""
        ingestor = self._ingestor_now()
        source = ingestor.add_source(folder, scope)
        try:
            return ingestor.run(source.id, self._resyncing(progress), cancel)
        finally:
            try:
                self.resync()
            except StoreError as exc:  # the run's own outcome matters more; retried soon
                log.warning("search index not brought up to date after ingesting: %s", exc)
                self._resync_wanted.set()

    def reembed_if_model_changed(self) -> bool:
        """Embed, in the background, every live memory lacking a current-model vector; any?"""
        if not self.store.versions_missing_vectors(self.model, 1):
            return False
        self._embeddings.want()
        return True

    def resync(self) -> int:
        """Apply writes the index did not hear of (waits for loading); how many memories."""
        try:
            self._await_searchable(self._ready_timeout_s)
        except (SearchNotReadyError, SearchUnavailableError):
            return 0  # not loaded: loading reads everything
        return self._index.resync()

    # -- the index thread ------------------------------------------------------------
    def _index_loop(self) -> None:
        try:
            self._index.load(self.model)
            self._set_state(ServiceState.SEARCHABLE)
            self._index.open_keywords()
            self._set_state(ServiceState.READY)
        except Exception as exc:  # whatever failed, searches must say so, not hang
            if not self._stop.is_set():
                self._load_error = f"{type(exc).__name__}: {exc}"[:300]
                log.exception("memory search index failed to load")
                self._set_state(ServiceState.FAILED)
            return
        last_resync = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self._tick_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._resync_wanted.is_set() or (
                    time.monotonic() - last_resync >= self._resync_every_s
                ):
                    self._resync_wanted.clear()
                    self._index.resync()
                    last_resync = time.monotonic()
                self._index.upkeep()
            except StoreError as exc:
                if self._stop.is_set():
                    return
                log.warning("memory search upkeep failed: %s", exc)

    def _query_vector(self, text: str) -> Vector | None:
        vectors = self._index.vectors
        if vectors is None:
            return None  # no vector of this model yet: no need to load it for a query
        try:
            vector = self._embeddings.embed([text])[0]
        except Exception as exc:  # the keyword side still answers
            log.warning("query not embedded (%s); searching keywords only", type(exc).__name__)
            return None
        return vector if len(vector) == vectors.dimension else None

    # -- mechanism ------------------------------------------------------------------------
    def _on_embedded(self, version_ids: set[str]) -> None:
        self._index.refresh(version_ids)

    def _on_change(self, memory_id: str, version_id: str, op: ChangeOp) -> None:
        try:
            self._index.refresh([version_id])
        except StoreError as exc:
            if self._stop.is_set():
                return
            log.warning("search index missed a change of memory %s (%s)", memory_id, exc)
            self._resync_wanted.set()
            self._wake.set()

    def _set_state(self, new: ServiceState) -> bool:
        with self._state_cond:
            old = self._state
            if new not in _NEXT[old]:
                return False
            self._state = new
        log.info("memory service %s -> %s", old.name, new.name)
        if self._on_state is not None:
            self._on_state(new)
        with self._state_cond:  # waiters wake once the listener has been told
            self._told = new
            self._state_cond.notify_all()
        return True

    def _await_searchable(self, timeout_s: float) -> None:
        with self._state_cond:
            done = self._state_cond.wait_for(
                lambda: self._state is not ServiceState.LOADING, timeout_s
            )
            state = self._state
        if not done:
            raise SearchNotReadyError(timeout_s)
        if state is ServiceState.NEW:
            raise SearchUnavailableError("the memory service was not started")
        if state is ServiceState.FAILED:
            raise SearchUnavailableError(f"loading the index failed ({self._load_error})")
        if state is ServiceState.CLOSED:
            raise SearchUnavailableError("the memory service is closed")

    def _busy(self) -> bool:
        loading = self._state in (ServiceState.LOADING, ServiceState.SEARCHABLE)
        flags = self._embeddings.busy or self._resync_wanted.is_set()
        return not self._stop.is_set() and (loading or flags or self._index.rebuilding)

    def _ingestor_now(self) -> Ingestor:
        if self._ingestor is None:
            self._ingestor = Ingestor(
                self.store,
                self._db,
                self._embeddings.embedder(),
                options=self._ingest_options,
                clock=self._clock,
            )
        return self._ingestor

    def _resyncing(self, progress: ProgressCallback | None) -> ProgressCallback:
        """``progress``, asking for a resync every few seconds so new chunks show up."""
        last = [time.monotonic()]

        def report(event: IngestProgress) -> None:
            if time.monotonic() - last[0] >= _INGEST_RESYNC_S:
                last[0] = time.monotonic()
                self._resync_wanted.set()
                self._wake.set()
            if progress is not None:
                progress(event)

        return report

    def __repr__(self) -> str:
        return f"MemoryService({self._state.name}, {len(self._index.catalog)} memories)"
