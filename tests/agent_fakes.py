"""Fakes for the agent runtime's logic tests: a scripted engine, a clock, a tool, an action.

The real things (llama.cpp on the tiny model, DuckDB, the memory service,
the outbox) are used beside these; the fakes only make the model's replies
and the connectors predictable.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from app.agents.autonomy import Autonomy
from app.agents.definitions import AgentDefinition, Budgets, ToolGrant
from app.engine.types import Chunk, FinishReason, GenerateRequest, Priority, Timings
from app.integrations.base import (
    Action,
    ActionOutcome,
    JsonObject,
    JsonValue,
    PreparedAction,
    Risk,
    Tool,
)

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves; it stands still otherwise."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ScriptedEngine:
    """Replies with the given calls in order (the last one repeats); records each request."""

    def __init__(self, *replies: JsonObject | str, gate: threading.Event | None = None) -> None:
        self.replies = [r if isinstance(r, str) else json.dumps(r) for r in replies]
        self.requests: list[GenerateRequest] = []
        self.cancelled: list[str] = []
        self.gate = gate  # when set, each generation waits for it

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests) - 1, len(self.replies) - 1)]
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the engine's gate"
        yield Chunk(request.request_id, 0, reply)
        prompt_tokens = sum(len(m.content) for m in request.messages) // 4
        timings = Timings(prompt_tokens, len(reply) // 2, 0.001, 0.01)
        yield Chunk(request.request_id, 1, "", FinishReason.STOP, timings)

    def cancel(self, request_id: str) -> bool:
        self.cancelled.append(request_id)
        return True

    def close(self) -> None:
        pass


def call(tool: str, **arguments: JsonValue) -> JsonObject:
    return {"tool": tool, "arguments": arguments}


def definition(
    agent_id: str = "inbox",
    *,
    tools: tuple[ToolGrant, ...] = (),
    budgets: Budgets | None = None,
    triggers: tuple[str, ...] = ("manual", "mail.received"),
    priority: Priority = Priority.BACKGROUND,
) -> AgentDefinition:
    return AgentDefinition(
        id=agent_id,
        name=agent_id.title(),
        instructions="Sort new mail and draft short replies for the owner.",
        model_class="fast",
        priority=priority,
        tools=tools,
        triggers=triggers,
        budgets=budgets or Budgets(tokens_per_day=100_000, runs_per_hour=100),
    )


def lookup_tool(result: JsonValue = "Ada Lovelace, ada@example.org, customer since 2021") -> Tool:
    """A read-only CRM lookup returning ``result``."""
    return Tool(
        "crm.lookup",
        "Find a contact by name.",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        lambda args: result,
    )


class SendMail:
    """An ``email.send`` action whose executions are counted."""

    def __init__(self) -> None:
        self.executed: list[PreparedAction] = []

    def action(self) -> Action:
        return Action(
            "email.send",
            "Send an email.",
            {
                "type": "object",
                "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
                "required": ["to", "body"],
            },
            Risk.MEDIUM,
            self.prepare,
            self.execute,
            lambda prepared: None,
        )

    def prepare(self, args: JsonObject) -> PreparedAction:
        return PreparedAction(
            "email.send",
            "work",
            dict(args),
            f"Send to {args['to']}",
            Risk.MEDIUM,
            f"key-{args['to']}",
        )

    def execute(self, prepared: PreparedAction) -> ActionOutcome:
        self.executed.append(prepared)
        return ActionOutcome(True, "sent", "msg-1")


ASK = Autonomy.ASK
