"""The ingestion tables (schema v5) read and written: the mechanism under ``Ingestor``.

Plain functions on a ``Database``; the writing ones run inside the caller's
transaction. Lists go to DuckDB as ONE JSON text parameter, unpacked with
``from_json`` and ``unnest``, so a folder of thousands of files, or a file's
vectors, costs one statement. Not as Python lists: without pandas installed,
duckdb 1.5 tries to import it twice per list element while binding (about
0.3 ms each), so one 384-float vector costs ~100 ms as a list parameter and
~0.7 ms inside a JSON text.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.memory.db import Database, from_db_time, to_db_time
from app.memory.errors import VectorDimensionError
from app.memory.ingest_types import FileStatus, IngestFile, IngestSource, RunStatus
from app.memory.ingest_walk import FoundFile
from app.memory.provenance import PROVENANCE_COLUMNS, Provenance, content_hash
from app.memory.vectors import Vector, model_dimension

DOCUMENT_CHUNK = "document_chunk"

# A JSON list of strings as rows: in a SELECT list, and for ``x IN (...)``.
_UNNEST_TEXT = """unnest(from_json(?, '["VARCHAR"]'))"""
_TEXTS = f"SELECT {_UNNEST_TEXT}"


def _json(values: Sequence[object]) -> str:
    return json.dumps(values, ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Link:
    """Chunk ``seq`` of a file, held by ``memory_id``."""

    seq: int
    memory_id: str
    chunk_sha256: str
    char_start: int
    char_end: int
    page: int | None


@dataclass(frozen=True, slots=True)
class LiveChunk:
    """A live document-chunk memory holding some text, and whether it has the model's vector."""

    memory_id: str
    version_id: str
    has_vector: bool


# -- sources ---------------------------------------------------------------
_SOURCE_SELECT = "SELECT id, root, scope, created_at FROM ingest_sources"


def _source(row: tuple[Any, ...]) -> IngestSource:
    return IngestSource(row[0], row[1], row[2], from_db_time(row[3]))


def insert_source(db: Database, root: str, scope: str, now: datetime) -> IngestSource:
    source_id = uuid.uuid4().hex
    db.execute(
        "INSERT INTO ingest_sources (id, root, scope, created_at) VALUES (?, ?, ?, ?)",
        [source_id, root, scope, to_db_time(now)],
    )
    found = source_by_id(db, source_id)
    assert found is not None  # inserted just above
    return found


def source_by_id(db: Database, source_id: str) -> IngestSource | None:
    row = db.fetchone(f"{_SOURCE_SELECT} WHERE id = ?", [source_id])
    return None if row is None else _source(row)


def source_by_root(db: Database, root: str) -> IngestSource | None:
    row = db.fetchone(f"{_SOURCE_SELECT} WHERE root = ?", [root])
    return None if row is None else _source(row)


def all_sources(db: Database) -> list[IngestSource]:
    return [_source(row) for row in db.fetchall(f"{_SOURCE_SELECT} ORDER BY created_at, id")]


# -- runs --------------------------------------------------------------------
def start_run(db: Database, source_id: str | None, model: str, now: datetime) -> str:
    """Record a new RUNNING run; earlier runs still RUNNING died with their process."""
    run_id = uuid.uuid4().hex
    with db.transaction():
        db.execute(
            "UPDATE ingest_runs SET status = ?, finished_at = ? WHERE status = ?",
            [RunStatus.INTERRUPTED.value, to_db_time(now), RunStatus.RUNNING.value],
        )
        db.execute(
            """
            INSERT INTO ingest_runs (id, source_id, status, embed_model, counts, started_at)
            VALUES (?, ?, ?, ?, '{}', ?)
            """,
            [run_id, source_id, RunStatus.RUNNING.value, model, to_db_time(now)],
        )
    return run_id


def finish_run(
    db: Database,
    run_id: str,
    status: RunStatus,
    counts: dict[str, int],
    now: datetime,
    *,
    error: str | None = None,
) -> None:
    db.execute(
        "UPDATE ingest_runs SET status = ?, counts = ?, error = ?, finished_at = ? WHERE id = ?",
        [status.value, json.dumps(counts, sort_keys=True), error, to_db_time(now), run_id],
    )


def run_status(db: Database, run_id: str) -> RunStatus | None:
    row = db.fetchone("SELECT status FROM ingest_runs WHERE id = ?", [run_id])
    return None if row is None else RunStatus(row[0])


# -- files -------------------------------------------------------------------
_FILE_COLUMNS = (
    "source_id, path, size, mtime_ns, content_sha256, status, reason, detail, chunk_count, run_id"
)


def _file(row: tuple[Any, ...]) -> IngestFile:
    return IngestFile(
        source_id=row[0],
        path=row[1],
        size=int(row[2]),
        mtime_ns=int(row[3]),
        content_sha256=row[4],
        status=FileStatus(row[5]),
        reason=row[6],
        detail=row[7],
        chunk_count=int(row[8]),
        run_id=row[9],
    )


