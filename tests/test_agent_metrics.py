"""Per-agent metrics: the pure computation, table-driven, and the query over the real trace
and outbox tables."""

from __future__ import annotations

from datetime import timedelta

import pytest
from agent_fakes import T0, SendMail

from app.agents.autonomy import Autonomy, AutonomyStore, Owner
from app.agents.metrics import (
    ApprovalRow,
    MetricsRunRow,
    compute_metrics,
    percentile,
    query_metrics,
)
from app.agents.outbox import Outbox
from app.agents.trace import RunState, TraceStore
from app.memory.db import Database


def run(
    state: str, seconds: float | None = 1.0, tokens: int = 100, device_s: float = 0.5
) -> MetricsRunRow:
    return MetricsRunRow("a", state, seconds, tokens, device_s)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, 0.0),
        ([3.0], 99, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(n) for n in range(1, 101)], 95, 95.0),
        ([float(n) for n in range(1, 101)], 99, 99.0),
        ([5.0, 1.0, 3.0], 100, 5.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize(
    ("runs", "expect"),
    [
        ([], {"runs": 0, "success_rate": 0.0, "tokens_per_task": None, "p50_s": 0.0}),
        (
            [run("succeeded"), run("waiting_for_approval"), run("failed"), run("stopped")],
            {"runs": 4, "succeeded": 2, "failed": 2, "success_rate": 0.5, "failure_rate": 0.5},
        ),
        (
            [run("refused", 0.0, 0, 0.0), run("cancelled"), run("succeeded")],
            {"runs": 3, "succeeded": 1, "failed": 0, "tokens_per_task": 200.0},
        ),
        (
            [run("running", None), run("succeeded", 2.0), run("interrupted", 4.0)],
            {"runs": 2, "failed": 1, "p50_s": 2.0, "p99_s": 4.0, "device_s_per_task": 1.0},
        ),
    ],
)
def test_runs_rates_latency_and_cost_per_task(
    runs: list[MetricsRunRow], expect: dict[str, object]
) -> None:
    (metrics,) = compute_metrics(runs, [], agent_ids=["a"])
    for name, value in expect.items():
        assert getattr(metrics, name) == value, name


def test_cost_uses_the_agents_price_per_1k_tokens_and_local_is_free() -> None:
    runs = [
        MetricsRunRow("remote", "succeeded", 1.0, 3000, 0.0),
        MetricsRunRow("local", "succeeded", 1.0, 3000, 2.0),
    ]
    remote, local = sorted(
        compute_metrics(runs, [], price_per_1k_tokens={"remote": 0.5}),
        key=lambda m: m.agent_id,
        reverse=True,
    )
    assert (remote.agent_id, remote.cost, remote.cost_per_task) == ("remote", 1.5, 1.5)
    assert (local.cost, local.cost_per_task, local.device_s_per_task) == (0.0, 0.0, 2.0)


@pytest.mark.parametrize(
    ("rows", "counts", "override"),
    [
        ([], (0, 0, 0, 0), None),
        ([ApprovalRow("a", 1, "approved"), ApprovalRow("a", 1, "edited")], (2, 1, 1, 0), 0.5),
        ([ApprovalRow("a", 1, "rejected"), ApprovalRow("a", 1, None)], (2, 0, 0, 1), 0.5),
        (
            [ApprovalRow("a", 2, None), ApprovalRow("a", 0, None), ApprovalRow("a", 1, "approved")],
            (1, 1, 0, 0),
            0.0,
        ),
    ],
)
def test_approvals_and_the_override_rate(
    rows: list[ApprovalRow], counts: tuple[int, int, int, int], override: float | None
) -> None:
    (m,) = compute_metrics([], rows, agent_ids=["a"])
    assert (m.asked, m.approved, m.edited, m.rejected) == counts
    assert m.override_rate == override


def test_the_query_reads_the_trace_and_the_outbox(db: Database) -> None:
    clock_now = [T0]
    trace = TraceStore(db, clock=lambda: clock_now[0])
    for seconds, state in ((2.0, RunState.SUCCEEDED), (6.0, RunState.FAILED)):
        record = trace.start_run("inbox", "manual")
        clock_now[0] += timedelta(seconds=seconds)
        trace.finish_run(record.id, state)
    trace.start_run("inbox", "manual")  # still running: not counted
    send = SendMail()
    outbox = Outbox(
        db, lambda account, name: send.action(), AutonomyStore(db), clock=lambda: clock_now[0]
    )
    owner = Owner.at_cli("tester")
    ids = [
        outbox.propose(
            "inbox", "r", send.prepare({"to": f"{n}@x.org", "body": "hi"}), [], [], Autonomy.ASK
        ).id
        for n in range(3)
    ]
    outbox.approve(ids[0], owner)
    outbox.approve(ids[1], owner, {"to": "1@x.org", "body": "hello"})
    outbox.reject(ids[2], owner, "no")
    outbox.propose(
        "inbox", "r", send.prepare({"to": "auto@x.org", "body": "hi"}), [], [], Autonomy.NOTIFY
    )

    (m,) = query_metrics(db, agent_ids=["idle"])[1:]
    assert (m.agent_id, m.runs, m.succeeded, m.failed) == ("inbox", 2, 1, 1)
    assert (m.p50_s, m.p99_s) == (2.0, 6.0)
    assert (m.asked, m.approved, m.edited, m.rejected) == (3, 1, 1, 1)
    assert m.override_rate == pytest.approx(2 / 3)
    idle = query_metrics(db, agent_ids=["idle"])[0]
    assert (idle.agent_id, idle.runs, idle.asked) == ("idle", 0, 0)
    assert query_metrics(db, since=T0 + timedelta(days=1)) == []
