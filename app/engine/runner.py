"""The mechanism for one loaded model: carry out the scheduler's step plans.

A ``ContextRunner`` owns one llama.cpp context with ``n_seq_max`` sequence
slots and one :class:`~app.engine.scheduler.Scheduler`. Each ``step()``
asks the scheduler for a plan and carries it out in the plan's order:
release, preempt (keep or swap out), resume (swap in), start, then one
batch mixing decode tokens and prefill chunks, then sampling per sequence.
It runs on the engine thread only; results leave through each request's
``emit`` callback as plain :class:`Chunk` values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from app.engine import kvstate
from app.engine.chat_template import render_prompt
from app.engine.errors import EngineBusyError, EngineError, PromptTooLongError
from app.engine.gguf_file import GGUFInfo
from app.engine.llama_adapter import BatchEntry, LoadedModel, Sampler
from app.engine.metrics import MetricsRing, record_from
from app.engine.scheduler import (
    PreemptAction,
    RequestState,
    ResumeAction,
    SchedRequest,
    Scheduler,
    SchedulerConfig,
    StepPlan,
)
from app.engine.sessions import SessionCache
from app.engine.swap import SwapSpace
from app.engine.textstream import TextAssembler
from app.engine.types import Chunk, FinishReason, GenerateRequest, Timings

log = logging.getLogger("soloist.engine.runner")

Emit = Callable[[Chunk | EngineError], None]

_FINISH = {
    RequestState.FINISHED_STOPPED: FinishReason.STOP,
    RequestState.FINISHED_LENGTH: FinishReason.LENGTH,
    RequestState.FINISHED_CANCELLED: FinishReason.CANCELLED,
    RequestState.FINISHED_ERROR: FinishReason.ERROR,
}
# A new request shares a live sequence's cells when this many prompt tokens match.
MIN_SHARED_PREFIX = 16


@dataclass
class Active:
    """The mechanism's side of one request: tokens, sampler, text, timings."""

    request: GenerateRequest
    emit: Emit
    prompt: list[int]
    sampler: Sampler
    text: TextAssembler
    submitted: float
    started: float = 0.0
    first_token_at: float = 0.0
    n_out: int = 0
    last_token: int = -1
    fed: list[int] = field(default_factory=list)  # reply tokens fed back into KV
    slot: int | None = None
    shared: int = 0  # prompt tokens copied from another sequence
    preemptions: int = 0
    swapped_bytes: int = 0  # KV state bytes moved out of the context, in all

    @property
    def request_id(self) -> str:
        return self.request.request_id