def stored_files(db: Database, source_id: str) -> dict[str, IngestFile]:
    """Every row of the source, by path."""
    rows = db.fetchall(
        f"SELECT {_FILE_COLUMNS} FROM ingest_files WHERE source_id = ? ORDER BY path",
        [source_id],
    )
    return {row[1]: _file(row) for row in rows}


def stored_file(db: Database, source_id: str, path: str) -> IngestFile | None:
    row = db.fetchone(
        f"SELECT {_FILE_COLUMNS} FROM ingest_files WHERE source_id = ? AND path = ?",
        [source_id, path],
    )
    return None if row is None else _file(row)


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What to record of one file: the row's new values."""

    status: FileStatus
    content_sha256: str | None = None
    chunk_count: int = 0
    reason: str | None = None
    detail: str | None = None


def write_file(
    db: Database,
    source_id: str,
    found: FoundFile,
    outcome: FileOutcome,
    *,
    run_id: str,
    now: datetime,
) -> None:
    """Insert or update one file's row."""
    write_files(db, source_id, [found], outcome, run_id=run_id, now=now)


def write_files(
    db: Database,
    source_id: str,
    files: Sequence[FoundFile],
    outcome: FileOutcome,
    *,
    run_id: str,
    now: datetime,
    details: Sequence[str | None] | None = None,
) -> None:
    """Insert or update the rows of ``files`` in one statement.

    All take ``outcome``; ``details`` (one per file) replaces its ``detail``.
    """
    if not files:
        return
    if details is None:
        details = [outcome.detail] * len(files)
    if len(details) != len(files):
        raise ValueError(f"{len(details)} details for {len(files)} files")
    db.execute(
        f"""
        INSERT INTO ingest_files ({_FILE_COLUMNS}, updated_at)
        SELECT ?, unnest(from_json(?, '["VARCHAR"]')), unnest(from_json(?, '["BIGINT"]')),
               unnest(from_json(?, '["BIGINT"]')), ?, ?, ?,
               unnest(from_json(?, '["VARCHAR"]')), ?, ?, ?
        ON CONFLICT (source_id, path) DO UPDATE SET
            size = excluded.size, mtime_ns = excluded.mtime_ns,
            content_sha256 = coalesce(excluded.content_sha256, ingest_files.content_sha256),
            status = excluded.status, reason = excluded.reason, detail = excluded.detail,
            chunk_count = excluded.chunk_count, run_id = excluded.run_id,
            updated_at = excluded.updated_at
        """,
        [
            source_id,
            _json([f.path for f in files]),
            _json([f.size for f in files]),
            _json([f.mtime_ns for f in files]),
            outcome.content_sha256,
            outcome.status.value,
            outcome.reason,
            _json(list(details)),
            outcome.chunk_count,
            run_id,
            to_db_time(now),
        ],
    )


def mark_removed(db: Database, source_id: str, path: str, run_id: str, now: datetime) -> None:
    db.execute(
        """
        UPDATE ingest_files SET status = ?, reason = NULL, detail = NULL, chunk_count = 0,
            run_id = ?, updated_at = ?
        WHERE source_id = ? AND path = ?
        """,
        [FileStatus.REMOVED.value, run_id, to_db_time(now), source_id, path],
    )


# -- links -------------------------------------------------------------------
def file_links(db: Database, source_id: str, path: str) -> list[Link]:
    rows = db.fetchall(
        """
        SELECT seq, memory_id, chunk_sha256, char_start, char_end, page FROM ingest_chunks
        WHERE source_id = ? AND path = ? ORDER BY seq
        """,
        [source_id, path],
    )
    return [Link(*row) for row in rows]


def replace_links(db: Database, source_id: str, path: str, links: Sequence[Link]) -> None:
    """Make ``links`` the file's chunk links, in one statement after the delete."""
    db.execute("DELETE FROM ingest_chunks WHERE source_id = ? AND path = ?", [source_id, path])
    if not links:
        return
    db.execute(
        """
        INSERT INTO ingest_chunks
            (source_id, path, seq, memory_id, chunk_sha256, char_start, char_end, page)
        SELECT ?, ?, unnest(from_json(?, '["INTEGER"]')), unnest(from_json(?, '["VARCHAR"]')),
               unnest(from_json(?, '["VARCHAR"]')), unnest(from_json(?, '["INTEGER"]')),
               unnest(from_json(?, '["INTEGER"]')), unnest(from_json(?, '["INTEGER"]'))
        """,
        [
            source_id,
            path,
            _json([link.seq for link in links]),
            _json([link.memory_id for link in links]),
            _json([link.chunk_sha256 for link in links]),
            _json([link.char_start for link in links]),
            _json([link.char_end for link in links]),
            _json([link.page for link in links]),
        ],
    )


def still_linked(db: Database, memory_ids: Iterable[str]) -> set[str]:
    """Which of ``memory_ids`` some file (of any source) still links to."""
    ids = sorted(set(memory_ids))
    if not ids:
        return set()
    rows = db.fetchall(
        f"SELECT DISTINCT memory_id FROM ingest_chunks WHERE memory_id IN ({_TEXTS})",
        [_json(ids)],
    )
    return {row[0] for row in rows}


