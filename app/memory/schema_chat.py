"""Schema version 13: what the chat keeps beside its messages.

- ``message_meta``: a JSON object per message that has one (a reply's
  citations), keyed like the message itself;
- ``conversation_agents``: the agent a conversation talks to (none: the
  assistant).

Neither table declares a foreign key: DuckDB checks one against rows
deleted earlier in the same transaction, and regenerating a reply deletes
the message and its meta together. ``ConversationStore`` keeps them in step.

Owned by ``app.memory.conversations``; appended to
``app.memory.migrations.MIGRATIONS``. Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

CHAT = Migration(
    13,
    "message meta (citations) and the agent of a conversation",
    (
        """
        CREATE TABLE message_meta (
            conversation_id TEXT NOT NULL,
            seq             INTEGER NOT NULL,
            meta            JSON NOT NULL,  -- an object: {"citations": [...]}
            PRIMARY KEY (conversation_id, seq)
        )
        """,
        """
        CREATE TABLE conversation_agents (
            conversation_id TEXT PRIMARY KEY,
            agent_id        TEXT NOT NULL,
            updated_at      TIMESTAMP NOT NULL  -- UTC
        )
        """,
    ),
)
