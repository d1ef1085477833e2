"""Hybrid search over long-term memories: vectors in RAM and BM25, fused.

One query runs two searches over the *current* version of each live memory,
both restricted by the same filter, and fuses their rankings:

- vectors: the query's embedding against ``VectorIndex`` (exact float32, or
  a sign-sketch first pass with exact re-rank above 20,000 rows), the
  ``candidates`` (50) nearest;
- keywords: BM25 over the same texts (``KeywordSide``: DuckDB's fts), the
  ``candidates`` best;
- reciprocal rank fusion (``fusion``); the best ``k`` are then read back
  from DuckDB, so text and provenance are exactly what was stored.

Filters. Both indexes know memories by *slot* (``search_catalog``), and a
filter becomes one boolean mask by slot before either search runs, so
each side returns its best *allowed* hits rather than a top-N cut down
afterwards. Rows read back are checked against the filter once more
(``SearchFilter.accepts``), so a write landing during a search never lets
an excluded memory through.

Only current versions are searched; reads ``as_of`` a moment go through
``MemoryStore.current``.

Errors::

    StoreError
    └── SearchError
        ├── EmptyQueryError          the query has no text (also a ValueError)
        ├── SearchNotReadyError      the index was still loading when the wait ended
        └── SearchUnavailableError   loading failed, or the service is closed
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from app.memory.db import Database, to_db_time
from app.memory.errors import StoreError
from app.memory.fusion import DEFAULT_K, Fused, reciprocal_rank_fusion
from app.memory.memory_rows import VERSION_SELECT, MemoryVersion, version_from
from app.memory.provenance import Provenance, check_kind, check_scope
from app.memory.search_catalog import Catalog
from app.memory.settings import JsonValue
from app.memory.vector_index import VectorIndex
from app.memory.vectors import Vector

__all__ = [
    "DEFAULT_CANDIDATES",
    "EmptyQueryError",
    "HybridSearch",
    "SearchError",
    "SearchFilter",
    "SearchHit",
    "SearchNotReadyError",
    "SearchResult",
    "SearchUnavailableError",
]

DEFAULT_CANDIDATES = 50
BoolArray = npt.NDArray[np.bool_]
Hit = tuple[Any, float]


# -- errors ------------------------------------------------------------------------
class SearchError(StoreError):
    """A memory search could not run."""


class EmptyQueryError(SearchError, ValueError):
    """The query is empty or only whitespace: there is nothing to look for."""

    def __str__(self) -> str:
        return "Type something to search for: the query is empty."


class SearchNotReadyError(SearchError):
    """The index was still being loaded from the database when the wait ended."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(waited_s)
        self.waited_s = waited_s

    def __str__(self) -> str:
        return (
            f"Memory search is still loading after {self.waited_s:.0f} s. Nothing is "
            "lost; try again in a moment."
        )


class SearchUnavailableError(SearchError):
    """Search cannot run: the index failed to load, or the service was closed."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"Memory search is unavailable: {self.detail}. The memories themselves are "
            "safe in the office database; restart Soloist to load the index again."
        )


# -- values ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Which memories a search may return; None (the default) means any.

    ``created_from`` (inclusive) and ``created_before`` (exclusive) bound the
    current version's ``created_at`` and must be timezone-aware. The source
    filters are prefixes: a folder, or a site.
    """

    scopes: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    agent_id: str | None = None
    source_file_prefix: str | None = None
    source_url_prefix: str | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None

    def __post_init__(self) -> None:
        if self.scopes is not None:
            object.__setattr__(self, "scopes", tuple(check_scope(s) for s in self.scopes))
        if self.kinds is not None:
            object.__setattr__(self, "kinds", tuple(check_kind(k) for k in self.kinds))
        for moment in (self.created_from, self.created_before):
            if moment is not None:
                to_db_time(moment)  # ValueError for a naive datetime

    @property
    def is_empty(self) -> bool:
        return self == SearchFilter()

    def column_tests(self) -> dict[str, Callable[[str], bool]]:
        """Per coded column, the test a (non-NULL) value must pass; NULL never passes."""
        tests: dict[str, Callable[[str], bool]] = {}
        if self.scopes is not None:
            tests["scope"] = frozenset(self.scopes).__contains__
        if self.kinds is not None:
            tests["kind"] = frozenset(self.kinds).__contains__
        if self.agent_id is not None:
            tests["agent_id"] = self.agent_id.__eq__
        if self.source_file_prefix is not None:
            prefix_file = self.source_file_prefix
            tests["source_file"] = lambda value: value.startswith(prefix_file)
        if self.source_url_prefix is not None:
            prefix_url = self.source_url_prefix
            tests["source_url"] = lambda value: value.startswith(prefix_url)
        return tests

    def accepts(self, version: MemoryVersion) -> bool:
        """Whether ``version`` passes this filter (the same rules as the catalog's mask)."""
        values = {
            "scope": version.scope,
            "kind": version.kind,
            "agent_id": version.provenance.agent_id,
            "source_file": version.provenance.source_file,
            "source_url": version.provenance.source_url,
        }
        for name, test in self.column_tests().items():
            value = values[name]
            if value is None or not test(value):
                return False
        if self.created_from is not None and version.created_at < self.created_from:
            return False
        return self.created_before is None or version.created_at < self.created_before


