"""``plan_step``: which sequences run this step, and with how many tokens.

A pure function of (now, the live sequences, the config). It works in two
passes over the live requests in rank order (see ``priority``):

1. **Who runs.** Each request in turn asks for what one more step needs:

   - a resident sequence (KV in a slot) needs one more KV cell to decode,
     nothing more to prefill (its whole prompt was claimed when it
     started). If the KV budget is short it swaps out sequences ranked
     below it, any class: the most urgent resident can always progress.
   - a request without a slot (new, or swapped out) needs a free slot and
     its claim (the whole prompt, or its swapped-out KV plus one cell). It
     may swap out only residents of a strictly less urgent band, lowest
     ranked first, so peers of one band never thrash each other. When it
     cannot get in, no request ranked below it may start this step: a
     large prompt is not overtaken for ever by small ones. Likewise nothing
     ranked below a sequence swapped out this step may start in the room
     its eviction left over.
   - while interactive-band work is live, bands at or past
     ``config.yield_class`` are skipped (paused, KV kept).

   A resident that does not run is preempted with ``KEEP``; one swapped out
   to make room is preempted with ``SWAP_OUT``.

2. **How the step's tokens split.** Every running sequence gets one token
   (its decode token, or the first token of its prefill chunk); this always
   fits because ``step_token_budget >= n_seq_max``. What is left goes to
   prefill chunks in rank order, each up to the rest of its prompt.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from app.engine.scheduler.config import SchedulerConfig
from app.engine.scheduler.plan import (
    Blocked,
    Decode,
    PreemptAction,
    Preemption,
    PrefillChunk,
    Resume,
    ResumeAction,
    Start,
    StepPlan,
    WaitReason,
)
from app.engine.scheduler.priority import rank_key
from app.engine.scheduler.state import RequestState, SeqState
from app.engine.types import Priority


@dataclass(slots=True)
class _Cand:
    """One live request while the plan is being made."""

    index: int  # its rank, 0 most urgent
    seq: SeqState
    band: int
    slot: int | None  # the slot it holds after the plan
    selected: bool = False
    evicted: bool = False
    reason: WaitReason | None = None
    tokens: int = 0


class _Pool:
    """Free slots and KV cells as the plan takes and frees them."""

    def __init__(self, cands: Sequence[_Cand], config: SchedulerConfig) -> None:
        held = {c.slot for c in cands if c.slot is not None}
        self.free_slots = [s for s in range(config.n_seq_max) if s not in held]
        self.kv_free = config.kv_budget_tokens - sum(c.seq.kv_claim() for c in cands)
        self.first_victim = len(cands)  # rank of the most urgent sequence swapped out

    def evict(self, victim: _Cand) -> None:
        assert victim.slot is not None
        victim.evicted = True
        self.first_victim = min(self.first_victim, victim.index)
        victim.reason = WaitReason.PREEMPTED
        self.kv_free += victim.seq.kv_claim()
        bisect.insort(self.free_slots, victim.slot)

    def take(self, cand: _Cand, cells: int) -> None:
        cand.selected = True
        self.kv_free -= cells
        if cand.slot is None:
            cand.slot = self.free_slots.pop(0)


def _victims(
    ranked: Sequence[_Cand], index: int, short_kv: int, short_slots: int, min_band: int | None
) -> list[_Cand] | None:
    """Residents ranked below ``index``, lowest first, until they free enough.

    Lowest first even when a higher one alone would do: keeping a lower
    ranked sequence while swapping out a higher one would invert priority.
    None when even all of them would not be enough (then nobody is evicted).
    """
    taken: list[_Cand] = []
    freed_kv = freed_slots = 0
    for cand in reversed(ranked[index + 1 :]):
        if freed_kv >= short_kv and freed_slots >= short_slots:
            break
        if cand.slot is None or cand.evicted or (min_band is not None and cand.band < min_band):
            continue
        taken.append(cand)
        freed_kv += cand.seq.kv_claim()
        freed_slots += 1
    if freed_kv >= short_kv and freed_slots >= short_slots:
        return taken
    return None


def _grow(ranked: Sequence[_Cand], index: int, pool: _Pool) -> None:
    """Give a resident sequence its next step, swapping out lower ranks if KV is short."""
    cand = ranked[index]
    need = 0 if cand.seq.in_prefill else 1
    if pool.kv_free < need:
        victims = _victims(ranked, index, need - pool.kv_free, 0, None)
        if victims is None:
            cand.reason = WaitReason.NO_KV
            return
        for victim in victims:
            pool.evict(victim)
    pool.take(cand, need)


def _place(ranked: Sequence[_Cand], index: int, pool: _Pool) -> bool:
    """Give a request without a slot a slot and its claim; False when it must wait."""
    cand = ranked[index]
    need = cand.seq.claim_running()
    short_kv = max(need - pool.kv_free, 0)
    short_slots = 0 if pool.free_slots else 1
    if short_kv or short_slots:
        victims = _victims(ranked, index, short_kv, short_slots, cand.band + 1)
        if victims is None:
            no_slot = short_slots and _victims(ranked, index, 0, 1, cand.band + 1) is None
            cand.reason = WaitReason.NO_SLOT if no_slot else WaitReason.NO_KV
            return False
        for victim in victims:
            pool.evict(victim)
    pool.take(cand, need)
    return True


def _is_yielding(ranked: Sequence[_Cand], config: SchedulerConfig) -> bool:
    """Whether less urgent classes pause this step for interactive work."""
    if config.yield_class is None:
        return False
    return any(c.band <= Priority.INTERACTIVE for c in ranked)


def _select(ranked: Sequence[_Cand], pool: _Pool, config: SchedulerConfig) -> None:
    """Pass 1: decide who runs, in rank order."""
    yielding = _is_yielding(ranked, config)
    starts_open = True
    for index, cand in enumerate(ranked):
        if cand.evicted:
            continue
        if yielding and config.yield_class is not None and cand.band >= config.yield_class:
            cand.reason = WaitReason.YIELDING
        elif cand.slot is not None:
            _grow(ranked, index, pool)
        elif not starts_open or index > pool.first_victim:
            cand.reason = WaitReason.BEHIND
        else:
            starts_open = _place(ranked, index, pool)


def _split_tokens(ranked: Sequence[_Cand], config: SchedulerConfig) -> None:
    """Pass 2: one token for every runner, then the rest to prefills in rank order."""
    runners = [c for c in ranked if c.selected]
    left = config.step_token_budget - len(runners)
    for cand in runners:
        cand.tokens = 1
        if cand.seq.in_prefill and left > 0:
            extra = min(cand.seq.prompt_left - 1, left)
            cand.tokens += extra
            left -= extra


def _moves(cand: _Cand) -> tuple[Preemption | None, Resume | None, Start | None]:
    """The preemption, resume or start this candidate's decision implies."""
    seq = cand.seq
    if cand.evicted:
        assert seq.slot is not None
        return Preemption(seq.request_id, seq.slot, PreemptAction.SWAP_OUT), None, None
    if not cand.selected:
        if seq.state.is_running:
            assert seq.slot is not None
            return Preemption(seq.request_id, seq.slot, PreemptAction.KEEP), None, None
        return None, None, None
    assert cand.slot is not None
    if seq.state is RequestState.WAITING:
        return None, None, Start(seq.request_id, cand.slot)
    if seq.state is RequestState.PREEMPTED:
        action = ResumeAction.NONE if seq.resident else ResumeAction.SWAP_IN
        return None, Resume(seq.request_id, cand.slot, action), None
    return None, None, None


