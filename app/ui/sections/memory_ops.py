"""The Memory section's questions and commands to the office, without Qt.

Search (hybrid, with the scope, kind and source filters), a memory's
versions, rollback to one of them, the ingestion folders with their counts,
and an ingestion run. Each function takes the office and runs on a worker
thread through ``bridge.call``; the widgets only show what comes back.
Texts for the owner (:func:`report_text`, :func:`provenance_lines`) are
here too, so they are tested without a window. This module loads nothing
heavy (the search index and numpy load on the memory thread), so the window
may import it at start-up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.memory.ingest_types import IngestProgress, IngestReport, ProgressCallback, RunStatus
from app.memory.memory_rows import MemoryVersion
from app.memory.provenance import GLOBAL_SCOPE, KINDS, Provenance
from app.office import Office

if TYPE_CHECKING:  # numpy loads with search, on a worker thread, not with the window
    from app.memory.search import SearchFilter, SearchResult

__all__ = [
    "BY_OWNER",
    "FilterChoices",
    "MemoryQuery",
    "SourceSummary",
    "filter_choices",
    "history",
    "ingest",
    "progress_percent",
    "provenance_lines",
    "report_text",
    "rollback",
    "search",
    "sources",
]

BY_OWNER = Provenance(tool="ui")  # the owner, in the window
RESULTS = 25


@dataclass(frozen=True, slots=True)
class FilterChoices:
    scopes: tuple[str, ...]
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemoryQuery:
    """What the search box and its filters say; None means any."""

    text: str
    scope: str | None = None
    kind: str | None = None
    source: str | None = None  # a folder or file path, or a URL prefix

    def where(self) -> SearchFilter:
        from app.memory.search import SearchFilter

        source = (self.source or "").strip()
        is_url = source.startswith(("http://", "https://"))
        return SearchFilter(
            scopes=(self.scope,) if self.scope else None,
            kinds=(self.kind,) if self.kind else None,
            source_url_prefix=source if source and is_url else None,
            source_file_prefix=_file_prefix(source) if source and not is_url else None,
        )


@dataclass(frozen=True, slots=True)
class SourceSummary:
    """One ingestion folder and what it holds now."""

    id: str
    root: str
    scope: str
    files: int  # indexed
    skipped: int
    chunks: int
    last_run: str | None  # the latest run's status, None before the first


def filter_choices(office: Office) -> FilterChoices:
    rows = office.db.fetchall("SELECT DISTINCT scope FROM memories ORDER BY 1")
    scopes = {GLOBAL_SCOPE, *(str(row[0]) for row in rows)}
    return FilterChoices(tuple(sorted(scopes)), tuple(sorted(KINDS)))


def search(office: Office, query: MemoryQuery, k: int = RESULTS) -> SearchResult:
    """Hybrid search; ``EmptyQueryError`` and the not-ready errors read well as they are."""
    return office.memory.search(query.text, k=k, where=query.where())


def history(office: Office, memory_id: str) -> list[MemoryVersion]:
    """Every version of a memory, oldest first."""
    return office.memory.store.history(memory_id)


def rollback(office: Office, memory_id: str, version: int) -> MemoryVersion:
    """Make ``version`` current again (a new version: the history is kept)."""
    return office.memory.store.rollback_memory(memory_id, version, BY_OWNER)


_SOURCES_SQL = """
    SELECT s.id, s.root, s.scope,
           count(f.path) FILTER (WHERE f.status = 'indexed'),
           count(f.path) FILTER (WHERE f.status = 'skipped'),
           coalesce(sum(f.chunk_count) FILTER (WHERE f.status = 'indexed'), 0),
           (SELECT r.status FROM ingest_runs r WHERE r.source_id = s.id
            ORDER BY r.started_at DESC LIMIT 1)
    FROM ingest_sources s LEFT JOIN ingest_files f ON f.source_id = s.id
    GROUP BY s.id, s.root, s.scope, s.created_at
    ORDER BY s.created_at, s.id
"""


def sources(office: Office) -> list[SourceSummary]:
    """The ingestion folders with their counts, oldest first."""
    return [_summary(row) for row in office.db.fetchall(_SOURCES_SQL)]


def _summary(row: tuple[object, ...]) -> SourceSummary:
    source_id, root, scope, files, skipped, chunks, last_run = row
    return SourceSummary(
        id=str(source_id),
        root=str(root),
        scope=str(scope),
        files=int(str(files)),
        skipped=int(str(skipped)),
        chunks=int(str(chunks)),
        last_run=None if last_run is None else str(last_run),
    )


def ingest(
    office: Office,
    folder: str,
    scope: str = GLOBAL_SCOPE,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> IngestReport:
    """Add ``folder`` as a source (if new) and bring memory up to date with it."""
    return office.memory.ingest(folder, scope, progress, cancel)


# -- texts for the owner -------------------------------------------------------------
def progress_percent(event: IngestProgress) -> int:
    """0-100 by files (unchanged files count as done at once); 100 only when all are done."""
    if event.files_total <= 0:
        return 100 if event.final else 0
    percent = min(100, event.files_done * 100 // event.files_total)
    return percent if event.final else min(99, percent)


def progress_text(event: IngestProgress) -> str:
    if event.final:
        return f"{event.files_done} of {event.files_total} files, {event.chunks_done} chunks"
    current = f" — {event.current}" if event.current else ""
    return f"{event.files_done} of {event.files_total} files{current}"


def report_text(folder: str, report: IngestReport) -> str:
    """One line on how a run ended, and what to do next when it did not finish."""
    name = Path(folder).name or folder
    counts = (
        f"{report.files_indexed} files indexed, {report.files_unchanged} unchanged, "
        f"{report.files_skipped} skipped; {report.chunks_added} chunks added"
    )
    if report.status is RunStatus.CANCELLED:
        return f"Indexing of {name} cancelled ({counts}). Run it again to continue."
    if report.sources_missing:
        return f"{name} is not there (an unplugged drive?): nothing was changed."
    return f"Indexed {name}: {counts}."


def provenance_lines(version: MemoryVersion) -> list[tuple[str, str]]:
    """(label, value) for each provenance field that is set, and when it was written."""
    p = version.provenance
    step = None if p.step_seq is None else str(p.step_seq)
    fields = (
        ("Agent", p.agent_id),
        ("Run", p.run_id),
        ("Step", step),
        ("Tool", p.tool),
        ("Message", p.message_id),
        ("File", p.source_file),
        ("URL", p.source_url),
    )
    lines = [(label, value) for label, value in fields if value]
    if not lines:
        lines.append(("By", "the owner"))
    lines.append(("When", _when(version.created_at)))
    return lines


def version_title(version: MemoryVersion) -> str:
    current = " (current)" if version.is_current else ""
    restored = f" from v{version.restored_from}" if version.restored_from is not None else ""
    return f"v{version.version} {version.op.value}{restored}{current}  {_when(version.valid_from)}"


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _file_prefix(source: str) -> str:
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source
