"""Per-agent metrics: runs, success, latency, cost per completed task, and the owner's overrides.

Pure computation over rows (:func:`compute_metrics`) plus one query that
reads the rows from the trace and outbox tables (:func:`query_metrics`).

Definitions, so the numbers mean one thing everywhere (CLI, Agents window):

- *runs*: finished runs (RUNNING ones are not counted yet).
- *succeeded*: runs that did their task: a final answer, or an action
  proposed to the owner (``waiting_for_approval``). *failed*: ``failed``,
  ``stopped`` (a limit or a loop) and ``interrupted``. Refused (over budget)
  and cancelled runs are neither; the two rates are over all finished runs.
- *latency*: p50/p95/p99 (nearest rank) of finished runs' wall time.
- *cost per completed task*: tokens, device seconds and money of all runs
  divided by the succeeded ones; money is tokens / 1000 x the agent's price
  per 1k tokens (a remote model's; 0 for local models).
- *approvals*: ``asked`` is every action that waited for the owner
  (autonomy ASK after policy); ``approved``, ``edited`` and ``rejected`` are
  the owner's decisions on them; the override rate is
  (edited + rejected) / asked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.memory.db import Database, to_db_time

__all__ = [
    "AgentMetrics",
    "ApprovalRow",
    "MetricsRunRow",
    "compute_metrics",
    "percentile",
    "query_metrics",
]

SUCCEEDED = frozenset({"succeeded", "waiting_for_approval"})
FAILED = frozenset({"failed", "stopped", "interrupted"})
ASK_LEVEL = 1  # app.agents.autonomy.Autonomy.ASK


@dataclass(frozen=True, slots=True)
class MetricsRunRow:
    """One traced run, as metrics need it."""

    agent_id: str
    state: str
    duration_s: float | None  # None while running
    tokens: int
    device_s: float


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    """One action: the level that decided it and the owner's decision, if any."""

    agent_id: str
    autonomy: int
    decision: str | None  # approved, edited, rejected (the owner's), or None


@dataclass(frozen=True, slots=True)
class AgentMetrics:
    """One agent's numbers; see the module docstring for what each means."""

    agent_id: str
    runs: int
    succeeded: int
    failed: int
    success_rate: float
    failure_rate: float
    p50_s: float
    p95_s: float
    p99_s: float
    tokens: int
    device_s: float
    cost: float
    tokens_per_task: float | None  # None: no succeeded run yet
    device_s_per_task: float | None
    cost_per_task: float | None
    asked: int
    approved: int
    edited: int
    rejected: int
    override_rate: float | None  # None: nothing asked yet

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def compute_metrics(
    runs: Iterable[MetricsRunRow],
    approvals: Iterable[ApprovalRow],
    *,
    agent_ids: Iterable[str] = (),
    price_per_1k_tokens: Mapping[str, float] | None = None,
) -> list[AgentMetrics]:
    """Metrics per agent (every agent in the rows, plus ``agent_ids``), by agent id."""
    by_agent: dict[str, list[MetricsRunRow]] = {a: [] for a in agent_ids}
    for run in runs:
        if run.duration_s is not None:
            by_agent.setdefault(run.agent_id, []).append(run)
    asked: dict[str, list[ApprovalRow]] = {}
    for row in approvals:
        by_agent.setdefault(row.agent_id, [])
        if row.autonomy == ASK_LEVEL:
            asked.setdefault(row.agent_id, []).append(row)
    prices = price_per_1k_tokens or {}
    return [
        _agent_metrics(agent, by_agent[agent], asked.get(agent, []), prices.get(agent, 0.0))
        for agent in sorted(by_agent)
    ]


def _agent_metrics(
    agent_id: str, runs: list[MetricsRunRow], asked: list[ApprovalRow], price: float
) -> AgentMetrics:
    succeeded = sum(1 for r in runs if r.state in SUCCEEDED)
    failed = sum(1 for r in runs if r.state in FAILED)
    durations = [r.duration_s for r in runs if r.duration_s is not None]
    tokens = sum(r.tokens for r in runs)
    device_s = sum(r.device_s for r in runs)
    cost = tokens / 1000 * price
    decisions = [a.decision for a in asked]
    edited, rejected = decisions.count("edited"), decisions.count("rejected")
    return AgentMetrics(
        agent_id=agent_id,
        runs=len(runs),
        succeeded=succeeded,
        failed=failed,
        success_rate=_ratio(succeeded, len(runs)) or 0.0,
        failure_rate=_ratio(failed, len(runs)) or 0.0,
        p50_s=percentile(durations, 50),
        p95_s=percentile(durations, 95),
        p99_s=percentile(durations, 99),
        tokens=tokens,
        device_s=device_s,
        cost=cost,
        tokens_per_task=_ratio(tokens, succeeded),
        device_s_per_task=_ratio(device_s, succeeded),
        cost_per_task=_ratio(cost, succeeded),
        asked=len(asked),
        approved=decisions.count("approved"),
        edited=edited,
        rejected=rejected,
        override_rate=_ratio(edited + rejected, len(asked)),
    )


def _ratio(part: float, whole: int) -> float | None:
    return part / whole if whole else None


# -- the query ---------------------------------------------------------------------------
_RUNS_SQL = (
    "SELECT agent_id, state, epoch(finished_at) - epoch(started_at), "
    "prompt_tokens + completion_tokens, device_s FROM agent_trace_runs "
    "WHERE state <> 'running' AND (? IS NULL OR started_at >= ?)"
)
# The owner's decision on each action; an action has at most one (approve, edit or reject).
_APPROVALS_SQL = (
    "SELECT a.agent_id, a.autonomy, max(p.decision) FROM outbox_actions a "
    "LEFT JOIN outbox_approvals p ON p.action_id = a.id AND p.decided_by LIKE 'owner:%' "
    "AND p.decision IN ('approved', 'edited', 'rejected') "
    "WHERE (? IS NULL OR a.created_at >= ?) GROUP BY a.id, a.agent_id, a.autonomy"
)


def query_metrics(
    db: Database,
    *,
    since: datetime | None = None,
    agent_ids: Iterable[str] = (),
    price_per_1k_tokens: Mapping[str, float] | None = None,
) -> list[AgentMetrics]:
    """Metrics of every agent with runs or actions since ``since`` (all time: None)."""
    bound = None if since is None else to_db_time(since)
    runs = [
        MetricsRunRow(str(r[0]), str(r[1]), None if r[2] is None else float(r[2]), int(r[3]),
                      float(r[4]))
        for r in db.fetchall(_RUNS_SQL, [bound, bound])
    ]  # fmt: skip
    approvals = [
        ApprovalRow(str(r[0]), int(r[1]), None if r[2] is None else str(r[2]))
        for r in db.fetchall(_APPROVALS_SQL, [bound, bound])
    ]
    return compute_metrics(
        runs, approvals, agent_ids=agent_ids, price_per_1k_tokens=price_per_1k_tokens
    )
