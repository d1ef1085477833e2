"""Read-only tools the built-in agents need beyond the connectors' own.

- ``outbox.pending_summary``: how many actions wait for the owner, by agent
  and tool, read from the outbox tables. Counts and names only, never a
  payload or a preview: the briefing must not copy an email an agent
  drafted (or an attacker's text inside it) into another prompt.
- ``crm.quiet_contacts``: people in the CRM with no logged activity for
  ``days`` days (the follow-up keeper's "N days", a parameter of its
  definition), oldest contact first.

Both read the office database through ``ToolContext.db`` and write nothing.
"""

from __future__ import annotations

from datetime import timedelta

from app.agents.outbox_states import ActionState
from app.agents.tools_registry import ToolContext, agent_tool
from app.integrations.base import JsonObject, JsonValue
from app.memory.db import Database, from_db_time, to_db_time

__all__ = ["CRM_QUIET_CONTACTS", "OUTBOX_PENDING_SUMMARY", "QUIET_DAYS_MAX"]

QUIET_DAYS_MAX = 365
_MAX_PEOPLE = 50


@agent_tool(
    "outbox.pending_summary",
    "Counts of actions waiting for the owner's approval, by agent and tool (no contents).",
    {"type": "object", "properties": {}},
)
def pending_summary(context: ToolContext, args: JsonObject) -> JsonValue:
    rows = _db(context).fetchall(
        "SELECT agent_id, action, state, count(*) FROM outbox_actions "
        "WHERE state IN (?, ?) GROUP BY agent_id, action, state ORDER BY agent_id, action",
        (int(ActionState.PROPOSED), int(ActionState.IN_DOUBT)),
    )
    waiting: list[JsonValue] = [
        {"agent": agent, "tool": tool, "count": int(count)}
        for agent, tool, state, count in rows
        if state == int(ActionState.PROPOSED)
    ]
    in_doubt = sum(int(count) for _, _, state, count in rows if state == int(ActionState.IN_DOUBT))
    total = sum(int(count) for _, _, state, count in rows if state == int(ActionState.PROPOSED))
    return {"waiting_for_approval": total, "in_doubt": in_doubt, "by_agent_and_tool": waiting}


@agent_tool(
    "crm.quiet_contacts",
    "People with no logged call, mail or meeting for at least `days` days, quietest first.",
    {
        "type": "object",
        "properties": {
            "days": {"type": "integer", "minimum": 1, "maximum": QUIET_DAYS_MAX},
            "limit": {"type": "integer", "minimum": 1, "maximum": _MAX_PEOPLE},
        },
        "required": ["days"],
    },
)
def quiet_contacts(context: ToolContext, args: JsonObject) -> JsonValue:
    days = _bounded(args.get("days"), 30, QUIET_DAYS_MAX)
    limit = _bounded(args.get("limit"), 20, _MAX_PEOPLE)
    cutoff = to_db_time(context.clock() - timedelta(days=days))
    rows = _db(context).fetchall(
        """
        SELECT p.id, p.full_name, e.value, max(a.occurred_at) AS last_contact
        FROM crm_people p
        LEFT JOIN crm_activities a ON a.person_id = p.id
        LEFT JOIN crm_person_emails e ON e.person_id = p.id AND e.position = 0
        WHERE p.deleted_at IS NULL AND p.merged_into IS NULL
        GROUP BY p.id, p.full_name, e.value, p.created_at
        HAVING coalesce(max(a.occurred_at), p.created_at) < ?
        ORDER BY coalesce(max(a.occurred_at), p.created_at), p.full_name
        LIMIT ?
        """,
        (cutoff, limit),
    )
    return [
        {
            "id": person_id,
            "name": name,
            "email": email,
            "last_contact": None if last is None else from_db_time(last).date().isoformat(),
        }
        for person_id, name, email, last in rows
    ]


def _db(context: ToolContext) -> Database:
    if context.db is None:
        raise RuntimeError("this agent has no office database attached")
    return context.db


def _bounded(value: JsonValue, default: int, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(1, min(value, high))
    return default


OUTBOX_PENDING_SUMMARY = pending_summary
CRM_QUIET_CONTACTS = quiet_contacts
