"""Follow-up keeper: every morning, draft a note to contacts who have gone quiet.

"Quiet" means no logged call, mail or meeting for ``quiet_days`` days: a
parameter of the definition (:func:`follow_up_keeper`), written into its
instructions, which the model passes to ``crm.quiet_contacts``. The owner
retunes it by overriding the agent with a TOML file that says another
number.
"""

from __future__ import annotations

from app.agents.autonomy import Autonomy
from app.agents.builtin.common import BUILTIN_BUDGETS, instructions
from app.agents.definitions import AgentDefinition, ToolGrant
from app.engine.types import Priority

__all__ = ["AGENT_ID", "DEFAULT_QUIET_DAYS", "DEFINITION", "follow_up_keeper"]

AGENT_ID = "follow-up-keeper"
DEFAULT_QUIET_DAYS = 30
SCHEDULE = "0 9 * * *"  # daily at 09:00 in the office's local time zone (no TZ= given)


def follow_up_keeper(quiet_days: int = DEFAULT_QUIET_DAYS) -> AgentDefinition:
    """The follow-up keeper for contacts quiet for ``quiet_days`` days."""
    if not 1 <= quiet_days <= 365:
        raise ValueError(f"quiet_days must be 1-365, got {quiet_days}")
    return AgentDefinition(
        id=AGENT_ID,
        name="Follow-up keeper",
        instructions=instructions(
            "You keep the owner in touch with their contacts. You draft, the owner sends.",
            (
                "Call crm.follow_ups_due to see the follow-ups that are due.",
                f"Call crm.quiet_contacts with days={quiet_days} to find people without "
                f"contact for {quiet_days} days or more.",
                "For the most important person (a due follow-up first), read them with "
                "crm.person (crm.search finds a person by name).",
                "Draft one short, friendly check-in mail to that person with "
                "email.save_draft, using what the CRM says about them.",
                "If there is no due follow-up for them yet, add one for next week with "
                "crm.create_follow_up.",
                "End with final: who you drafted for and who else is quiet.",
            ),
            (
                "At most one draft per run.",
                "Only write to addresses the CRM has for that person.",
            ),
        ),
        model_class="fast",
        priority=Priority.BACKGROUND,
        tools=(
            ToolGrant("crm.search", Autonomy.SUGGEST),
            ToolGrant("crm.follow_ups_due", Autonomy.SUGGEST),
            ToolGrant("crm.quiet_contacts", Autonomy.SUGGEST),
            ToolGrant("crm.person", Autonomy.SUGGEST),
            ToolGrant("email.save_draft", Autonomy.ASK),
            ToolGrant("crm.create_follow_up", Autonomy.NOTIFY),
        ),
        schedules=(SCHEDULE,),
        triggers=("schedule", "manual"),
        budgets=BUILTIN_BUDGETS,
        memory_scopes=("global", f"agent:{AGENT_ID}"),
        builtin=True,
    )


DEFINITION = follow_up_keeper()
