"""Folders of documents indexed into long-term memory, incrementally and safely.

``Ingestor.add_source(folder)`` registers a folder; ``Ingestor.run()`` walks
it and brings memory up to date with it:

- a file whose size and mtime match its row is not read again;
- a new or changed file is parsed (``documents.parse_file``), chunked
  (``chunking.chunk_text``), its chunks deduplicated by content hash within
  the source's scope (text a live chunk memory already holds is linked,
  not embedded again), the rest embedded in batches across files, and the
  whole file written in one transaction (``ingest_write``): chunks that
  the old version had and the new one lacks are tombstoned, history kept;
- a file that disappeared has its chunks tombstoned and its row marked
  removed, unless its whole folder is missing (an unplugged drive): then
  nothing of that source is touched;
- a file that cannot be read is recorded as skipped with the reason code
  and message of its ``DocumentError``, and the run goes on;
- chunks of unchanged files that lack a vector of the embedder's model (the
  model was changed) are embedded at the end of the run.

Progress events (``IngestProgress``) come at most every 100 ms and once at
the end. ``cancel`` (a ``threading.Event``) is looked at between files and
between embedding batches; the run then stops with every file it wrote
complete, and the next run continues. A killed process leaves the same
state: files are the unit of atomicity, and the rows say what is done.

Logs carry counts, sizes and timings, never a file's name or text.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.memory.chunking import DEFAULT_MAX_CHARS, DEFAULT_OVERLAP_CHARS, chunk_text
from app.memory.db import Database, utc_now
from app.memory.documents import DEFAULT_MAX_BYTES, ParsedDocument, parse_file
from app.memory.errors import (
    IngestBusyError,
    IngestSourceError,
    IngestSourceNotFoundError,
)
from app.memory.ingest_job import EmbedFn, IngestJob, JobSettings
from app.memory.ingest_rows import (
    all_sources,
    finish_run,
    insert_source,
    source_by_id,
    source_by_root,
    start_run,
    store_vectors,
    stored_files,
)
from app.memory.ingest_types import (
    FileStatus,
    IngestFile,
    IngestProgress,
    IngestReport,
    IngestSource,
    ProgressCallback,
    ProgressMeter,
    RunStatus,
    SkippedFile,
)
from app.memory.longterm import MemoryStore
from app.memory.provenance import GLOBAL_SCOPE, check_scope

if TYPE_CHECKING:  # the protocol only: importing the engine here would load nothing useful
    from app.engine.embeddings import Embedder

__all__ = [
    "FileStatus",
    "IngestFile",
    "IngestOptions",
    "IngestProgress",
    "IngestReport",
    "IngestSource",
    "Ingestor",
    "RunStatus",
    "SkippedFile",
]

log = logging.getLogger("soloist.memory")

DEFAULT_BATCH_SIZE = 32

Parser = Callable[..., ParsedDocument]


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """How files are read and cut; see ``chunking`` for why these defaults."""

    max_chars: int = DEFAULT_MAX_CHARS
    overlap_chars: int = DEFAULT_OVERLAP_CHARS
    max_bytes: int = DEFAULT_MAX_BYTES
    batch_size: int = DEFAULT_BATCH_SIZE
    progress_interval_s: float = 0.1

    def __post_init__(self) -> None:
        chunk_text("", max_chars=self.max_chars, overlap_chars=self.overlap_chars)  # checks them
        if self.max_bytes <= 0 or self.batch_size <= 0 or self.progress_interval_s < 0:
            raise ValueError(f"invalid ingest options: {self}")


@dataclass(slots=True)
class _Active:
    run_id: str = ""
    started: float = field(default_factory=time.monotonic)


class Ingestor:
    """Indexes folders into ``store``'s database with ``embedder``.

    ``parse``, ``clock`` and ``monotonic`` are seams for tests. One run at a
    time per ingestor; call ``run`` on a worker thread, never the UI's.
    """

    def __init__(
        self,
        store: MemoryStore,
        db: Database,
        embedder: Embedder,
        *,
        options: IngestOptions | None = None,
        parse: Parser = parse_file,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._db = db
        self._embedder = embedder
        self.options = options or IngestOptions()
        self._parse = parse
        self._clock = clock
        self._monotonic = monotonic
        self._busy = threading.Lock()
        self._active = _Active()

    # -- sources -------------------------------------------------------
    def add_source(self, folder: str | os.PathLike[str], scope: str = GLOBAL_SCOPE) -> IngestSource:
        """Register ``folder`` (its chunks go to ``scope``); the existing source if known."""
        check_scope(scope)
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise IngestSourceError(
                str(path), "no such folder" if not path.exists() else "not a folder"
            )
        root = str(path.resolve())
        with self._db.transaction():
            known = source_by_root(self._db, root)
            if known is not None:
                return known
            source = insert_source(self._db, root, scope, self._clock())
        log.info("ingest source %s added (scope %s)", source.id, scope)
        return source

    def sources(self) -> list[IngestSource]:
        return all_sources(self._db)

    def files(self, source_id: str) -> list[IngestFile]:
        """The rows of the source's files, by path."""
        self._source(source_id)
        return list(stored_files(self._db, source_id).values())

    # -- running -------------------------------------------------------
    def run(
        self,
        source_id: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> IngestReport:
        """Bring memory up to date with one source (or every source, ``None``).

        Raises ``IngestBusyError`` if a run is going, ``IngestSourceNotFoundError``
        for an unknown id, ``IngestEmbeddingError`` if the embedder fails and
        ``QueryError`` if the database does; in each case what was committed
        stays, and the run is recorded as failed.
        """
        if not self._busy.acquire(blocking=False):
            raise IngestBusyError(self._active.run_id)
        try:
            sources = [self._source(source_id)] if source_id else self.sources()
            return self._run(source_id, sources, progress, cancel or threading.Event())
        finally:
            self._busy.release()

    def embed_missing(self, cancel: threading.Event | None = None) -> int:
        """Give every live memory without a vector of the embedder's model one; how many.

        For a change of embedding model: chunks, facts and notes alike are
        embedded again under the new model's name (``versions_missing_vectors``).
        Each batch's vectors are written in one statement (``store_vectors``),
        not through ``MemoryStore.set_vector`` (about 100 ms a vector, see
        ``ingest_rows``), so change listeners do not hear of them.
        """
        stop = cancel or threading.Event()
        model = self._embedder.model_name
        job = self._job("", model, ProgressMeter("", None), stop)
        done = 0
        while not stop.is_set():
            versions = self._store.versions_missing_vectors(model, self.options.batch_size)
            if not versions:
                break
            vectors = job.embed([v.text for v in versions])
            pairs = [(v.id, vector) for v, vector in zip(versions, vectors, strict=True)]
            with self._db.transaction():
                store_vectors(self._db, model, pairs, self._clock())
            done += len(versions)
        log.info("embedded %d memories missing a %s vector", done, model)
        return done

    # -- mechanism -----------------------------------------------------
    def _source(self, source_id: str) -> IngestSource:
        found = source_by_id(self._db, source_id)
        if found is None:
            raise IngestSourceNotFoundError(source_id)
        return found

    def _run(
        self,
        source_id: str | None,
        sources: Sequence[IngestSource],
        progress: ProgressCallback | None,
        cancel: threading.Event,
    ) -> IngestReport:
        model = self._embedder.model_name
        run_id = start_run(self._db, source_id, model, self._clock())
        self._active = _Active(run_id, self._monotonic())
        meter = ProgressMeter(run_id, progress, self.options.progress_interval_s, self._monotonic)
        job = self._job(run_id, model, meter, cancel)
        try:
            status = job.execute(sources)
        except BaseException as exc:
            self._finish(job, RunStatus.FAILED, f"{type(exc).__name__}: {exc}"[:500])
            raise
        report = self._finish(job, status)
        meter.tick(final=True)
        return report

    def _job(
        self, run_id: str, model: str, meter: ProgressMeter, cancel: threading.Event
    ) -> IngestJob:
        settings = JobSettings(
            run_id=run_id,
            model=model,
            max_chars=self.options.max_chars,
            overlap_chars=self.options.overlap_chars,
            max_bytes=self.options.max_bytes,
            batch_size=self.options.batch_size,
        )
        embed: EmbedFn = self._embedder.embed
        return IngestJob(
            self._db,
            settings,
            embed=embed,
            parse=self._parse,
            clock=self._clock,
            meter=meter,
            cancel=cancel,
        )

    def _finish(self, job: IngestJob, status: RunStatus, error: str | None = None) -> IngestReport:
        elapsed = self._monotonic() - self._active.started
        report = replace(job.report(status), elapsed_s=elapsed)
        try:
            finish_run(self._db, report.run_id, status, report.counts(), self._clock(), error=error)
        except Exception:  # the run's own failure (a closed database) is the one to raise
            if status is not RunStatus.FAILED:
                raise
            log.warning("ingest run %s: its failure could not be recorded", report.run_id)
        log.info(
            "ingest run %s %s: %d files indexed, %d unchanged, %d skipped, %d removed; "
            "%d chunks added, %d reused, %d removed; %d texts embedded in %.1f s",
            report.run_id,
            status.value,
            report.files_indexed,
            report.files_unchanged,
            report.files_skipped,
            report.files_removed,
            report.chunks_added,
            report.chunks_reused,
            report.chunks_removed,
            report.texts_embedded,
            elapsed,
        )
        return report