@dataclass(frozen=True, slots=True, repr=False)
class SearchHit:
    """One memory found: its current version, fused score and where each side ranked it.

    ``vector_rank`` / ``keyword_rank`` count from 1 among the allowed
    memories; None when that side did not list it. The repr hides the text.
    """

    memory_id: str
    version_id: str
    text: str
    kind: str
    scope: str
    score: float
    vector_rank: int | None
    keyword_rank: int | None
    provenance: Provenance
    created_at: datetime
    metadata: dict[str, JsonValue] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"SearchHit(memory_id={self.memory_id!r}, score={self.score:.4f}, "
            f"vector_rank={self.vector_rank}, keyword_rank={self.keyword_rank}, "
            f"chars={len(self.text)})"
        )


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The hits, best first, and which sides answered (a side is skipped while it loads)."""

    hits: tuple[SearchHit, ...]
    vector_searched: bool
    keyword_searched: bool

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[SearchHit]:
        return iter(self.hits)

    def __getitem__(self, index: int) -> SearchHit:
        return self.hits[index]


# -- one query ---------------------------------------------------------------------------
class KeywordSearch(Protocol):
    """The keyword side: (version id, BM25) best first, or None while it cannot answer."""

    def search(self, query: str, k: int, allowed: Container[str] | None) -> list[Hit] | None: ...


class _AllowedVersions:
    """``version_id in allowed``: its memory's slot is allowed by the mask."""

    def __init__(self, mask: BoolArray, catalog: Catalog) -> None:
        self._mask = mask
        self._catalog = catalog

    def __contains__(self, version_id: object) -> bool:
        slot = self._catalog.slot_of_version(str(version_id))
        return slot is not None and slot < len(self._mask) and bool(self._mask[slot])


class HybridSearch:
    """Masks, the two searches, fusion, and the hits read back from DuckDB."""

    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        *,
        candidates: int = DEFAULT_CANDIDATES,
        rrf_k: int = DEFAULT_K,
    ) -> None:
        self._db = db
        self._catalog = catalog
        self._candidates = max(1, candidates)
        self._rrf_k = rrf_k

    def search(
        self,
        text: str,
        *,
        query_vector: Vector | None,
        vectors: VectorIndex | None,
        keywords: KeywordSearch | None,
        flt: SearchFilter,
        k: int,
    ) -> SearchResult:
        """The best ``k`` memories for ``text`` (and its embedding, when there is one)."""
        mask = None
        if not flt.is_empty:
            mask = self._catalog.mask(flt.column_tests(), flt.created_from, flt.created_before)
        ranked: dict[str, list[Hit]] = {}
        if query_vector is not None and vectors is not None:
            ranked["vector"] = vectors.search(query_vector, self._candidates, mask)
        found = None
        if keywords is not None:
            allowed = None if mask is None else _AllowedVersions(mask, self._catalog)
            found = keywords.search(text, self._candidates, allowed)
        if found is not None:
            slots = ((self._catalog.slot_of_version(vid), score) for vid, score in found)
            ranked["keyword"] = [(slot, score) for slot, score in slots if slot is not None]
        fused = reciprocal_rank_fusion(ranked, k=self._rrf_k)
        hits = self._read_back(fused, flt, k)
        return SearchResult(tuple(hits), "vector" in ranked, "keyword" in ranked)

    def _read_back(self, fused: list[Fused[Any]], flt: SearchFilter, k: int) -> list[SearchHit]:
        """The first ``k`` fused slots whose current version still passes ``flt``."""
        hits: list[SearchHit] = []
        start = 0
        while len(hits) < k and start < len(fused):
            batch = fused[start : start + 2 * k]
            start += len(batch)
            versions = {self._catalog.version(int(f.id)): f for f in batch}
            versions.pop(None, None)
            rows = self._db.fetchall(  # by key alone: see search_catalog.VERSIONS_SQL
                f"{VERSION_SELECT} WHERE v.id IN (SELECT unnest(?::VARCHAR[]))", [list(versions)]
            )
            read = {row[0]: version_from(row) for row in rows}
            for version_id, fused_hit in versions.items():
                version = read.get(version_id or "")
                if version is None or not version.is_current or version.tombstone:
                    continue  # changed since the catalog said so
                if flt.accepts(version):
                    hits.append(_hit(version, fused_hit))
        return hits[:k]


def _hit(version: MemoryVersion, fused: Fused[Any]) -> SearchHit:
    return SearchHit(
        memory_id=version.memory_id,
        version_id=version.id,
        text=version.text,
        kind=version.kind,
        scope=version.scope,
        score=fused.score,
        vector_rank=fused.ranks.get("vector"),
        keyword_rank=fused.ranks.get("keyword"),
        provenance=version.provenance,
        created_at=version.created_at,
        metadata=version.metadata,
    )
