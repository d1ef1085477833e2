"""Admission control: take a request, queue it with a reason, or refuse it.

Refusals are typed results, not exceptions: a full queue or a request that
can never fit is a normal answer the caller shows to the user. A request
that is taken is either starting at the next step or queued, and the
decision says why it waits (by running the policy on the would-be state,
so the reason is the one the next step will really see).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from app.engine.scheduler.config import SchedulerConfig
from app.engine.scheduler.plan import WaitReason
from app.engine.scheduler.policy import plan_step
from app.engine.scheduler.state import RequestState, SchedRequest, SeqState


class Admission(enum.IntEnum):
    """The outcome of ``admit``; the order means something.

    Up to ``QUEUED_BEHIND`` the request is taken; from
    ``REFUSED_QUEUE_FULL`` on it is not, and the caller must not add it.
    """

    ACCEPTED = 0  # starts at the next step
    QUEUED_NO_SLOT = 1
    QUEUED_NO_KV = 2
    QUEUED_YIELDING = 3
    QUEUED_BEHIND = 4
    REFUSED_QUEUE_FULL = 5
    REFUSED_TOO_LARGE = 6
    REFUSED_DUPLICATE = 7

    @property
    def is_refused(self) -> bool:
        return self >= Admission.REFUSED_QUEUE_FULL

    @property
    def is_queued(self) -> bool:
        return Admission.ACCEPTED < self < Admission.REFUSED_QUEUE_FULL


@dataclass(frozen=True, slots=True)
class AdmissionDecision:
    """The outcome and one line a user can read (ids and sizes only)."""

    admission: Admission
    message: str

    @property
    def taken(self) -> bool:
        return not self.admission.is_refused


_QUEUED = {
    WaitReason.NO_SLOT: (
        Admission.QUEUED_NO_SLOT,
        "Queued: all {slots} sequence slots hold work at least as urgent; "
        "it starts when one frees.",
    ),
    WaitReason.NO_KV: (
        Admission.QUEUED_NO_KV,
        "Queued: it needs {need:,} KV cells and work at least as urgent holds "
        "the context's {kv:,}; it starts when enough free.",
    ),
    WaitReason.YIELDING: (
        Admission.QUEUED_YIELDING,
        "Queued: {cls} work waits while interactive work runs.",
    ),
    WaitReason.BEHIND: (
        Admission.QUEUED_BEHIND,
        "Queued behind more urgent requests that start first.",
    ),
}


def _refusal(
    request: SchedRequest, seqs: Sequence[SeqState], config: SchedulerConfig
) -> AdmissionDecision | None:
    """The reason to refuse outright, if any; cheapest checks first."""
    if any(s.request_id == request.request_id for s in seqs if not s.state.is_finished):
        return AdmissionDecision(
            Admission.REFUSED_DUPLICATE, f"Request {request.request_id} is already in the engine."
        )
    if request.max_kv_tokens > config.kv_budget_tokens:
        return AdmissionDecision(
            Admission.REFUSED_TOO_LARGE,
            f"Refused: the prompt ({request.prompt_tokens:,} tokens) plus up to "
            f"{request.max_tokens:,} new tokens needs {request.max_kv_tokens:,} KV cells, "
            f"more than the context's {config.kv_budget_tokens:,}. Shorten the conversation "
            "or ask for fewer tokens.",
        )
    queued = sum(1 for s in seqs if s.state is RequestState.WAITING)
    if queued >= config.max_queue:
        return AdmissionDecision(
            Admission.REFUSED_QUEUE_FULL,
            f"Refused: {queued} requests already wait to start (the limit is "
            f"{config.max_queue}). Try again when some have finished.",
        )
    return None


def admit(
    request: SchedRequest, seqs: Sequence[SeqState], now: float, config: SchedulerConfig
) -> AdmissionDecision:
    """Decide whether ``request`` may join the live ``seqs``, and how it will wait."""
    refused = _refusal(request, seqs, config)
    if refused is not None:
        return refused
    plan = plan_step(now, [*seqs, SeqState.waiting(request)], config)
    if any(s.request_id == request.request_id for s in plan.start):
        return AdmissionDecision(Admission.ACCEPTED, "Accepted: it starts at the next step.")
    reason = next(b.reason for b in plan.blocked if b.request_id == request.request_id)
    admission, template = _QUEUED[reason]
    message = template.format(
        slots=config.n_seq_max,
        need=request.prompt_tokens,
        kv=config.kv_budget_tokens,
        cls=request.priority.name.capitalize(),
    )
    return AdmissionDecision(admission, message)
