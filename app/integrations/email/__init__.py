"""Email: IMAP sync, SMTP sending, and the parsing of mail into safe text.

Parsing (``mime``, ``html_text``, ``threads``) is pure and bounded: it never
raises on what a server sends and its cost is capped by ``MimeLimits``.
"""

from app.integrations.email.html_text import html_to_text
from app.integrations.email.mime import (
    Address,
    AttachmentInfo,
    MimeLimits,
    ParsedMessage,
    parse_message,
)
from app.integrations.email.threads import ThreadIndex, normalise_subject, thread_id_for

__all__ = [
    "Address",
    "AttachmentInfo",
    "MimeLimits",
    "ParsedMessage",
    "ThreadIndex",
    "html_to_text",
    "normalise_subject",
    "parse_message",
    "thread_id_for",
]
