"""The read-only email tools an agent may call: search, read, thread.

They read the local store only (what the last sync brought), so they are
fast, work offline and never change anything on the server.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.integrations.base import JsonObject, JsonValue, Tool
from app.integrations.email.mail_store import MailQuery, MailStore
from app.integrations.errors import RemoteNotFoundError

MAX_RESULTS = 100

_SEARCH: JsonObject = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "words in the subject or body"},
        "from": {"type": "string", "description": "part of the sender's name or address"},
        "folder": {"type": "string"},
        "since": {"type": "string", "description": "ISO date or time, inclusive"},
        "until": {"type": "string", "description": "ISO date or time, exclusive"},
        "unread": {"type": "boolean"},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS},
    },
}
_BY_ID: JsonObject = {
    "type": "object",
    "properties": {"id": {"type": "string"}},
    "required": ["id"],
}


def mail_tools(store: MailStore) -> list[Tool]:
    def search(args: JsonObject) -> JsonValue:
        return list(store.search(query_from(args)))

    def read(args: JsonObject) -> JsonValue:
        message = store.read(str(args.get("id") or ""))
        if message is None:
            raise RemoteNotFoundError("no stored message has that id; search again")
        return message

    def thread(args: JsonObject) -> JsonValue:
        messages = store.thread(str(args.get("id") or ""))
        if not messages:
            raise RemoteNotFoundError("no stored thread has that id; search again")
        return list(messages)

    return [
        Tool("email.search", "Search stored mail by text, sender, folder, dates.", _SEARCH, search),
        Tool("email.read", "Read one stored mail by its id (from email.search).", _BY_ID, read),
        Tool(
            "email.thread",
            "All stored mails of a thread, oldest first (id: a thread_id).",
            _BY_ID,
            thread,
        ),
    ]


def query_from(args: JsonObject) -> MailQuery:
    limit = args.get("limit")
    unread = args.get("unread")
    return MailQuery(
        text=_text(args.get("text")),
        sender=_text(args.get("from")),
        folder=_text(args.get("folder")),
        since=_when(args.get("since")),
        until=_when(args.get("until")),
        unread=unread if isinstance(unread, bool) else None,
        limit=max(1, min(MAX_RESULTS, limit)) if isinstance(limit, int) else 20,
    )


def _text(value: JsonValue) -> str | None:
    return str(value) if value not in (None, "") else None


def _when(value: JsonValue) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO date; use e.g. 2024-05-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
