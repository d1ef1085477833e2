"""One ingestion run's work: walk, plan, read, embed in batches, write per file.

``IngestJob`` holds a run's moving parts: the files read but not yet
written (``_queue``), the chunk texts waiting for the embedder (``_texts``,
by content hash, in arrival order) and the vectors that came back. Texts
from several small files share a batch, and a file is written as soon as
all of its texts have their vectors, oldest file first, so a cancel or a
kill loses at most the files in the queue: none of them is half-written.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from app.engine.errors import EngineError
from app.memory.chunking import chunk_text
from app.memory.db import Database
from app.memory.documents import (
    DocumentError,
    ParsedDocument,
    UnsupportedDocumentError,
)
from app.memory.errors import IngestEmbeddingError
from app.memory.ingest_rows import (
    linked_versions_missing_vectors,
    live_chunks,
    store_vectors,
    stored_files,
)
from app.memory.ingest_types import (
    FileStatus,
    IngestFile,
    IngestReport,
    IngestSource,
    ProgressMeter,
    RunStatus,
    SkippedFile,
)
from app.memory.ingest_walk import FoundFile, Plan, plan, walk_folder
from app.memory.ingest_write import (
    ParsedFile,
    RunContext,
    commit_indexed,
    commit_pending,
    commit_removed,
    commit_skipped,
    commit_touched,
)
from app.memory.vectors import Vector, as_vector

log = logging.getLogger("soloist.memory")

EmbedFn = Callable[[list[str]], list[list[float]]]
ParseFn = Callable[..., ParsedDocument]


class _CancelledError(Exception):
    """Raised between steps when the run's cancel event is set."""


@dataclass(frozen=True, slots=True)
class JobSettings:
    run_id: str
    model: str
    max_chars: int
    overlap_chars: int
    max_bytes: int
    batch_size: int


@dataclass(slots=True)
class _Queued:
    parsed: ParsedFile
    needed: list[str]  # content hashes this file waits on


@dataclass(slots=True)
class _Tally:
    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    chunks_added: int = 0
    chunks_reused: int = 0
    chunks_removed: int = 0
    texts_embedded: int = 0
    vectors_added: int = 0
    bytes_read: int = 0
    sources_missing: list[str] = field(default_factory=list)


