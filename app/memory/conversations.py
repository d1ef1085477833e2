"""Conversations and their messages: the session tier of the office's memory.

Each message carries a sequence number per conversation, assigned as
max + 1 inside the transaction that saves it. The database lock serialises
appends from the UI's worker threads, so numbers are unique and gap-free
and reading in ``seq`` order is reading in causal order.
"""

from __future__ import annotations

import builtins
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.memory.db import Database, from_db_time, to_db_time, utc_now
from app.memory.errors import ConversationNotFoundError
from app.memory.settings import JsonValue

log = logging.getLogger("soloist.memory")

ROLES = frozenset({"system", "user", "assistant", "tool"})

_CONVERSATION_COLUMNS = "id, title, created_at, updated_at"
_MESSAGE_SELECT = (
    "SELECT m.conversation_id, m.seq, m.role, m.content, m.created_at, x.meta FROM messages m "
    "LEFT JOIN message_meta x ON x.conversation_id = m.conversation_id AND x.seq = m.seq "
)


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation's record; ``updated_at`` is its last activity."""

    id: str
    title: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, repr=False)
class StoredMessage:
    """A saved message. Its repr shows the size of the text, never the text.

    ``meta`` holds what the chat keeps beside the text (a reply's citations).
    """

    conversation_id: str
    seq: int
    role: str
    content: str
    created_at: datetime
    meta: Mapping[str, JsonValue] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"StoredMessage(conversation_id={self.conversation_id!r}, seq={self.seq}, "
            f"role={self.role!r}, chars={len(self.content)}, "
            f"created_at={self.created_at.isoformat()})"
        )


class ConversationStore:
    """Create, list and rename conversations; append and read their messages.

    (Annotations after ``list`` spell ``builtins.list``: inside this class the
    name ``list`` is the method.)
    """

    def __init__(self, db: Database, clock: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock

    def create(self, title: str) -> Conversation:
        """Start a new, empty conversation."""
        now = self._now()
        conversation = Conversation(uuid.uuid4().hex, title, now, now)
        self._db.execute(
            f"INSERT INTO conversations ({_CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?)",
            [conversation.id, title, to_db_time(now), to_db_time(now)],
        )
        log.info("conversation %s created", conversation.id)
        return conversation

    def get(self, conversation_id: str) -> Conversation:
        """The conversation with this id; ``ConversationNotFoundError`` if none."""
        row = self._db.fetchone(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", [conversation_id]
        )
        if row is None:
            raise ConversationNotFoundError(conversation_id)
        return _conversation(row)

    def list(self) -> list[Conversation]:
        """All conversations, the most recently active first."""
        rows = self._db.fetchall(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations "
            "ORDER BY updated_at DESC, created_at DESC, id"
        )
        return [_conversation(row) for row in rows]

    def rename(self, conversation_id: str, title: str) -> Conversation:
        """Give a conversation a new title and return it.

        Renaming is not activity: ``updated_at`` stays, so the list does not
        reorder under the owner's cursor.
        """
        with self._db.transaction():
            self.get(conversation_id)
            self._db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?", [title, conversation_id]
            )
            renamed = self.get(conversation_id)
        log.info("conversation %s renamed", conversation_id)
        return renamed

    def append(
        self,
        conversation_id: str,
        role: str,
        content: str,
        meta: Mapping[str, JsonValue] | None = None,
    ) -> StoredMessage:
        """Save a message (and its ``meta``, if any) at the end of a conversation."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
        with self._db.transaction():
            self.get(conversation_id)
            seq = self._next_seq(conversation_id)
            message = StoredMessage(conversation_id, seq, role, content, self._now(), meta or {})
            self._insert(message)
        log.debug(
            "conversation %s: message %d saved (%s, %d chars)",
            conversation_id,
            message.seq,
            role,
            len(content),
        )
        return message

    def messages(self, conversation_id: str) -> builtins.list[StoredMessage]:
        """A conversation's messages in ``seq`` (causal) order."""
        with self._db.transaction():
            self.get(conversation_id)
            rows = self._db.fetchall(
                f"{_MESSAGE_SELECT} WHERE m.conversation_id = ? ORDER BY m.seq",
                [conversation_id],
            )
        return [_message(row) for row in rows]

    def delete_after(self, conversation_id: str, seq: int) -> int:
        """Delete the messages after ``seq`` (and their meta); how many went."""
        with self._db.transaction():
            self.get(conversation_id)
            row = self._db.fetchone(
                "SELECT count(*) FROM messages WHERE conversation_id = ? AND seq > ?",
                [conversation_id, seq],
            )
            for table in ("message_meta", "messages"):
                self._db.execute(
                    f"DELETE FROM {table} WHERE conversation_id = ? AND seq > ?",
                    [conversation_id, seq],
                )
        deleted = int(row[0]) if row is not None else 0
        log.info("conversation %s: %d message(s) after %d deleted", conversation_id, deleted, seq)
        return deleted

    # -- the agent a conversation talks to -----------------------------
    def agent_of(self, conversation_id: str) -> str | None:
        """The agent id this conversation talks to; None for the assistant."""
        row = self._db.fetchone(
            "SELECT agent_id FROM conversation_agents WHERE conversation_id = ?",
            [conversation_id],
        )
        return None if row is None else str(row[0])

    def set_agent(self, conversation_id: str, agent_id: str | None) -> None:
        """Talk to ``agent_id`` in this conversation from now on (None: the assistant)."""
        with self._db.transaction():
            self.get(conversation_id)
            self._db.execute(
                "DELETE FROM conversation_agents WHERE conversation_id = ?", [conversation_id]
            )
            if agent_id:
                self._db.execute(
                    "INSERT INTO conversation_agents (conversation_id, agent_id, updated_at) "
                    "VALUES (?, ?, ?)",
                    [conversation_id, agent_id, to_db_time(self._now())],
                )
        log.info("conversation %s talks to %s", conversation_id, agent_id or "the assistant")

    def _now(self) -> datetime:
        """The clock's time in UTC, as it will read back from the database."""
        return self._clock().astimezone(UTC)

    def _next_seq(self, conversation_id: str) -> int:
        """max + 1 for this conversation; call inside the append's transaction."""
        row = self._db.fetchone(
            "SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE conversation_id = ?",
            [conversation_id],
        )
        return int(row[0]) if row is not None else 1

    def _insert(self, message: StoredMessage) -> None:
        """Write the message and mark its conversation as active now.

        ``greatest`` keeps ``updated_at`` from moving back if the clock does.
        """
        created = to_db_time(message.created_at)
        self._db.execute(
            "INSERT INTO messages (conversation_id, seq, role, content, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [message.conversation_id, message.seq, message.role, message.content, created],
        )
        if message.meta:
            self._db.execute(
                "INSERT INTO message_meta (conversation_id, seq, meta) VALUES (?, ?, ?)",
                [message.conversation_id, message.seq, json.dumps(dict(message.meta))],
            )
        self._db.execute(
            "UPDATE conversations SET updated_at = greatest(updated_at, ?) WHERE id = ?",
            [created, message.conversation_id],
        )


def _conversation(row: tuple[Any, ...]) -> Conversation:
    conversation_id, title, created_at, updated_at = row
    return Conversation(conversation_id, title, from_db_time(created_at), from_db_time(updated_at))


def _message(row: tuple[Any, ...]) -> StoredMessage:
    conversation_id, seq, role, content, created_at, meta = row
    loaded = json.loads(meta) if meta is not None else {}
    return StoredMessage(
        conversation_id,
        int(seq),
        role,
        content,
        from_db_time(created_at),
        loaded if isinstance(loaded, dict) else {},
    )