def _work(cand: _Cand) -> Decode | PrefillChunk | Blocked:
    """This step's work for a candidate, or why it has none."""
    seq = cand.seq
    if not cand.selected:
        assert cand.reason is not None
        return Blocked(seq.request_id, cand.reason)
    assert cand.slot is not None
    if not seq.in_prefill:
        return Decode(seq.request_id, cand.slot)
    done = cand.tokens == seq.prompt_left
    return PrefillChunk(seq.request_id, cand.slot, seq.prompt_done, cand.tokens, done)


def _build(now: float, ranked: Sequence[_Cand], pool: _Pool, config: SchedulerConfig) -> StepPlan:
    moves = [_moves(c) for c in ranked]
    work = [_work(c) for c in ranked]
    return StepPlan(
        now=now,
        preempt=tuple(p for p, _, _ in moves if p is not None),
        resume=tuple(r for _, r, _ in moves if r is not None),
        start=tuple(s for _, _, s in moves if s is not None),
        decode=tuple(w for w in work if isinstance(w, Decode)),
        prefill=tuple(w for w in work if isinstance(w, PrefillChunk)),
        blocked=tuple(w for w in work if isinstance(w, Blocked)),
        kv_claimed=config.kv_budget_tokens - pool.kv_free,
    )


def plan_step(now: float, seqs: Sequence[SeqState], config: SchedulerConfig) -> StepPlan:
    """Decide one step for the live sequences; finished ones are ignored.

    Pure: ``seqs`` are not changed. Guarantees, for consistent input: at
    most ``n_seq_max`` resident sequences, KV claims within
    ``kv_budget_tokens``, at most ``step_token_budget`` tokens, at least one
    token for every sequence that runs, and, when anything is live, at
    least one sequence runs.
    """
    keyed = [(rank_key(s, now, config), s) for s in seqs if not s.state.is_finished]
    keyed.sort(key=itemgetter(0))
    ranked = [_Cand(i, s, key[0], s.slot) for i, (key, s) in enumerate(keyed)]
    pool = _Pool(ranked, config)
    _select(ranked, pool, config)
    _split_tokens(ranked, config)
    return _build(now, ranked, pool, config)
