"""The built-in agent tools: search and write the agent's memory, read the time.

They touch nothing outside the office, so they run directly. Writes go to
the agent's own scope (``agent:<id>``) only, whatever the model asks: a
memory an email talked the agent into writing must not land in the
office-wide scope that every other agent recalls.
"""

from __future__ import annotations

from app.agents.tools_registry import MemoryAccess, ToolContext, agent_tool
from app.integrations.base import JsonObject, JsonValue
from app.memory.provenance import GLOBAL_SCOPE, Provenance, agent_scope
from app.memory.search import SearchFilter

__all__ = ["MEMORY_REMEMBER", "MEMORY_SEARCH", "TIME_NOW"]

_SNIPPET_CHARS = 600
_MAX_HITS = 10


@agent_tool(
    "memory.search",
    "Search the office's memory (facts, notes, documents) by meaning and keywords.",
    {
        "type": "object",
        "properties": {
            "query": {"type": "string", "maxLength": 300},
            "k": {"type": "integer", "minimum": 1, "maximum": _MAX_HITS},
        },
        "required": ["query"],
    },
)
def memory_search(context: ToolContext, args: JsonObject) -> JsonValue:
    memory = _memory(context)
    scopes = context.scopes or (GLOBAL_SCOPE, agent_scope(context.agent_id))
    k = args.get("k", 5)
    result = memory.search(
        str(args["query"]),
        k=int(k) if isinstance(k, int) else 5,
        where=SearchFilter(scopes=tuple(scopes)),
    )
    return [
        {
            "id": hit.memory_id,
            "kind": hit.kind,
            "scope": hit.scope,
            "text": hit.text[:_SNIPPET_CHARS],
        }
        for hit in result
    ]


@agent_tool(
    "memory.remember",
    "Write a short note to this agent's own memory for later runs.",
    {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": 1000},
            "kind": {"enum": ["note", "fact"]},
        },
        "required": ["text"],
    },
)
def memory_remember(context: ToolContext, args: JsonObject) -> JsonValue:
    memory = _memory(context)
    text = str(args["text"]).strip()
    if not text:
        raise ValueError("a memory needs some text")
    kind = str(args.get("kind") or "note")
    provenance = Provenance(
        agent_id=context.agent_id,
        run_id=context.run_id,
        step_seq=context.step_seq if context.run_id else None,
        tool="memory.remember",
    )
    version = memory.remember(text, kind, agent_scope(context.agent_id), provenance)
    return {"id": str(getattr(version, "memory_id", "")), "scope": agent_scope(context.agent_id)}


@agent_tool(
    "time.now",
    "The current date and time (UTC, ISO 8601) and the weekday.",
    {"type": "object", "properties": {}},
)
def time_now(context: ToolContext, args: JsonObject) -> JsonValue:
    now = context.clock()
    return {"utc": now.isoformat(timespec="seconds"), "weekday": now.strftime("%A")}


def _memory(context: ToolContext) -> MemoryAccess:
    if context.memory is None:
        raise RuntimeError("this agent has no memory attached")
    return context.memory


MEMORY_SEARCH = memory_search
MEMORY_REMEMBER = memory_remember
TIME_NOW = time_now
