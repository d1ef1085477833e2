"""``Scheduler``: the bookkeeping around the pure policy, for one context.

It holds the live requests, calls ``admit`` and ``plan_step``, applies each
plan to the requests' states, and credits the work the mechanism reports.
No llama.cpp, no threads, no clock of its own (the clock is injected): the
engine thread that owns the context owns its scheduler. The loop is::

    plan = scheduler.schedule()      # decide, and move states accordingly
    ...carry out plan (see plan.py for the order)...
    scheduler.complete_step(plan)    # credit tokens; max_tokens finishes
    scheduler.finish(rid, RequestState.FINISHED_STOPPED)  # on a stop token

Every state change goes through ``check_transition`` and is reported to
``on_transition`` (metrics, streams), with ids only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from app.engine.scheduler.admission import AdmissionDecision, admit
from app.engine.scheduler.config import SchedulerConfig
from app.engine.scheduler.errors import (
    InvalidTransitionError,
    SchedulerError,
    UnknownRequestError,
)
from app.engine.scheduler.plan import PreemptAction, Release, StepPlan
from app.engine.scheduler.policy import plan_step
from app.engine.scheduler.state import RequestState, SchedRequest, SeqState, check_transition

log = logging.getLogger("soloist.engine.scheduler")

TransitionListener = Callable[[str, RequestState, RequestState], None]


def _release_of(seq: SeqState) -> Release | None:
    """What a request leaving the scheduler hands back to the mechanism."""
    if seq.slot is not None:
        return Release(seq.request_id, seq.slot, drop_swapped=False)
    if seq.swapped:
        return Release(seq.request_id, None, drop_swapped=True)
    return None


class Scheduler:
    """Live requests of one llama.cpp context and the steps decided for them."""

    def __init__(
        self,
        config: SchedulerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionListener | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._on_transition = on_transition
        self._seqs: dict[str, SeqState] = {}
        self._releases: list[Release] = []
        self._pending: StepPlan | None = None

    # -- reading -----------------------------------------------------
    @property
    def config(self) -> SchedulerConfig:
        return self._config

    def __len__(self) -> int:
        return len(self._seqs)

    def get(self, request_id: str) -> SeqState | None:
        """A copy of a live request's state (None once finished)."""
        seq = self._seqs.get(request_id)
        return None if seq is None else replace(seq)

    def live(self) -> tuple[SeqState, ...]:
        """Copies of every live request's state."""
        return tuple(replace(s) for s in self._seqs.values())

    # -- requests in and out -----------------------------------------
    def add(self, request: SchedRequest) -> AdmissionDecision:
        """Admit a request (then it is live) or refuse it (then nothing changed)."""
        decision = admit(request, list(self._seqs.values()), self._clock(), self._config)
        if decision.taken:
            self._seqs[request.request_id] = SeqState.waiting(request)
        log.debug(
            "request %s (%s, %d prompt tokens): %s",
            request.request_id,
            request.priority.name,
            request.prompt_tokens,
            decision.admission.name,
        )
        return decision

    def cancel(self, request_id: str) -> bool:
        """Cancel a queued or running request; False if it is not live."""
        seq = self._seqs.get(request_id)
        if seq is None:
            return False
        self._retire(seq, RequestState.FINISHED_CANCELLED)
        return True

    def finish(self, request_id: str, state: RequestState) -> None:
        """End a live request in a finished ``state`` (a stop token, an error)."""
        seq = self._seqs.get(request_id)
        if seq is None:
            raise UnknownRequestError(request_id)
        if not state.is_finished:
            raise InvalidTransitionError(f"{state.name} is not a finished state")
        self._retire(seq, state)

    # -- steps -------------------------------------------------------
    def schedule(self) -> StepPlan:
        """Decide the next step and move every request's state to match it."""
        now = self._clock()
        plan = plan_step(now, list(self._seqs.values()), self._config)
        plan = replace(plan, release=tuple(self._releases))
        self._releases.clear()
        self._apply(plan, now)
        self._pending = plan
        return plan

    def complete_step(self, plan: StepPlan) -> tuple[str, ...]:
        """Credit the work of ``plan`` (the last one scheduled); return ids it finished.

        Requests cancelled or finished while the step ran are skipped.
        """
        if plan is not self._pending:
            raise SchedulerError("complete_step() takes the plan the last schedule() returned")
        self._pending = None
        finished = [d.request_id for d in plan.decode if self._credit_decode(d.request_id)]
        for chunk in plan.prefill:
            if self._credit_prefill(chunk.request_id, chunk.n_tokens):
                finished.append(chunk.request_id)
        return tuple(finished)

    # -- internals ---------------------------------------------------
    def _set_state(self, seq: SeqState, new: RequestState) -> None:
        old = seq.state
        if old is new:
            return
        seq.state = check_transition(old, new)
        log.debug("request %s: %s -> %s", seq.request_id, old.name, new.name)
        if self._on_transition is not None:
            self._on_transition(seq.request_id, old, new)

    def _retire(self, seq: SeqState, state: RequestState) -> None:
        self._set_state(seq, state)
        release = _release_of(seq)
        if release is not None:
            self._releases.append(release)
        del self._seqs[seq.request_id]

    def _apply(self, plan: StepPlan, now: float) -> None:
        for p in plan.preempt:
            seq = self._seqs[p.request_id]
            if seq.state.is_running:
                seq.preemptions += 1
                self._set_state(seq, RequestState.PREEMPTED)
            if p.action is PreemptAction.SWAP_OUT:
                seq.slot, seq.swapped = None, True
        for r in plan.resume:
            seq = self._seqs[r.request_id]
            seq.slot, seq.swapped = r.slot, False
            resumed = RequestState.PREFILLING if seq.in_prefill else RequestState.DECODING
            self._set_state(seq, resumed)
        for s in plan.start:
            seq = self._seqs[s.request_id]
            seq.slot = s.slot
            self._set_state(seq, RequestState.PREFILLING)
        scheduled = plan.scheduled
        for seq in self._seqs.values():
            self._account_wait(seq, now, seq.request_id in scheduled)

    @staticmethod
    def _account_wait(seq: SeqState, now: float, scheduled: bool) -> None:
        """Aging counts only time spent not scheduled."""
        if scheduled:
            seq.waited_s = seq.waited(now)
            seq.waiting_since = None
            seq.last_scheduled_at = now
        elif seq.waiting_since is None:
            seq.waiting_since = now

    def _credit_decode(self, request_id: str) -> bool:
        seq = self._seqs.get(request_id)
        if seq is None or seq.state is not RequestState.DECODING:
            return False
        seq.generated += 1
        return self._finish_at_length(seq)

    def _credit_prefill(self, request_id: str, n_tokens: int) -> bool:
        seq = self._seqs.get(request_id)
        if seq is None or seq.state is not RequestState.PREFILLING:
            return False
        seq.prompt_done = min(seq.prompt_done + n_tokens, seq.request.prompt_tokens)
        if seq.in_prefill:
            return False
        seq.generated = 1  # the last chunk's logits gave the first token
        self._set_state(seq, RequestState.DECODING)
        return self._finish_at_length(seq)

    def _finish_at_length(self, seq: SeqState) -> bool:
        if seq.generated < seq.request.max_tokens:
            return False
        self._retire(seq, RequestState.FINISHED_LENGTH)
        return True
