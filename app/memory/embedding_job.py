"""Embeddings of memories: the service's embedder, and the job that fills the gaps.

``MemoryEmbedder`` makes the embedder on first use (``factory``: the
office passes one that starts nothing until then), checks what comes back
(one finite vector per text, always of the model it started with) and runs
a background thread that gives every live memory lacking a vector of that
model one: after an embedder failure while remembering, a write without a
vector, or a change of model. It embeds a batch at a time, writes each
batch's vectors in one statement and one transaction (``store_vectors``),
and tells the caller which versions it embedded. A failure (the embedder
or the database) pauses it for ``retry_s``; then it tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from app.memory.db import Database
from app.memory.ingest_rows import store_vectors
from app.memory.longterm import MemoryStore
from app.memory.vectors import Embedding, Vector, as_vector

if TYPE_CHECKING:
    from app.engine.embeddings import Embedder

__all__ = ["EmbedderFactory", "MemoryEmbedder"]

log = logging.getLogger("soloist.memory.search")

EmbedderFactory = Callable[[], "Embedder"]


class MemoryEmbedder:
    """One model's embeddings of memories, and the background job that completes them.

    ``on_embedded(version_ids)`` is called after each batch is committed.
    """

    def __init__(
        self,
        factory: EmbedderFactory,
        store: MemoryStore,
        db: Database,
        *,
        on_embedded: Callable[[set[str]], None],
        clock: Callable[[], datetime],
        batch: int = 32,
        retry_s: float = 30.0,
    ) -> None:
        self._factory = factory
        self._store = store
        self._db = db
        self._on_embedded = on_embedded
        self._clock = clock
        self._batch = max(1, batch)
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None
        self._model = ""
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None
        self.embedded = 0  # memories embedded in the background

    @property
    def model(self) -> str:
        """The model name, fixed by the embedder when it is made (now, if need be)."""
        self.embedder()
        return self._model

    @property
    def busy(self) -> bool:
        """Whether the background job has work queued or running."""
        return self._wanted.is_set() or self._running

    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                embedder = self._factory()
                self._model = embedder.model_name
                self._embedder = embedder
            return self._embedder

    def embed(self, texts: list[str]) -> list[Vector]:
        """One vector per text; ValueError if the embedder answers otherwise."""
        embedder = self.embedder()
        rows = embedder.embed(texts)
        if embedder.model_name != self._model:
            raise ValueError(
                f"the embedder now reports model {embedder.model_name!r}, not {self._model!r}"
            )
        if len(rows) != len(texts):
            raise ValueError(f"{len(rows)} vectors for {len(texts)} texts")
        return [as_vector(row) for row in rows]

    def embedding_or_none(self, text: str) -> Embedding | None:
        """``text``'s embedding, or None (logged) when the embedder fails."""
        try:
            vector = self.embed([text])[0]
            return Embedding(self._model, vector)
        except Exception as exc:  # any embedder failure: the caller keeps the text anyway
            log.warning("memory written without a vector for now (%s)", type(exc).__name__)
            return None

    # -- the background job ------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="soloist-memory-embed", daemon=True)
        self._thread.start()

    def want(self) -> None:
        """Look for memories without a vector soon."""
        self._wanted.set()

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._wanted.clear()
            self._running = True
            try:
                self._embed_missing()
            except Exception as exc:  # the embedder or the database: both may recover
                if self._stop.is_set():
                    return
                log.warning("background embedding paused (%s); retrying later", exc)
                if self._stop.wait(self._retry_s):
                    return
                self._wanted.set()
            finally:
                self._running = False

    def _embed_missing(self) -> None:
        while not self._stop.is_set():
            versions = self._store.versions_missing_vectors(self.model, self._batch)
            if not versions:
                return
            vectors = self.embed([v.text for v in versions])
            pairs = [(v.id, vector) for v, vector in zip(versions, vectors, strict=True)]
            with self._db.transaction():
                store_vectors(self._db, self._model, pairs, self._clock())
            self.embedded += len(versions)
            log.debug("embedded %d memories in the background", len(versions))
            self._on_embedded({v.id for v in versions})
