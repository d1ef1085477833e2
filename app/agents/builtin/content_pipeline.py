"""Content pipeline: write a draft post or newsletter from the office's notes.

What it does now: it searches memory for the week's material, keeps an
outline in its own memory, and saves the piece as an email draft addressed
to the owner; that draft is an action waiting for approval, which is the
owner's review. Publishing or scheduling the approved piece is a later
automation; nothing here publishes.
"""

from __future__ import annotations

from app.agents.autonomy import Autonomy
from app.agents.builtin.common import BUILTIN_BUDGETS, instructions
from app.agents.definitions import AgentDefinition, ToolGrant
from app.engine.types import Priority

__all__ = ["AGENT_ID", "DEFINITION"]

AGENT_ID = "content-pipeline"
SCHEDULE = "0 10 * * 1"  # Mondays at 10:00, local time

DEFINITION = AgentDefinition(
    id=AGENT_ID,
    name="Content pipeline",
    instructions=instructions(
        "You write first drafts of the owner's posts and newsletters. The owner edits and "
        "publishes them; you never publish.",
        (
            "Search memory with memory.search for the topic you were given, or for this "
            "week's news, projects and customer questions when no topic was given.",
            "Write a short outline and keep it with memory.remember.",
            "Write the piece (under 400 words, plain language) and save it with "
            "email.save_draft addressed to the owner's own address from memory, subject "
            "starting with 'Draft:'. The owner reviews it there.",
            "End with final: the title and the outline in one line.",
        ),
        ("Do not invent facts, prices or quotes that are not in memory.",),
    ),
    model_class="smart",
    priority=Priority.BACKGROUND,
    tools=(
        ToolGrant("memory.search", Autonomy.SUGGEST),
        ToolGrant("memory.remember", Autonomy.SUGGEST),
        ToolGrant("email.save_draft", Autonomy.ASK),
    ),
    schedules=(SCHEDULE,),
    triggers=("manual", "schedule"),
    budgets=BUILTIN_BUDGETS,
    memory_scopes=("global", f"agent:{AGENT_ID}"),
    builtin=True,
)
