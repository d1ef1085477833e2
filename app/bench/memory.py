"""Scenarios 9-11: the memory tier's search, on synthetic data in a DuckDB file.

9. vector top-10 through the in-RAM index (binary first pass + exact re-rank):
   p50/p95 ms and recall@10 against exact search; numpy exact and DuckDB's own
   brute force (``array_cosine_distance`` ORDER BY LIMIT 10) beside it
10. rebuilding the index from the DuckDB table (read + load), seconds
11. a hybrid query: vector top-50 + BM25 top-50 (DuckDB fts) fused by RRF, p95 ms

The corpus (made once per run, shared by the three) is seeded and not easy
for a quantiser: unit vectors from a Gaussian mixture (a cluster per ~100
rows, noise as large as the cluster centre, plus a direction every vector
shares, as real embeddings have), so a query's tenth neighbour has cosine
~0.5 and the next ones are close behind. Each row also has text: eight
words of its cluster's topic among background words drawn from a Zipf law
shifted by 50 ranks (English after stop-word removal: the commonest word is
in a few percent of the documents). Queries are fresh draws of the same
mixture, with two topic words and one background word.

No model is needed. ``--quick`` uses 5,000 rows and lowers the quantising
threshold so that the same two-pass code runs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import numpy.typing as npt

from app.bench.report import ScenarioResult
from app.bench.runs import percentiles
from app.bench.session import Bench
from app.memory import fts
from app.memory.errors import QueryError
from app.memory.fusion import reciprocal_rank_fusion
from app.memory.vector_index import QUANTISE_ABOVE, VectorIndex, stack_vectors

RECALL_TARGET = 0.98
TABLE = "bench_memories"
_SEED = 20_240_905
_SYLLABLES = (
    *("ba", "ke", "lo", "mi", "nu", "ra", "se", "ti", "vo", "zu", "dan", "per", "kol", "mar"),
    *("sten", "gri", "fal", "ohm", "qua", "wix", "jor", "pel", "tru", "van", "dek", "sil", "hum"),
)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MemorySizes:
    rows: int = 100_000
    dimension: int = 384
    rows_per_cluster: int = 100
    noise: float = 1.2  # |noise| / |cluster centre|
    shared: float = 0.5  # |shared direction| / |cluster centre|
    queries: int = 300
    duckdb_queries: int = 10  # DuckDB's brute force is slow: fewer of them
    rebuilds: int = 3
    hybrid_depth: int = 50  # hits taken from each side before fusing
    pending_writes: int = 500  # unindexed writes the keyword search scans in RAM
    quantise_above: int = QUANTISE_ABOVE
    vocabulary: int = 20_000
    words_per_doc: int = 24


FULL = MemorySizes()
QUICK = MemorySizes(
    rows=5_000,
    queries=40,
    duckdb_queries=3,
    rebuilds=1,
    pending_writes=50,
    quantise_above=2_000,
    vocabulary=3_000,
)


def sizes_of(bench: Bench) -> MemorySizes:
    return QUICK if bench.workload.options.quick else FULL


class BenchSql:
    """``app.memory.fts``'s runner over the bench's own connection, with ``fetchnumpy``.

    The office's ``Database`` has no ``fetchnumpy`` yet; without it the
    keyword index would load its postings as tuples.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        try:
            self._conn.execute(sql, list(params))
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, list(params)).fetchall()
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc

    def fetchnumpy(self, sql: str, params: Sequence[object] = ()) -> dict[str, Any]:
        try:
            return dict(self._conn.execute(sql, list(params)).fetchnumpy())
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc


# -- the corpus ------------------------------------------------------------------
@dataclass
class Corpus:
    """The synthetic memories in a DuckDB file, with queries, made once per run."""

    sizes: MemorySizes
    folder: tempfile.TemporaryDirectory[str]
    conn: duckdb.DuckDBPyConnection
    sql: BenchSql  # the same connection, for app.memory.fts
    ids: npt.NDArray[np.int64]
    queries: npt.NDArray[np.float32]
    query_texts: list[str]
    setup_s: dict[str, float]
    index: VectorIndex | None = None
    keywords: fts.KeywordIndex | None = None


def corpus(bench: Bench) -> Corpus:
    cached = bench.cache.get("memory_corpus")
    if cached is None:
        cached = _make_corpus(bench)
        bench.cache["memory_corpus"] = cached
    assert isinstance(cached, Corpus)
    return cached