class IngestJob:
    """The state and steps of one run; ``execute`` does it, ``report`` tells it."""

    def __init__(
        self,
        db: Database,
        settings: JobSettings,
        *,
        embed: EmbedFn,
        parse: ParseFn,
        clock: Callable[[], datetime],
        meter: ProgressMeter,
        cancel: threading.Event,
    ) -> None:
        self._db = db
        self._settings = settings
        self._embed_fn = embed
        self._parse = parse
        self._clock = clock
        self._meter = meter
        self._cancel = cancel
        self._tally = _Tally()
        self._source_ids: list[str] = []
        self._stored: dict[str, IngestFile] = {}
        self._queue: deque[_Queued] = deque()
        self._texts: dict[str, str] = {}
        self._vectors: dict[str, Vector] = {}

    # -- the run -------------------------------------------------------
    def execute(self, sources: Sequence[IngestSource]) -> RunStatus:
        """Do the run; SUCCEEDED or CANCELLED (errors propagate)."""
        self._source_ids = [s.id for s in sources]
        plans = [(s, self._plan(s)) for s in sources]
        try:
            for source, source_plan in plans:
                if source_plan is not None:
                    self._apply(source, source_plan)
            self._embed_linked_missing()
        except _CancelledError:
            log.info(
                "ingest run %s cancelled; %d files not written", self._run_id, len(self._queue)
            )
            return RunStatus.CANCELLED
        return RunStatus.SUCCEEDED

    def report(self, status: RunStatus) -> IngestReport:
        t = self._tally
        return IngestReport(
            run_id=self._run_id,
            source_ids=tuple(self._source_ids),
            status=status,
            files_seen=t.files_seen,
            files_indexed=t.files_indexed,
            files_unchanged=t.files_unchanged,
            files_removed=t.files_removed,
            skipped=tuple(t.skipped),
            chunks_added=t.chunks_added,
            chunks_reused=t.chunks_reused,
            chunks_removed=t.chunks_removed,
            texts_embedded=t.texts_embedded,
            vectors_added=t.vectors_added,
            bytes_read=t.bytes_read,
            sources_missing=tuple(t.sources_missing),
        )

    def embed(self, texts: list[str]) -> list[Vector]:
        """Vectors of ``texts`` from the embedder, checked; its failures mapped."""
        model = self._settings.model
        try:
            rows = self._embed_fn(texts)
            vectors = [as_vector(row) for row in rows]
        except (ValueError, TypeError) as exc:
            raise IngestEmbeddingError(model, f"unusable vectors: {exc}") from exc
        except EngineError as exc:  # a known error: its one line is meant for the user
            raise IngestEmbeddingError(model, str(exc)[:300]) from exc
        except Exception as exc:  # anything else stops the run too; its text is not shown
            raise IngestEmbeddingError(model, type(exc).__name__) from exc
        if len(vectors) != len(texts):
            raise IngestEmbeddingError(model, f"{len(vectors)} vectors for {len(texts)} texts")
        self._tally.texts_embedded += len(texts)
        return vectors

    @property
    def _run_id(self) -> str:
        return self._settings.run_id

    def _ctx(self) -> RunContext:
        return RunContext(self._run_id, self._settings.model, self._clock())

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise _CancelledError

    # -- planning ------------------------------------------------------
    def _plan(self, source: IngestSource) -> Plan | None:
        """The source's plan; None (and nothing touched) if its folder is not there."""
        if not os.path.isdir(source.root):
            log.warning("ingest source %s: its folder is missing; left as it was", source.id)
            self._tally.sources_missing.append(source.root)
            return None
        stored = stored_files(self._db, source.id)
        self._stored.update({_key(source.id, p): row for p, row in stored.items()})
        source_plan = plan(walk_folder(source.root), stored)
        self._tally.files_seen += source_plan.files_seen
        self._tally.files_unchanged += len(source_plan.unchanged)
        self._meter.files_total += source_plan.files_seen + len(source_plan.removed)
        self._meter.files_done += len(source_plan.unchanged)
        self._meter.bytes_total += source_plan.bytes_to_read
        return source_plan

    def _apply(self, source: IngestSource, source_plan: Plan) -> None:
        new = [f for f in source_plan.to_index if self._stored_row(source, f.path) is None]
        commit_pending(self._db, source, new, self._ctx())
        self._skip_unsupported(source, source_plan.unsupported)
        for row in source_plan.removed:
            self._check_cancel()
            self._remove(source, row)
        for found in source_plan.to_index:
            self._check_cancel()
            self._read(source, found)
            self._embed_batches(final=False)
        self._embed_batches(final=True)

    # -- per file ------------------------------------------------------
    def _read(self, source: IngestSource, found: FoundFile) -> None:
        """Parse and chunk one file, then queue it for its vectors (or skip it)."""
        self._meter.current = found.name
        try:
            document = self._parse(found.path, max_bytes=self._settings.max_bytes)
        except DocumentError as exc:
            self._skip(source, [found], exc.reason, [str(exc)])
            return
        self._tally.bytes_read += document.size_bytes
        stored = self._stored_row(source, found.path)
        if _same_text(stored, document):
            assert stored is not None
            commit_touched(self._db, source, found, stored, self._ctx())
            self._tally.files_unchanged += 1
            self._meter.file_done(found.size)
            return
        chunks = chunk_text(
            document.text,
            max_chars=self._settings.max_chars,
            overlap_chars=self._settings.overlap_chars,
        )
        texts = {c.sha256: c.text for c in reversed(chunks)}  # the first text of each hash
        live = live_chunks(self._db, source.scope, texts, self._settings.model)
        needed = [
            digest
            for digest in dict.fromkeys(c.sha256 for c in chunks)
            if not (digest in live and live[digest].has_vector)
            and digest not in self._vectors
            and digest not in self._texts
        ]
        for digest in needed:
            self._texts[digest] = texts[digest]
        self._meter.chunks(len(chunks) - len(needed))
        self._queue.append(_Queued(ParsedFile(source, found, document, chunks), needed))

    def _embed_batches(self, *, final: bool) -> None:
        """Embed full batches (and, if ``final``, the rest); write each file once it can be."""
        size = self._settings.batch_size
        while len(self._texts) >= size or (final and self._texts):
            self._check_cancel()
            digests = list(self._texts)[:size]
            vectors = self.embed([self._texts[d] for d in digests])
            for digest, vector in zip(digests, vectors, strict=True):
                self._vectors[digest] = vector
                del self._texts[digest]
            self._meter.chunks(len(digests))
            self._write_ready()
        self._write_ready()

    def _write_ready(self) -> None:
        """Write the queued files, oldest first, whose texts all have vectors."""
        while self._queue and not any(d in self._texts for d in self._queue[0].needed):
            queued = self._queue.popleft()
            written = commit_indexed(self._db, queued.parsed, self._ctx(), self._vector_for)
            for digest in queued.needed:
                self._vectors.pop(digest, None)
            self._tally.files_indexed += 1
            self._tally.chunks_added += written.added
            self._tally.chunks_reused += written.reused
            self._tally.chunks_removed += written.removed
            self._meter.file_done(queued.parsed.found.size)

    def _vector_for(self, digest: str, text: str) -> Vector:
        """The vector embedded for ``digest``; embedded now if it was not (a race lost)."""
        vector = self._vectors.get(digest)
        if vector is None:
            vector = self.embed([text])[0]
        return vector

    def _skip(
        self,
        source: IngestSource,
        files: list[FoundFile],
        reason: str,
        details: list[str],
        *,
        were_to_read: bool = True,
    ) -> None:
        if not files:
            return
        pairs = list(zip(files, details, strict=True))
        removed = commit_skipped(self._db, source, pairs, reason, self._ctx())
        self._tally.chunks_removed += removed
        for found, detail in zip(files, details, strict=True):
            self._tally.skipped.append(SkippedFile(found.path, reason, detail))
            self._meter.file_done(found.size if were_to_read else 0)

    def _skip_unsupported(self, source: IngestSource, files: list[FoundFile]) -> None:
        details = []
        for found in files:
            suffix = Path(found.path).suffix.lower()
            what = f"'{suffix}' files" if suffix else "files without a type"
            details.append(str(UnsupportedDocumentError(found.path, what)))
        reason = UnsupportedDocumentError.reason
        self._skip(source, files, reason, details, were_to_read=False)

    def _remove(self, source: IngestSource, row: IngestFile) -> None:
        removed = commit_removed(self._db, source, row, self._ctx())
        self._tally.files_removed += 1
        self._tally.chunks_removed += removed
        self._meter.file_done()

    def _stored_row(self, source: IngestSource, path: str) -> IngestFile | None:
        return self._stored.get(_key(source.id, path))

    # -- a new embedding model -----------------------------------------
    def _embed_linked_missing(self) -> None:
        """Vectors of the run's model for linked chunks that lack one (unchanged files)."""
        model, size = self._settings.model, self._settings.batch_size
        while True:
            self._check_cancel()
            missing = linked_versions_missing_vectors(self._db, self._source_ids, model, size)
            if not missing:
                return
            vectors = self.embed([text for _, text in missing])
            pairs = [(vid, vector) for (vid, _), vector in zip(missing, vectors, strict=True)]
            with self._db.transaction():
                store_vectors(self._db, model, pairs, self._clock())
            self._tally.vectors_added += len(missing)
            self._meter.tick()


def _key(source_id: str, path: str) -> str:
    return f"{source_id}\0{path}"


def _same_text(stored: IngestFile | None, document: ParsedDocument) -> bool:
    """Whether the file was indexed with exactly this text (only touched since)."""
    return (
        stored is not None
        and stored.status is FileStatus.INDEXED
        and stored.content_sha256 == document.content_sha256
    )
