"""DuckDB full-text search: the fts extension loaded offline, and BM25 over a table.

Loading. The extension ships inside the ``duckdb-extension-fts`` wheel, at
``duckdb_extension_fts/extensions/v<duckdb version>/fts.duckdb_extension``
(the package has no helper function: its ``__init__`` is empty). It is
``LOAD``-ed by that path. No ``INSTALL`` is needed, so nothing is copied
into ``~/.duckdb``, and nothing can be fetched: loading by path never
touches the network, and the connection should also say
``SET autoinstall_known_extensions=false`` (the tests do).

Index. ``PRAGMA create_fts_index`` builds the schema ``fts_main_<table>``
(``dict``, ``docs``, ``terms``, ``stats`` and the ``match_bm25`` macro)
over a *table*; DuckDB refuses views. ``create_index`` adds a derived
table, ``postings`` (term, document, term frequency) sorted by term, and
the stemmer it used. Three ways to query, all with the same Okapi BM25 as
``match_bm25`` (k1 = 1.2, b = 0.75, its tokenizer, stemmer and statistics;
the tests check the scores are equal):

- ``match_bm25_search``: the macro itself. It is evaluated for every row of
  the table: 50-250 ms at 100,000 documents on two busy cores, the more the
  commoner the query's words.
- ``bm25_search``: SQL over ``postings``, reading only the row groups of
  the query's terms: ~10-40 ms there. Stateless.
- :class:`KeywordIndex`: the postings held in RAM as numpy arrays (6 bytes
  a posting: 13 MB for the benchmark's 100,000 documents) and scored there;
  DuckDB still tokenizes and stems each query and looks its terms up in
  the index's dictionary, in one small statement. ~5 ms, most of it that
  statement.

DuckDB does not update an FTS index on writes: see :class:`KeywordIndex`
for the writes it has not seen and the refresh policy.

Identifiers (table and column names) cannot be bound as parameters, so
they are checked against a plain-identifier pattern before they reach any
SQL; query text is always bound.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import numpy.typing as npt

from app.memory.errors import QueryError, StoreError

__all__ = [
    "FtsError",
    "FtsIndexMissingError",
    "FtsUnavailableError",
    "InvalidIdentifierError",
    "KeywordIndex",
    "RefreshPolicy",
    "SqlRunner",
    "bm25_search",
    "create_index",
    "extension_path",
    "has_index",
    "load_fts",
    "match_bm25_search",
    "refresh_due",
    "validate_identifier",
]

log = logging.getLogger("soloist.memory.fts")

K1 = 1.2
B = 0.75
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_WORD = re.compile(r"[a-z_]{1,32}")  # stemmer names, 'english', 'none'

Hit = tuple[Any, float]


class SqlRunner(Protocol):
    """What this module needs of a connection: ``app.memory.db.Database`` is one.

    A runner that also has ``fetchnumpy(sql, params) -> dict of arrays``
    loads :class:`KeywordIndex` much faster; without it rows come as tuples.
    """

    def execute(self, sql: str, params: Sequence[object] = ()) -> None: ...

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...


# -- errors ------------------------------------------------------------------
class FtsError(StoreError):
    """Keyword search failed (a ``StoreError``, so callers catching those see it)."""


class FtsUnavailableError(FtsError):
    """The fts extension is missing from the installation or would not load."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"Keyword search is unavailable: the DuckDB fts extension {self.detail}. "
            "Nothing was changed and vector search still works; reinstall Soloist "
            "(the duckdb-extension-fts package) to restore it."
        )


class FtsIndexMissingError(FtsError):
    """A search of a table that has no full-text index yet."""

    def __init__(self, table: str) -> None:
        super().__init__(table)
        self.table = table

    def __str__(self) -> str:
        return f"The table {self.table} has no keyword index yet; build it first."


class InvalidIdentifierError(FtsError, ValueError):
    """A table or column name that is not a plain identifier: a bug in the caller."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"{self.name!r} is not a plain SQL identifier (letters, digits, underscore)."


def validate_identifier(name: str) -> str:
    """``name`` if it is a plain identifier, else :class:`InvalidIdentifierError`."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidIdentifierError(str(name))
    return name


# -- loading -------------------------------------------------------------------
def extension_path(version: str | None = None) -> Path:
    """The fts extension file of the installed wheel, for DuckDB ``version``."""
    version = version or duckdb.__version__
    try:
        import duckdb_extension_fts
    except ImportError as exc:
        raise FtsUnavailableError("is not installed") from exc
    root = Path(duckdb_extension_fts.__file__).parent / "extensions"
    path = root / f"v{version}" / "fts.duckdb_extension"
    if path.is_file():
        return path
    found = sorted(p.parent.name for p in root.glob("*/fts.duckdb_extension"))
    shipped = f"ships {', '.join(found)}" if found else "ships no extension file"
    raise FtsUnavailableError(f"does not match DuckDB v{version} (the package {shipped})")


