"""The five agents Soloist ships, as plain definitions (see ``app.agents.definitions``).

- ``inbox-triage``: labels new mail, notes it in memory, drafts replies.
- ``follow-up-keeper``: each morning, drafts check-ins to quiet contacts.
- ``order-desk``: answers order questions, proposes refunds for approval.
- ``content-pipeline``: drafts posts and newsletters for the owner's review.
- ``daily-briefing``: what happened, what waits, what is due.

Read-only tools are granted at SUGGEST (a level only actions look at).
Every side effect is ASK, except ``crm.create_follow_up`` of the follow-up
keeper at NOTIFY: a local, reversible CRM entry. A grant's level in a
shipped definition counts as the owner's configuration (the owner installed
it and can lower it in Agents or with a TOML override); the owner's stored
choice in ``AutonomyStore`` always wins. Their own tools
(``outbox.pending_summary``, ``crm.quiet_contacts``) are in
``app.agents.builtin.tools``.
"""

from __future__ import annotations

from app.agents.builtin import (
    content_pipeline,
    daily_briefing,
    follow_up_keeper,
    inbox_triage,
    order_desk,
)
from app.agents.definitions import AgentDefinition

__all__ = ["BUILTINS", "builtin_ids"]

BUILTINS: tuple[AgentDefinition, ...] = (
    inbox_triage.DEFINITION,
    follow_up_keeper.DEFINITION,
    order_desk.DEFINITION,
    content_pipeline.DEFINITION,
    daily_briefing.DEFINITION,
)


def builtin_ids() -> tuple[str, ...]:
    return tuple(d.id for d in BUILTINS)
