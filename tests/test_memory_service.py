"""The memory service: start-up off the caller's thread, following writes, crashes,
embedder failures, a change of model, ingestion, rebuilds and the office's wiring.

Real DuckDB files; ``HashEmbedder`` (see test_search) for exact, quick vectors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_search import HashEmbedder, ids, open_service

from app.memory import fts
from app.memory.backup import back_up
from app.memory.db import Database
from app.memory.errors import DatabaseClosedError, StoreError
from app.memory.fts import RefreshPolicy
from app.memory.longterm import MemoryStore
from app.memory.provenance import Provenance
from app.memory.search import SearchFilter, SearchNotReadyError, SearchUnavailableError
from app.memory.service import MemoryService, ServiceState
from app.memory.vectors import Embedding

TESTS = Path(__file__).resolve().parent
BY_HAND = Provenance()


def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def memory_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("soloist-memory")]


@pytest.fixture
def hashes() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def service(db: Database, hashes: HashEmbedder) -> Iterator[MemoryService]:
    started = open_service(db, hashes, retry_s=0.05)
    yield started
    started.close()


# -- start-up -------------------------------------------------------------------------------
class SlowToLoad(HashEmbedder):
    """An embedder whose model loads only when the test lets it (made by a slow factory)."""

    made = threading.Event()

    @classmethod
    def factory(cls, release: threading.Event) -> Callable[[], SlowToLoad]:
        def make() -> SlowToLoad:
            release.wait(30)  # loading a model, for as long as the test wants
            cls.made.set()
            return cls()

        return make


def test_start_returns_at_once_and_the_model_loads_in_the_background(db: Database) -> None:
    seeded = MemoryService(db, HashEmbedder)
    seeded.remember("plum tart for Friday", "note")
    seeded.close()
    states: list[ServiceState] = []
    release = threading.Event()
    SlowToLoad.made.clear()
    service = MemoryService(db, SlowToLoad.factory(release), on_state=states.append)

    service.start()  # returns although the model cannot load yet
    try:
        assert service.state is ServiceState.LOADING and not SlowToLoad.made.is_set()
        with pytest.raises(SearchNotReadyError):
            service.search("plum", timeout_s=0.05)
        release.set()
        assert service.wait_ready(30)
        assert states == [ServiceState.LOADING, ServiceState.SEARCHABLE, ServiceState.READY]
        assert service.search("plum")[0].text == "plum tart for Friday"
    finally:
        service.close()
    assert service.state is ServiceState.CLOSED
    assert memory_threads() == []


def test_a_service_that_is_not_started_or_is_closed_says_so(db: Database) -> None:
    service = MemoryService(db, HashEmbedder)
    with pytest.raises(SearchUnavailableError, match="not started"):
        service.search("anything")
    service.start()
    service.close()
    with pytest.raises(SearchUnavailableError, match="closed"):
        service.search("anything")
    service.close()  # twice is harmless


# -- following writes ------------------------------------------------------------------------
def test_the_index_follows_each_write_without_a_rebuild(
    service: MemoryService, hashes: HashEmbedder
) -> None:
    added = service.remember("zebra crossing by the bakery", "note")
    memory_id = added.memory_id
    found = service.search("zebra")
    assert ids(found.hits) == [memory_id] and found[0].keyword_rank == 1
    assert service.search("zebra crossing by the bakery")[0].vector_rank == 1

    vector = Embedding(hashes.model_name, hashes.vector("giraffe at the door"))
    service.store.update(memory_id, "giraffe at the door", BY_HAND, vector=vector)
    assert ids(service.search("giraffe").hits) == [memory_id]
    stale = service.search("zebra")  # vectors always answer; the old words are gone
    assert [h.keyword_rank for h in stale] == [None]
    assert service.search("giraffe at the door")[0].vector_rank == 1

    service.store.delete(memory_id, BY_HAND)
    assert service.search("giraffe").hits == ()
    assert memory_id not in ids(service.search("giraffe at the door").hits)

    service.store.rollback_memory(memory_id, 1, BY_HAND)
    assert ids(service.search("zebra").hits) == [memory_id]
    assert service.search("zebra crossing by the bakery")[0].vector_rank == 1  # vector copied
    assert service.stats().keyword_pending > 0  # all of it without rebuilding the index


def test_a_write_without_a_vector_is_embedded_in_the_background(service: MemoryService) -> None:
    added = service.store.add("walnut loaf", "note", "global", BY_HAND)  # no vector
    assert ids(service.search("walnut").hits) == [added.memory_id]  # keywords at once
    eventually(lambda: service.stats().vectors == 1)
    assert service.search("walnut loaf")[0].vector_rank == 1


def test_an_embedder_failure_keeps_the_memory_and_embeds_it_later(
    service: MemoryService, hashes: HashEmbedder, db: Database
) -> None:
    hashes.fail = True
    written = service.remember("damson jam recipe", "note")

    assert service.store.get(written.memory_id) is not None
    assert service.store.versions_missing_vectors(hashes.model_name) != []
    keyword_only = service.search("damson")
    assert ids(keyword_only.hits) == [written.memory_id]
    assert not keyword_only.vector_searched  # no vector of this model anywhere yet

    hashes.fail = False  # the model is back: the retry embeds it
    eventually(lambda: service.stats().vectors == 1)
    assert service.store.versions_missing_vectors(hashes.model_name) == []
    assert service.search("damson jam recipe")[0].vector_rank == 1


def test_a_failing_query_embedding_still_searches_keywords(
    service: MemoryService, hashes: HashEmbedder
) -> None:
    service.remember("elderflower cordial", "note")
    hashes.fail = True
    result = service.search("elderflower")
    assert not result.vector_searched and result.keyword_searched
    assert [h.text for h in result] == ["elderflower cordial"]


def test_writes_never_wait_for_a_keyword_rebuild(
    db: Database, hashes: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = fts.KeywordIndex.rebuild

    def slow_rebuild(index: fts.KeywordIndex) -> None:
        time.sleep(1.5)  # what 100,000 memories cost
        original(index)

    monkeypatch.setattr(fts.KeywordIndex, "rebuild", slow_rebuild)
    policy = RefreshPolicy(min_writes=2, share=0.0)  # two writes call for a rebuild
    service = open_service(db, hashes, keyword_policy=policy)
    try:
        service.remember("first note about hazelnuts", "note")
        service.remember("another note about almonds", "note")
        eventually(lambda: service.stats().keywords == "rebuilding")
        started = time.perf_counter()
        second = service.remember("second note about chestnuts", "note")
        assert time.perf_counter() - started < 1.0
        during = service.search("second note about chestnuts")
        assert not during.keyword_searched and during[0].memory_id == second.memory_id
        eventually(lambda: service.stats().keywords == "ready")
        after = service.search("chestnuts")
        assert after.keyword_searched
        assert [h.memory_id for h in after if h.keyword_rank] == [second.memory_id]
    finally:
        service.close()


def test_writes_the_listener_missed_are_caught_by_resync(
    service: MemoryService, db: Database
) -> None:
    elsewhere = MemoryStore(db)  # not the service's store: no listener
    added = elsewhere.add("cloudberry preserve", "note", "global", BY_HAND)
    assert service.search("cloudberry").hits == ()
    assert service.resync() == 1
    assert ids(service.search("cloudberry").hits) == [added.memory_id]
    elsewhere.delete(added.memory_id, BY_HAND)
    assert service.resync() == 1
    assert service.search("cloudberry").hits == ()
    assert service.resync() == 0


def test_concurrent_writers_and_searchers_leave_the_index_equal_to_the_file(
    service: MemoryService,
) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(seed: int) -> None:
        mine: list[str] = []
        step = 0
        while not stop.is_set():
            step += 1
            if mine and step % 3 == 0:
                service.store.update(mine[-1], f"revised {seed}-{step} barley", BY_HAND)
            elif mine and step % 5 == 0:
                service.store.delete(mine.pop(0), BY_HAND)
            else:
                mine.append(service.remember(f"writer {seed} note {step} barley").memory_id)

    def search() -> None:
        while not stop.is_set():
            service.search("barley", k=5, where=SearchFilter(scopes=("global",)))

    def guarded(target: Callable[..., None], *args: int) -> Callable[[], None]:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(write, i)) for i in range(3)]
    threads += [threading.Thread(target=guarded(search)) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert service.wait_idle(30)
    assert service.resync() == 0  # nothing was missed
    live = {v.memory_id for v in service.store.current()}
    assert service.stats().memories == len(live) == service.stats().vectors
    by_keyword = {h.memory_id for h in service.search("barley", k=100) if h.keyword_rank}
    assert by_keyword <= live and len(by_keyword) == min(len(live), 50)  # 50 candidates


# -- crashes ---------------------------------------------------------------------------------
QUERIES = ("quince", "medlar", "rowan", "a note about sloe number 4")


def _results(service: MemoryService) -> list[list[str]]:
    return [[h.memory_id for h in service.search(q, k=5).hits] for q in QUERIES]


def _write_history(service: MemoryService) -> None:
    """Batch one, a keyword rebuild, then batch two (left pending) and some changes."""
    first = [service.remember(f"a note about sloe number {i}", "note") for i in range(8)]
    eventually(lambda: service.stats().keyword_pending == 0)  # the policy rebuilt the index
    service.remember("quince paste for the cheese board", "note")
    medlar = service.remember("medlars are ripe in November", "note")
    service.store.update(first[1].memory_id, "rowan berries make a bitter jelly", BY_HAND)
    service.store.delete(first[2].memory_id, BY_HAND)
    service.store.update(medlar.memory_id, "medlars must blet before eating", BY_HAND)
    assert service.wait_idle(20)


# Batch one (8 writes) calls for a rebuild; batch two (6 ids changed) stays pending.
CRASH_POLICY = RefreshPolicy(min_writes=8, share=0.0, max_age_s=1e9)


def test_after_a_crash_the_rebuilt_index_returns_the_same_results(db_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from test_memory_service import CRASH_POLICY, _results, _write_history
        from test_search import HashEmbedder, open_service
        from app.memory.db import Database

        service = open_service(Database.open({str(db_path)!r}), HashEmbedder(),
                               keyword_policy=CRASH_POLICY)
        _write_history(service)
        print(json.dumps(_results(service)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == -9, child.stderr
    before = json.loads(child.stdout.strip().splitlines()[-1])
    assert before[0] and before[2]  # the queries find something

    db = Database.open(db_path)
    service = open_service(db, HashEmbedder(), keyword_policy=CRASH_POLICY)
    try:
        assert _results(service) == before
        assert service.stats().memories == 9
    finally:
        service.close()
        db.close()


def test_a_service_dropped_without_closing_is_rebuilt_from_the_file(db_path: Path) -> None:
    db = Database.open(db_path)
    lost = open_service(db, HashEmbedder(), keyword_policy=CRASH_POLICY)
    _write_history(lost)
    before = _results(lost)
    db.close()  # the process's hold on the file ends; the service's RAM is all that is lost
    with pytest.raises(StoreError):
        lost.search("quince")  # its cursors went with the database

    db = Database.open(db_path)
    service = open_service(db, HashEmbedder(), keyword_policy=CRASH_POLICY)
    try:
        assert _results(service) == before
    finally:
        service.close()
        lost.close()
        db.close()


@pytest.mark.parametrize("damage", ["removed", "garbage"])
def test_the_search_file_is_derived_and_rebuilt(db_path: Path, damage: str) -> None:
    db = Database.open(db_path)
    service = open_service(db, HashEmbedder(), keyword_policy=CRASH_POLICY)
    _write_history(service)
    before = _results(service)
    service.close()
    db.close()
    search_file = db_path.with_name("office.search.duckdb")
    if damage == "removed":
        search_file.unlink()
    else:
        search_file.write_bytes(b"not a database" * 1000)

    db = Database.open(db_path)
    service = open_service(db, HashEmbedder())
    try:
        after = _results(service)  # all indexed now: ties among equal scores may reorder
        assert [r[:1] for r in after] == [r[:1] for r in before]
        assert [set(r) for r in after] == [set(r) for r in before]
    finally:
        service.close()
        db.close()


# -- models ----------------------------------------------------------------------------------
def test_a_new_model_reembeds_in_the_background_and_spaces_never_mix(db: Database) -> None:
    old = open_service(db, HashEmbedder("hash-old", 16))
    texts = [f"pantry shelf {i} holds jars of preserve {i}" for i in range(5)]
    written = [old.remember(text, "note").memory_id for text in texts]
    old.close()

    new = HashEmbedder("hash-new", 16)  # the same dimension: mixing would go unnoticed
    new.gate = threading.Event()  # hold the background re-embedding
    service = open_service(db, new, embed_batch=2)
    try:
        assert not service.search(texts[3]).vector_searched  # no vector of hash-new yet
        new.gate.set()
        assert service.wait_idle(30)

        assert service.store.versions_missing_vectors("hash-new") == []
        counts = dict(db.fetchall("SELECT model, count(*) FROM memory_vectors GROUP BY model"))
        assert counts == {"hash-old": 5, "hash-new": 5}  # the old space is kept, not searched
        assert service.stats().vectors == 5 and service.model == "hash-new"
        for text, memory_id in zip(texts, written, strict=True):
            nearest = [h for h in service.search(text, k=5) if h.vector_rank == 1]
            assert [h.memory_id for h in nearest] == [memory_id]  # cosine 1: same space
        assert service.reembed_if_model_changed() is False
    finally:
        service.close()


# -- ingestion --------------------------------------------------------------------------------
def test_ingest_through_the_service_then_search_finds_the_chunk(
    service: MemoryService, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ovens.txt").write_text("The bread oven is serviced every spring by Kowalczyk.\n")
    (folder / "menu.md").write_text("# Menu\n\nSaffron buns are baked on Saturdays only.\n")
    events: list[Any] = []

    report = service.ingest(folder, progress=events.append)

    assert report.status.value == "succeeded" and report.files_indexed == 2
    assert events and events[-1].final
    hit = service.search("Kowalczyk oven", k=1)[0]
    assert hit.kind == "document_chunk" and "Kowalczyk" in hit.text
    assert hit.provenance.source_file == str((folder / "ovens.txt").resolve())
    assert hit.provenance.run_id == report.run_id and hit.provenance.tool == "ingest"
    assert hit.metadata["chunk"] == 0
    under = SearchFilter(source_file_prefix=str(folder.resolve()))
    assert {h.provenance.source_file for h in service.search("saffron buns oven", where=under)} == {
        str((folder / "ovens.txt").resolve()),
        str((folder / "menu.md").resolve()),
    }

    (folder / "ovens.txt").unlink()
    service.ingest(folder)
    assert "Kowalczyk" not in " ".join(h.text for h in service.search("Kowalczyk oven"))


# -- backups and the office ----------------------------------------------------------------------
def test_a_backup_while_the_service_runs_holds_the_office_file_only(
    service: MemoryService, db: Database
) -> None:
    for i in range(20):
        service.remember(f"ledger entry {i}", "fact")
    result = back_up(db)
    assert result.summary.row_counts["memory_versions"] == 20
    assert not any("fts" in t or "memory_text" in t for t in result.summary.row_counts)


class EngineWithEmbedder:
    """An engine fake: nothing but an embedder (and the calls the office makes)."""

    def __init__(self) -> None:
        self.embedder_calls = 0

    def embedder(self) -> HashEmbedder:
        self.embedder_calls += 1
        return HashEmbedder("all-MiniLM-L6-v2", 16)

    def close(self) -> None:
        pass


def test_the_office_starts_memory_in_the_background_without_the_engine(
    soloist_home: Path,
) -> None:
    from app.office import Office

    engines: list[EngineWithEmbedder] = []

    def make_engine() -> EngineWithEmbedder:
        engines.append(EngineWithEmbedder())
        return engines[-1]

    office = Office(soloist_home, engine_factory=make_engine)  # type: ignore[arg-type]
    try:
        memory = office.memory
        assert memory.wait_ready(30)
        assert engines == []  # loading needed no embedding, so no engine
        written = memory.remember("the office remembers fennel", "note")
        assert len(engines) == 1 and engines[0].embedder_calls == 1
        assert office.memory.search("fennel")[0].memory_id == written.memory_id
    finally:
        office.close()
    assert memory.state is ServiceState.CLOSED
    with pytest.raises(DatabaseClosedError):
        office.memory  # noqa: B018