def load_fts(db: SqlRunner) -> Path:
    """Load the extension into ``db`` from the wheel (idempotent); the file loaded."""
    path = extension_path()
    if _loaded(db):
        return path
    literal = str(path).replace("'", "''")  # LOAD takes no parameters
    try:
        db.execute(f"LOAD '{literal}'")
    except QueryError as exc:
        raise FtsUnavailableError(f"could not be loaded ({exc.detail})") from exc
    log.info("fts extension loaded from %s", path)
    return path


def _loaded(db: SqlRunner) -> bool:
    rows = db.fetchall("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'fts'")
    return bool(rows and rows[0][0])


# -- building ------------------------------------------------------------------
def fts_schema(table: str) -> str:
    """The schema DuckDB gives the index of ``table`` (in the ``main`` schema)."""
    return f"fts_main_{validate_identifier(table)}"


def has_index(db: SqlRunner, table: str) -> bool:
    """Whether ``table`` has an index built by :func:`create_index`."""
    rows = db.fetchall(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = 'settings'",
        [fts_schema(table)],
    )
    return bool(rows[0][0])


def create_index(
    db: SqlRunner,
    table: str,
    id_column: str,
    text_columns: Sequence[str],
    *,
    stemmer: str = "porter",
    stopwords: str = "english",
) -> None:
    """(Re)build the BM25 index over ``table``'s ``text_columns``, keyed by ``id_column``.

    Replaces any earlier index of that table. ``stopwords`` is ``'english'``,
    ``'none'`` or the name of a one-column table of words.
    """
    schema = fts_schema(table)
    names = [validate_identifier(id_column), *map(validate_identifier, text_columns)]
    if len(names) < 2:
        raise ValueError("at least one text column is needed")
    options = f"stemmer='{_word(stemmer)}', stopwords='{_word(stopwords)}'"
    started = time.perf_counter()
    load_fts(db)
    columns = ", ".join(f"'{name}'" for name in names)
    db.execute(f"PRAGMA create_fts_index('{table}', {columns}, {options}, overwrite=1)")
    db.execute(
        f"""CREATE TABLE {schema}.postings AS
        SELECT termid, docid, count(*)::INTEGER AS tf FROM {schema}.terms
        GROUP BY termid, docid ORDER BY termid, docid"""
    )
    db.execute(f"CREATE TABLE {schema}.settings AS SELECT '{stemmer}' AS stemmer")
    log.info("keyword index of %s built in %.2f s", table, time.perf_counter() - started)


def _word(value: str) -> str:
    if not _WORD.fullmatch(value):
        raise InvalidIdentifierError(value)
    return value


# -- searching in SQL ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueryTerms:
    """A query's stemmed terms, and (termid, df) of those the index knows."""

    terms: tuple[str, ...]
    known: dict[str, tuple[int, int]]


def query_terms(db: SqlRunner, table: str, query: str, stemmer: str | None = None) -> QueryTerms:
    """Tokenize and stem ``query`` as the index did, and look its terms up."""
    schema = fts_schema(table)
    stem_with = f"'{_word(stemmer)}'" if stemmer else f"(SELECT stemmer FROM {schema}.settings)"
    try:
        rows = db.fetchall(
            f"""SELECT q.term, d.termid, d.df
            FROM (SELECT DISTINCT stem(unnest({schema}.tokenize(?)), {stem_with}) AS term) AS q
            LEFT JOIN {schema}.dict AS d ON d.term = q.term
            WHERE q.term <> ''""",
            [query],
        )
    except QueryError as exc:
        if not has_index(db, table):
            raise FtsIndexMissingError(table) from exc
        raise
    known = {term: (int(tid), int(df)) for term, tid, df in rows if tid is not None}
    return QueryTerms(tuple(sorted(r[0] for r in rows)), known)


def idf(num_docs: int, df: int) -> float:
    """BM25's inverse document frequency, as ``match_bm25`` computes it."""
    return math.log10((num_docs - df + 0.5) / (df + 0.5) + 1)  # DuckDB's log() is base 10


def term_score(tf: Any, length: Any, avgdl: float, weight: float) -> Any:
    """One term's BM25 contribution (scalars or numpy arrays)."""
    return weight * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / (avgdl or 1.0)))


