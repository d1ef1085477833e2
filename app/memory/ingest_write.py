"""One file's outcome written in ONE transaction: chunks, vectors, links and row.

So a run killed at any moment leaves each file either wholly indexed or as
it was before the run (its old chunks still current, or no row at all), and
the next run picks up from the rows. Chunk memories are versioned and
carry provenance like any memory: new ones are inserted a file at a time
(``ingest_rows.insert_chunk_memories``, the bulk form of what
``memory_versions.write_version`` writes for a first version, and
``store_vectors``), tombstones go through ``write_version`` itself.

Dedupe: a chunk whose text a live document-chunk memory of the same scope
already holds links to that memory instead of making another; the memory's
provenance names the file that first brought the text in. A memory is
tombstoned when the last link to it goes (its file changed, was removed or
became unreadable), so the same paragraph in two files survives the
deletion of either.

Change listeners of ``MemoryStore`` are not called for these writes (the
store has no way yet to join a caller's transaction and notify after its
commit); an index in RAM must reload after a run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from app.memory.chunking import Chunk
from app.memory.db import Database
from app.memory.documents import ParsedDocument
from app.memory.ingest_rows import (
    FileOutcome,
    Link,
    NewChunk,
    file_links,
    insert_chunk_memories,
    live_chunks,
    mark_removed,
    replace_links,
    still_linked,
    store_vectors,
    write_file,
    write_files,
)
from app.memory.ingest_types import FileStatus, IngestFile, IngestSource
from app.memory.ingest_walk import FoundFile
from app.memory.memory_rows import ChangeOp
from app.memory.memory_versions import (
    Draft,
    Metadata,
    latest_version,
    metadata_json,
    write_version,
)
from app.memory.provenance import Provenance
from app.memory.vectors import Vector

INGEST_TOOL = "ingest"

# The vector of a chunk text (by its hash), embedding it now if need be.
VectorFor = Callable[[str, str], Vector]


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A file read and chunked, ready to be written."""

    source: IngestSource
    found: FoundFile
    document: ParsedDocument
    chunks: Sequence[Chunk]


@dataclass(frozen=True, slots=True)
class Written:
    """What writing one file did to memory."""

    added: int = 0
    reused: int = 0
    removed: int = 0


@dataclass(frozen=True, slots=True)
class RunContext:
    """Who writes: the run, the embedding model, and the moment."""

    run_id: str
    model: str
    now: datetime

    def provenance(self, path: str) -> Provenance:
        return Provenance(run_id=self.run_id, tool=INGEST_TOOL, source_file=path)


def commit_indexed(
    db: Database, parsed: ParsedFile, ctx: RunContext, vector_for: VectorFor
) -> Written:
    """Write the file's chunks (new, reused or re-vectored), links and row; tombstone the gone."""
    source, found, chunks = parsed.source, parsed.found, parsed.chunks
    with db.transaction():
        old = {link.memory_id for link in file_links(db, source.id, found.path)}
        live = live_chunks(db, source.scope, (c.sha256 for c in chunks), ctx.model)
        memory_for: dict[str, str] = {}
        new: list[NewChunk] = []
        vectors: list[tuple[str, Vector]] = []
        for chunk in chunks:
            if chunk.sha256 in memory_for:
                continue
            held = live.get(chunk.sha256)
            if held is None:
                new.append(_new_chunk(parsed, chunk))
                memory_id, version_id = new[-1].memory_id, new[-1].version_id
            else:
                memory_id, version_id = held.memory_id, held.version_id
            if held is None or not held.has_vector:
                vectors.append((version_id, vector_for(chunk.sha256, chunk.text)))
            memory_for[chunk.sha256] = memory_id
        insert_chunk_memories(db, source.scope, new, ctx.provenance(found.path), ctx.now)
        store_vectors(db, ctx.model, vectors, ctx.now)
        links = [_link(parsed.document, c, memory_for[c.sha256]) for c in chunks]
        replace_links(db, source.id, found.path, links)
        removed = _tombstone_unlinked(db, old - set(memory_for.values()), ctx, found.path)
        outcome = FileOutcome(
            FileStatus.INDEXED, parsed.document.content_sha256, chunk_count=len(chunks)
        )
        write_file(db, source.id, found, outcome, run_id=ctx.run_id, now=ctx.now)
    return Written(added=len(new), reused=len(chunks) - len(new), removed=removed)


