"""Daily briefing: what happened, what waits for the owner, what is due today.

Read-only: it writes nothing but its own memory (the briefing, kind
"note", scope ``agent:daily-briefing``), where the Home view and the owner's
chat find it.
"""

from __future__ import annotations

from app.agents.autonomy import Autonomy
from app.agents.builtin.common import BUILTIN_BUDGETS, instructions
from app.agents.definitions import AgentDefinition, ToolGrant
from app.engine.types import Priority

__all__ = ["AGENT_ID", "DEFINITION", "SCOPE"]

AGENT_ID = "daily-briefing"
SCOPE = f"agent:{AGENT_ID}"
SCHEDULE = "0 8 * * *"  # daily at 08:00, local time

DEFINITION = AgentDefinition(
    id=AGENT_ID,
    name="Daily briefing",
    instructions=instructions(
        "You write the owner's morning briefing. You only read and summarise.",
        (
            "Call outbox.pending_summary: what waits for the owner's approval.",
            "Call crm.follow_ups_due: follow-ups due today or overdue.",
            "Call calendar.events for today (start and end as ISO times).",
            "Call store.sales_summary with days=1 for yesterday's orders and refunds.",
            "Call memory.search for what happened since yesterday.",
            "Write the briefing in three short parts (What happened, What waits, What is "
            "due) and save it with memory.remember, kind note.",
            "End with final: the briefing's first line.",
        ),
        ("Numbers come from the tools; never guess one.",),
    ),
    model_class="fast",
    priority=Priority.BACKGROUND,
    tools=(
        ToolGrant("outbox.pending_summary", Autonomy.SUGGEST),
        ToolGrant("crm.follow_ups_due", Autonomy.SUGGEST),
        ToolGrant("calendar.events", Autonomy.SUGGEST),
        ToolGrant("store.sales_summary", Autonomy.SUGGEST),
        ToolGrant("memory.search", Autonomy.SUGGEST),
        ToolGrant("memory.remember", Autonomy.SUGGEST),
    ),
    schedules=(SCHEDULE,),
    triggers=("schedule", "manual"),
    budgets=BUILTIN_BUDGETS,
    memory_scopes=("global", SCOPE),
    builtin=True,
)
