"""The decision of one step, handed from the policy to the mechanism.

A ``StepPlan`` is plain frozen data (like vLLM's ``SchedulerOutput``): the
mechanism carries it out in this order, each part at most once per step:

1. ``release``: finished or cancelled sequences; clear their slot's KV
   and drop any swapped-out copy.
2. ``preempt``: ``SWAP_OUT`` saves the slot's KV (host memory or a disk
   snapshot) and clears the slot; ``KEEP`` leaves the KV where it is and
   simply leaves the sequence out of this batch.
3. ``resume``: ``SWAP_IN`` restores a saved copy into the named slot;
   ``NONE`` means the KV never left the slot.
4. ``start``: a new request takes the (empty) slot.
5. One batch: one token for each of ``decode``, and the prompt tokens
   ``[start, start + n_tokens)`` of each of ``prefill``. The chunk that
   ``completes_prompt`` wants logits: the first token is sampled from them.

``blocked`` says why each live request that does no work this step waits;
it is for metrics and the UI, the mechanism need not read it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PreemptAction(enum.StrEnum):
    """What happens to a paused sequence's KV."""

    KEEP = "keep"  # stays in its slot, counted against the KV budget
    SWAP_OUT = "swap_out"  # saved elsewhere; the slot and its cells are freed


class ResumeAction(enum.StrEnum):
    """What a resuming sequence needs before it can run."""

    NONE = "none"  # its KV is still in its slot
    SWAP_IN = "swap_in"  # restore the saved copy into the slot


class WaitReason(enum.StrEnum):
    """Why a live request does no work this step."""

    YIELDING = "yielding"  # its class pauses while interactive work is live
    NO_SLOT = "no_slot"  # every slot holds work at least as urgent
    NO_KV = "no_kv"  # the KV budget is held by work at least as urgent
    BEHIND = "behind"  # a more urgent request waits to start first
    PREEMPTED = "preempted"  # swapped out this step to make room


@dataclass(frozen=True, slots=True)
class Release:
    """A finished request's resources to free."""

    request_id: str
    slot: int | None  # None when it held no slot
    drop_swapped: bool  # a swapped-out copy exists and can be deleted


@dataclass(frozen=True, slots=True)
class Preemption:
    request_id: str
    slot: int  # the slot it is in now
    action: PreemptAction


@dataclass(frozen=True, slots=True)
class Resume:
    request_id: str
    slot: int  # the slot it runs in from this step
    action: ResumeAction


@dataclass(frozen=True, slots=True)
class Start:
    request_id: str
    slot: int


@dataclass(frozen=True, slots=True)
class Decode:
    request_id: str
    slot: int


@dataclass(frozen=True, slots=True)
class PrefillChunk:
    request_id: str
    slot: int
    start: int  # first prompt token (= KV position) of this chunk
    n_tokens: int
    completes_prompt: bool


@dataclass(frozen=True, slots=True)
class Blocked:
    request_id: str
    reason: WaitReason


@dataclass(frozen=True, slots=True)
class StepPlan:
    """Everything the mechanism does in one step; see the module docstring."""

    now: float
    release: tuple[Release, ...] = ()
    preempt: tuple[Preemption, ...] = ()
    resume: tuple[Resume, ...] = ()
    start: tuple[Start, ...] = ()
    decode: tuple[Decode, ...] = ()
    prefill: tuple[PrefillChunk, ...] = ()
    blocked: tuple[Blocked, ...] = ()
    kv_claimed: int = 0  # cells claimed by resident sequences after this step

    @property
    def n_tokens(self) -> int:
        """Tokens in this step's batch."""
        return len(self.decode) + sum(chunk.n_tokens for chunk in self.prefill)

    @property
    def scheduled(self) -> frozenset[str]:
        """Ids of the requests that do work this step."""
        return frozenset(d.request_id for d in self.decode) | frozenset(
            p.request_id for p in self.prefill
        )

    @property
    def is_idle(self) -> bool:
        """Nothing to run and nothing to move."""
        return not (self.release or self.preempt or self.decode or self.prefill)
