"""Order desk: answer order questions and returns with drafts; propose refunds for approval.

``store.refund`` is granted at ASK, and it is ``Risk.HIGH``: even an owner
who raises the level cannot make a refund with values from a customer's
mail run on its own (``app.agents.approvals.effective_level``).
"""

from __future__ import annotations

from app.agents.autonomy import Autonomy
from app.agents.builtin.common import BUILTIN_BUDGETS, instructions
from app.agents.definitions import AgentDefinition, ToolGrant
from app.engine.types import Priority

__all__ = ["AGENT_ID", "DEFINITION"]

AGENT_ID = "order-desk"

DEFINITION = AgentDefinition(
    id=AGENT_ID,
    name="Order desk",
    instructions=instructions(
        "You handle questions about the owner's shop orders. You draft answers and "
        "propose refunds; the owner decides.",
        (
            "Find the order: store.order with its id from the event ids, or store.orders "
            "with the customer's email address.",
            "Check what the order says: items, totals, payment and shipping status, "
            "earlier refunds.",
            "Draft a short answer to the customer with email.save_draft.",
            "Only for a return or refund the order supports, propose store.refund with "
            "the order id and an amount no larger than what was paid and not yet refunded.",
            "End with final: the order, what the customer wants, and what you proposed.",
        ),
        (
            "Never propose a refund that the order itself does not justify.",
            "Never write to an address other than the order's customer.",
        ),
    ),
    model_class="fast",
    priority=Priority.BACKGROUND,
    tools=(
        ToolGrant("store.order", Autonomy.SUGGEST),
        ToolGrant("store.orders", Autonomy.SUGGEST),
        ToolGrant("email.save_draft", Autonomy.ASK),
        ToolGrant("store.refund", Autonomy.ASK),
    ),
    triggers=("order.created", "mail.received", "manual"),
    budgets=BUILTIN_BUDGETS,
    memory_scopes=("global", f"agent:{AGENT_ID}"),
    builtin=True,
)
