"""Hybrid search over memories: relevance, filters, provenance, hostile text.

Real DuckDB files throughout. Relevance runs the real all-MiniLM-L6-v2
(loaded once for the module); the logic tests use ``HashEmbedder``, whose
vectors come from each text's sha256: a query equal to a stored text finds
it with cosine 1, anything else lands at random, so what a test asserts
never depends on a model's taste.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from app.engine.embeddings import SentenceTransformerEmbedder
from app.memory.db import Database
from app.memory.provenance import Provenance
from app.memory.search import EmptyQueryError, SearchFilter, SearchHit
from app.memory.search_catalog import Catalog, CurrentRows, micros
from app.memory.service import MemoryService

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


class HashEmbedder:
    """Deterministic unit vectors from each text's sha256.

    ``delay_s`` slows each call; ``fail`` makes it raise; ``gate``, when
    set, holds the background embedding thread's calls until it opens.
    """

    def __init__(self, model_name: str = "hash-16", dimension: int = 16) -> None:
        self.model_name = model_name
        self.dimension = dimension
        self.delay_s = 0.0
        self.fail = False
        self.gate: threading.Event | None = None
        self.calls = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.gate is not None and threading.current_thread().name == "soloist-memory-embed":
            self.gate.wait(30)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("the embedding model is not available")
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> list[float]:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        seed ^= int.from_bytes(self.model_name.encode()[:8].ljust(8, b"\0"), "little")
        values = np.random.default_rng(seed).normal(size=self.dimension)
        return [float(x) for x in values / np.linalg.norm(values)]


class Clock:
    """A clock the test sets; it stands still between settings."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, days: float) -> datetime:
        self.now = T0 + timedelta(days=days)
        return self.now


def open_service(db: Database, embedder: HashEmbedder, **options: object) -> MemoryService:
    """A started service on ``db``, loaded (keywords included)."""
    service = MemoryService(db, lambda: embedder, tick_s=0.02, **options)  # type: ignore[arg-type]
    service.start()
    assert service.wait_ready(30)
    return service


def ids(hits: tuple[SearchHit, ...] | list[SearchHit]) -> list[str]:
    return [hit.memory_id for hit in hits]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hashes() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def service(db: Database, hashes: HashEmbedder, clock: Clock) -> Iterator[MemoryService]:
    started = open_service(db, hashes, clock=clock)
    yield started
    started.close()


# -- relevance, with the real model -------------------------------------------------------
CORPUS = (
    "Order ZX-4471 was shipped to the Lagos warehouse on Monday.",
    "The client says the subscription is too expensive and wants to cancel it.",
    "The sourdough starter is fed twice a day with rye flour and water.",
    "Our insurance renews in April; the broker needs the oven's serial number.",
    "The shop closes at six on weekdays and at two on Saturdays.",
    "Flour arrives from the mill every Tuesday.",
    "The wedding cake has three tiers of lemon sponge.",
    "Invoices are sent on the first working day of each month.",
    "The delivery van needs new tyres before winter.",
    "Anna prefers to be called in the morning, never after five.",
    "The website contact form sends messages to the shared inbox.",
    "Croissant orders above forty get a ten percent discount.",
)


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    model = SentenceTransformerEmbedder()
    model.load()
    return model


@pytest.fixture(scope="module")
def real(
    tmp_path_factory: pytest.TempPathFactory, minilm: SentenceTransformerEmbedder
) -> Iterator[MemoryService]:
    """The corpus, remembered once for the module's relevance tests."""
    database = Database.open(tmp_path_factory.mktemp("relevance") / "office.duckdb")
    started = MemoryService(database, lambda: minilm, tick_s=0.02)
    started.start()
    for text in CORPUS:
        started.remember(text, kind="fact")
    assert started.wait_ready(60)
    yield started
    started.close()
    database.close()


@pytest.mark.slow
def test_an_exact_keyword_hit_and_a_paraphrase_both_rank_at_the_top(
    real: MemoryService,
) -> None:
    result = real.search("ZX-4471 customer leaving because of the price", k=5)

    assert result.vector_searched and result.keyword_searched
    top = {hit.text: hit for hit in result.hits[:2]}
    exact, paraphrase = CORPUS[0], CORPUS[1]
    assert set(top) == {exact, paraphrase}
    assert top[exact].keyword_rank == 1  # the order number, by keyword
    assert top[paraphrase].keyword_rank is None  # no word in common: found by meaning
    assert top[paraphrase].vector_rank is not None and top[paraphrase].vector_rank <= 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a buyer thinks our plan costs too much", 1),
        ("when is the bakery open on the weekend", 4),
        ("ZX-4471", 0),
    ],
)
def test_the_best_match_comes_first(real: MemoryService, query: str, expected: int) -> None:
    assert real.search(query, k=3)[0].text == CORPUS[expected]


