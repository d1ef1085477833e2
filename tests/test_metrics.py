"""The metrics ring: nearest-rank percentiles, capacity, threads, time filters."""

from __future__ import annotations

import json
import pickle
import threading
from dataclasses import replace
from typing import Any

import pytest

from app.engine.metrics import (
    MetricsRing,
    RequestRecord,
    nearest_rank,
    record_from,
    summarise,
)
from app.engine.types import FinishReason, GenerateRequest, Message, Priority, Timings

BASE = RequestRecord(
    request_id="r0",
    model="tiny",
    priority="interactive",
    agent_id="assistant",
    queue_wait_s=0.0,
    time_to_first_token_s=0.1,
    tokens_per_s=50.0,
    prompt_tokens=10,
    completion_tokens=20,
    preemptions=0,
    snapshot_bytes=0,
    finish_reason="stop",
    at=1000.0,
)


def rec(index: int, **changes: Any) -> RequestRecord:
    return replace(BASE, request_id=f"r{index}", **changes)


# --------------------------------------------------------------- percentiles


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([7.0], 50, 7.0),  # one sample is every percentile
        ([7.0], 99, 7.0),
        ([1.0, 2.0], 50, 1.0),  # rank ceil(0.5 * 2) = 1
        ([1.0, 2.0], 95, 2.0),
        ([15, 20, 35, 40, 50], 50, 35),  # the textbook example
        ([15, 20, 35, 40, 50], 30, 20),
        ([15, 20, 35, 40, 50], 100, 50),
        (list(range(1, 101)), 95, 95),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 1001)), 99, 990),
    ],
)
def test_nearest_rank(values: list[float], p: float, expected: float) -> None:
    assert nearest_rank(values, p) == expected


def test_summarise_sorts_first() -> None:
    assert summarise([3.0, 1.0, 2.0, 10.0]) == {"p50": 2.0, "p95": 10.0, "p99": 10.0, "count": 4}


def test_percentiles_by_model_and_priority() -> None:
    ring = MetricsRing()
    for i, wait in enumerate([0.1, 0.2, 0.3, 0.4]):
        ring.add(rec(i, queue_wait_s=wait))
    for i, wait in enumerate([5.0, 6.0]):
        ring.add(rec(10 + i, priority="background", queue_wait_s=wait))
    ring.add(rec(20, model="big", queue_wait_s=1.0))

    assert ring.percentiles("queue_wait_s") == {
        ("tiny", "interactive"): {"p50": 0.2, "p95": 0.4, "p99": 0.4, "count": 4},
        ("tiny", "background"): {"p50": 5.0, "p95": 6.0, "p99": 6.0, "count": 2},
        ("big", "interactive"): {"p50": 1.0, "p95": 1.0, "p99": 1.0, "count": 1},
    }


@pytest.mark.parametrize(
    ("by", "expected_keys"),
    [
        ((), {()}),
        (("model",), {("tiny",), ("big",)}),
        (("agent_id", "priority"), {("mail", "background"), ("assistant", "interactive")}),
    ],
)
def test_grouping(by: tuple[str, ...], expected_keys: set[tuple[str, ...]]) -> None:
    ring = MetricsRing()
    ring.add(rec(1))
    ring.add(rec(2, model="big"))
    ring.add(rec(3, agent_id="mail", priority="background"))
    result = ring.percentiles("completion_tokens", by=by)
    assert set(result) == expected_keys
    assert sum(summary["count"] for summary in result.values()) == 3


def test_missing_values_do_not_count() -> None:
    ring = MetricsRing()
    ring.add(rec(1, time_to_first_token_s=None, finish_reason="error"))
    ring.add(rec(2, time_to_first_token_s=0.5))
    ring.add(rec(3, model="other", time_to_first_token_s=None))
    assert ring.percentiles("time_to_first_token_s", by=("model",)) == {
        ("tiny",): {"p50": 0.5, "p95": 0.5, "p99": 0.5, "count": 1}
    }


