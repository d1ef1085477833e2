"""How memory versions are written and found: the mechanism under ``MemoryStore``.

Plain functions on a ``Database``, run inside the store's transaction. The
store decides what to write (policy); these write it and read it back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from app.memory.db import Database, to_db_time
from app.memory.errors import MemoryNotFoundError, MemoryVersionNotFoundError
from app.memory.memory_rows import AS_OF, VERSION_SELECT, ChangeOp, MemoryVersion, version_from
from app.memory.provenance import (
    PROVENANCE_COLUMNS,
    Provenance,
    check_kind,
    check_scope,
    content_hash,
)
from app.memory.settings import JsonValue
from app.memory.vectors import copy_vectors

Metadata = dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class Draft:
    """What a new version says: ``text`` None makes it a tombstone."""

    op: ChangeOp
    text: str | None
    metadata_json: str = "{}"
    restored_from: int | None = None


# -- reading -------------------------------------------------------------------
def fetch_version(db: Database, where: str, params: list[object]) -> MemoryVersion | None:
    """The first version matching ``where`` (on ``VERSION_SELECT``'s aliases), or None."""
    row = db.fetchone(f"{VERSION_SELECT} WHERE {where}", params)
    return None if row is None else version_from(row)


def latest_version(db: Database, memory_id: str) -> MemoryVersion:
    """The memory's current version, tombstone or not; ``MemoryNotFoundError`` if none."""
    found = fetch_version(db, "v.memory_id = ? AND v.valid_to IS NULL", [memory_id])
    if found is None:
        raise MemoryNotFoundError(memory_id)
    return found


def numbered_version(db: Database, memory_id: str, number: int) -> MemoryVersion:
    """Version ``number`` of the memory; ``MemoryVersionNotFoundError`` if none."""
    found = fetch_version(db, "v.memory_id = ? AND v.version = ?", [memory_id, number])
    if found is None:
        raise MemoryVersionNotFoundError(f"{number} of memory {memory_id}")
    return found


def all_versions(db: Database, memory_id: str) -> list[MemoryVersion]:
    """Every version of the memory, oldest first; ``MemoryNotFoundError`` if none."""
    rows = db.fetchall(f"{VERSION_SELECT} WHERE v.memory_id = ? ORDER BY v.version", [memory_id])
    if not rows:
        raise MemoryNotFoundError(memory_id)
    return [version_from(row) for row in rows]


def held_at(as_of: datetime | None) -> tuple[str, list[object]]:
    """The filter (and its parameters) for versions current now, or at ``as_of``."""
    if as_of is None:
        return "v.valid_to IS NULL", []
    return AS_OF, [to_db_time(as_of), to_db_time(as_of)]


def current_query(
    scope: str | Iterable[str] | None,
    kinds: Iterable[str] | None,
    as_of: datetime | None,
    limit: int | None,
) -> tuple[str, list[object]]:
    """SQL and parameters for live versions held at ``as_of``, newest change first."""
    when, params = held_at(as_of)
    where = [when, "NOT v.tombstone"]
    if scope is not None:
        scopes = [scope] if isinstance(scope, str) else list(scope)
        where.append(_in("m.scope", [check_scope(s) for s in scopes], params))
    if kinds is not None:
        where.append(_in("m.kind", [check_kind(k) for k in kinds], params))
    sql = f"{VERSION_SELECT} WHERE {' AND '.join(where)} ORDER BY v.valid_from DESC, v.id"
    return sql + _limit(limit), params


def missing_vectors_query(limit: int | None) -> str:
    """SQL for live current versions without a vector of one model (the parameter)."""
    return (
        f"{VERSION_SELECT} WHERE v.valid_to IS NULL AND NOT v.tombstone AND NOT EXISTS "
        "(SELECT 1 FROM memory_vectors x WHERE x.version_id = v.id AND x.model = ?) "
        "ORDER BY v.valid_from, v.id" + _limit(limit)
    )


# -- writing -------------------------------------------------------------------
def insert_memory(db: Database, kind: str, scope: str, now: datetime) -> str:
    """A new memory's row; returns its id."""
    memory_id = uuid.uuid4().hex
    db.execute(
        "INSERT INTO memories (id, kind, scope, created_at) VALUES (?, ?, ?, ?)",
        [memory_id, kind, scope, to_db_time(now)],
    )
    return memory_id


def write_version(
    db: Database,
    memory_id: str,
    latest: MemoryVersion | None,
    draft: Draft,
    *,
    provenance: Provenance,
    now: datetime,
) -> MemoryVersion:
    """Insert the memory's next version and close ``latest``; return what was written.

    ``valid_from`` never goes before ``latest``'s, even if the clock went back,
    so the versions' intervals tile time and ``as_of`` finds exactly one.
    """
    valid_from = now if latest is None else max(now, latest.valid_from)
    version_id = uuid.uuid4().hex
    db.execute(
        f"""
        INSERT INTO memory_versions (id, memory_id, version, op, text, metadata,
            content_hash, tombstone, restored_from, created_at, valid_from, valid_to,
            {PROVENANCE_COLUMNS})
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            version_id,
            memory_id,
            1 if latest is None else latest.version + 1,
            draft.op.value,
            draft.text or "",
            draft.metadata_json,
            None if draft.text is None else content_hash(draft.text),
            draft.text is None,
            draft.restored_from,
            to_db_time(now),
            to_db_time(valid_from),
            *provenance.as_row(),
        ],
    )
    if latest is not None:
        db.execute(
            "UPDATE memory_versions SET valid_to = ? WHERE id = ?",
            [to_db_time(valid_from), latest.id],
        )
    written = fetch_version(db, "v.id = ?", [version_id])
    assert written is not None  # inserted just above, in this transaction
    return written


def restore(
    db: Database,
    latest: MemoryVersion,
    target: MemoryVersion,
    provenance: Provenance,
    now: datetime,
) -> MemoryVersion:
    """Write a copy of ``target`` (its vectors too) as the memory's next version."""
    draft = Draft(
        ChangeOp.RESTORE,
        None if target.tombstone else target.text,
        metadata_json(target.metadata),
        restored_from=target.version,
    )
    written = write_version(db, latest.memory_id, latest, draft, provenance=provenance, now=now)
    copy_vectors(db, target.id, written.id, now)
    return written


def undo_trailing(
    db: Database,
    versions: list[MemoryVersion],
    run_id: str,
    provenance: Provenance,
    now: datetime,
) -> MemoryVersion | None:
    """Undo the run's last unbroken block of versions; None if that changes nothing.

    The state before the block comes back: the version before it, or a
    tombstone when the run created the memory. Earlier versions by the run,
    under someone else's later ones, stay: undoing them would undo the
    other writer's work too.
    """
    latest = versions[-1]
    start = _trailing_start(versions, run_id)
    before = [v for v in versions if v.version < start]
    base = before[-1] if before else None
    if latest.tombstone and (base is None or base.tombstone):
        return None
    if base is None:
        tombstone = Draft(ChangeOp.DELETE, None)
        return write_version(
            db, latest.memory_id, latest, tombstone, provenance=provenance, now=now
        )
    return restore(db, latest, base, provenance, now)


def metadata_json(metadata: Metadata) -> str:
    """JSON text of a metadata object; ``TypeError``/``ValueError`` for what JSON cannot hold."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    return json.dumps(metadata, allow_nan=False, ensure_ascii=False, sort_keys=True)


def _trailing_start(versions: list[MemoryVersion], run_id: str) -> int:
    """The number of the first version of the run's last unbroken block."""
    start = versions[-1].version
    for version in reversed(versions):
        if version.provenance.run_id != run_id:
            break
        start = version.version
    return start


def _in(column: str, values: list[str], params: list[object]) -> str:
    """``column IN (?, …)`` with ``values`` appended to ``params``; FALSE when empty."""
    params.extend(values)
    return f"{column} IN ({', '.join('?' for _ in values)})" if values else "FALSE"


def _limit(limit: int | None) -> str:
    if limit is None:
        return ""
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    return f" LIMIT {int(limit)}"