# -- filters --------------------------------------------------------------------------------
SPECS = (  # (name, kind, scope, agent, source file, source url, days after T0)
    ("a", "fact", "global", "clerk", None, None, 0),
    ("b", "note", "global", "clerk", "/docs/bakery/a.txt", None, 1),
    ("c", "document_chunk", "contact:anna", None, "/docs/bakery/b.txt", None, 2),
    ("d", "document_chunk", "contact:anna", None, "/docs/other/c.txt", None, 3),
    ("e", "email_summary", "agent:clerk", "clerk", None, "https://mail.example/1", 4),
    ("f", "crm_fact", "agent:sales", "sales", None, "https://crm.example/7", 5),
    ("g", "fact", "global", "sales", "/docs/bakery-old/x.txt", None, 6),
)


def write_spread(service: MemoryService, clock: Clock) -> dict[str, str]:
    """Seven memories sharing the word 'apple', differing in everything a filter sees."""
    written = {}
    for name, kind, scope, agent, source_file, source_url, days in SPECS:
        clock.at(days)
        provenance = Provenance(agent_id=agent, source_file=source_file, source_url=source_url)
        memory = service.remember(f"apple {name} " * 3, kind, scope, provenance)
        written[memory.memory_id] = name
    return written


@pytest.fixture(scope="module")
def spread_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MemoryService, dict[str, str]]]:
    """One database with the spread, shared by the read-only filter tests."""
    database = Database.open(tmp_path_factory.mktemp("filters") / "office.duckdb")
    clock = Clock()
    started = open_service(database, HashEmbedder(), clock=clock)
    yield started, write_spread(started, clock)
    started.close()
    database.close()


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (SearchFilter(), "abcdefg"),
        (SearchFilter(scopes=("global",)), "abg"),
        (SearchFilter(scopes=("contact:anna", "agent:clerk")), "cde"),
        (SearchFilter(scopes=("contact:nobody",)), ""),
        (SearchFilter(kinds=("document_chunk",)), "cd"),
        (SearchFilter(kinds=("fact", "crm_fact")), "afg"),
        (SearchFilter(agent_id="clerk"), "abe"),
        (SearchFilter(source_file_prefix="/docs/bakery/"), "bc"),
        (SearchFilter(source_file_prefix="/docs/bakery"), "bcg"),  # a plain string prefix
        (SearchFilter(source_url_prefix="https://crm."), "f"),
        (SearchFilter(created_from=T0 + timedelta(days=2)), "cdefg"),
        (SearchFilter(created_before=T0 + timedelta(days=2)), "ab"),
        (
            SearchFilter(
                created_from=T0 + timedelta(days=1), created_before=T0 + timedelta(days=4)
            ),
            "bcd",
        ),
        (SearchFilter(scopes=("global",), agent_id="sales", kinds=("fact",)), "g"),
    ],
)
@pytest.mark.parametrize("query", ["apple", "apple a apple a apple a"])
def test_each_filter_keeps_exactly_what_it_allows(
    spread_service: tuple[MemoryService, dict[str, str]],
    where: SearchFilter,
    expected: str,
    query: str,
) -> None:
    service, spread = spread_service
    result = service.search(query, k=20, where=where)

    assert sorted(spread[m] for m in ids(result.hits)) == sorted(expected)
    assert all(where.accepts(service.store.get(m)) for m in ids(result.hits))  # type: ignore[arg-type]


def test_a_filter_applies_before_ranking_not_after(
    db: Database, hashes: HashEmbedder, clock: Clock
) -> None:
    """With one candidate per side, an allowed memory ranked low overall is still found."""
    narrow = open_service(db, hashes, clock=clock, candidates=1)
    try:
        spread = write_spread(narrow, clock)
        for where, expected in (
            (SearchFilter(source_url_prefix="https://crm."), "f"),
            (SearchFilter(kinds=("email_summary",)), "e"),
        ):
            result = narrow.search("apple", k=5, where=where)
            assert [spread[m] for m in ids(result.hits)] == [expected]
    finally:
        narrow.close()


def test_a_filter_needs_aware_times_and_known_scopes_and_kinds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SearchFilter(created_from=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="invalid memory scope"):
        SearchFilter(scopes=("everyone",))
    with pytest.raises(ValueError, match="unknown memory kind"):
        SearchFilter(kinds=("gossip",))
    assert SearchFilter().is_empty and not SearchFilter(agent_id="x").is_empty


