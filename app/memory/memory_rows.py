"""The rows of the long-term tier as frozen dataclasses, and how they are read.

A ``MemoryVersion``'s repr shows ids, numbers and sizes, never its text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.memory.db import from_db_time
from app.memory.provenance import PROVENANCE_COLUMNS, Provenance
from app.memory.settings import JsonValue


class ChangeOp(StrEnum):
    """What a write did, as told to change listeners.

    The first four are also the ``op`` of the version written; VECTOR means
    a vector was set on an existing version.
    """

    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"
    RESTORE = "restore"
    VECTOR = "vector"


@dataclass(frozen=True, slots=True, repr=False)
class MemoryVersion:
    """One version of a memory: what it said, who wrote it, when it held.

    ``valid_to`` is None while this is the memory's current version. A
    tombstone (``tombstone``) says the memory was deleted; its text is ''.
    """

    id: str
    memory_id: str
    version: int
    kind: str
    scope: str
    op: ChangeOp
    text: str
    metadata: dict[str, JsonValue]
    content_hash: str | None
    tombstone: bool
    restored_from: int | None
    provenance: Provenance
    created_at: datetime
    valid_from: datetime
    valid_to: datetime | None

    @property
    def is_current(self) -> bool:
        return self.valid_to is None

    def __repr__(self) -> str:
        state = "tombstone" if self.tombstone else f"chars={len(self.text)}"
        return (
            f"MemoryVersion(id={self.id!r}, memory_id={self.memory_id!r}, "
            f"version={self.version}, op={self.op.value!r}, scope={self.scope!r}, {state})"
        )


@dataclass(frozen=True, slots=True)
class RunRollback:
    """What ``rollback_run`` did.

    ``written``: the versions it wrote (restores and tombstones).
    ``skipped``: memories the run wrote whose latest version is someone
    else's (a later change, or an earlier rollback), left as they are.
    """

    written: tuple[MemoryVersion, ...]
    skipped: tuple[str, ...]


_PROVENANCE_SELECT = ", ".join(f"v.{name.strip()}" for name in PROVENANCE_COLUMNS.split(","))

VERSION_SELECT = f"""
    SELECT v.id, v.memory_id, v.version, m.kind, m.scope, v.op, v.text, v.metadata,
           v.content_hash, v.tombstone, v.restored_from, v.created_at, v.valid_from,
           v.valid_to, {_PROVENANCE_SELECT}
    FROM memory_versions v JOIN memories m ON m.id = v.memory_id
"""

# Which version held at a moment (two parameters: the moment, twice).
AS_OF = "v.valid_from <= ? AND (v.valid_to IS NULL OR v.valid_to > ?)"


def version_from(row: tuple[Any, ...]) -> MemoryVersion:
    """A ``MemoryVersion`` from a row of ``VERSION_SELECT``."""
    (vid, memory_id, version, kind, scope, op, text, metadata, chash, tombstone, restored) = row[
        :11
    ]
    created, valid_from, valid_to = row[11:14]
    agent_id, run_id, step_seq, tool, message_id, source_file, source_url = row[14:]
    return MemoryVersion(
        id=vid,
        memory_id=memory_id,
        version=int(version),
        kind=kind,
        scope=scope,
        op=ChangeOp(op),
        text=text,
        metadata=json.loads(metadata),
        content_hash=chash,
        tombstone=bool(tombstone),
        restored_from=None if restored is None else int(restored),
        provenance=Provenance(
            agent_id,
            run_id,
            None if step_seq is None else int(step_seq),
            tool,
            message_id,
            source_file,
            source_url,
        ),
        created_at=from_db_time(created),
        valid_from=from_db_time(valid_from),
        valid_to=None if valid_to is None else from_db_time(valid_to),
    )
