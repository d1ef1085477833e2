"""From a fetched, parsed message to a stored row and to what memory keeps of it.

Pure functions between :mod:`.mime` (parsing), :mod:`.threads` (threading)
and :mod:`.mail_store` (rows), so the sync only moves data around.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.integrations.base import JsonObject
from app.integrations.email.imap_parse import FetchedMessage
from app.integrations.email.mail_store import StoredMessage
from app.integrations.email.mime import Address, AttachmentInfo, ParsedMessage
from app.integrations.email.threads import thread_id_for

MEMORY_TEXT_CHARS = 2000

ThreadLookup = Callable[[Sequence[str]], str | None]


def stored_message(
    fetched: FetchedMessage, parsed: ParsedMessage, lookup: ThreadLookup
) -> StoredMessage:
    sender = parsed.sender
    thread_id = thread_id_for(
        parsed.message_id,
        parsed.in_reply_to,
        parsed.references,
        parsed.subject,
        sender.email if sender else None,
        parsed.date,
        lookup,
    )
    return StoredMessage(
        uid=fetched.uid,
        message_id=parsed.message_id,
        thread_id=thread_id,
        in_reply_to=parsed.in_reply_to,
        references=tuple(parsed.references),
        subject=parsed.subject,
        from_name=sender.name if sender else None,
        from_email=sender.email if sender else None,
        to=_pairs(parsed.to),
        cc=_pairs(parsed.cc),
        sent_at=parsed.date,
        received_at=fetched.internal_date,
        size=fetched.size,
        flags=fetched.flags,
        body_text=parsed.text or (parsed.html_text or ""),
        attachments=tuple(_attachment(a) for a in parsed.attachments),
    )


def memory_text(message: StoredMessage) -> str:
    """What the office remembers of a new mail: subject, sender, the start of the text."""
    sender = message.from_email or "unknown sender"
    if message.from_name:
        sender = f"{message.from_name} <{sender}>"
    body = message.body_text.strip()[:MEMORY_TEXT_CHARS]
    return f"Subject: {message.subject}\nFrom: {sender}\n\n{body}"


def memory_url(account_id: str, folder: str, uidvalidity: int, uid: int) -> str:
    """An IMAP URL (RFC 5092 style) naming the message the memory came from."""
    return f"imap://{account_id}/{folder};UIDVALIDITY={uidvalidity};UID={uid}"


def _pairs(addresses: Sequence[Address]) -> tuple[tuple[str, str], ...]:
    return tuple((a.name, a.email) for a in addresses)


def _attachment(info: AttachmentInfo) -> JsonObject:
    return {
        "filename": info.filename,
        "content_type": info.content_type,
        "size": info.size,
        "inline": info.inline,
    }