def commit_touched(
    db: Database, source: IngestSource, found: FoundFile, stored: IngestFile, ctx: RunContext
) -> None:
    """The file's stat changed but its text did not: only its row is updated."""
    outcome = FileOutcome(FileStatus.INDEXED, stored.content_sha256, stored.chunk_count)
    write_file(db, source.id, found, outcome, run_id=ctx.run_id, now=ctx.now)


def commit_skipped(
    db: Database,
    source: IngestSource,
    skipped: Sequence[tuple[FoundFile, str]],
    reason: str,
    ctx: RunContext,
) -> int:
    """Record files as skipped for ``reason``, each with its message; tombstone
    what they held. How many memories were tombstoned."""
    files = [found for found, _ in skipped]
    removed = 0
    with db.transaction():
        for found in files:
            removed += _unlink(db, source.id, found.path, ctx)
        outcome = FileOutcome(FileStatus.SKIPPED, reason=reason)
        details = [detail for _, detail in skipped]
        write_files(db, source.id, files, outcome, run_id=ctx.run_id, now=ctx.now, details=details)
    return removed


def commit_pending(
    db: Database, source: IngestSource, files: Sequence[FoundFile], ctx: RunContext
) -> None:
    """Rows for files found but not read yet, so a killed run's successor sees them."""
    with db.transaction():
        pending = FileOutcome(FileStatus.PENDING)
        write_files(db, source.id, files, pending, run_id=ctx.run_id, now=ctx.now)


def commit_removed(db: Database, source: IngestSource, row: IngestFile, ctx: RunContext) -> int:
    """The file is gone: tombstone what it held and mark its row. Memories removed."""
    with db.transaction():
        removed = _unlink(db, source.id, row.path, ctx)
        mark_removed(db, source.id, row.path, ctx.run_id, ctx.now)
    return removed


def _new_chunk(parsed: ParsedFile, chunk: Chunk) -> NewChunk:
    """A new chunk memory; where it lies in the file that brought it goes in its metadata."""
    metadata: Metadata = {
        "title": parsed.document.title,
        "document_kind": parsed.document.kind.value,
        "chunk": chunk.index,
        "char_start": chunk.start,
        "char_end": chunk.end,
        "page": parsed.document.page_at(chunk.start),
    }
    return NewChunk(uuid.uuid4().hex, uuid.uuid4().hex, chunk.text, metadata_json(metadata))


def _link(document: ParsedDocument, chunk: Chunk, memory_id: str) -> Link:
    page = document.page_at(chunk.start)
    return Link(chunk.index, memory_id, chunk.sha256, chunk.start, chunk.end, page)


def _unlink(db: Database, source_id: str, path: str, ctx: RunContext) -> int:
    old = {link.memory_id for link in file_links(db, source_id, path)}
    replace_links(db, source_id, path, [])
    return _tombstone_unlinked(db, old, ctx, path)


def _tombstone_unlinked(db: Database, memory_ids: Iterable[str], ctx: RunContext, path: str) -> int:
    """Tombstone those of ``memory_ids`` no file links to any more; how many."""
    candidates = set(memory_ids)
    orphans = sorted(candidates - still_linked(db, candidates))
    removed = 0
    for memory_id in orphans:
        latest = latest_version(db, memory_id)
        if latest.tombstone:
            continue  # deleted by hand meanwhile
        draft = Draft(ChangeOp.DELETE, None)
        provenance = ctx.provenance(path)
        write_version(db, memory_id, latest, draft, provenance=provenance, now=ctx.now)
        removed += 1
    return removed
