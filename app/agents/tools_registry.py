"""The tools one agent may call, and the grammar its tool calls must follow.

Built-in agent tools (``memory.search``, ``time.now``...) register
themselves with ``@agent_tool``; the bundle and the UI read
``builtin_tools()``. Connector tools and actions come from
``Connections.tools()`` / ``.actions()``.

``ToolBox`` is what ONE agent may call: the intersection of its grants with
the tools that exist. It has two locks:

1. ``schema()`` is the JSON schema of one call, a union with one branch per
   granted tool (``{"tool": <its name>, "arguments": <its bounded
   parameters>}``) plus ``{"tool": "final", "arguments": {"answer": ...}}``.
   The engine turns it into a grammar, so the model cannot even write the
   name of a tool it was not granted.
2. ``call()`` checks the grant and the arguments again, whatever the model
   (or a grammar-less engine) produced.

A read-only tool runs at once, on a daemon thread with a timeout; its
result is UNTRUSTED text (the loop wraps it in an ``UntrustedSource``). An
action is only *prepared*: ``call`` returns the ``PreparedAction`` for the
outbox, which decides by the autonomy level whether it waits for the owner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from app.agents.definitions import ToolGrant
from app.agents.runtime_errors import (
    ToolArgumentsError,
    ToolFailedError,
    ToolNotAllowedError,
    ToolTimeoutError,
)
from app.agents.tools_schema import bounded, check_arguments
from app.integrations.base import Action, JsonObject, JsonValue, PreparedAction, Tool
from app.memory.db import utc_now

if TYPE_CHECKING:
    from app.memory.db import Database

__all__ = [
    "FINAL",
    "AgentTool",
    "MemoryAccess",
    "ToolBox",
    "ToolContext",
    "ToolOutput",
    "agent_tool",
    "builtin_tools",
]

log = logging.getLogger("soloist.agents")

FINAL = "final"
"""The pseudo-tool that ends a run with an answer."""

DEFAULT_MAX_STRING = 1000  # llama.cpp refuses grammars with longer bounded strings


class MemoryAccess(Protocol):
    """The part of ``MemoryService`` the built-in tools use."""

    def search(self, query: str, k: int = ..., where: Any = ...) -> Any: ...

    def remember(
        self,
        text: str,
        kind: str = ...,
        scope: str = ...,
        provenance: Any = ...,
        metadata: Any = ...,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who calls a built-in tool, from which run and step, with what it may reach."""

    agent_id: str
    run_id: str | None = None
    step_seq: int | None = None
    memory: MemoryAccess | None = None
    scopes: tuple[str, ...] = ()
    clock: Callable[[], datetime] = utc_now
    # The office database, for built-in tools that read office tables (the outbox's
    # counts, the CRM); None when the agent has none. Read-only use by convention.
    db: Database | None = None


@dataclass(frozen=True, slots=True)
class AgentTool:
    """A built-in tool: read-only or writing only the agent's own memory."""

    name: str
    description: str
    parameters: JsonObject
    run: Callable[[ToolContext, JsonObject], JsonValue]


_BUILTINS: dict[str, AgentTool] = {}


def agent_tool(
    name: str, description: str, parameters_schema: JsonObject
) -> Callable[[Callable[[ToolContext, JsonObject], JsonValue]], AgentTool]:
    """Decorator: register ``fn(context, args)`` as the built-in tool ``name``."""

    def register(fn: Callable[[ToolContext, JsonObject], JsonValue]) -> AgentTool:
        existing = _BUILTINS.get(name)
        if existing is not None and existing.run is not fn:
            raise ValueError(f"agent tool {name!r} registered twice")
        tool = AgentTool(name, description, parameters_schema, fn)
        _BUILTINS[name] = tool
        return tool

    return register


def builtin_tools() -> dict[str, AgentTool]:
    """Every registered built-in tool (importing ``app.agents.tools_builtin`` fills it)."""
    import app.agents.builtin.tools
    import app.agents.tools_builtin  # noqa: F401  (registers the built-ins)

    return dict(_BUILTINS)


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """A read-only tool's result: untrusted data. ``repr`` shows its size only."""

    tool: str
    value: JsonValue
    elapsed_s: float
    chars: int = field(default=0)

    def __repr__(self) -> str:
        return f"ToolOutput(tool={self.tool!r}, chars={self.chars}, elapsed_s={self.elapsed_s:.3f})"


_Runner = Callable[[JsonObject, ToolContext], JsonValue]


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    description: str
    parameters: JsonObject
    grant: ToolGrant
    run: _Runner | None = None  # read-only
    action: Action | None = None  # side effect