def bm25_search(db: SqlRunner, table: str, query: str, k: int = 10) -> list[Hit]:
    """The ``k`` best (id, BM25 score) of ``table``'s index, in SQL over ``postings``."""
    terms = query_terms(db, table, query)
    if not terms.known or k < 1:
        return []
    schema = fts_schema(table)
    ids = [tid for tid, _ in terms.known.values()]
    num_docs, avgdl = _stats(db, schema)
    weights = [idf(num_docs, df) for _, df in terms.known.values()]
    listed = ", ".join(str(int(tid)) for tid in ids)  # DuckDB's own BIGINTs
    rows = db.fetchall(
        f"""SELECT d.name, sum(q.w * p.tf * ({K1} + 1)
                / (p.tf + {K1} * (1 - {B} + {B} * d.len / ?))) AS score
        FROM {schema}.postings AS p
        JOIN (SELECT unnest(?::BIGINT[]) AS termid, unnest(?::DOUBLE[]) AS w) AS q
            ON p.termid = q.termid
        JOIN {schema}.docs AS d ON d.docid = p.docid
        WHERE p.termid IN ({listed})
        GROUP BY d.name ORDER BY score DESC, d.name LIMIT ?""",
        [avgdl or 1.0, ids, weights, k],
    )
    return [(row[0], float(row[1])) for row in rows]


def match_bm25_search(db: SqlRunner, table: str, id_column: str, query: str, k: int) -> list[Hit]:
    """The same through DuckDB's ``match_bm25`` macro (a reference: it scans every row)."""
    schema, key = fts_schema(table), validate_identifier(id_column)
    rows = db.fetchall(
        f"""SELECT {key}, score FROM (
            SELECT {key}, {schema}.match_bm25({key}, ?) AS score FROM {table})
        WHERE score IS NOT NULL ORDER BY score DESC, {key} LIMIT ?""",
        [query, k],
    )
    return [(row[0], float(row[1])) for row in rows]


def _stats(db: SqlRunner, schema: str) -> tuple[int, float]:
    rows = db.fetchall(f"SELECT num_docs, avgdl FROM {schema}.stats")
    return int(rows[0][0]), float(rows[0][1] or 0.0)