def _make_corpus(bench: Bench) -> Corpus:
    sizes = sizes_of(bench)
    rng = np.random.default_rng(_SEED)
    setup: dict[str, float] = {}
    started = time.perf_counter()
    clusters = max(1, sizes.rows // sizes.rows_per_cluster)
    centres = rng.standard_normal((clusters, sizes.dimension), dtype=np.float32)
    shared = rng.standard_normal(sizes.dimension, dtype=np.float32)
    shared *= sizes.shared * np.sqrt(sizes.dimension) / np.linalg.norm(shared)
    labels = rng.integers(0, clusters, sizes.rows)
    vectors = _mixture(rng, centres, shared, labels, sizes.noise)
    query_labels = rng.integers(0, clusters, sizes.queries)
    queries = _mixture(rng, centres, shared, query_labels, sizes.noise)
    words = _vocabulary(rng, sizes.vocabulary)
    topics = rng.integers(sizes.vocabulary // 20, sizes.vocabulary, (clusters, 8))
    texts = _texts(rng, words, topics, labels, sizes)
    query_texts = _query_texts(rng, words, topics, query_labels, sizes.vocabulary)
    setup["generate_s"] = time.perf_counter() - started
    bench.progress(f"  memory corpus: {sizes.rows} x {sizes.dimension} generated")
    folder = tempfile.TemporaryDirectory(prefix="soloist-bench-memory-")
    path = Path(folder.name) / "memories.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET autoload_known_extensions = false")
    ids = (np.arange(sizes.rows, dtype=np.int64) * 7) + 1_000  # not row numbers
    started = time.perf_counter()
    _store(conn, ids, vectors, texts, sizes.dimension)
    setup["store_s"] = time.perf_counter() - started
    bench.progress(f"  memory corpus: stored in DuckDB in {setup['store_s']:.1f} s")
    return Corpus(sizes, folder, conn, BenchSql(conn), ids, queries, query_texts, setup)


def _mixture(
    rng: np.random.Generator,
    centres: npt.NDArray[np.float32],
    shared: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    noise: float,
) -> npt.NDArray[np.float32]:
    rows = centres[labels] + shared
    rows += noise * rng.standard_normal(rows.shape, dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        parts = rng.choice(_SYLLABLES, size=(size, 4))
        lengths = rng.integers(2, 5, size)
        words.update("".join(p[:n]) for p, n in zip(parts, lengths, strict=True))
    return sorted(words)[:size]


def _texts(
    rng: np.random.Generator,
    words: list[str],
    topics: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    sizes: MemorySizes,
) -> list[str]:
    background = _zipf(rng, sizes.vocabulary, (len(labels), sizes.words_per_doc - 8))
    topical = topics[labels][np.arange(len(labels))[:, None], rng.integers(0, 8, (len(labels), 8))]
    picked = np.concatenate([background, topical], axis=1)
    vocab = np.array(words, dtype=object)
    return [" ".join(row) for row in vocab[picked].tolist()]


def _query_texts(
    rng: np.random.Generator,
    words: list[str],
    topics: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    vocabulary: int,
) -> list[str]:
    background = _zipf(rng, vocabulary, (len(labels),))
    return [
        f"{words[topics[label][0]]} {words[topics[label][1]]} {words[extra]}"
        for label, extra in zip(labels.tolist(), background.tolist(), strict=True)
    ]


def _zipf(rng: np.random.Generator, vocabulary: int, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    weights = 1.0 / (np.arange(vocabulary) + 50.0)
    return rng.choice(vocabulary, size=shape, p=weights / weights.sum())


def _store(
    conn: duckdb.DuckDBPyConnection,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    texts: list[str],
    dimension: int,
) -> None:
    """One row per memory: id, text, FLOAT[dimension], built in SQL from flat numpy."""
    rows, dim = vectors.shape
    conn.execute(
        f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, body VARCHAR, vec FLOAT[{dimension}])"
    )
    flat = {
        "r": np.repeat(np.arange(rows, dtype=np.int64), dim),
        "j": np.tile(np.arange(dim, dtype=np.int16), rows),
        "x": vectors.reshape(-1),
    }
    meta = {"r": np.arange(rows, dtype=np.int64), "id": ids, "body": np.array(texts, object)}
    conn.register("bench_flat", flat)
    conn.register("bench_meta", meta)
    conn.execute(
        f"""INSERT INTO {TABLE}
        SELECT m.id, m.body, v.vec FROM bench_meta AS m JOIN (
            SELECT r, list(x ORDER BY j)::FLOAT[{dimension}] AS vec FROM bench_flat GROUP BY r
        ) AS v ON v.r = m.r ORDER BY m.r"""
    )
    conn.unregister("bench_flat")
    conn.unregister("bench_meta")
    conn.execute("CHECKPOINT")


# -- reading the index back from DuckDB -------------------------------------------------
def rebuild_index(c: Corpus) -> tuple[VectorIndex, float, float]:
    """Read every vector from DuckDB and load a new index: it, read seconds, load seconds."""
    started = time.perf_counter()
    columns = c.conn.execute(f"SELECT id, vec FROM {TABLE}").fetchnumpy()
    matrix = stack_vectors(columns["vec"], c.sizes.dimension)
    read_s = time.perf_counter() - started
    index = VectorIndex(c.sizes.dimension, quantise_above=c.sizes.quantise_above)
    started = time.perf_counter()
    index.build_from(np.asarray(columns["id"], np.int64), matrix)
    return index, read_s, time.perf_counter() - started


def vector_index(bench: Bench) -> VectorIndex:
    c = corpus(bench)
    if c.index is None:
        c.index, _, _ = rebuild_index(c)
    return c.index


# -- scenario 9 -----------------------------------------------------------------------
def vector_search(bench: Bench) -> ScenarioResult:
    """9: top-10 through the index vs numpy exact vs DuckDB brute force."""
    c = corpus(bench)
    index = vector_index(bench)
    fast_ms, exact_ms, recalls = [], [], []
    for query in c.queries:
        hits, took = _timed(partial(index.search, query, 10))
        fast_ms.append(took)
        reference, took = _timed(partial(index.search, query, 10, exact=True))
        exact_ms.append(took)
        recalls.append(_overlap(hits, reference))
    recall = float(np.mean(recalls))
    duck_ms, duck_recalls = _duckdb_brute_force(c, index)
    fast, exact, duck = percentiles(fast_ms), percentiles(exact_ms), percentiles(duck_ms)
    recall_ok = recall >= RECALL_TARGET
    notes = [
        f"p50 {fast['p50']:.2f} ms, p95 {fast['p95']:.2f} ms, recall@10 {recall:.4f} "
        f"(needs >= {RECALL_TARGET}); numpy exact p50 {exact['p50']:.1f} ms; DuckDB "
        f"array_cosine_distance ORDER BY LIMIT 10 p50 {duck['p50']:.0f} ms",
    ]
    if not recall_ok:
        notes.append(f"MISS because recall@10 {recall:.4f} < {RECALL_TARGET}, whatever the speed")
    return ScenarioResult(
        9,
        f"vector top-10, {len(index)} x {c.sizes.dimension}",
        f"p50 {fast['p50']:.2f} / p95 {fast['p95']:.2f} ms, recall {recall:.3f}",
        f"numpy exact {exact['p50']:.1f} ms; DuckDB {duck['p50']:.0f} ms",
        fast["p95"],
        f"p95 {fast['p95']:.2f} ms",
        {
            "measure": (
                "wall time of VectorIndex.search(query, 10) per query (binary first pass, "
                "exact float32 re-rank); recall@10 against the exact float32 scan of the same "
                "index; DuckDB brute force over the same table for comparison"
            ),
            "rows": len(index),
            "dimension": c.sizes.dimension,
            "quantised": index.quantised,
            "recall_at_10": recall,
            "recall_target": RECALL_TARGET,
            "recall_met": recall_ok,
            "index_ms": fast,
            "numpy_exact_ms": exact,
            "duckdb_brute_force_ms": duck,
            "duckdb_recall_at_10": float(np.mean(duck_recalls)) if duck_recalls else None,
            "index_memory_mb": index.memory_bytes / 1e6,
            "sizes": asdict(c.sizes),
            "setup_s": c.setup_s,
        },
        tuple(notes),
        conditions=((f"recall@10 >= {RECALL_TARGET}", recall_ok),),
    )


def _duckdb_brute_force(c: Corpus, index: VectorIndex) -> tuple[list[float], list[float]]:
    sql = (
        f"SELECT id FROM {TABLE} ORDER BY array_cosine_distance(vec, ?::FLOAT[{c.sizes.dimension}])"
        " LIMIT 10"
    )
    times, recalls = [], []
    for query in c.queries[: c.sizes.duckdb_queries]:
        rows, took = _timed(partial(_fetch, c.conn, sql, [query.tolist()]))
        times.append(took)
        recalls.append(_overlap([(r[0], 0.0) for r in rows], index.search(query, 10, exact=True)))
    return times, recalls


# -- scenario 10 ------------------------------------------------------------------------
def index_rebuild(bench: Bench) -> ScenarioResult:
    """10: seconds to read the vectors back from DuckDB and load a fresh index."""
    c = corpus(bench)
    runs = []
    for _ in range(c.sizes.rebuilds):
        index, read_s, load_s = rebuild_index(c)
        runs.append({"read_s": read_s, "load_s": load_s, "total_s": read_s + load_s})
        c.index = index
    totals = sorted(run["total_s"] for run in runs)
    middle = runs[[run["total_s"] for run in runs].index(totals[len(totals) // 2])]
    note = (
        f"median of {len(runs)}: DuckDB read {middle['read_s']:.2f} s (SELECT id, vec; "
        f"fetchnumpy; stack) + index load {middle['load_s']:.2f} s (normalise, id map, "
        f"sketch); slowest {totals[-1]:.2f} s"
    )
    assert c.index is not None
    return ScenarioResult(
        10,
        f"index rebuild, {len(c.index)} x {c.sizes.dimension}",
        f"{middle['total_s']:.2f} s",
        "-",
        middle["total_s"],
        f"{middle['total_s']:.2f} s",
        {
            "measure": (
                "wall time of reading every (id, FLOAT[d]) row from the DuckDB file into numpy "
                "and VectorIndex.build_from, median of the runs"
            ),
            "rows": len(c.index),
            "runs": runs,
            "quantised": c.index.quantised,
        },
        (note,),
    )


# -- scenario 11 ------------------------------------------------------------------------
def hybrid_query(bench: Bench) -> ScenarioResult:
    """11: vector + BM25 + reciprocal rank fusion, per query, with unindexed writes pending."""
    c = corpus(bench)
    index = vector_index(bench)
    keywords = _keyword_index(bench, c)
    depth = c.sizes.hybrid_depth
    total_ms, vector_ms, keyword_ms, fuse_ms = [], [], [], []
    for query, text in zip(c.queries, c.query_texts, strict=True):
        started = time.perf_counter()
        vector_hits = index.search(query, depth)
        after_vector = time.perf_counter()
        keyword_hits = keywords.search(text, depth)
        after_keywords = time.perf_counter()
        reciprocal_rank_fusion({"vector": vector_hits, "keyword": keyword_hits}, limit=10)
        ended = time.perf_counter()
        total_ms.append((ended - started) * 1000)
        vector_ms.append((after_vector - started) * 1000)
        keyword_ms.append((after_keywords - after_vector) * 1000)
        fuse_ms.append((ended - after_keywords) * 1000)
    macro_ms = _match_bm25_macro(c)
    total, vec, kw = percentiles(total_ms), percentiles(vector_ms), percentiles(keyword_ms)
    macro = percentiles(macro_ms)
    note = (
        f"p95 parts: vector top-{depth} {vec['p95']:.1f} ms, keyword top-{depth} "
        f"{kw['p95']:.1f} ms (with {keywords.pending} writes not yet in the DuckDB index), "
        f"fusion {percentiles(fuse_ms)['p95']:.2f} ms; DuckDB's match_bm25 macro alone: "
        f"p50 {macro['p50']:.0f} ms"
    )
    return ScenarioResult(
        11,
        f"hybrid query, {len(index)} memories",
        f"p50 {total['p50']:.1f} / p95 {total['p95']:.1f} ms",
        f"match_bm25 macro {macro['p50']:.0f} ms",
        total["p95"],
        f"p95 {total['p95']:.1f} ms",
        {
            "measure": (
                f"wall time of VectorIndex.search(top {depth}) + KeywordIndex.search(top {depth},"
                " BM25 over DuckDB's fts index plus the pending writes in RAM) + "
                "reciprocal_rank_fusion(top 10), per query"
            ),
            "hybrid_ms": total,
            "vector_ms": vec,
            "keyword_ms": kw,
            "fusion_ms": percentiles(fuse_ms),
            "match_bm25_macro_ms": macro,
            "pending_writes": keywords.pending,
            "fts_build_s": c.setup_s.get("fts_build_s"),
        },
        (note,),
    )


def _keyword_index(bench: Bench, c: Corpus) -> fts.KeywordIndex:
    if c.keywords is None:
        started = time.perf_counter()
        keywords = fts.KeywordIndex(c.sql, TABLE, "id", "body")
        keywords.rebuild()
        c.setup_s["fts_build_s"] = time.perf_counter() - started
        bench.progress(f"  keyword index built in {c.setup_s['fts_build_s']:.1f} s")
        rows = c.conn.execute(
            f"SELECT id, body FROM {TABLE} USING SAMPLE {c.sizes.pending_writes} ROWS"
            " (reservoir, 7)"
        ).fetchall()
        for item_id, body in rows:  # rewrites the index has not seen
            keywords.note_write(item_id, f"{body} revised")
        c.keywords = keywords
    return c.keywords


def _match_bm25_macro(c: Corpus) -> list[float]:
    return [
        _timed(partial(fts.match_bm25_search, c.sql, TABLE, "id", text, 50))[1]
        for text in c.query_texts[: c.sizes.duckdb_queries]
    ]


# -- helpers ------------------------------------------------------------------------------
def _timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - started) * 1000


def _fetch(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _overlap(hits: list[tuple[int, float]], reference: list[tuple[int, float]]) -> float:
    wanted = {item_id for item_id, _ in reference}
    return len(wanted & {item_id for item_id, _ in hits}) / max(1, len(wanted))