class ContextRunner:
    """One model, one context, many sequences."""

    def __init__(
        self,
        model: LoadedModel,
        info: GGUFInfo,
        config: SchedulerConfig,
        *,
        metrics: MetricsRing | None = None,
        sessions: SessionCache | None = None,
        swap: SwapSpace | None = None,
    ) -> None:
        self.model = model
        self.info = info
        self.metrics = metrics
        self.sessions = sessions
        self.swap = swap or SwapSpace(host_budget_bytes=2**62, disk_dir=None, identity="")
        self.memory_bytes = 0  # the residency estimate it was loaded under
        self.gpu_layers = 0  # n_gpu_layers it was loaded with
        self.scheduler = Scheduler(config)
        self._active: dict[str, Active] = {}
        self.last_used = time.monotonic()

    # -- requests ------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self._active)

    def submit(self, request: GenerateRequest, emit: Emit, submitted: float) -> None:
        """Tokenize, admit and queue a request, or raise a typed error."""
        prompt = self._prompt_tokens(request)
        sampler = self.model.new_sampler(request.sampling)
        deadline = None if request.deadline_s is None else submitted + request.deadline_s
        # A reply can never outgrow the context: past it, it ends as LENGTH.
        room = min(self.model.n_ctx, self.scheduler.config.kv_budget_tokens) - len(prompt)
        sched = SchedRequest.from_generate(
            request, prompt_tokens=len(prompt), arrival=time.monotonic(), deadline=deadline
        )
        decision = self.scheduler.add(
            replace(sched, max_tokens=max(1, min(sched.max_tokens, room)))
        )
        if not decision.taken:
            sampler.close()
            raise EngineBusyError(decision.message)
        self._active[request.request_id] = Active(
            request, emit, prompt, sampler, TextAssembler(request.sampling.stop), submitted
        )
        self.last_used = time.monotonic()

    def cancel(self, request_id: str) -> bool:
        if request_id not in self._active:
            return False
        self.scheduler.cancel(request_id)
        self._finish(self._active[request_id], FinishReason.CANCELLED)
        return True

    def fail_all(self, error: EngineError) -> None:
        """Fail every request (the context is broken); frees their state."""
        for active in list(self._active.values()):
            self.scheduler.finish(active.request_id, RequestState.FINISHED_ERROR)
            self._drop(active)
            active.emit(error)

    def _prompt_tokens(self, request: GenerateRequest) -> list[int]:
        info = self.info
        text = render_prompt(
            info.chat_template, request.messages, bos_token=info.bos_token, eos_token=info.eos_token
        )
        tokens = self.model.tokenize(text, add_special=not text.startswith(info.bos_token))
        limit = min(self.model.n_ctx, self.scheduler.config.kv_budget_tokens)
        if len(tokens) >= limit:
            raise PromptTooLongError(
                f"The conversation needs {len(tokens):,} tokens but the model's context holds "
                f"{limit:,}. Start a new chat or shorten the message."
            )
        return tokens

    # -- one step ------------------------------------------------------
    def step(self) -> bool:
        """Run one step; False when there was nothing to do."""
        plan = self.scheduler.schedule()
        self._apply_moves(plan)
        if plan.is_idle and not plan.resume and not plan.start:
            return False
        entries, sample_at = self._batch(plan)
        if entries:
            self.model.decode_batch(entries)
        stops = self._sample(sample_at, plan.now)
        for rid in self.scheduler.complete_step(plan):
            if rid in self._active:
                self._finish(self._active[rid], FinishReason.LENGTH)
        for rid in stops:
            if rid in self._active:
                self.scheduler.finish(rid, RequestState.FINISHED_STOPPED)
                self._finish(self._active[rid], FinishReason.STOP)
        if not self._active:
            self.scheduler.schedule()  # hands back the last releases
            # An idle context starts over at cell 0: llama.cpp sums attention in
            # cell order, so the same request then gives the same bits.
            self.model.clear()
        self.last_used = time.monotonic()
        return True

    def _apply_moves(self, plan: StepPlan) -> None:
        for rel in plan.release:
            if rel.slot is not None:
                self.model.clear_seq(rel.slot)
        for pre in plan.preempt:
            active = self._active[pre.request_id]
            active.preemptions += 1
            if pre.action is PreemptAction.SWAP_OUT:
                self._swap_out(active, pre.slot)
        for res in plan.resume:
            active = self._active[res.request_id]
            if res.action is ResumeAction.SWAP_IN and active.request_id in self.swap:
                kvstate.set_seq_state(self.model, res.slot, self.swap.take(active.request_id))
            active.slot = res.slot
        for start in plan.start:
            active = self._active[start.request_id]
            active.slot = start.slot
            active.started = time.perf_counter()
            self.model.clear_seq(start.slot)
            if self.sessions is not None and active.request.session_id:
                active.shared = self.sessions.resume(self.model, start.slot, active.prompt)
            if active.shared < MIN_SHARED_PREFIX:
                self._share_prefix(active)

    def _swap_out(self, active: Active, slot: int) -> None:
        state = kvstate.get_seq_state(self.model, slot)
        held = kvstate.seq_pos_max(self.model, slot) + 1
        self.swap.put(active.request_id, [*active.prompt, *active.fed][:held], state)
        active.swapped_bytes += len(state)
        self.model.clear_seq(slot)
        active.slot = None

    def _share_prefix(self, new: Active) -> None:
        """Copy the cells of the longest common prompt prefix a resident sequence holds."""
        best, source = 0, None
        for other in self._active.values():
            if other is new or other.slot is None or other.slot == new.slot:
                continue
            held = self._cells_held(other)
            n = _common_prefix(other.prompt, new.prompt, min(held, len(new.prompt) - 1))
            if n > best:
                best, source = n, other
        if source is not None and source.slot is not None and best >= MIN_SHARED_PREFIX:
            assert new.slot is not None
            self.model.copy_seq(source.slot, new.slot, best)
            new.shared = best
            log.debug("request %s shares %d prompt tokens", new.request_id, best)

    def _cells_held(self, active: Active) -> int:
        seq = self.scheduler.get(active.request_id)
        return 0 if seq is None else seq.prompt_done

    def _batch(self, plan: StepPlan) -> tuple[list[BatchEntry], dict[str, int]]:
        entries: list[BatchEntry] = []
        sample_at: dict[str, int] = {}
        for dec in plan.decode:
            active = self._active[dec.request_id]
            pos = len(active.prompt) + active.n_out - 1
            sample_at[dec.request_id] = len(entries)
            entries.append(BatchEntry(active.last_token, pos, dec.slot, True))
            active.fed.append(active.last_token)
        for chunk in plan.prefill:
            active = self._active[chunk.request_id]
            first = max(chunk.start, active.shared)
            end = chunk.start + chunk.n_tokens
            for pos in range(first, end):
                last = chunk.completes_prompt and pos == end - 1
                if last:
                    sample_at[chunk.request_id] = len(entries)
                entries.append(BatchEntry(active.prompt[pos], pos, chunk.slot, last))
        return entries, sample_at

    def _sample(self, sample_at: dict[str, int], now: float) -> list[str]:
        """Sample each sequence that has logits; return the ids that hit a stop."""
        stops = []
        for rid, index in sample_at.items():
            active = self._active[rid]
            token = active.sampler.sample(index)
            active.n_out += 1
            active.last_token = token
            if active.n_out == 1:
                active.first_token_at = time.perf_counter()
            if self.model.is_eog(token):
                stops.append(rid)
                continue
            piece = active.text.feed(self.model.piece(token))
            if piece:
                active.emit(Chunk(rid, active.n_out, text=piece))
            if active.text.stopped:
                stops.append(rid)
        return stops

    # -- endings -------------------------------------------------------
    def _finish(self, active: Active, reason: FinishReason) -> None:
        end = time.perf_counter()
        started = active.started or end
        timings = Timings(
            prompt_tokens=len(active.prompt),
            completion_tokens=active.n_out,
            time_to_first_token_s=(active.first_token_at or end) - started,
            total_s=end - started,
            queue_s=started - active.submitted,
            preemptions=active.preemptions,
            cached_tokens=active.shared,
        )
        if reason in (FinishReason.STOP, FinishReason.LENGTH):
            self._save_session(active)
        self._drop(active)
        if self.metrics is not None:
            self.metrics.add(
                record_from(
                    active.request,
                    timings,
                    reason,
                    at=time.time(),
                    model=self.info.name,
                    preemptions=active.preemptions,
                    snapshot_bytes=active.swapped_bytes,
                )
            )
        active.emit(
            Chunk(active.request_id, active.n_out + 1, active.text.flush(), reason, timings)
        )
        log.info(
            "request %s: %d prompt + %d tokens, queue %.3f s, ttft %.3f s, %.1f tok/s, "
            "%d preemptions, %s",
            active.request_id,
            len(active.prompt),
            active.n_out,
            timings.queue_s,
            timings.time_to_first_token_s,
            timings.tokens_per_s,
            active.preemptions,
            reason.value,
        )

    def _save_session(self, active: Active) -> None:
        """Keep a session's context (prompt and reply so far) for its next turn."""
        if self.sessions is None or not active.request.session_id or active.slot is None:
            return
        self.sessions.save(self.model, active.slot, [*active.prompt, *active.fed])

    def _drop(self, active: Active) -> None:
        active.sampler.close()
        self.swap.drop(active.request_id)
        self._active.pop(active.request_id, None)

    def close(self) -> None:
        self.fail_all(EngineError("The model was unloaded."))
        if self.sessions is not None:
            self.sessions.close()
        self.model.close()


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    for x, y in zip(a[:limit], b[:limit], strict=False):
        if x != y:
            break
        n += 1
    return n
