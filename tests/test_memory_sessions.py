"""The session tier in a real DuckDB file: runs, steps, tool results, agent
state and KV snapshot references, numbered in causal order."""

from __future__ import annotations

import logging
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from app.memory.db import Database
from app.memory.errors import (
    AgentStateConflictError,
    QueryError,
    RunFinishedError,
    RunNotFoundError,
    SessionNotFoundError,
    StoreError,
)
from app.memory.longterm import MemoryStore
from app.memory.provenance import Provenance
from app.memory.sessions import RunStatus, SessionStore, Step, ToolResult

SECRET = "the owner's private text, never to be logged"
MISSING = "0" * 32


class SteppingClock:
    """A clock that moves one second forward on every reading."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(db: Database) -> SessionStore:
    return SessionStore(db, clock=SteppingClock())


def seqs(events: list[Step | ToolResult]) -> list[int]:
    return [event.seq for event in events]


# -- causal order ---------------------------------------------------------
def test_events_of_a_run_come_back_in_causal_order(store: SessionStore) -> None:
    session = store.create_session("invoices", conversation_id="c" * 32)
    run = store.start_run(session.id, "bookkeeper")
    think = store.append_step(run.id, "thought", {"plan": ["read inbox", "file invoice"]})
    result = store.append_tool_result(run.id, "mail.search", [{"id": 7}], step_seq=think.seq)
    answer = store.append_step(run.id, "answer", "Filed 1 invoice.")
    finished = store.finish_run(run.id, RunStatus.SUCCEEDED)

    assert (run.started_seq, think.seq, result.seq, answer.seq) == (1, 2, 3, 4)
    assert finished.finished_seq == 5
    assert (think.step_no, answer.step_no) == (1, 2)
    assert store.read_session(session.id) == [think, result, answer]
    assert store.get_session(session.id).last_seq == 5
    assert store.get_session(session.id).conversation_id == "c" * 32
    assert result.step_seq == think.seq
    assert store.read_session(session.id, after_seq=3) == [answer]


def test_interleaved_runs_share_the_session_counter(store: SessionStore) -> None:
    session = store.create_session()
    first = store.start_run(session.id, "writer")
    second = store.start_run(session.id, "checker")
    a1 = store.append_step(first.id, "draft", "v1")
    b1 = store.append_step(second.id, "check", "ok?")
    a2 = store.append_tool_result(first.id, "docs.save", {"saved": True})
    store.finish_run(second.id, RunStatus.CANCELLED, error="owner stopped it")

    assert seqs(store.read_session(session.id)) == [3, 4, 5]
    assert [e.run_id for e in store.read_session(session.id)] == [first.id, second.id, first.id]
    assert (a1.step_no, b1.step_no) == (1, 1)
    runs = store.runs(session.id)
    assert [r.id for r in runs] == [first.id, second.id]
    assert runs[1].status is RunStatus.CANCELLED
    assert runs[1].error == "owner stopped it"
    assert runs[1].finished_seq == 6
    assert runs[0].status is RunStatus.RUNNING
    assert runs[0].finished_at is None
    assert a2.ok


def test_seq_is_per_session(store: SessionStore) -> None:
    one, two = store.create_session("one"), store.create_session("two")
    run_one, run_two = store.start_run(one.id, "a"), store.start_run(two.id, "a")
    for _ in range(3):
        store.append_step(run_one.id, "s", None)
        store.append_step(run_two.id, "s", None)
    assert seqs(store.read_session(one.id)) == [2, 3, 4]
    assert seqs(store.read_session(two.id)) == [2, 3, 4]
    assert store.read_session(store.create_session().id) == []


def test_concurrent_appends_to_one_session_get_gap_free_seqs(db: Database) -> None:
    store = SessionStore(db)
    session = store.create_session("busy")
    threads, per_thread = 6, 20
    runs = [store.start_run(session.id, f"agent-{i}") for i in range(threads)]
    start = threading.Barrier(threads)

    def worker(index: int) -> list[int]:
        start.wait()
        saved = []
        for i in range(per_thread):
            if i % 2:
                saved.append(store.append_tool_result(runs[index].id, "t", f"{index}:{i}").seq)
            else:
                saved.append(store.append_step(runs[index].id, "s", f"{index}:{i}").seq)
        return saved

    with ThreadPoolExecutor(max_workers=threads) as pool:
        returned = list(pool.map(worker, range(threads)))

    events = store.read_session(session.id)
    expected = list(range(threads + 1, threads + threads * per_thread + 1))
    assert seqs(events) == expected
    assert sorted(seq for mine in returned for seq in mine) == expected
    for index, run in enumerate(runs):  # each thread's events keep its own order
        mine = [e for e in events if e.run_id == run.id]
        assert [_content(e) for e in mine] == [f"{index}:{i}" for i in range(per_thread)]
        assert [e.step_no for e in mine if isinstance(e, Step)] == list(range(1, 11))
    assert store.get_session(session.id).last_seq == expected[-1]


def _content(event: Step | ToolResult) -> object:
    return event.content if isinstance(event, Step) else event.output


def test_two_stores_on_two_threads_write_at_once(db: Database) -> None:
    sessions, memories = SessionStore(db), MemoryStore(db)
    session = sessions.create_session()
    run = sessions.start_run(session.id, "researcher")
    start = threading.Barrier(2)
    count = 30

    def log_steps() -> list[int]:
        start.wait()
        return [sessions.append_step(run.id, "note", i).seq for i in range(count)]

    def remember() -> list[str]:
        start.wait()
        provenance = Provenance(agent_id="researcher", run_id=run.id)
        return [memories.add(f"fact {i}", "fact", "global", provenance).id for i in range(count)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        steps_future, memories_future = pool.submit(log_steps), pool.submit(remember)
        step_seqs, version_ids = steps_future.result(), memories_future.result()

    assert step_seqs == list(range(2, count + 2))
    assert len(set(version_ids)) == count
    assert sorted(v.text for v in memories.current()) == sorted(f"fact {i}" for i in range(count))
    assert all(v.provenance.run_id == run.id for v in memories.current())


# -- the run life cycle -----------------------------------------------------
def test_a_finished_run_takes_no_more_events(store: SessionStore) -> None:
    session = store.create_session()
    run = store.start_run(session.id, "a")
    store.finish_run(run.id, RunStatus.FAILED, error="tool timed out")
    last = store.get_session(session.id).last_seq

    with pytest.raises(RunFinishedError, match="already finished \\(failed\\)"):
        store.append_step(run.id, "s", "late")
    with pytest.raises(RunFinishedError):
        store.append_tool_result(run.id, "t", "late")
    with pytest.raises(RunFinishedError):
        store.finish_run(run.id, RunStatus.SUCCEEDED)

    assert store.get_run(run.id).status is RunStatus.FAILED
    assert store.get_run(run.id).error == "tool timed out"
    assert store.get_session(session.id).last_seq == last
    assert store.read_session(session.id) == []


def test_finishing_as_running_is_refused(store: SessionStore) -> None:
    run = store.start_run(store.create_session().id, "a")
    with pytest.raises(ValueError, match="finishes as"):
        store.finish_run(run.id, RunStatus.RUNNING)
    assert store.get_run(run.id).status is RunStatus.RUNNING


def test_unknown_ids_are_reported(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError, match=MISSING):
        store.get_session(MISSING)
    with pytest.raises(SessionNotFoundError):
        store.start_run(MISSING, "a")
    with pytest.raises(SessionNotFoundError):
        store.read_session(MISSING)
    with pytest.raises(SessionNotFoundError):
        store.record_snapshot(MISSING, "k", 1, "m")
    with pytest.raises(RunNotFoundError, match=MISSING):
        store.append_step(MISSING, "s", None)
    with pytest.raises(RunNotFoundError):
        store.finish_run(MISSING, RunStatus.SUCCEEDED)


def test_tool_result_must_name_a_step_of_its_own_run(store: SessionStore) -> None:
    session = store.create_session()
    mine, other = store.start_run(session.id, "a"), store.start_run(session.id, "b")
    foreign = store.append_step(other.id, "s", None)
    with pytest.raises(ValueError, match="not a step of run"):
        store.append_tool_result(mine.id, "t", None, step_seq=foreign.seq)
    with pytest.raises(ValueError):
        store.append_tool_result(mine.id, "t", None, step_seq=mine.started_seq)
    assert store.read_session(session.id) == [foreign]


def test_json_content_round_trips_and_unstorable_values_write_nothing(
    store: SessionStore,
) -> None:
    session = store.create_session()
    run = store.start_run(session.id, "a")
    content = {"sql": "'; DROP TABLE run_steps; --", "pct": "100% _x_", "u": "ünïcode ✓\x00"}
    step = store.append_step(run.id, "thought", content)
    failed = store.append_tool_result(run.id, "web.get", None, ok=False, error="HTTP 503")

    with pytest.raises(ValueError):
        store.append_step(run.id, "thought", float("nan"))
    with pytest.raises(TypeError):
        store.append_step(run.id, "thought", {"a": {1, 2}})  # type: ignore[dict-item]

    assert store.read_session(session.id) == [step, failed]
    assert store.read_session(session.id)[0].content == content  # type: ignore[union-attr]
    assert (failed.ok, failed.error, failed.output) == (False, "HTTP 503", None)
    assert store.get_session(session.id).last_seq == failed.seq


# -- agent state ---------------------------------------------------------------
def test_agent_state_is_versioned_and_stale_writers_are_refused(store: SessionStore) -> None:
    assert store.get_state("planner") is None
    first = store.put_state("planner", {"todo": ["a"]}, expected_version=0)
    second = store.put_state("planner", {"todo": ["a", "b"]}, expected_version=1, run_id="r1")

    with pytest.raises(AgentStateConflictError) as caught:
        store.put_state("planner", {"todo": []}, expected_version=1)

    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert "Nothing was written" in str(caught.value)
    assert (first.version, second.version) == (1, 2)
    assert store.get_state("planner") == second
    assert store.get_state("planner", version=1) == first
    assert store.get_state("planner", version=3) is None
    assert store.get_state("planner", version=2).run_id == "r1"  # type: ignore[union-attr]
    assert store.put_state("other", [1], expected_version=0).version == 1
    with pytest.raises(AgentStateConflictError):
        store.put_state("fresh", {}, expected_version=1)


def test_racing_state_writers_lose_no_update(db: Database) -> None:
    store = SessionStore(db)
    store.put_state("counter", {"n": 0}, expected_version=0)
    threads, increments = 4, 10
    conflicts = []
    start = threading.Barrier(threads)

    def increment() -> None:
        start.wait()
        done = 0
        while done < increments:
            seen = store.get_state("counter")
            assert seen is not None and isinstance(seen.state, dict)
            n = seen.state["n"]
            assert isinstance(n, int)
            try:
                store.put_state("counter", {"n": n + 1}, expected_version=seen.version)
                done += 1
            except AgentStateConflictError:
                conflicts.append(1)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda _: increment(), range(threads)))

    latest = store.get_state("counter")
    assert latest is not None
    assert latest.state == {"n": threads * increments}
    assert latest.version == threads * increments + 1
    rows = db.fetchall("SELECT version FROM agent_state WHERE agent_id = 'counter' ORDER BY 1")
    assert [r[0] for r in rows] == list(range(1, latest.version + 1))


# -- KV snapshot references ---------------------------------------------------
def test_snapshot_refs_mark_where_rehydration_resumes(store: SessionStore) -> None:
    session = store.create_session()
    run = store.start_run(session.id, "a")
    store.append_step(run.id, "s", 1)
    assert store.latest_snapshot(session.id) is None
    early = store.record_snapshot(session.id, "a" * 64, 120, "m" * 64, run_id=run.id)
    later_step = store.append_step(run.id, "s", 2)
    other_model = store.record_snapshot(session.id, "b" * 64, 150, "n" * 64)
    after = store.append_tool_result(run.id, "t", 3)

    assert (early.seq, later_step.seq, other_model.seq) == (3, 4, 5)
    assert store.latest_snapshot(session.id) == other_model
    assert store.latest_snapshot(session.id, model_identity="m" * 64) == early
    assert store.latest_snapshot(session.id, model_identity="x" * 64) is None
    assert store.read_session(session.id, after_seq=early.seq) == [later_step, after]
    assert early.token_count == 120
    assert early.run_id == run.id
    with pytest.raises(ValueError):
        store.record_snapshot(session.id, "c" * 64, -1, "m" * 64)


# -- time, persistence, privacy ------------------------------------------------------
def test_times_come_from_the_clock_in_utc(db: Database) -> None:
    moment = datetime(2025, 6, 1, 14, 0, tzinfo=UTC)
    store = SessionStore(db, clock=lambda: moment)
    session = store.create_session()
    run = store.start_run(session.id, "a")
    step = store.append_step(run.id, "s", None)
    assert run.started_at == step.created_at == moment
    assert store.read_session(session.id)[0].created_at == moment
    assert store.get_run(run.id).started_at.tzinfo == UTC


def test_sessions_persist_across_reopen(db_path: Path) -> None:
    with Database.open(db_path) as first:
        store = SessionStore(first)
        session = store.create_session("kept")
        run = store.start_run(session.id, "a")
        store.append_step(run.id, "s", "before")
        events = store.read_session(session.id)

    with Database.open(db_path) as second:
        reopened = SessionStore(second)
        assert reopened.read_session(session.id) == events
        assert reopened.append_step(run.id, "s", "after").seq == 3


def test_a_failed_statement_rolls_the_event_back(db: Database, db_path: Path) -> None:
    store = SessionStore(db)
    session = store.create_session()
    run = store.start_run(session.id, "a")
    # A step row already holding the next seq makes the insert fail after the bump.
    db.execute(
        "INSERT INTO run_steps VALUES (?, 2, ?, 99, 'x', '1', TIMESTAMP '2025-01-01')",
        [session.id, run.id],
    )
    with pytest.raises(QueryError):
        store.append_step(run.id, "s", None)
    assert store.get_session(session.id).last_seq == 1
    reader = duckdb.connect(str(db_path))
    try:
        row = reader.execute("SELECT last_seq FROM sessions WHERE id = ?", [session.id]).fetchone()
    finally:
        reader.close()
    assert row == (1,)


def test_reprs_and_logs_never_carry_content(
    store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    session = store.create_session()
    with caplog.at_level(logging.DEBUG, logger="soloist.memory"):
        run = store.start_run(session.id, "a")
        step = store.append_step(run.id, "thought", {"text": SECRET})
        result = store.append_tool_result(run.id, "mail.read", SECRET)
        state = store.put_state("a", {"memo": SECRET}, expected_version=0)

    for shown in (repr(step), repr(result), repr(state), caplog.text):
        assert SECRET not in shown
    assert "json_chars=" in repr(step)
    assert run.id in caplog.text


def test_errors_survive_pickling() -> None:
    errors: list[StoreError] = [
        SessionNotFoundError("s"),
        RunNotFoundError("r"),
        RunFinishedError("r", "failed"),
        AgentStateConflictError("a", 1, 2),
    ]
    for error in errors:
        assert str(pickle.loads(pickle.dumps(error))) == str(error)