# -- the refresh policy -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """When the index is rebuilt: enough writes it has not seen, or old enough ones.

    ``min_writes`` or ``share`` of the indexed documents, whichever is larger,
    bounds the in-RAM scan of unindexed writes; ``max_age_s`` bounds how long
    a lone write waits.
    """

    min_writes: int = 256
    share: float = 0.02
    max_age_s: float = 300.0


def refresh_due(
    pending: int, indexed: int, oldest_age_s: float | None, policy: RefreshPolicy
) -> bool:
    """Whether ``pending`` unseen writes over ``indexed`` documents call for a rebuild."""
    if pending == 0:
        return False
    if pending >= max(policy.min_writes, int(policy.share * indexed)):
        return True
    return oldest_age_s is not None and oldest_age_s >= policy.max_age_s


# -- the index in RAM ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Postings:
    """The DuckDB index's postings as arrays: term -> slice of (doc row, tf)."""

    ids: npt.NDArray[Any]  # doc row -> the table's id
    lengths: npt.NDArray[np.float64]  # doc row -> tokens
    offsets: npt.NDArray[np.int64]  # termid -> start in rows/tfs; termid + 1 -> end
    rows: npt.NDArray[np.int32]
    tfs: npt.NDArray[np.uint16]
    row_of: dict[Any, int]
    avgdl: float

    @property
    def num_docs(self) -> int:
        return len(self.ids)

    def score(self, known: Sequence[tuple[int, int]]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """(doc rows, BM25 scores) of every document holding a term of ``known``."""
        rows, scores = [], []
        for termid, df in known:
            start, end = self.offsets[termid], self.offsets[termid + 1]
            matched = self.rows[start:end]
            tf = self.tfs[start:end].astype(np.float64)
            weight = idf(self.num_docs, df)
            scores.append(term_score(tf, self.lengths[matched], self.avgdl, weight))
            rows.append(matched)
        if len(rows) == 1:
            return rows[0], scores[0]
        unique, inverse = np.unique(np.concatenate(rows), return_inverse=True)
        return unique, np.bincount(inverse, weights=np.concatenate(scores))

    @property
    def nbytes(self) -> int:
        arrays = (self.ids, self.lengths, self.offsets, self.rows, self.tfs)
        return sum(a.nbytes for a in arrays)


@dataclass(frozen=True, slots=True)
class _PendingDoc:
    terms: Counter[str]
    length: int


class KeywordIndex:
    """BM25 over a table's text, held in RAM, including writes DuckDB's index has not seen.

    ``open()`` loads (or first builds) DuckDB's index and copies its postings
    into numpy arrays. A search asks DuckDB once, to tokenize and stem the
    query and look its terms up in the index's dictionary, then scores in RAM.

    Writes. The owner calls ``note_write(id, text)`` / ``note_delete(id)``
    after each committed write to the table. Those ids are hidden from the
    indexed results (their indexed text is stale or gone); the written text,
    tokenized, stop-worded and stemmed by DuckDB exactly as the index does
    it, is kept in a small in-RAM list scored with the same BM25.

    Refresh policy. ``refresh_if_due()`` rebuilds when :func:`refresh_due`
    says so: by default 256 unindexed writes or 2 % of the documents,
    whichever is more, or any write older than five minutes. Call it from a
    background job, never from a search: DuckDB's rebuild takes ~10 s at
    100,000 documents on two busy cores. Searches, writes and rebuilds share
    one lock, since the dictionary (in DuckDB) and the postings (here) must
    come from the same build.
    """

    def __init__(
        self,
        db: SqlRunner,
        table: str,
        id_column: str,
        text_column: str,
        *,
        policy: RefreshPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._table = validate_identifier(table)
        self._schema = fts_schema(table)
        self._id_column = validate_identifier(id_column)
        self._text_column = validate_identifier(text_column)
        self._policy = policy or RefreshPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._postings: _Postings | None = None
        self._stemmer = "porter"
        self._pending: dict[Any, _PendingDoc] = {}
        self._hidden: set[Any] = set()  # ids written or deleted since the build
        self._hidden_rows = np.zeros(0, np.bool_)
        self._oldest: float | None = None

    # -- life cycle ----------------------------------------------------------------
    def open(self) -> None:
        """Load the extension and the index, building it first if there is none."""
        load_fts(self._db)
        if not has_index(self._db, self._table):
            self.rebuild()
            return
        with self._lock:
            self._load()

    def rebuild(self) -> None:
        """Rebuild DuckDB's index from the table, reload it, forget the pending writes."""
        with self._lock:
            create_index(self._db, self._table, self._id_column, [self._text_column])
            self._load()

    def refresh_due(self) -> bool:
        indexed = self._postings.num_docs if self._postings is not None else 0
        age = None if self._oldest is None else self._clock() - self._oldest
        return refresh_due(len(self._hidden), indexed, age, self._policy)

    def refresh_if_due(self) -> bool:
        """Rebuild when the policy says so; whether it did."""
        if not self.refresh_due():
            return False
        self.rebuild()
        return True

    @property
    def pending(self) -> int:
        """Writes (and deletions) DuckDB's index has not seen."""
        return len(self._hidden)

    @property
    def memory_bytes(self) -> int:
        return 0 if self._postings is None else self._postings.nbytes

    # -- writes ----------------------------------------------------------------------
    def note_write(self, item_id: Any, text: str) -> None:
        """``item_id`` now has ``text`` (a new row or a changed one)."""
        with self._lock:
            terms = self._document_terms(text)
            self._pending[item_id] = _PendingDoc(Counter(terms), len(terms))
            self._hide(item_id)

    def note_delete(self, item_id: Any) -> None:
        """``item_id`` is gone from the table."""
        with self._lock:
            self._pending.pop(item_id, None)
            self._hide(item_id)

    # -- search ----------------------------------------------------------------------
    def search(self, query: str, k: int = 10, allowed: Container[Any] | None = None) -> list[Hit]:
        """The ``k`` best (id, BM25 score), indexed and pending documents together.

        ``allowed`` keeps only the ids it contains (tested best first, so a
        wide filter costs little and a narrow one scans further down).
        """
        if k < 1:
            return []
        with self._lock:
            postings = self._require_postings()
            terms = query_terms(self._db, self._table, query, self._stemmer)
            hits = self._indexed_hits(postings, terms, k, allowed)
            hits += self._pending_hits(postings, terms, allowed)
        hits.sort(key=lambda hit: -hit[1])
        return hits[:k]

    # -- mechanism (under the lock) ------------------------------------------------------
    def _load(self) -> None:
        started = time.perf_counter()
        schema = self._schema
        self._stemmer = str(self._db.fetchall(f"SELECT stemmer FROM {schema}.settings")[0][0])
        docs = _columns(
            self._db,
            f"SELECT docid, name, len FROM {schema}.docs ORDER BY docid",
            ("docid", "name", "len"),
        )
        posts = _columns(
            self._db,
            f"SELECT termid, docid, tf FROM {schema}.postings ORDER BY termid, docid",
            ("termid", "docid", "tf"),
        )
        terms = int(self._db.fetchall(f"SELECT coalesce(max(termid), 0) FROM {schema}.dict")[0][0])
        _, avgdl = _stats(self._db, schema)
        rows = np.searchsorted(docs["docid"], posts["docid"]).astype(np.int32)
        ids = docs["name"]
        lengths = docs["len"].astype(np.float64)
        self._postings = _Postings(
            ids=ids,
            lengths=lengths,
            offsets=np.searchsorted(posts["termid"], np.arange(terms + 2)).astype(np.int64),
            rows=rows,
            tfs=np.minimum(posts["tf"], np.iinfo(np.uint16).max).astype(np.uint16),
            row_of=dict(zip(ids.tolist(), range(len(ids)), strict=True)),
            avgdl=avgdl,
        )
        self._pending.clear()
        self._hidden.clear()
        self._hidden_rows = np.zeros(len(ids), np.bool_)
        self._oldest = None
        elapsed = (time.perf_counter() - started) * 1000
        log.info(
            "keyword index of %s loaded: %d documents, %d postings, %.1f MB in %.0f ms",
            self._table,
            len(ids),
            len(rows),
            self._postings.nbytes / 1e6,
            elapsed,
        )

    def _require_postings(self) -> _Postings:
        if self._postings is None:
            raise FtsIndexMissingError(self._table)
        return self._postings

    def _hide(self, item_id: Any) -> None:
        self._hidden.add(item_id)
        row = None if self._postings is None else self._postings.row_of.get(item_id)
        if row is not None:
            self._hidden_rows[row] = True
        if self._oldest is None:
            self._oldest = self._clock()

    def _document_terms(self, text: str) -> list[str]:
        """``text`` tokenized, stop words removed and stemmed, as the index builds it."""
        schema = self._schema
        rows = self._db.fetchall(
            f"""SELECT stem(w, '{self._stemmer}')
            FROM (SELECT unnest({schema}.tokenize(?)) AS w)
            WHERE w <> '' AND w NOT IN (SELECT sw FROM {schema}.stopwords)""",
            [text],
        )
        return [row[0] for row in rows]

    def _indexed_hits(
        self, postings: _Postings, terms: QueryTerms, k: int, allowed: Container[Any] | None
    ) -> list[Hit]:
        if not terms.known:
            return []
        rows, scores = postings.score(list(terms.known.values()))
        visible = ~self._hidden_rows[rows]
        rows, scores = rows[visible], scores[visible]
        if allowed is None and k < len(rows):
            best = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows[best], scores[best]
        order = np.argsort(-scores, kind="stable")
        hits: list[Hit] = []
        for item_id, score in zip(
            postings.ids[rows[order]].tolist(), scores[order].tolist(), strict=True
        ):
            if allowed is None or item_id in allowed:
                hits.append((item_id, score))
                if len(hits) == k:
                    break
        return hits

    def _pending_hits(
        self, postings: _Postings, terms: QueryTerms, allowed: Container[Any] | None
    ) -> list[Hit]:
        if not self._pending or not terms.terms:
            return []
        num_docs = postings.num_docs + len(self._pending)
        weights = {}
        for term in terms.terms:
            df = terms.known.get(term, (0, 0))[1]
            df += sum(1 for doc in self._pending.values() if term in doc.terms)
            weights[term] = idf(num_docs, df)
        hits: list[Hit] = []
        for item_id, doc in self._pending.items():
            if allowed is not None and item_id not in allowed:
                continue
            score = sum(
                term_score(doc.terms[t], doc.length, postings.avgdl, weights[t])
                for t in terms.terms
                if t in doc.terms
            )
            if score > 0:
                hits.append((item_id, float(score)))
        return hits

    def __repr__(self) -> str:
        docs = self._postings.num_docs if self._postings is not None else 0
        return f"KeywordIndex({self._table!r}, {docs} documents, {self.pending} pending)"


def _columns(db: SqlRunner, sql: str, names: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
    """A query's columns as numpy arrays, through ``fetchnumpy`` when the runner has it."""
    fetchnumpy = getattr(db, "fetchnumpy", None)
    if fetchnumpy is not None:
        columns: dict[str, Any] = fetchnumpy(sql, ())
        return {name: np.asarray(columns[name]) for name in names}
    rows = db.fetchall(sql)
    return {
        name: np.array([row[i] for row in rows], dtype=np.int64 if name != "name" else object)
        for i, name in enumerate(names)
    }
