"""DuckDB full-text search: the extension loads offline, BM25 ranks, input is inert.

Every test runs on a real office database file with DuckDB's extension
autoloading and autoinstalling switched off, so a test passing proves
nothing was fetched: the fts extension can only have come from the
installed wheel, by path.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.memory import fts
from app.memory.db import Database

DOCS = (
    (1, "The quick brown fox jumps over the lazy dog"),
    (2, "A lazy dog sleeps all day in the sun"),
    (3, "Foxes hunt at night; the fox hunts rabbits, fox after fox"),
    (4, "Invoice for the bakery: forty sacks of rye flour"),
    (5, "Reply to the supplier about the wrong flour delivery"),
)


@pytest.fixture
def offline(db: Database) -> Database:
    """The office database, unable to fetch or autoload any extension."""
    db.execute("SET autoinstall_known_extensions = false")
    db.execute("SET autoload_known_extensions = false")
    return db


@pytest.fixture
def docs(offline: Database) -> Iterator[Database]:
    offline.execute("CREATE TABLE docs (id BIGINT PRIMARY KEY, body VARCHAR)")
    for row in DOCS:
        offline.execute("INSERT INTO docs VALUES (?, ?)", list(row))
    yield offline


@pytest.fixture
def keywords(docs: Database) -> fts.KeywordIndex:
    index = fts.KeywordIndex(docs, "docs", "id", "body")
    index.open()
    return index


# -- loading ---------------------------------------------------------------------
def test_the_extension_loads_from_the_wheel_offline(offline: Database) -> None:
    path = fts.load_fts(offline)
    assert path.is_file() and path.name == "fts.duckdb_extension"
    loaded, installed = offline.fetchall(
        "SELECT loaded, installed FROM duckdb_extensions() WHERE extension_name = 'fts'"
    )[0]
    assert loaded is True
    assert installed is False  # loaded by path: nothing copied into ~/.duckdb
    assert fts.load_fts(offline) == path  # loading again is harmless
    assert offline.fetchall("SELECT stem('hunting', 'porter')") == [("hunt",)]


def test_a_missing_extension_is_a_clear_error() -> None:
    with pytest.raises(fts.FtsUnavailableError) as caught:
        fts.extension_path("0.0.1")
    assert "does not match DuckDB v0.0.1" in str(caught.value)
    assert "reinstall Soloist" in str(caught.value)
    assert isinstance(caught.value, fts.FtsError)


# -- BM25 ------------------------------------------------------------------------
def test_bm25_ranks_the_right_document_first(keywords: fts.KeywordIndex) -> None:
    assert keywords.search("fox")[0][0] == 3  # four foxes beat one
    assert keywords.search("rye flour invoice")[0][0] == 4
    assert keywords.search("supplier delivery")[0][0] == 5
    assert keywords.search("hunting")[0][0] == 3  # stemmed: hunts, hunting -> hunt
    assert keywords.search("nothing matches zebra") == []


@pytest.mark.parametrize("query", ["fox", "lazy dog", "flour the", "fox fox hunt sun"])
def test_every_way_to_query_gives_match_bm25_scores(docs: Database, query: str) -> None:
    fts.create_index(docs, "docs", "id", ["body"])
    keywords = fts.KeywordIndex(docs, "docs", "id", "body")
    keywords.open()
    reference = fts.match_bm25_search(docs, "docs", "id", query, 10)
    assert reference
    for hits in (fts.bm25_search(docs, "docs", query, 10), keywords.search(query, 10)):
        assert [i for i, _ in hits] == [i for i, _ in reference]
        assert [s for _, s in hits] == pytest.approx([s for _, s in reference])


@pytest.mark.parametrize(
    "query",
    [
        "'; DROP TABLE docs; --",
        "fox' OR '1'='1",
        '"fox"',
        "%_\\ fox",
        "fox); DELETE FROM docs; SELECT (1",
        "$1 ? :name",
        "",
        "   ",
    ],
)
def test_sql_metacharacters_in_a_query_are_harmless(
    docs: Database, keywords: fts.KeywordIndex, query: str
) -> None:
    hits = keywords.search(query)
    assert all(item_id == 3 for item_id, _ in hits[:1])  # at most the fox document
    fts.bm25_search(docs, "docs", query)
    fts.match_bm25_search(docs, "docs", "id", query, 5)
    assert docs.fetchall("SELECT count(*) FROM docs") == [(len(DOCS),)]


@pytest.mark.parametrize(
    "name", ["docs; DROP TABLE docs", "1docs", "do-cs", "", "docs'", 'docs"', "main.docs", "a" * 64]
)
def test_invalid_identifiers_are_refused(docs: Database, name: str) -> None:
    with pytest.raises(fts.InvalidIdentifierError):
        fts.create_index(docs, name, "id", ["body"])
    with pytest.raises(fts.InvalidIdentifierError):
        fts.create_index(docs, "docs", name, ["body"])
    with pytest.raises(ValueError):  # a bug in the caller, so a ValueError too
        fts.KeywordIndex(docs, "docs", "id", name)
    assert docs.fetchall("SELECT count(*) FROM docs") == [(len(DOCS),)]


def test_invalid_stemmer_is_refused(docs: Database) -> None:
    with pytest.raises(fts.InvalidIdentifierError):
        fts.create_index(docs, "docs", "id", ["body"], stemmer="porter', overwrite=0 --")


def test_searching_before_any_index_is_a_typed_error(docs: Database) -> None:
    fts.load_fts(docs)
    with pytest.raises(fts.FtsIndexMissingError):
        fts.bm25_search(docs, "docs", "fox")
    with pytest.raises(fts.FtsIndexMissingError):
        fts.KeywordIndex(docs, "docs", "id", "body").search("fox")


# -- writes the DuckDB index has not seen ----------------------------------------------
def test_new_changed_and_deleted_rows_are_searched_before_a_rebuild(
    docs: Database, keywords: fts.KeywordIndex
) -> None:
    docs.execute("INSERT INTO docs VALUES (6, 'zebra crossing near the bakery')")
    keywords.note_write(6, "zebra crossing near the bakery")
    docs.execute("UPDATE docs SET body = 'a quiet evening' WHERE id = 3")
    keywords.note_write(3, "a quiet evening")
    docs.execute("DELETE FROM docs WHERE id = 1")
    keywords.note_delete(1)
    assert keywords.pending == 3
    assert [i for i, _ in keywords.search("zebra")] == [6]
    assert keywords.search("fox") == []  # 3 changed, 1 deleted: their old text is hidden
    assert [i for i, _ in keywords.search("quiet")] == [3]
    before = keywords.search("zebra bakery")
    keywords.rebuild()
    assert keywords.pending == 0
    after = keywords.search("zebra bakery")
    assert [i for i, _ in after] == [i for i, _ in before]
    assert keywords.search("fox") == []


def test_the_allowed_filter(keywords: fts.KeywordIndex) -> None:
    keywords.note_write(7, "flour for the pending order")
    assert {i for i, _ in keywords.search("flour")} == {4, 5, 7}
    assert [i for i, _ in keywords.search("flour", allowed={5, 7})] in ([5, 7], [7, 5])
    assert keywords.search("flour", allowed=set()) == []


def test_refresh_if_due_follows_the_policy(docs: Database) -> None:
    now = [100.0]
    policy = fts.RefreshPolicy(min_writes=3, share=0.0, max_age_s=60.0)
    keywords = fts.KeywordIndex(docs, "docs", "id", "body", policy=policy, clock=lambda: now[0])
    keywords.open()
    assert keywords.refresh_if_due() is False
    keywords.note_write(8, "walnut bread")
    assert keywords.refresh_if_due() is False  # one write, just now
    now[0] += 61
    assert keywords.refresh_if_due() is True  # old enough
    assert keywords.pending == 0
    for item_id in (9, 10, 11):
        keywords.note_delete(item_id)
    assert keywords.refresh_if_due() is True  # enough of them


@pytest.mark.parametrize(
    ("pending", "indexed", "age", "due"),
    [
        (0, 100, 10_000.0, False),  # nothing to refresh
        (255, 1_000, 1.0, False),
        (256, 1_000, 1.0, True),  # min_writes
        (1_999, 100_000, 1.0, False),  # 2 % of 100,000 is 2,000
        (2_000, 100_000, 1.0, True),
        (1, 100, 299.0, False),
        (1, 100, 300.0, True),  # max_age_s
        (1, 100, None, False),
    ],
)
def test_refresh_due(pending: int, indexed: int, age: float | None, due: bool) -> None:
    assert fts.refresh_due(pending, indexed, age, fts.RefreshPolicy()) is due


def test_an_empty_table_can_be_indexed_and_searched(offline: Database) -> None:
    offline.execute("CREATE TABLE notes (id BIGINT, body VARCHAR)")
    keywords = fts.KeywordIndex(offline, "notes", "id", "body")
    keywords.open()
    assert keywords.search("anything") == []
    keywords.note_write(1, "first note about sourdough")
    assert [i for i, _ in keywords.search("sourdough")] == [1]