@pytest.mark.parametrize(
    ("field", "by"),
    [("model", ()), ("no_such_field", ()), ("queue_wait_s", ("prompt_text",))],
)
def test_unknown_names_are_refused(field: str, by: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        MetricsRing().percentiles(field, by=by)


@pytest.mark.parametrize(
    ("since", "expected_count"),
    [(None, 5), (0.0, 5), (1002.0, 3), (1004.0, 1), (1004.5, 0)],
)
def test_since_filters_by_finish_time(since: float | None, expected_count: int) -> None:
    ring = MetricsRing()
    for i in range(5):
        ring.add(rec(i, at=1000.0 + i))
    result = ring.percentiles("prompt_tokens", by=(), since=since)
    assert result.get((), {"count": 0})["count"] == expected_count


# ------------------------------------------------------------------ the ring


def test_capacity_drops_the_oldest() -> None:
    ring = MetricsRing(capacity=3)
    for i in range(5):
        ring.add(rec(i))
    assert len(ring) == 3
    assert ring.dropped == 2
    assert [r["request_id"] for r in ring.snapshot()] == ["r2", "r3", "r4"]


@pytest.mark.parametrize(("n", "expected"), [(0, []), (2, ["r3", "r4"]), (99, ["r2", "r3", "r4"])])
def test_recent(n: int, expected: list[str]) -> None:
    ring = MetricsRing(capacity=3)
    for i in range(5):
        ring.add(rec(i))
    assert [r["request_id"] for r in ring.recent(n)] == expected


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MetricsRing(capacity=0)


def test_concurrent_writers_lose_nothing_and_readers_never_fail() -> None:
    ring = MetricsRing(capacity=100_000)
    writers, per_writer = 8, 2_000
    start = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        start.wait()
        for i in range(per_writer):
            ring.add(rec(worker * per_writer + i, agent_id=f"agent{worker}"))

    def read() -> None:
        start.wait()
        try:
            for _ in range(200):
                ring.percentiles("queue_wait_s", by=("agent_id",))
                ring.recent(10)
        except BaseException as exc:  # surfaced below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(ring) == writers * per_writer
    assert len({r["request_id"] for r in ring.snapshot()}) == writers * per_writer
    counts = ring.percentiles("queue_wait_s", by=("agent_id",))
    assert {key: s["count"] for key, s in counts.items()} == {
        (f"agent{w}",): per_writer for w in range(writers)
    }


def test_concurrent_writers_past_capacity_keep_exactly_capacity() -> None:
    ring = MetricsRing(capacity=500)

    def write(worker: int) -> None:
        for i in range(1000):
            ring.add(rec(worker * 1000 + i))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(ring) == 500
    assert ring.dropped == 4 * 1000 - 500


def test_snapshot_is_plain_data() -> None:
    ring = MetricsRing()
    ring.add(rec(1, time_to_first_token_s=None))
    data = ring.snapshot()
    assert json.loads(json.dumps(data)) == data
    assert pickle.loads(pickle.dumps(ring.percentiles("queue_wait_s"))) == ring.percentiles(
        "queue_wait_s"
    )
    assert data[0] == BASE.to_dict() | {"request_id": "r1", "time_to_first_token_s": None}


# ------------------------------------------------------- from a final chunk


def _request() -> GenerateRequest:
    return GenerateRequest(
        model_path="/models/tiny.gguf",
        messages=(Message("user", "secret text"),),
        priority=Priority.BACKGROUND,
        agent_id="mail",
        request_id="abc",
    )


@pytest.mark.parametrize(
    ("timings", "ttft", "tps", "completion"),
    [
        (Timings(12, 11, 0.5, 1.5, queue_s=0.25), 0.5, 10.0, 11),
        (Timings(12, 1, 0.5, 0.5), 0.5, None, 1),  # one token: no decode speed
        (Timings(12, 0, 0.0, 0.2), None, None, 0),  # failed before the first token
        (None, None, None, 0),
    ],
)
def test_record_from_a_finished_request(
    timings: Timings | None, ttft: float | None, tps: float | None, completion: int
) -> None:
    record = record_from(
        _request(), timings, FinishReason.STOP, at=5.0, preemptions=2, snapshot_bytes=4096
    )
    assert (record.request_id, record.model, record.priority, record.agent_id) == (
        "abc",
        "/models/tiny.gguf",
        "background",
        "mail",
    )
    assert (record.time_to_first_token_s, record.tokens_per_s) == (ttft, tps)
    assert record.completion_tokens == completion
    assert (record.preemptions, record.snapshot_bytes, record.finish_reason, record.at) == (
        2,
        4096,
        "stop",
        5.0,
    )
    assert "secret" not in json.dumps(record.to_dict())
