"""One agent run: perceive -> recall -> reason -> act -> learn, every step traced.

Perceive: the trigger's ids, and its outside text as untrusted data.
Recall: a memory search over the agent's scopes (the ids are traced).
Reason: one engine request whose reply is constrained by ``ToolBox.schema()``
(a grammar), at the agent's priority, with its agent and session ids.
Act: a read-only tool runs and its result is fed back as untrusted data; an
action is prepared and proposed to the outbox with the origin of each
payload value (``trace_origins``) and the grant's default autonomy. If it
waits for the owner, the run ends WAITING_FOR_APPROVAL. Learn: a short
outcome is remembered in the agent's scope, with provenance.

Reason and act repeat until the model calls ``final``, an action waits,
``budgets.max_steps`` or ``max_seconds`` is reached, or the same call with
the same arguments comes twice (a loop: the run stops with that reason).
Budgets (tokens per day, runs per hour) are read from the trace before a
run starts; over budget, the run is REFUSED and nothing else happens.

The loop never approves, never changes autonomy and never acts for the
owner: it only proposes. Nothing a tool returns can change that.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.agents.definitions import AgentDefinition
from app.agents.loop_steps import (
    Began,
    CallParseError,
    ContextLink,
    LoopOptions,
    Memory,
    Proposer,
    RunResult,
    ToolCall,
    Trigger,
    args_sha256,
    collect,
    engine_error,
    frame_untrusted,
    outcome_text,
    parse_call,
    reason_step,
    recall_query,
    result_text,
    system_prompt,
    trigger_prompt,
)
from app.agents.outbox_states import ActionState
from app.agents.runtime_errors import ToolError
from app.agents.taint import UntrustedSource, trace_origins
from app.agents.tools_registry import FINAL, ToolBox, ToolOutput
from app.agents.trace import RunState, StepKind, TraceStep, TraceStore
from app.engine.interface import Engine
from app.engine.types import FinishReason, GenerateRequest, Message, Priority, SamplingParams
from app.integrations.base import PreparedAction
from app.memory.db import utc_now
from app.memory.provenance import GLOBAL_SCOPE, Provenance, agent_scope
from app.memory.search import SearchFilter

__all__ = ["AgentLoop", "LoopOptions", "Proposer", "RunResult", "Trigger"]

log = logging.getLogger("soloist.agents")


@dataclass
class _Run:
    """What one run carries between steps."""

    id: str
    trigger: Trigger
    started: datetime
    messages: list[Message]
    session: str = ""
    sources: list[UntrustedSource] = field(default_factory=list)
    seen_calls: set[str] = field(default_factory=set)
    action_ids: list[str] = field(default_factory=list)
    steps: int = 0  # reason steps
    traced: int = 0  # steps in the trace
    tokens: int = 0
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class _End:
    state: RunState
    reason: str
    answer: str | None = None


class AgentLoop:
    """Runs one agent's decision loop; one run at a time per instance."""

    def __init__(  # noqa: PLR0917  (the runtime's documented signature)
        self,
        definition: AgentDefinition,
        engine: Engine,
        memory: Memory | None,
        toolbox: ToolBox,
        outbox: Proposer,
        trace: TraceStore,
        model_resolver: Callable[[str], str],
        clock: Callable[[], datetime] = utc_now,
        options: LoopOptions | None = None,
        *,
        context: ContextLink | None = None,
    ) -> None:
        self.definition = definition
        self._context = context  # the session tier: context across restarts
        self._engine = engine
        self._memory = memory
        self._toolbox = toolbox
        self._outbox = outbox
        self._trace = trace
        self._resolve = model_resolver
        self._clock = clock
        self._options = options or LoopOptions()
        self._cancelled = threading.Event()
        self._current: _Run | None = None

    @property
    def agent_id(self) -> str:
        return self.definition.id

    def cancel(self) -> None:
        """Stop the run in progress at the next step boundary (and its engine request now)."""
        self._cancelled.set()
        current = self._current
        if current is not None and current.request_id is not None:
            self._engine.cancel(current.request_id)

    # -- the run -------------------------------------------------------------------
    def run(self, trigger: Trigger, priority: Priority | None = None) -> RunResult:
        """Run once for ``trigger``; never raises for what the model or a tool does."""
        self._cancelled.clear()
        session = trigger.session_id or f"agent-{self.agent_id}"
        record = self._trace.start_run(self.agent_id, trigger.kind, session)
        refusal = self._over_budget(record.id)
        if refusal:
            self._trace.finish_run(record.id, RunState.REFUSED, error=refusal)
            log.info("agent %s: run %s refused (budget)", self.agent_id, record.id)
            return RunResult(record.id, self.agent_id, RunState.REFUSED, reason=refusal)
        run = _Run(record.id, trigger, self._clock(), [], session)
        if self._context is not None:
            self._context.begin(session, self.agent_id, run.id)
        self._current = run
        try:
            chosen = self.definition.priority if priority is None else priority
            end = self._run_steps(run, session, chosen)
        except Exception as exc:  # a bug or an engine failure: the run fails, traced
            log.exception("agent %s: run %s failed", self.agent_id, run.id)
            end = _End(RunState.FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            self._current = None
        return self._finish(run, end)

    def _run_steps(self, run: _Run, session: str, priority: Priority) -> _End:
        self._perceive(run)
        self._recall(run)
        while True:
            stop = self._limit_reached(run)
            if stop is not None:
                return stop
            reply = self._reason(run, session, priority)
            if reply is None:
                continue
            end = self._act(run, reply)
            if end is not None:
                return end

    def _finish(self, run: _Run, end: _End) -> RunResult:
        self._learn(run, end)
        error = end.reason if end.state in (RunState.FAILED, RunState.STOPPED) else None
        outcome = json.dumps(
            {"state": end.state.value, "actions": run.action_ids, "reason": end.reason[:200]}
        )
        record = self._trace.finish_run(run.id, end.state, error=error, outcome=outcome)
        if self._context is not None:
            self._context.finish(run.id, _outcome(run, end))
        return RunResult(
            run.id,
            self.agent_id,
            end.state,
            end.answer,
            tuple(run.action_ids),
            end.reason,
            record.steps,
            record.tokens,
        )

    # -- budgets and limits --------------------------------------------------------
    def _over_budget(self, run_id: str) -> str | None:
        budgets = self.definition.budgets
        now = self._clock()
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        tokens = self._trace.tokens_since(self.agent_id, day_start)
        if tokens >= budgets.tokens_per_day:
            return f"token budget spent: {tokens} of {budgets.tokens_per_day} today"
        runs = self._trace.runs_since(self.agent_id, now - timedelta(hours=1)) - 1  # this one
        if runs >= budgets.runs_per_hour:
            return f"run budget spent: {runs} of {budgets.runs_per_hour} in the last hour"
        return None

    def _limit_reached(self, run: _Run) -> _End | None:
        if self._cancelled.is_set():
            return _End(RunState.CANCELLED, "cancelled")
        if run.steps >= self.definition.budgets.max_steps:
            return _End(RunState.STOPPED, f"step limit: {run.steps} reason steps")
        elapsed = (self._clock() - run.started).total_seconds()
        if elapsed >= self.definition.budgets.max_seconds:
            return _End(RunState.STOPPED, f"time limit: {elapsed:.0f} s")
        return None

    # -- perceive and recall -------------------------------------------------------
    def _perceive(self, run: _Run) -> None:
        started, t0 = self._clock(), time.perf_counter()
        trigger = run.trigger
        run.sources.extend(trigger.untrusted)
        inputs = {
            "trigger": trigger.kind,
            "data": dict(trigger.data),
            "untrusted": [{"label": s.label, "chars": len(s.text)} for s in trigger.untrusted],
            "request_chars": len(trigger.request),
        }
        self._step(run, TraceStep(StepKind.PERCEIVE, started, time.perf_counter() - t0, inputs))

    def _recall(self, run: _Run) -> None:
        started, t0 = self._clock(), time.perf_counter()
        scopes = self.definition.memory_scopes or (GLOBAL_SCOPE, agent_scope(self.agent_id))
        query = recall_query(run.trigger, self.definition.name)
        recalled: list[UntrustedSource] = []
        error = None
        if self._memory is not None:
            try:
                hits = self._memory.search(
                    query, k=self._options.recall_k, where=SearchFilter(scopes=tuple(scopes))
                )
                recalled = [UntrustedSource(f"memory {h.memory_id}", h.text) for h in hits]
            except Exception as exc:  # memory not ready: run without it
                error = f"{type(exc).__name__}: {exc}"
        run.sources.extend(recalled)
        ids = tuple(s.label.removeprefix("memory ") for s in recalled)
        inputs = {"query_chars": len(query), "scopes": list(scopes), "k": self._options.recall_k}
        step = TraceStep(
            StepKind.RECALL, started, time.perf_counter() - t0, inputs, ids, error=error
        )
        self._step(run, step)
        tools = self._toolbox.describe()
        system = system_prompt(self.definition.name, self.definition.instructions, tools)
        earlier = self._earlier(run)
        user = trigger_prompt(run.trigger, recalled, self._options.max_data_chars, earlier)
        run.messages = [Message("system", system), Message("user", user)]

    def _earlier(self, run: _Run) -> UntrustedSource | None:
        """The agent's last steps from the session tier, as data (they may quote outside text)."""
        lines = self._context.recall(run.session) if self._context is not None else []
        if not lines:
            return None
        source = UntrustedSource(f"earlier runs of {self.agent_id}", "\n".join(lines))
        run.sources.append(source)
        return source

    # -- reason ----------------------------------------------------------------------
    def _reason(self, run: _Run, session: str, priority: Priority) -> ToolCall | None:
        began = Began.now(self._clock)
        request = self._request(run, session, priority)
        run.request_id = request.request_id
        text, final = collect(self._engine.generate(request))
        run.request_id = None
        run.steps += 1
        error = engine_error(final)
        call: ToolCall | None = None
        if error is None:
            try:
                call = parse_call(text)
            except CallParseError as exc:
                error = str(exc)
        step = reason_step(began, request, text, final, call, error)
        self._step(run, step)
        if final is not None and final.finish_reason is FinishReason.CANCELLED:
            self._cancelled.set()
            return None
        run.messages.append(Message("assistant", text))
        if call is None:
            run.messages.append(Message("user", f"That reply was not a valid call: {error}."))
        return call

    def _request(self, run: _Run, session: str, priority: Priority) -> GenerateRequest:
        opts = self._options
        sampling = SamplingParams(
            temperature=opts.temperature,
            seed=opts.seed,
            max_tokens=opts.max_tokens,
            json_schema=json.dumps(self._toolbox.schema()),
        )
        return GenerateRequest(
            model_path=self._resolve(self.definition.model_class),
            messages=tuple(run.messages),
            sampling=sampling,
            priority=priority,
            agent_id=self.agent_id,
            session_id=session,
        )

    # -- act -------------------------------------------------------------------------
    def _act(self, run: _Run, call: ToolCall) -> _End | None:
        if call.tool == FINAL:
            answer = call.arguments.get("answer")
            return _End(RunState.SUCCEEDED, "final answer", str(answer or ""))
        if call.key in run.seen_calls:
            reason = f"loop: {call.tool} called twice with the same arguments"
            self._trace_act(run, call, Began.now(self._clock), {}, reason)
            return _End(RunState.STOPPED, reason)
        run.seen_calls.add(call.key)
        began = Began.now(self._clock)
        seq = self._next_seq(run)
        try:
            outcome = self._toolbox.call(call.tool, call.arguments, run_id=run.id, step_seq=seq)
        except ToolError as exc:
            self._trace_act(run, call, began, {"kind": "error"}, str(exc))
            run.messages.append(Message("user", f"The call of {call.tool} failed: {exc}"))
            return None
        if isinstance(outcome, ToolOutput):
            self._fed_back(run, call, outcome, began)
            return None
        return self._proposed(run, call, outcome, began)

    def _fed_back(self, run: _Run, call: ToolCall, output: ToolOutput, began: Began) -> None:
        source = UntrustedSource(f"tool result {call.tool}", result_text(output.value))
        run.sources.append(source)
        summary = {"kind": "read", "chars": output.chars, "tool_s": round(output.elapsed_s, 4)}
        self._trace_act(run, call, began, summary, None, excerpt=source.text)
        framed = frame_untrusted(source, self._options.max_data_chars)
        run.messages.append(Message("user", f"Result of {call.tool}:\n{framed}"))

    def _proposed(
        self, run: _Run, call: ToolCall, prepared: PreparedAction, began: Began
    ) -> _End | None:
        grant = self._toolbox.grant(call.tool)
        assert grant is not None  # call() refused anything not granted
        origins = trace_origins(
            prepared.payload,
            owner_texts=[],
            config_texts=[self.definition.instructions],
            untrusted=list(run.sources),
        )
        record = self._outbox.propose(
            self.agent_id,
            run.id,
            prepared,
            origins=origins,
            untrusted_labels=[s.label for s in run.sources],
            default_level=grant.autonomy,
        )
        run.action_ids.append(str(record.id))
        state = getattr(record.state, "name", str(record.state))
        tainted = sum(1 for o in origins if o.origin.value == "untrusted")
        summary = {
            "kind": "action",
            "action_id": str(record.id),
            "state": state,
            "risk": prepared.risk.name,
            "untrusted_fields": tainted,
        }
        self._trace_act(run, call, began, summary, None)
        if record.state == ActionState.PROPOSED:
            return _End(RunState.WAITING_FOR_APPROVAL, f"action {record.id} waits for the owner")
        note = f"Action {record.id} ({call.tool}) is {state.lower()}."
        run.messages.append(Message("user", note))
        return None

    def _trace_act(  # noqa: PLR0917
        self,
        run: _Run,
        call: ToolCall,
        began: Began,
        summary: dict[str, Any],
        error: str | None,
        excerpt: str | None = None,
    ) -> None:
        step = TraceStep(
            StepKind.ACT,
            began.at,
            time.perf_counter() - began.t0,
            {"arguments": sorted(call.arguments)},
            tool=call.tool,
            tool_args_sha256=args_sha256(call.arguments),
            result=summary,
            error=error,
        )
        self._step(run, step)
        if self._context is not None:
            content = {"tool": call.tool, "arguments": call.arguments, "result": summary}
            self._context.act(run.id, {**content, "error": error, "excerpt": excerpt})

    # -- learn -----------------------------------------------------------------------
    def _learn(self, run: _Run, end: _End) -> None:
        started, t0 = self._clock(), time.perf_counter()
        seq = self._next_seq(run)
        summary: dict[str, Any] = {"state": end.state.value}
        error = None
        if self._memory is None:
            summary["skipped"] = "no memory"
        else:
            text = outcome_text(
                run_id=run.id,
                trigger=run.trigger.kind,
                state=end.state.value,
                reason=end.reason,
                action_ids=run.action_ids,
                answer=end.answer,
            )
            provenance = Provenance(agent_id=self.agent_id, run_id=run.id, step_seq=seq)
            try:
                version = self._memory.remember(
                    text, "note", agent_scope(self.agent_id), provenance
                )
                summary["memory_id"] = str(getattr(version, "memory_id", ""))
                summary["chars"] = len(text)
            except Exception as exc:  # the run's outcome stands even if memory fails
                error = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - t0
        self._step(run, TraceStep(StepKind.LEARN, started, elapsed, result=summary, error=error))

    # -- trace -----------------------------------------------------------------------
    def _step(self, run: _Run, step: TraceStep) -> int:
        seq = self._trace.add_step(run.id, step)
        run.traced = seq
        run.tokens += (step.prompt_tokens or 0) + (step.completion_tokens or 0)
        return seq

    def _next_seq(self, run: _Run) -> int:
        """The seq the next traced step of this run will get (only this loop writes them)."""
        return run.traced + 1

    def __repr__(self) -> str:
        return f"AgentLoop(agent={self.agent_id!r})"


def _outcome(run: _Run, end: _End) -> dict[str, Any]:
    """What the session tier keeps of how a run ended."""
    return {
        "trigger": run.trigger.kind,
        "state": end.state.value,
        "reason": end.reason[:200],
        "actions": list(run.action_ids),
        "answer": (end.answer or "")[:300],
    }
