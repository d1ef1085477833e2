"""Inbox triage: label a new mail, note it in memory, draft a reply (a draft, never a send)."""

from __future__ import annotations

from app.agents.autonomy import Autonomy
from app.agents.builtin.common import BUILTIN_BUDGETS, instructions
from app.agents.definitions import AgentDefinition, ToolGrant
from app.engine.types import Priority

__all__ = ["AGENT_ID", "DEFINITION", "LABELS"]

AGENT_ID = "inbox-triage"
LABELS = ("customer", "order", "invoice", "lead", "personal", "newsletter", "spam")

DEFINITION = AgentDefinition(
    id=AGENT_ID,
    name="Inbox triage",
    instructions=instructions(
        "You sort the owner's new mail. You read mail, you never send it.",
        (
            "Read the new mail with email.read (its id is in the event ids; email.search "
            "finds it otherwise), and its thread with email.thread when it is a reply.",
            "Look the sender up with crm.search to see whether they are a known contact.",
            "Choose exactly one label: " + ", ".join(LABELS) + ".",
            "If the mail needs an answer from the owner, draft a short, polite reply with "
            "email.save_draft to the sender's address, with in_reply_to set to the mail's "
            "message_id. One draft at most. The owner reviews it before anything is sent.",
            "End with final: the label, one sentence of summary, and whether you drafted "
            "a reply. The summary is kept in memory.",
        ),
        (
            "Never promise money, refunds, discounts or dates in a draft.",
            "Spam and newsletters get no draft.",
        ),
    ),
    model_class="fast",
    priority=Priority.BACKGROUND,
    tools=(
        ToolGrant("email.search", Autonomy.SUGGEST),
        ToolGrant("email.read", Autonomy.SUGGEST),
        ToolGrant("email.thread", Autonomy.SUGGEST),
        ToolGrant("crm.search", Autonomy.SUGGEST),
        ToolGrant("email.save_draft", Autonomy.ASK),
    ),
    triggers=("mail.received", "manual"),
    budgets=BUILTIN_BUDGETS,
    memory_scopes=("global", f"agent:{AGENT_ID}"),
    builtin=True,
)
