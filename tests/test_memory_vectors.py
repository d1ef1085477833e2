"""The long-term tier's vectors, the atomicity of a write with its vector,
concurrent writers and change listeners, in a real DuckDB file."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest

from app.memory.db import Database
from app.memory.errors import VectorDimensionError
from app.memory.longterm import ChangeOp, MemoryStore
from app.memory.provenance import Provenance
from app.memory.vectors import Embedding

BY_HAND = Provenance()
OWNER_UNDO = Provenance(agent_id="owner", tool="rollback")


@pytest.fixture
def store(db: Database) -> MemoryStore:
    return MemoryStore(db, clock=lambda: datetime(2025, 3, 1, 8, 0, tzinfo=UTC))


@pytest.fixture
def reader(db: Database, db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A second connection to the same file: it sees committed data only."""
    conn = duckdb.connect(str(db_path))
    yield conn
    conn.close()


def count(db: Database, table: str) -> int:
    row = db.fetchone(f"SELECT count(*) FROM {table}")
    assert row is not None
    return int(row[0])


# -- atomicity and concurrency ------------------------------------------------------
def test_a_failure_inside_a_write_leaves_nothing_visible(
    store: MemoryStore, db: Database, reader: duckdb.DuckDBPyConnection
) -> None:
    calls: list[tuple[str, str, ChangeOp]] = []
    store.on_change(lambda *change: calls.append(change))
    kept = store.add("kept", "fact", "global", BY_HAND, vector=Embedding.of("mini", [1, 0, 0]))
    tables = ("memories", "memory_versions", "memory_vectors", "embedding_models")
    before = {t: count(db, t) for t in tables}

    with pytest.raises(VectorDimensionError) as caught:
        store.add("half", "fact", "global", BY_HAND, vector=Embedding.of("mini", [1, 0, 0, 0]))
    with pytest.raises(VectorDimensionError):
        store.update(kept.memory_id, "half", BY_HAND, vector=Embedding.of("mini", [1, 0]))

    assert (caught.value.expected, caught.value.actual) == (3, 4)
    assert "Nothing was written" in str(caught.value)
    assert {t: count(db, t) for t in tables} == before
    for table, rows in before.items():
        assert reader.execute(f"SELECT count(*) FROM {table}").fetchone() == (rows,)
    assert store.current() == [kept]
    assert store.history(kept.memory_id) == [kept]
    assert [c[2] for c in calls] == [ChangeOp.ADD]  # no listener heard of the failures


def test_readers_never_see_a_version_without_its_vector(
    store: MemoryStore, reader: duckdb.DuckDBPyConnection
) -> None:
    writes, stop = 20, threading.Event()
    orphans: list[int] = []

    def watch() -> None:
        while not stop.is_set():
            row = reader.execute(
                "SELECT count(*) FROM memory_versions v WHERE NOT EXISTS "
                "(SELECT 1 FROM memory_vectors x WHERE x.version_id = v.id)"
            ).fetchone()
            assert row is not None
            orphans.append(int(row[0]))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(writes):
            store.add(f"fact {i}", "fact", "global", BY_HAND, vector=Embedding.of("m", [i, 1.0]))
    finally:
        stop.set()
        watcher.join()
    assert orphans and set(orphans) == {0}
    assert reader.execute("SELECT count(*) FROM memory_vectors").fetchone() == (writes,)


def test_concurrent_updates_of_one_memory_chain_without_gaps(db: Database) -> None:
    store = MemoryStore(db)
    memory = store.add("0", "note", "global", BY_HAND).memory_id
    heard: list[str] = []
    store.on_change(lambda _memory, version_id, _op: heard.append(version_id))
    threads, per_thread = 4, 10
    start = threading.Barrier(threads)

    def edit(worker: int) -> None:
        start.wait()
        for i in range(per_thread):
            store.update(memory, f"{worker}:{i}", Provenance(agent_id=f"w{worker}"))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(edit, range(threads)))

    history = store.history(memory)
    assert [v.version for v in history] == list(range(1, threads * per_thread + 2))
    assert sum(v.is_current for v in history) == 1
    for older, newer in itertools.pairwise(history):
        assert older.valid_to == newer.valid_from
    assert heard == [v.id for v in history[1:]]  # listeners hear writes in commit order


def test_a_listener_hears_a_write_before_the_next_write_commits(store: MemoryStore) -> None:
    memory = store.add("0", "note", "global", BY_HAND).memory_id
    heard: list[str] = []
    first_heard, second_written = threading.Event(), threading.Event()

    def listener(_memory: str, version_id: str, _op: ChangeOp) -> None:
        if not first_heard.is_set():
            first_heard.set()
            # The second write must wait for this call; if it could commit
            # now, it would be heard first and an index in RAM would go stale.
            second_written.wait(timeout=0.3)
        heard.append(version_id)

    store.on_change(listener)

    def second() -> str:
        assert first_heard.wait(timeout=10)
        written = store.update(memory, "2", BY_HAND).id
        second_written.set()
        return written

    with ThreadPoolExecutor(max_workers=1) as pool:
        later = pool.submit(second)
        earlier = store.update(memory, "1", BY_HAND).id
        assert heard == [earlier, later.result()]


