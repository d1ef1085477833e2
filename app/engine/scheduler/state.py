"""The request life cycle and the per-sequence state the policy reasons about.

The scheduler never sees prompt text: a request is known by its ids, its
priority, its sizes in tokens and its times. ``SeqState`` is the mutable
record the bookkeeping (``Scheduler``) keeps per request; the pure policy
functions only read it.

KV accounting, precisely (one "cell" holds one token of one sequence):

- while prefilling, the cells in KV are the prompt tokens decoded so far;
  the last prompt chunk yields the first sampled token (``generated == 1``);
- each decode step feeds the last sampled token (one more cell) and samples
  the next one, so ``kv_tokens == prompt_done + generated - 1``.

A sequence's *claim* on the KV budget is what it holds or has reserved: the
whole prompt from the moment it starts prefilling (so a long prompt never
stalls halfway for want of cells), then the tokens really in KV.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from app.engine.scheduler.errors import InvalidTransitionError
from app.engine.types import GenerateRequest, Priority


class RequestState(enum.IntEnum):
    """Where a request is in its life; the order means something.

    Everything after ``PREEMPTED`` is finished and terminal. The running
    states come before ``PREEMPTED``; the one edge that goes to a lower
    value is a resume (``PREEMPTED`` -> ``PREFILLING``/``DECODING``).
    Nothing ever returns to ``WAITING``. ``TRANSITIONS`` is the full table.
    """

    WAITING = 0  # admitted, never started: no slot, no KV
    PREFILLING = 1  # in a slot, prompt being decoded in chunks
    DECODING = 2  # in a slot, one token per step
    PREEMPTED = 3  # paused: KV kept in its slot, or swapped out
    FINISHED_STOPPED = 4  # end-of-generation token or a stop string
    FINISHED_LENGTH = 5  # max_tokens reached
    FINISHED_CANCELLED = 6
    FINISHED_ERROR = 7

    @property
    def is_finished(self) -> bool:
        return self > RequestState.PREEMPTED

    @property
    def is_running(self) -> bool:
        return self in (RequestState.PREFILLING, RequestState.DECODING)


FINISHED_STATES = frozenset(s for s in RequestState if s.is_finished)

TRANSITIONS: Mapping[RequestState, frozenset[RequestState]] = {
    RequestState.WAITING: frozenset(
        {RequestState.PREFILLING, RequestState.FINISHED_CANCELLED, RequestState.FINISHED_ERROR}
    ),
    RequestState.PREFILLING: frozenset({RequestState.DECODING, RequestState.PREEMPTED})
    | FINISHED_STATES,
    RequestState.DECODING: frozenset({RequestState.PREEMPTED}) | FINISHED_STATES,
    RequestState.PREEMPTED: frozenset(
        {
            RequestState.PREFILLING,
            RequestState.DECODING,
            RequestState.FINISHED_CANCELLED,
            RequestState.FINISHED_ERROR,
        }
    ),
    **{s: frozenset() for s in FINISHED_STATES},
}


def check_transition(old: RequestState, new: RequestState) -> RequestState:
    """Return ``new`` if the life cycle allows ``old -> new``, else raise.

    Kept in one place so the table above is the only truth; an illegal edge
    is a bug in whoever drives the scheduler.
    """
    if new not in TRANSITIONS[old]:
        raise InvalidTransitionError(f"request state cannot go from {old.name} to {new.name}")
    return new


@dataclass(frozen=True, slots=True)
class SchedRequest:
    """What the scheduler knows of a request: ids, urgency and sizes, no text.

    ``arrival`` and ``deadline`` are ``time.monotonic()`` seconds.
    """

    request_id: str
    agent_id: str
    session_id: str
    priority: Priority
    prompt_tokens: int
    max_tokens: int
    arrival: float
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1:
            raise ValueError(f"prompt_tokens must be at least 1, got {self.prompt_tokens}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")

    @classmethod
    def from_generate(
        cls,
        request: GenerateRequest,
        *,
        prompt_tokens: int,
        arrival: float,
        deadline: float | None = None,
    ) -> SchedRequest:
        """The scheduler's view of an engine request, once its prompt is tokenized."""
        return cls(
            request_id=request.request_id,
            agent_id=request.agent_id,
            session_id=request.session_id,
            priority=request.priority,
            prompt_tokens=prompt_tokens,
            max_tokens=request.sampling.max_tokens,
            arrival=arrival,
            deadline=deadline,
        )

    @property
    def max_kv_tokens(self) -> int:
        """Cells the sequence can ever need (the last sampled token is never fed back)."""
        return self.prompt_tokens + self.max_tokens - 1


@dataclass(slots=True)
class SeqState:
    """One request's progress; written by ``Scheduler`` only, read by the policy.

    ``slot`` is the llama.cpp sequence id whose KV holds this request, or
    None (never started, or swapped out). ``waited_s`` accumulates the time
    spent not scheduled; ``waiting_since`` is set while it is not scheduled.
    """

    request: SchedRequest
    state: RequestState = RequestState.WAITING
    prompt_done: int = 0
    generated: int = 0
    slot: int | None = None
    swapped: bool = False
    waited_s: float = 0.0
    waiting_since: float | None = None
    last_scheduled_at: float | None = None
    preemptions: int = 0

    @classmethod
    def waiting(cls, request: SchedRequest) -> SeqState:
        """A freshly admitted request: it has been waiting since it arrived."""
        return cls(request, waiting_since=request.arrival)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def resident(self) -> bool:
        """Its KV is in a slot (running, or preempted with ``KEEP``)."""
        return self.slot is not None

    @property
    def in_prefill(self) -> bool:
        return self.prompt_done < self.request.prompt_tokens

    @property
    def prompt_left(self) -> int:
        return self.request.prompt_tokens - self.prompt_done

    @property
    def kv_tokens(self) -> int:
        """Tokens really in KV (in its slot, or in its swapped-out copy)."""
        return self.prompt_done + max(self.generated - 1, 0)

    def claim_running(self) -> int:
        """Cells it claims once it has run one more step."""
        return self.request.prompt_tokens if self.in_prefill else self.kv_tokens + 1

    def kv_claim(self) -> int:
        """Cells it holds against the KV budget now; swapped-out holds none."""
        if not self.resident:
            return 0
        return self.request.prompt_tokens if self.in_prefill else self.kv_tokens

    def waited(self, now: float) -> float:
        """Seconds spent waiting (not scheduled) since arrival, up to ``now``."""
        if self.waiting_since is None:
            return self.waited_s
        return self.waited_s + max(now - self.waiting_since, 0.0)
