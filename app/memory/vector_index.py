"""The vector index held in RAM: unit float32 vectors, searched exactly or in two passes.

DuckDB is the truth; this is a cache of its embeddings shaped for speed,
rebuilt from it at start (``build_from``) and kept in step with each write
(``add``, ``upsert``, ``remove``). Nothing here touches DuckDB.

Layout. Rows live in one preallocated ``float32`` matrix (``capacity x
dimension``), normalised on the way in so that a dot product is the cosine.
It grows by doubling; a removal moves the last row into the hole, so the
live rows are always ``[:n]`` and no search skips tombstones. ``ids`` is an
``int64`` array beside it and ``_rows`` the id -> row map.

Search. Below ``quantise_above`` rows (20,000) the search is exact: one
matrix-vector product and an ``argpartition``. Above it, a first pass over a
1-bit sketch of every row (the sign of each component after subtracting the
collection's mean: 384 dimensions -> six ``uint64`` words, 4.8 MB at
100,000 rows) ranks rows by Hamming distance, and the nearest
``max(k * rerank_factor, min_candidates)`` (1,000 for k = 10; whole
distance tiers, so ties are never cut arbitrarily) are re-ranked exactly in
float32. When one of the best ``k`` came from the farther half of those,
the set doubles, up to ``max_candidates``.

Why a sign sketch rather than int8: numpy has no fast int8 product (an
int8 pass measured 35-57 ms at 100,000 x 384, slower than the exact float32
scan at ~8 ms), while the sketch is scanned by ``bitwise_count`` in under a
millisecond. Measured recall@10 against exact search at 100,000 x 384 on
Gaussian mixtures: 1.000 where the tenth neighbour has cosine ~0.49, 0.999
at ~0.40; it falls to ~0.94 only when neighbours are barely apart from the
bulk (tenth ~0.29): ``exact=True`` or a larger ``min_candidates`` is the
escape hatch there. Subtracting the mean matters for real embeddings, which
share a large common direction: without it most bits would agree.

The sketch is stored word-major (``words x capacity``) so each pass reads
contiguous memory. Its centre is fixed when the sketch is built and
re-estimated (the sketch rebuilt) each time the collection doubles.

Filters. ``allowed`` is ``None``, a boolean mask indexed by *id* (``mask[id]``;
ids past its end are excluded), an integer array of ids, or any collection
of ids. Masks by id, not by row, because rows move on removal and callers
never see them. A filter that leaves few rows gathers them and searches
them exactly; a wide one masks the first pass.

Threads. Searches share a read lock and run in parallel (numpy releases the
GIL in the heavy loops); writes take the write lock, and a waiting writer
holds back new readers so it cannot starve. ``build_from`` prepares the new
arrays outside the lock and swaps them in, so searches go on meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_CANDIDATES",
    "MIN_CANDIDATES",
    "QUANTISE_ABOVE",
    "RERANK_FACTOR",
    "Allowed",
    "Hit",
    "VectorIndex",
    "stack_vectors",
]

log = logging.getLogger("soloist.memory.vectors")

Matrix = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
RowArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
Sketch = npt.NDArray[np.uint64]
Allowed = npt.NDArray[Any] | Collection[int] | None
Hit = tuple[int, float]

QUANTISE_ABOVE = 20_000  # rows; below it exact search costs ~1.5 ms anyway
RERANK_FACTOR = 40  # re-rank k * 40 candidates exactly ...
MIN_CANDIDATES = 1_000  # ... and never fewer than this
MAX_CANDIDATES = 16_000  # the most an uncertain query re-ranks (~5 ms at 384 dimensions)
_MIN_CAPACITY = 1_024
_SKETCH_CHUNK = 16_384  # rows per step when sketching, to bound temporaries
_GATHER_SHARE = 16  # a filter leaving <= n / 16 rows is searched by gathering them
_MAX_DIMENSION = 65_535  # Hamming distances are counted in uint16


class VectorIndex:
    """Unit vectors by ``int64`` id, searched by cosine similarity."""

    def __init__(
        self,
        dimension: int,
        *,
        quantise_above: int = QUANTISE_ABOVE,
        rerank_factor: int = RERANK_FACTOR,
        min_candidates: int = MIN_CANDIDATES,
        max_candidates: int = MAX_CANDIDATES,
    ) -> None:
        if not 0 < dimension < _MAX_DIMENSION:
            raise ValueError(f"dimension must be between 1 and {_MAX_DIMENSION - 1}")
        self._dim = dimension
        self._quantise_above = quantise_above
        self._rerank_factor = max(1, rerank_factor)
        self._min_candidates = max(1, min_candidates)
        self._max_candidates = max(self._min_candidates, max_candidates)
        self._words = (dimension + 63) // 64
        self._lock = _ReadWriteLock()
        self._n = 0
        self._matrix: Matrix = np.zeros((0, dimension), np.float32)
        self._ids: IdArray = np.zeros(0, np.int64)
        self._rows: dict[int, int] = {}
        self._sketch: Sketch | None = None  # words x capacity, once quantised
        self._centre: Matrix | None = None
        self._centred_at = 0

    # -- reading -----------------------------------------------------------
    @property
    def dimension(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self._n

    def __contains__(self, item: object) -> bool:
        return item in self._rows

    @property
    def quantised(self) -> bool:
        """Whether a search without ``exact`` takes the two-pass route now."""
        return self._sketch is not None and self._n >= self._quantise_above

    @property
    def memory_bytes(self) -> int:
        """RAM held by the arrays (capacity, not only the live rows)."""
        sketch = 0 if self._sketch is None else self._sketch.nbytes
        return self._matrix.nbytes + self._ids.nbytes + sketch

    def ids(self) -> IdArray:
        """A copy of the ids, in row order."""
        with self._lock.reading():
            return self._ids[: self._n].copy()

    def vector(self, item_id: int) -> Matrix:
        """A copy of the stored (normalised) vector of ``item_id``; KeyError if absent."""
        with self._lock.reading():
            row = self._rows[item_id]
            found: Matrix = self._matrix[row].copy()
            return found

    def search(
        self, query: npt.ArrayLike, k: int = 10, allowed: Allowed = None, *, exact: bool = False
    ) -> list[Hit]:
        """The ``k`` nearest ids to ``query`` with their cosine, best first.

        ``exact`` forces the float32 scan over every candidate row (the
        reference the quantised pass is measured against).
        """
        q = _unit_query(query, self._dim)
        if k < 1:
            return []
        with self._lock.reading():
            n = self._n
            if n == 0:
                return []
            rows, mask = self._filter(allowed, n, self._candidates(k))
            if rows is not None:
                return self._exact_rows(q, rows, k)
            if exact or not self.quantised:
                return self._exact_all(q, n, k, mask)
            return self._two_pass(q, n, k, mask)

    # -- writing -----------------------------------------------------------
    def add(self, item_id: int, vector: npt.ArrayLike) -> None:
        """Add one vector; ValueError if ``item_id`` is already there (use ``upsert``)."""
        self.add_many(np.array([item_id], np.int64), np.asarray(vector)[None, :])

    def upsert(self, item_id: int, vector: npt.ArrayLike) -> None:
        """Add ``item_id``, or replace its vector."""
        self.upsert_many(np.array([item_id], np.int64), np.asarray(vector)[None, :])

    def add_many(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add new vectors; ValueError (and nothing added) if any id is present."""
        id_array, unit = self._prepared(ids, vectors)
        with self._lock.writing():
            present = [i for i in id_array.tolist() if i in self._rows]
            if present:
                raise ValueError(f"{len(present)} ids are already in the index, e.g. {present[0]}")
            self._append(id_array, unit)

    def upsert_many(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add the new ids and overwrite the vectors of those already present."""
        id_array, unit = self._prepared(ids, vectors)
        with self._lock.writing():
            rows = np.fromiter((self._rows.get(i, -1) for i in id_array.tolist()), np.intp)
            old = rows >= 0
            if old.any():
                self._overwrite(rows[old], unit[old])
            if not old.all():
                self._append(id_array[~old], unit[~old])

    def remove(self, item_id: int) -> bool:
        """Remove ``item_id``; False when it was not there."""
        with self._lock.writing():
            row = self._rows.pop(item_id, None)
            if row is None:
                return False
            last = self._n - 1
            if row != last:
                self._move_row(last, row)
            self._n = last
            return True

    def clear(self) -> None:
        """Drop every vector (keeps the settings)."""
        self.build_from(np.zeros(0, np.int64), np.zeros((0, self._dim), np.float32))

    def build_from(self, ids: npt.ArrayLike, matrix: npt.ArrayLike) -> None:
        """Replace the whole contents with ``ids`` and their vectors (a bulk load).

        The arrays are prepared outside the lock, so searches keep answering
        from the old contents until the swap.
        """
        started = time.perf_counter()
        id_array = _id_array(ids)
        raw = _matrix_of(matrix, self._dim, len(id_array))
        n = len(id_array)
        capacity = max(_MIN_CAPACITY, n + n // 8)
        new_matrix = np.zeros((capacity, self._dim), np.float32)  # calloc: untouched rows are free
        new_matrix[:n] = raw
        _normalise(new_matrix[:n])
        new_ids = np.zeros(capacity, np.int64)
        new_ids[:n] = id_array
        rows = dict(zip(id_array.tolist(), range(n), strict=True))
        sketch, centre = self._new_sketch(new_matrix, n, capacity)
        with self._lock.writing():
            self._matrix, self._ids, self._rows, self._n = new_matrix, new_ids, rows, n
            self._sketch, self._centre = sketch, centre
            self._centred_at = n if sketch is not None else 0
        elapsed = (time.perf_counter() - started) * 1000
        log.info("vector index loaded: %d x %d in %.0f ms", n, self._dim, elapsed)

    # -- search, mechanism -------------------------------------------------
    def _candidates(self, k: int) -> int:
        return max(k * self._rerank_factor, self._min_candidates)

    def _filter(
        self, allowed: Allowed, n: int, candidates: int
    ) -> tuple[RowArray | None, BoolArray | None]:
        """(rows to gather, None) for a narrow filter, (None, row mask) for a wide one."""
        if allowed is None:
            return None, None
        gather_limit = max(candidates, n // _GATHER_SHARE)
        if not isinstance(allowed, np.ndarray) and len(allowed) <= gather_limit:
            return self._rows_of(allowed), None
        mask = self._row_mask(allowed, n)
        if int(np.count_nonzero(mask)) <= gather_limit:
            return np.flatnonzero(mask), None
        return None, mask

    def _rows_of(self, allowed: Collection[int]) -> RowArray:
        rows = self._rows
        return np.unique(np.fromiter((rows[i] for i in allowed if i in rows), np.intp))

    def _row_mask(self, allowed: npt.NDArray[Any] | Collection[int], n: int) -> BoolArray:
        ids = self._ids[:n]
        if isinstance(allowed, np.ndarray) and allowed.dtype == np.bool_:
            inside = (ids >= 0) & (ids < len(allowed))
            mask = np.zeros(n, np.bool_)
            mask[inside] = allowed[ids[inside]]
            return mask
        wanted = np.fromiter(allowed, np.int64) if not isinstance(allowed, np.ndarray) else allowed
        return np.isin(ids, wanted.astype(np.int64, copy=False))

    def _exact_rows(self, q: Matrix, rows: RowArray, k: int) -> list[Hit]:
        if len(rows) == 0:
            return []
        scores = _dot(self._matrix[rows], q)
        return self._top(scores, rows, k)

    def _exact_all(self, q: Matrix, n: int, k: int, mask: BoolArray | None) -> list[Hit]:
        scores = _dot(self._matrix[:n], q)
        if mask is not None:
            scores[~mask] = -np.inf
        return self._top(scores, None, k, drop_excluded=mask is not None)

    def _two_pass(self, q: Matrix, n: int, k: int, mask: BoolArray | None) -> list[Hit]:
        """Rank rows by Hamming distance, re-rank the nearest tiers exactly.

        Rows are taken by whole tiers (every row at a distance), nearest
        first, until ``candidates(k)`` are in. While one of the best ``k``
        came from the farther half of them, the rows beyond probably hold
        more: the set is doubled, up to ``max_candidates``.
        """
        assert self._sketch is not None and self._centre is not None
        distances = _hamming(self._sketch, _sketch_rows(q[None, :] - self._centre)[:, 0], n)
        bits = self._words * 64
        if mask is not None:
            distances[~mask] = bits + 1  # beyond every tier taken below
        cumulative = np.cumsum(np.bincount(distances, minlength=bits + 2))
        wanted = self._candidates(k)
        tier = min(int(np.searchsorted(cumulative, wanted)), bits)
        rows = np.flatnonzero(distances <= tier)
        scores = _dot(self._matrix[rows], q)
        while tier < bits and len(rows) < self._max_candidates and len(scores) > k:
            best = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
            nearer_half = int(np.searchsorted(cumulative, len(rows) // 2))
            if distances[rows[best]].max() <= nearer_half:
                break
            farther = min(int(np.searchsorted(cumulative, 2 * len(rows))), bits)
            more = np.flatnonzero((distances > tier) & (distances <= farther))
            rows = np.concatenate([rows, more])
            scores = np.concatenate([scores, _dot(self._matrix[more], q)])
            tier = farther
        return self._top(scores, rows, k)

    def _top(
        self, scores: Matrix, rows: RowArray | None, k: int, *, drop_excluded: bool = False
    ) -> list[Hit]:
        """The best ``k`` of ``scores`` (over ``rows``, or rows 0..n-1), sorted."""
        if k < len(scores):
            best = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
        else:
            best = np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        if drop_excluded:
            best = best[np.isfinite(scores[best])]
        picked = best if rows is None else rows[best]
        return list(zip(self._ids[picked].tolist(), scores[best].tolist(), strict=True))

    # -- writing, mechanism (under the write lock) --------------------------
    def _prepared(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> tuple[IdArray, Matrix]:
        id_array = _id_array(ids)
        unit = np.array(_matrix_of(vectors, self._dim, len(id_array)), np.float32, copy=True)
        _normalise(unit)
        return id_array, unit

    def _append(self, ids: IdArray, unit: Matrix) -> None:
        start, end = self._n, self._n + len(ids)
        self._reserve(end)
        self._matrix[start:end] = unit
        self._ids[start:end] = ids
        self._rows.update(zip(ids.tolist(), range(start, end), strict=True))
        self._n = end
        if self._sketch is not None and self._centre is not None:
            self._sketch[:, start:end] = _sketch_rows(unit - self._centre)
        if end >= self._quantise_above and (self._sketch is None or end >= 2 * self._centred_at):
            self._resketch()

    def _overwrite(self, rows: RowArray, unit: Matrix) -> None:
        self._matrix[rows] = unit
        if self._sketch is not None and self._centre is not None:
            self._sketch[:, rows] = _sketch_rows(unit - self._centre)

    def _move_row(self, source: int, target: int) -> None:
        self._matrix[target] = self._matrix[source]
        moved = int(self._ids[source])
        self._ids[target] = moved
        self._rows[moved] = target
        if self._sketch is not None:
            self._sketch[:, target] = self._sketch[:, source]

    def _reserve(self, needed: int) -> None:
        capacity = len(self._ids)
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity, _MIN_CAPACITY)
        matrix = np.zeros((new_capacity, self._dim), np.float32)
        matrix[: self._n] = self._matrix[: self._n]
        ids = np.zeros(new_capacity, np.int64)
        ids[: self._n] = self._ids[: self._n]
        self._matrix, self._ids = matrix, ids
        if self._sketch is not None:
            sketch = np.zeros((self._words, new_capacity), np.uint64)
            sketch[:, : self._n] = self._sketch[:, : self._n]
            self._sketch = sketch
        log.debug("vector index grown to %d rows", new_capacity)

    def _resketch(self) -> None:
        """Re-estimate the centre and sketch every row again (each doubling)."""
        started = time.perf_counter()
        self._sketch, self._centre = self._new_sketch(self._matrix, self._n, len(self._ids))
        self._centred_at = self._n
        elapsed = (time.perf_counter() - started) * 1000
        log.info("vector index sketched: %d rows in %.0f ms", self._n, elapsed)

    def _new_sketch(
        self, matrix: Matrix, n: int, capacity: int
    ) -> tuple[Sketch | None, Matrix | None]:
        if n < self._quantise_above or n == 0:
            return None, None
        centre = matrix[:n].mean(axis=0, dtype=np.float64).astype(np.float32)
        sketch = np.zeros((self._words, capacity), np.uint64)
        for start in range(0, n, _SKETCH_CHUNK):
            end = min(n, start + _SKETCH_CHUNK)
            sketch[:, start:end] = _sketch_rows(matrix[start:end] - centre)
        return sketch, centre

    def __repr__(self) -> str:
        mode = "quantised" if self.quantised else "exact"
        return f"VectorIndex({self._n} x {self._dim}, {mode})"


# -- pure helpers ---------------------------------------------------------
def stack_vectors(column: npt.NDArray[Any], dimension: int) -> Matrix:
    """DuckDB's ``fetchnumpy()`` of a ``FLOAT[dimension]`` column (an object array
    of arrays) as one ``rows x dimension`` float32 matrix."""
    matrix = np.empty((len(column), dimension), np.float32)
    if len(column):
        np.stack(list(column), axis=0, out=matrix)
    return matrix


def _dot(rows: Matrix, q: Matrix) -> Matrix:
    """``rows @ q`` on the calling thread alone.

    ``@`` goes to BLAS, whose worker threads spin while they wait: on two
    cores shared with llama.cpp (or the busy CI machine) a 5,000-row product
    measured 12 ms through two-thread OpenBLAS and 0.5 ms here; at 100,000
    rows, where memory bandwidth is the limit, the two are the same.
    """
    scores: Matrix = np.einsum("ij,j->i", rows, q)
    return scores


def _id_array(ids: npt.ArrayLike) -> IdArray:
    """``ids`` as a flat ``int64`` array; ValueError if one repeats."""
    id_array = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(np.unique(id_array)) != len(id_array):
        raise ValueError("the same id appears twice in one batch")
    return id_array


def _matrix_of(vectors: npt.ArrayLike, dimension: int, rows: int) -> Matrix:
    """``vectors`` as a ``rows x dimension`` float32 matrix (not copied when it is one)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != dimension:
        raise ValueError(f"expected vectors of dimension {dimension}, got shape {matrix.shape}")
    if len(matrix) != rows:
        raise ValueError(f"{rows} ids for {len(matrix)} vectors")
    return matrix


