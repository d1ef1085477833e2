"""The values of ingestion: life cycles, rows, progress events and the report.

Plain frozen dataclasses and enums, no database: what ``Ingestor`` hands to
its caller and what the UI shows. None of them holds a document's text;
file names appear (the owner's own folders), never their content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class FileStatus(StrEnum):
    """What became of one file of a source (``ingest_files.status``).

    PENDING: found by a run that has not read it yet (a killed run leaves
    these; the next one reads them). INDEXED: its chunks are current
    memories. SKIPPED: it could not be read; ``reason`` says why. REMOVED:
    it is gone from the folder and its chunks were tombstoned.
    """

    PENDING = "pending"
    INDEXED = "indexed"
    SKIPPED = "skipped"
    REMOVED = "removed"


class RunStatus(StrEnum):
    """The life cycle of one run: RUNNING, then exactly one of the others.

    INTERRUPTED is set by the next run on a run whose process died (it was
    still RUNNING in the file); what it had committed stays.
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


@dataclass(frozen=True, slots=True)
class IngestSource:
    """A folder whose documents become memories of ``scope``."""

    id: str
    root: str
    scope: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IngestFile:
    """One file's row: its last seen size and mtime, and what became of it."""

    source_id: str
    path: str
    size: int
    mtime_ns: int
    content_sha256: str | None
    status: FileStatus
    reason: str | None
    detail: str | None
    chunk_count: int
    run_id: str | None


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file a run could not read: ``reason`` is a ``DocumentError.reason`` code."""

    path: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """One progress event of a run (at most every ``interval_s``, and a final one).

    ``files_total`` counts every file the walk found plus those that
    disappeared; unchanged files are done as soon as they are compared.
    ``rate`` is chunks per second since the run began; ``eta_s`` is the
    time left at the rate bytes have been read so far (None before the
    first file). ``current`` is the name of the file being read, not its path.
    """

    run_id: str
    files_total: int
    files_done: int
    chunks_done: int
    bytes_total: int
    bytes_done: int
    elapsed_s: float
    rate: float
    eta_s: float | None
    current: str
    final: bool = False


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one run did.

    ``chunks_added``: new memories; ``chunks_reused``: chunks whose text a
    live memory already held (no new memory, no embedding); ``chunks_removed``:
    memories tombstoned because no file holds their text any more;
    ``texts_embedded``: texts sent to the embedder, re-embedding included.
    ``sources_missing``: roots that were not there (an unplugged drive):
    their files were left as they were, not marked removed.
    """

    run_id: str
    source_ids: tuple[str, ...]
    status: RunStatus
    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    skipped: tuple[SkippedFile, ...] = ()
    chunks_added: int = 0
    chunks_reused: int = 0
    chunks_removed: int = 0
    texts_embedded: int = 0
    vectors_added: int = 0
    bytes_read: int = 0
    elapsed_s: float = 0.0
    sources_missing: tuple[str, ...] = ()

    @property
    def files_skipped(self) -> int:
        return len(self.skipped)

    @property
    def chunks_per_s(self) -> float:
        done = self.chunks_added + self.chunks_reused
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def counts(self) -> dict[str, int]:
        """The numbers, as stored in ``ingest_runs.counts``."""
        return {
            "files_seen": self.files_seen,
            "files_indexed": self.files_indexed,
            "files_unchanged": self.files_unchanged,
            "files_removed": self.files_removed,
            "files_skipped": self.files_skipped,
            "chunks_added": self.chunks_added,
            "chunks_reused": self.chunks_reused,
            "chunks_removed": self.chunks_removed,
            "texts_embedded": self.texts_embedded,
            "vectors_added": self.vectors_added,
            "bytes_read": self.bytes_read,
        }


ProgressCallback = Callable[[IngestProgress], None]


@dataclass(slots=True)
class ProgressMeter:
    """Counts a run's work and calls ``callback`` at most every ``interval_s``.

    ``clock`` (monotonic seconds) is a seam for tests.
    """

    run_id: str
    callback: ProgressCallback | None
    interval_s: float = 0.1
    clock: Callable[[], float] = time.monotonic
    files_total: int = 0
    files_done: int = 0
    chunks_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    current: str = ""
    started: float = field(init=False)
    _last_emit: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def file_done(self, size: int = 0) -> None:
        self.files_done += 1
        self.bytes_done += size
        self.tick()

    def chunks(self, count: int) -> None:
        self.chunks_done += count
        self.tick()

    def tick(self, *, final: bool = False) -> None:
        """Emit an event if ``interval_s`` has passed since the last (always if ``final``)."""
        if self.callback is None:
            return
        now = self.clock()
        if not final and self._last_emit is not None and now - self._last_emit < self.interval_s:
            return
        self._last_emit = now
        self.callback(self.snapshot(now, final=final))

    def snapshot(self, now: float, *, final: bool = False) -> IngestProgress:
        elapsed = max(now - self.started, 0.0)
        eta = None
        if self.bytes_done > 0 and elapsed > 0:
            left = max(self.bytes_total - self.bytes_done, 0)
            eta = left * elapsed / self.bytes_done
        return IngestProgress(
            run_id=self.run_id,
            files_total=self.files_total,
            files_done=self.files_done,
            chunks_done=self.chunks_done,
            bytes_total=self.bytes_total,
            bytes_done=self.bytes_done,
            elapsed_s=elapsed,
            rate=self.chunks_done / elapsed if elapsed > 0 else 0.0,
            eta_s=0.0 if final else eta,
            current="" if final else self.current,
            final=final,
        )
