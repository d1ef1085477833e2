"""What search filters need of each live memory, by slot, in RAM.

Memories have TEXT ids and the vector index takes int64 ones, so
``Catalog`` gives each memory a dense int *slot* for the life of the
process (kept across its versions and never reused, so a slot always names
the same memory), and keeps per slot the filter columns of its current
version as numpy arrays: scope, kind, agent, source file and source URL as
small integer codes (0 for NULL), and ``created_at`` in microseconds. A
filter then becomes one boolean mask by slot in a few vectorised steps:
the codes a test accepts are found among the *distinct* values, then
``np.isin`` over the column.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from app.memory.db import to_db_time
from app.memory.vectors import Vector

__all__ = [
    "CATALOG_SQL",
    "CODED",
    "VERSIONS_SQL",
    "Catalog",
    "CurrentRows",
    "SlotChange",
    "micros",
    "vector_objects",
]

BoolArray = npt.NDArray[np.bool_]
ColumnTests = Mapping[str, Callable[[str], bool]]

_SELECT = """
    SELECT v.memory_id, v.id AS version_id, m.scope, m.kind, v.agent_id, v.source_file,
           v.source_url, v.created_at{more}
    FROM memory_versions v JOIN memories m ON m.id = v.memory_id
"""
# Every live memory's current version, with what the filters need.
CATALOG_SQL = _SELECT.format(more="") + " WHERE v.valid_to IS NULL AND NOT v.tombstone"
# Versions by id, and whether each is its memory's current one and a tombstone. By the
# primary key alone: another condition in the WHERE clause makes DuckDB scan the
# table instead of using the key's index (~100 ms against ~3 ms at 100,000 versions).
VERSIONS_SQL = (
    _SELECT.format(more=", v.text, v.tombstone, v.valid_to IS NULL AS current")
    + " WHERE v.id IN (SELECT unnest(?::VARCHAR[]))"
)

CODED = ("scope", "kind", "agent_id", "source_file", "source_url")


class CurrentRows(NamedTuple):
    """Rows of ``CATALOG_SQL`` or ``VERSIONS_SQL`` as columns (``texts`` only from the latter)."""

    memory_ids: list[str]
    version_ids: list[str]
    coded: dict[str, list[str | None]]
    created_us: npt.NDArray[np.int64]
    texts: list[str]

    @classmethod
    def of(cls, columns: dict[str, npt.NDArray[Any]], keep: BoolArray | None = None) -> CurrentRows:
        """From ``Database.fetchnumpy`` (NULLs come masked); ``keep`` selects rows."""
        if keep is not None:
            columns = {name: column[keep] for name, column in columns.items()}
        created = np.asarray(columns["created_at"]).astype("datetime64[us]").astype(np.int64)
        return cls(
            columns["memory_id"].tolist(),
            columns["version_id"].tolist(),
            {name: columns[name].tolist() for name in CODED},
            created,
            columns["text"].tolist() if "text" in columns else [],
        )


def vector_objects(column: npt.NDArray[Any]) -> list[Vector | None]:
    """A vector column's arrays, None where NULL (``tolist`` would turn them into lists)."""
    masked = np.ma.getmaskarray(column)
    values = np.ma.getdata(column)
    return [None if null else value for value, null in zip(values, masked, strict=True)]


def micros(moment: datetime) -> int:
    """A timezone-aware moment as microseconds since the epoch, as the catalog keeps it."""
    return int(np.datetime64(to_db_time(moment), "us").astype(np.int64))


class _Codes:
    """The distinct values of one column, numbered from 1; 0 stands for NULL."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._values: list[str] = [""]

    def code(self, value: str | None) -> int:
        if value is None:
            return 0
        found = self._codes.get(value)
        if found is None:
            found = self._codes[value] = len(self._values)
            self._values.append(value)
        return found

    def where(self, test: Callable[[str], bool]) -> npt.NDArray[np.int32]:
        return np.array([i for i, v in enumerate(self._values) if i and test(v)], np.int32)


@dataclass(frozen=True, slots=True)
class SlotChange:
    """A memory's current version changed: ``new_version`` None when it is gone."""

    slot: int
    memory_id: str
    old_version: str | None
    new_version: str | None