def test_catalog_masks_by_slot_and_keeps_slots_across_versions() -> None:
    catalog = Catalog()

    def rows(*items: tuple[str, str, str, int]) -> CurrentRows:
        return CurrentRows(
            [m for m, _, _, _ in items],
            [v for _, v, _, _ in items],
            {
                "scope": [s for _, _, s, _ in items],
                "kind": ["fact"] * len(items),
                "agent_id": [None] * len(items),
                "source_file": [None] * len(items),
                "source_url": [None] * len(items),
            },
            np.array([micros(T0 + timedelta(days=d)) for *_, d in items], np.int64),
            [],
        )

    first = catalog.put(rows(("m1", "v1", "global", 0), ("m2", "v2", "contact:x", 1)))
    assert [c.slot for c in first] == [0, 1]
    again = catalog.put(rows(("m1", "v3", "contact:x", 2)))
    assert again[0].slot == 0 and again[0].old_version == "v1" and again[0].new_version == "v3"
    assert catalog.slot_of_version("v1") is None and catalog.slot_of_version("v3") == 0
    dropped = catalog.drop(["m2", "unknown"])
    assert [(c.slot, c.old_version) for c in dropped] == [(1, "v2")]
    scope_x = {"scope": "contact:x".__eq__}
    assert catalog.mask(scope_x, None, None).tolist() == [True, False]  # m2 is gone
    assert catalog.mask({}, T0 + timedelta(days=3), None).tolist() == [False, False]
    assert len(catalog) == 1


# -- provenance ------------------------------------------------------------------------------
def test_each_hit_carries_the_provenance_it_was_written_with(service: MemoryService) -> None:
    written = {
        "kiwi": Provenance(
            agent_id="clerk",
            run_id="run-7",
            step_seq=3,
            tool="remember",
            message_id="conv-1/12",
            source_file="/home/me/notes.txt",
            source_url="https://example.org/page",
        ),
        "mango": Provenance(),
        "papaya": Provenance(agent_id="sales", tool="crm"),
    }
    versions = {}
    for word, provenance in written.items():
        versions[word] = service.remember(f"{word} {word} season", "fact", provenance=provenance)

    for word, provenance in written.items():
        hit = service.search(word, k=1)[0]
        assert hit.memory_id == versions[word].memory_id
        assert hit.version_id == versions[word].id
        assert hit.provenance == provenance
        assert hit.created_at == versions[word].created_at
        assert (hit.kind, hit.scope, hit.text) == ("fact", "global", f"{word} {word} season")


# -- hostile input -------------------------------------------------------------------------
HOSTILE_TEXTS = (
    "Robert'); DROP TABLE memories; -- gooseberry",
    'a "quoted" \\backslash\\ 100% _under_ gooseberry',
    "semi; colon $1 ? :name {braces} gooseberry",
)


@pytest.mark.parametrize(
    "query",
    [
        "'; DROP TABLE memories; --",
        "gooseberry' OR '1'='1",
        '"gooseberry"',
        "%_\\ gooseberry",
        "gooseberry); DELETE FROM memory_versions; SELECT (1",
        "$1 ? :name",
        "DELETE FROM memory_text",
        "'",
    ],
)
def test_sql_metacharacters_in_queries_and_texts_are_harmless(
    service: MemoryService, db: Database, query: str
) -> None:
    written = [service.remember(text, "note").memory_id for text in HOSTILE_TEXTS]
    before = db.summary().row_counts

    result = service.search(query, k=10)

    assert db.summary().row_counts == before
    assert set(ids(result.hits)) <= set(written)
    if "gooseberry" in query:
        assert result.hits and all(hit.keyword_rank is not None for hit in result.hits)
    for text, memory_id in zip(HOSTILE_TEXTS, written, strict=True):
        found = service.search(text, k=1)[0]  # its own text: cosine 1, every keyword
        assert (found.memory_id, found.text) == (memory_id, text)


@pytest.mark.parametrize("query", ["", "   ", "\n\t "])
def test_an_empty_query_is_a_typed_error(service: MemoryService, query: str) -> None:
    with pytest.raises(EmptyQueryError) as caught:
        service.search(query)
    assert isinstance(caught.value, ValueError)
    assert "query is empty" in str(caught.value)


def test_k_must_be_positive(service: MemoryService) -> None:
    with pytest.raises(ValueError, match="k must be 1 or more"):
        service.search("apple", k=0)


def test_hits_hide_their_text_in_repr(service: MemoryService) -> None:
    service.remember("the owner's private tamarind recipe", "note")
    hit = service.search("tamarind")[0]
    assert "tamarind" not in repr(hit) and "chars=" in repr(hit)


def test_the_keyword_index_lives_beside_the_office_file_not_in_it(
    service: MemoryService, db: Database, db_path: Path
) -> None:
    service.remember("quince jelly", "note")
    assert service.search("quince")[0].keyword_rank == 1
    assert db_path.with_name("office.search.duckdb").is_file()
    tables = db.summary().row_counts
    assert "memories" in tables
    assert not any("fts" in table or "memory_text" in table for table in tables)