def live_chunks(
    db: Database, scope: str, hashes: Iterable[str], model: str
) -> dict[str, LiveChunk]:
    """Live document-chunk memories of ``scope`` by content hash (the oldest, if several)."""
    wanted = sorted(set(hashes))
    if not wanted:
        return {}
    rows = db.fetchall(
        f"""
        SELECT v.content_hash, v.memory_id, v.id, EXISTS (
                   SELECT 1 FROM memory_vectors x WHERE x.version_id = v.id AND x.model = ?)
        FROM memory_versions v JOIN memories m ON m.id = v.memory_id
        WHERE v.content_hash IN ({_TEXTS}) AND m.scope = ? AND m.kind = ?
          AND v.valid_to IS NULL AND NOT v.tombstone
        ORDER BY v.valid_from DESC, v.id DESC
        """,
        [model, _json(wanted), scope, DOCUMENT_CHUNK],
    )
    return {row[0]: LiveChunk(row[1], row[2], bool(row[3])) for row in rows}


def linked_versions_missing_vectors(
    db: Database, source_ids: Sequence[str], model: str, limit: int
) -> list[tuple[str, str]]:
    """(version id, text) of live chunks linked from these sources without ``model``'s vector."""
    rows = db.fetchall(
        f"""
        SELECT v.id, v.text FROM memory_versions v
        WHERE v.valid_to IS NULL AND NOT v.tombstone
          AND v.memory_id IN (
              SELECT memory_id FROM ingest_chunks WHERE source_id IN ({_TEXTS}))
          AND NOT EXISTS (
              SELECT 1 FROM memory_vectors x WHERE x.version_id = v.id AND x.model = ?)
        ORDER BY v.id LIMIT ?
        """,
        [_json(list(source_ids)), model, limit],
    )
    return [(row[0], row[1]) for row in rows]


def store_vectors(
    db: Database, model: str, vectors: Sequence[tuple[str, Vector]], now: datetime
) -> None:
    """``vectors.store_vector`` for many versions of one model, in one statement.

    The model's dimension is checked (and fixed by its first vector) as
    there; a version that has a vector of the model already gets the new one.
    """
    if not vectors:
        return
    dims = {int(vector.shape[0]) for _, vector in vectors}
    if len(dims) != 1:
        raise ValueError(f"vectors of one model with several dimensions: {sorted(dims)}")
    dim = dims.pop()
    known = model_dimension(db, model)
    if known is None:
        db.execute(
            "INSERT INTO embedding_models (model, dim, created_at) VALUES (?, ?, ?)",
            [model, dim, to_db_time(now)],
        )
    elif known != dim:
        raise VectorDimensionError(model, known, dim)
    db.execute(
        """
        INSERT INTO memory_vectors (version_id, model, dim, vector, created_at)
        SELECT unnest(from_json(?, '["VARCHAR"]')), ?, ?,
               unnest(from_json(?, '[["FLOAT"]]')), ?
        ON CONFLICT (version_id, model) DO UPDATE
            SET vector = excluded.vector, created_at = excluded.created_at
        """,
        [
            _json([version_id for version_id, _ in vectors]),
            model,
            dim,
            _json([vector.tolist() for _, vector in vectors]),
            to_db_time(now),
        ],
    )


@dataclass(frozen=True, slots=True)
class NewChunk:
    """A chunk memory to create: ids made by the caller, text, metadata as JSON text."""

    memory_id: str
    version_id: str
    text: str
    metadata_json: str


def insert_chunk_memories(
    db: Database, scope: str, chunks: Sequence[NewChunk], provenance: Provenance, now: datetime
) -> None:
    """``insert_memory`` + ``write_version`` for the first versions of many chunks at once.

    What those write for an ADD with no predecessor: version 1, valid from
    ``now``, the text's content hash, the provenance. Two statements for a
    whole file instead of three per chunk.
    """
    if not chunks:
        return
    moment = to_db_time(now)
    db.execute(
        f"INSERT INTO memories (id, kind, scope, created_at) SELECT {_UNNEST_TEXT}, ?, ?, ?",
        [_json([c.memory_id for c in chunks]), DOCUMENT_CHUNK, scope, moment],
    )
    db.execute(
        f"""
        INSERT INTO memory_versions (id, memory_id, version, op, text, metadata,
            content_hash, tombstone, restored_from, created_at, valid_from, valid_to,
            {PROVENANCE_COLUMNS})
        SELECT {_UNNEST_TEXT}, {_UNNEST_TEXT}, 1, 'add', {_UNNEST_TEXT}, {_UNNEST_TEXT}::JSON,
               {_UNNEST_TEXT}, false, NULL, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?
        """,
        [
            _json([c.version_id for c in chunks]),
            _json([c.memory_id for c in chunks]),
            _json([c.text for c in chunks]),
            _json([c.metadata_json for c in chunks]),
            _json([content_hash(c.text) for c in chunks]),
            moment,
            moment,
            *provenance.as_row(),
        ],
    )