class Catalog:
    """Slots for memories, and the filter columns of their current versions.

    Writes come from one thread at a time (the service's apply lock);
    lookups are plain dict and list reads, safe beside them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memory_ids: list[str] = []
        self._versions: list[str | None] = []
        self._slot_of: dict[str, int] = {}
        self._slot_of_version: dict[str, int] = {}
        self._codes = {name: _Codes() for name in CODED}
        self._columns = {name: np.zeros(0, np.int32) for name in CODED}
        self._created = np.zeros(0, np.int64)
        self._live = np.zeros(0, np.bool_)

    def __len__(self) -> int:
        """Live memories."""
        return int(np.count_nonzero(self._live[: len(self._memory_ids)]))

    def slot(self, memory_id: str) -> int | None:
        return self._slot_of.get(memory_id)

    def slot_of_version(self, version_id: str) -> int | None:
        """The slot whose memory's current version is ``version_id``."""
        return self._slot_of_version.get(version_id)

    def memory_id(self, slot: int) -> str:
        return self._memory_ids[slot]

    def version(self, slot: int) -> str | None:
        """The current version of the slot's memory; None when it is deleted."""
        return self._versions[slot] if 0 <= slot < len(self._versions) else None

    def current_version(self, memory_id: str) -> str | None:
        slot = self._slot_of.get(memory_id)
        return None if slot is None else self._versions[slot]

    def live_memories(self) -> dict[str, str]:
        """memory id -> current version id, of every live memory."""
        with self._lock:
            return {m: v for m, v in zip(self._memory_ids, self._versions, strict=True) if v}

    def put(self, rows: CurrentRows) -> list[SlotChange]:
        """Record these current versions; returns each memory's slot and version change."""
        changes = []
        with self._lock:
            self._reserve(len(self._memory_ids) + len(rows.memory_ids))
            for memory_id, version_id in zip(rows.memory_ids, rows.version_ids, strict=True):
                slot = self._slot_of.get(memory_id)
                if slot is None:
                    slot = self._slot_of[memory_id] = len(self._memory_ids)
                    self._versions.append(None)
                    self._memory_ids.append(memory_id)
                old = self._versions[slot]
                if old is not None and old != version_id:
                    self._slot_of_version.pop(old, None)
                self._versions[slot] = version_id
                self._slot_of_version[version_id] = slot
                changes.append(SlotChange(slot, memory_id, old, version_id))
            slots = np.fromiter((c.slot for c in changes), np.int64, len(changes))
            for name in CODED:
                code = self._codes[name].code
                self._columns[name][slots] = [code(value) for value in rows.coded[name]]
            self._created[slots] = rows.created_us
            self._live[slots] = True
        return changes

    def drop(self, memory_ids: Sequence[str]) -> list[SlotChange]:
        """Mark these memories deleted; returns those that were live."""
        changes = []
        with self._lock:
            for memory_id in memory_ids:
                slot = self._slot_of.get(memory_id)
                if slot is None or self._versions[slot] is None:
                    continue
                old = self._versions[slot]
                self._slot_of_version.pop(old or "", None)
                self._versions[slot] = None
                self._live[slot] = False
                changes.append(SlotChange(slot, memory_id, old, None))
        return changes

    def mask(
        self, tests: ColumnTests, created_from: datetime | None, created_before: datetime | None
    ) -> BoolArray:
        """Which slots pass every column test and time bound (live ones only), by slot.

        A NULL value never passes a test; ``created_before`` is exclusive.
        """
        with self._lock:
            n = len(self._memory_ids)
            mask = self._live[:n].copy()
            for name, test in tests.items():
                mask &= np.isin(self._columns[name][:n], self._codes[name].where(test))
            if created_from is not None:
                mask &= self._created[:n] >= micros(created_from)
            if created_before is not None:
                mask &= self._created[:n] < micros(created_before)
        return mask

    def _reserve(self, needed: int) -> None:
        capacity = len(self._live)
        if needed <= capacity:
            return
        size = max(needed, 2 * capacity, 1024)
        for name in CODED:
            self._columns[name] = _grown(self._columns[name], size)
        self._created = _grown(self._created, size)
        self._live = _grown(self._live, size)


def _grown(array: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    grown = np.zeros(size, array.dtype)
    grown[: len(array)] = array
    return grown