def _normalise(rows: Matrix) -> None:
    """Scale each row to length one in place; ValueError for a zero or non-finite row."""
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    bad = ~np.isfinite(norms) | (norms == 0)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} vectors are zero or not finite")
    rows /= norms[:, None]


def _unit_query(query: npt.ArrayLike, dimension: int) -> Matrix:
    q = np.array(query, dtype=np.float32, copy=True).reshape(-1)
    if q.shape[0] != dimension:
        raise ValueError(f"expected a query of dimension {dimension}, got {q.shape[0]}")
    _normalise(q[None, :])
    return q


def _sketch_rows(centred: Matrix) -> Sketch:
    """Sign bits of each row, packed: ``words x rows`` of ``uint64``."""
    bits = np.packbits(centred > 0, axis=1, bitorder="little")
    words = (centred.shape[1] + 63) // 64
    padded = np.zeros((len(centred), words * 8), np.uint8)
    padded[:, : bits.shape[1]] = bits
    return np.ascontiguousarray(padded.view(np.uint64).T)


def _hamming(sketch: Sketch, query_words: Sketch, n: int) -> npt.NDArray[np.uint16]:
    """Hamming distance from ``query_words`` to each of the first ``n`` sketched rows."""
    distances = np.zeros(n, np.uint16)
    scratch = np.empty(n, np.uint64)
    counts = np.empty(n, np.uint8)
    for word in range(sketch.shape[0]):
        np.bitwise_xor(sketch[word, :n], query_words[word], out=scratch)
        np.bitwise_count(scratch, out=counts)
        np.add(distances, counts, out=distances)
    return distances


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers.

    Not re-entrant: a method holding it must not call another that takes it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