# -- vectors -----------------------------------------------------------------------
def test_vectors_round_trip_with_model_and_dimension(store: MemoryStore, db: Database) -> None:
    a = store.add("a", "fact", "global", BY_HAND, vector=Embedding.of("mini", [0.1, 0.2, 0.3]))
    b = store.add("b", "fact", "global", BY_HAND)
    store.set_vector(b.id, "mini", np.array([1.5, -2.0, 1e-7]))
    store.set_vector(b.id, "big", np.arange(5, dtype=np.float64))

    mini, big = store.vectors("mini"), store.vectors("big")
    assert mini.matrix.dtype == np.float32
    assert mini.matrix.shape == (2, 3)
    row = {vid: mini.matrix[i] for i, vid in enumerate(mini.version_ids)}
    np.testing.assert_array_equal(row[a.id], np.float32([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(row[b.id], np.float32([1.5, -2.0, 1e-7]))
    assert sorted(mini.memory_ids) == sorted([a.memory_id, b.memory_id])
    assert big.version_ids == [b.id]  # the other model's space is apart
    assert big.matrix.shape == (1, 5)
    assert (store.embedding_dimension("mini"), store.embedding_dimension("big")) == (3, 5)
    assert store.embedding_dimension("none") is None
    assert store.vectors("none").matrix.shape == (0, 0)
    stored = db.fetchall("SELECT model, dim, typeof(vector) FROM memory_vectors ORDER BY 1")
    assert {(m, d) for m, d, _ in stored} == {("mini", 3), ("big", 5)}
    assert {t for _, _, t in stored} == {"FLOAT[]"}


def test_only_live_current_versions_are_indexed_and_missing_ones_listed(
    store: MemoryStore,
) -> None:
    kept = store.add("kept", "fact", "global", BY_HAND, vector=Embedding.of("m1", [1, 0]))
    changed = store.add("old", "fact", "global", BY_HAND, vector=Embedding.of("m1", [0, 1]))
    gone = store.add("gone", "fact", "global", BY_HAND, vector=Embedding.of("m1", [1, 1]))
    new = store.update(changed.memory_id, "new", BY_HAND)
    store.delete(gone.memory_id, BY_HAND)

    assert store.vectors("m1").version_ids == [kept.id]
    assert store.versions_missing_vectors("m1") == [new]
    assert {v.id for v in store.versions_missing_vectors("m2")} == {kept.id, new.id}
    assert len(store.versions_missing_vectors("m2", limit=1)) == 1
    store.set_vector(new.id, "m1", [0.5, 0.5])
    assert sorted(store.vectors("m1").version_ids) == sorted([kept.id, new.id])
    with pytest.raises(ValueError, match="tombstone"):
        store.set_vector(store.history(gone.memory_id)[-1].id, "m1", [1, 1])


def test_a_restored_version_gets_its_vectors_back(store: MemoryStore) -> None:
    first = store.add("text", "fact", "global", BY_HAND, vector=Embedding.of("m", [3, 4]))
    store.delete(first.memory_id, BY_HAND)
    assert store.vectors("m").version_ids == []
    restored = store.rollback_memory(first.memory_id, 1, OWNER_UNDO)
    vectors = store.vectors("m")
    assert vectors.version_ids == [restored.id]
    np.testing.assert_array_equal(vectors.matrix, np.float32([[3, 4]]))


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, float("nan")], [float("inf")]])
def test_malformed_vectors_are_refused(store: MemoryStore, db: Database, bad: object) -> None:
    version = store.add("x", "fact", "global", BY_HAND)
    with pytest.raises(ValueError, match="vector"):
        store.set_vector(version.id, "m", bad)  # type: ignore[arg-type]
    assert count(db, "memory_vectors") == 0
    with pytest.raises(ValueError):
        Embedding("", np.float32([1.0]))


# -- listeners, persistence, privacy ----------------------------------------------------
def test_listeners_hear_each_committed_change_and_can_leave(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[tuple[str, str, ChangeOp]] = []

    def broken(*_: object) -> None:
        raise RuntimeError("listener bug")

    store.on_change(broken)
    leave = store.on_change(lambda *change: heard.append(change))
    with caplog.at_level(logging.ERROR, logger="soloist.memory"):
        v1 = store.add("a", "note", "global", BY_HAND)
    v2 = store.update(v1.memory_id, "b", BY_HAND)
    store.set_vector(v2.id, "m", [1.0])
    v3 = store.delete(v1.memory_id, BY_HAND)
    v4 = store.rollback_memory(v1.memory_id, 2, BY_HAND)
    leave()
    store.update(v1.memory_id, "unheard", BY_HAND)

    assert heard == [
        (v1.memory_id, v1.id, ChangeOp.ADD),
        (v1.memory_id, v2.id, ChangeOp.UPDATE),
        (v1.memory_id, v2.id, ChangeOp.VECTOR),
        (v1.memory_id, v3.id, ChangeOp.DELETE),
        (v1.memory_id, v4.id, ChangeOp.RESTORE),
    ]
    assert "listener" in caplog.text  # the broken one was logged, the write kept
    assert store.get(v1.memory_id).text == "unheard"  # type: ignore[union-attr]
