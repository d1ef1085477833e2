"""Urgency: how a request's class, wait and deadline turn into an order.

``effective_priority`` is the base class (0 interactive .. 2 background)
minus ``aging_rate`` per second waited, minus one class when the deadline
is within ``deadline_horizon_s``. Lower is more urgent, as for ``Priority``.

The policy compares *bands*, the effective priority rounded up to a whole
class, so aging promotes a request one full class at a time; a half-aged
background request is still background. Within a band the order is
earliest deadline first, then first come first served. Preempting for a
slot or for a new start takes a strictly less urgent band, so requests of
the same band do not thrash each other.
"""

from __future__ import annotations

import math

from app.engine.scheduler.config import SchedulerConfig
from app.engine.scheduler.state import SeqState

# Float slack so that exactly one class of aging is one whole class.
_EPS = 1e-9

RankKey = tuple[int, float, float, str]


def deadline_urgency(seq: SeqState, now: float, config: SchedulerConfig) -> float:
    """1.0 when the deadline is within the horizon (or missed), else 0.0.

    A missed deadline gets no more than that: late work should not trample
    everyone else.
    """
    deadline = seq.request.deadline
    if deadline is None or deadline - now > config.deadline_horizon_s:
        return 0.0
    return 1.0


def effective_priority(seq: SeqState, now: float, config: SchedulerConfig) -> float:
    """The request's urgency now, in classes; lower is served first."""
    aged = config.aging_rate * seq.waited(now)
    return float(seq.request.priority) - aged - deadline_urgency(seq, now, config)


def priority_band(seq: SeqState, now: float, config: SchedulerConfig) -> int:
    """The whole class a request competes in (effective priority rounded up)."""
    return math.ceil(effective_priority(seq, now, config) - _EPS)


def rank_key(seq: SeqState, now: float, config: SchedulerConfig) -> RankKey:
    """Sort key: band, then earliest deadline, then arrival, then id (a total order)."""
    deadline = seq.request.deadline
    return (
        priority_band(seq, now, config),
        math.inf if deadline is None else deadline,
        seq.request.arrival,
        seq.request_id,
    )