class ToolBox:
    """What one agent may call; see the module docstring for the two locks."""

    def __init__(
        self,
        allowed: Sequence[ToolGrant],
        builtins: Mapping[str, AgentTool] | Sequence[AgentTool] = (),
        connections_tools: Sequence[Tool] = (),
        connections_actions: Sequence[Action] = (),
        *,
        context: ToolContext | None = None,
        timeout_s: float = 30.0,
        max_string: int = DEFAULT_MAX_STRING,
    ) -> None:
        self._context = context or ToolContext(agent_id="agent")
        self._timeout_s = timeout_s
        self._max_string = max_string
        available = _available(builtins, connections_tools, connections_actions)
        self._entries: dict[str, _Entry] = {}
        for grant in allowed:
            make = available.get(grant.tool)
            if make is None:
                log.info("agent %s: granted tool %s is not available", self.agent_id, grant.tool)
                continue
            self._entries[grant.tool] = make(grant)

    @property
    def agent_id(self) -> str:
        return self._context.agent_id

    @property
    def names(self) -> tuple[str, ...]:
        """The tools this agent may call now (granted and available), in grant order."""
        return tuple(self._entries)

    def grant(self, name: str) -> ToolGrant | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.grant

    def is_action(self, name: str) -> bool:
        entry = self._entries.get(name)
        return entry is not None and entry.action is not None

    def describe(self) -> list[dict[str, str]]:
        """Name, kind and description of each tool, for the prompt."""
        return [
            {
                "tool": e.name,
                "kind": "action (needs approval)" if e.action else "read-only",
                "description": e.description,
            }
            for e in self._entries.values()
        ]

    def schema(self) -> JsonObject:
        """The JSON schema of one tool call (a union; see the module docstring)."""
        branches: list[JsonValue] = [
            _branch(e.name, bounded(e.parameters, self._max_string)) for e in self._entries.values()
        ]
        answer: JsonObject = {
            "type": "object",
            "properties": {"answer": {"type": "string", "maxLength": self._max_string}},
            "required": ["answer"],
            "additionalProperties": False,
        }
        branches.append(_branch(FINAL, answer))
        return {"oneOf": branches}

    def call(
        self,
        name: str,
        args: JsonObject,
        *,
        run_id: str | None = None,
        step_seq: int | None = None,
    ) -> ToolOutput | PreparedAction:
        """Run a read-only tool, or prepare an action; refuses tools not granted."""
        entry = self._checked(name, args)
        if entry.action is not None:
            return _prepare(entry.action, args)
        assert entry.run is not None
        context = replace(self._context, run_id=run_id, step_seq=step_seq)
        return self._run_with_timeout(entry.name, entry.run, args, context)

    def check(self, name: str, args: JsonObject) -> None:
        """Raise ``ToolNotAllowedError`` / ``ToolArgumentsError`` unless the call may run."""
        self._checked(name, args)

    def _checked(self, name: str, args: JsonObject) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            log.warning("agent %s: refused a call of %s (not granted)", self.agent_id, name)
            raise ToolNotAllowedError(name)
        problem = check_arguments(bounded(entry.parameters, self._max_string), args)
        if problem:
            raise ToolArgumentsError(f"{name}: {problem}")
        return entry

    def _run_with_timeout(
        self, name: str, run: _Runner, args: JsonObject, context: ToolContext
    ) -> ToolOutput:
        outcome: dict[str, Any] = {}
        started = time.perf_counter()

        def target() -> None:
            try:
                outcome["value"] = run(args, context)
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=target, name=f"soloist-tool-{name}", daemon=True)
        worker.start()
        worker.join(self._timeout_s)
        elapsed = time.perf_counter() - started
        if worker.is_alive():
            log.warning("agent %s: tool %s timed out after %.1f s", self.agent_id, name, elapsed)
            raise ToolTimeoutError(f"{name} took longer than {self._timeout_s:g} s")
        if "error" in outcome:
            error = outcome["error"]
            raise ToolFailedError(f"{name} failed: {error}") from error
        value: JsonValue = outcome.get("value")
        chars = len(str(value))
        log.info("agent %s: tool %s -> %d chars in %.3f s", self.agent_id, name, chars, elapsed)
        return ToolOutput(name, value, elapsed, chars)

    def __repr__(self) -> str:
        return f"ToolBox(agent={self.agent_id!r}, tools={list(self._entries)})"


def _branch(name: str, parameters: JsonObject) -> JsonObject:
    return {
        "type": "object",
        "properties": {"tool": {"const": name}, "arguments": parameters},
        "required": ["tool", "arguments"],
        "additionalProperties": False,
    }


def _prepare(action: Action, args: JsonObject) -> PreparedAction:
    try:
        return action.prepare(args)
    except Exception as exc:
        raise ToolFailedError(f"{action.name} could not be prepared: {exc}") from exc


def _available(
    builtins: Mapping[str, AgentTool] | Sequence[AgentTool],
    tools: Sequence[Tool],
    actions: Sequence[Action],
) -> dict[str, Callable[[ToolGrant], _Entry]]:
    """Every tool that exists, as a maker of its entry for a grant."""
    found: dict[str, Callable[[ToolGrant], _Entry]] = {}
    for tool in tools:
        found[tool.name] = _reader(tool)
    for action in actions:
        found[action.name] = _actor(action)
    values = builtins.values() if isinstance(builtins, Mapping) else builtins
    for builtin in values:  # last: a connector cannot shadow a built-in
        found[builtin.name] = _builtin(builtin)
    return found


def _reader(tool: Tool) -> Callable[[ToolGrant], _Entry]:
    def run(args: JsonObject, _context: ToolContext) -> JsonValue:
        return tool.run(args)

    return lambda g: _Entry(tool.name, tool.description, tool.parameters, g, run=run)


def _actor(action: Action) -> Callable[[ToolGrant], _Entry]:
    return lambda g: _Entry(action.name, action.description, action.parameters, g, action=action)


def _builtin(tool: AgentTool) -> Callable[[ToolGrant], _Entry]:
    def run(args: JsonObject, context: ToolContext) -> JsonValue:
        return tool.run(context, args)

    return lambda g: _Entry(tool.name, tool.description, tool.parameters, g, run=run)
