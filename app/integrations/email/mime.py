"""Mail as bytes from a server -> a :class:`ParsedMessage` the office can store.

Mail is written by strangers, so :func:`parse_message` never raises and its
cost is bounded by the size of the input and :class:`MimeLimits`:

- the MIME tree is found by :mod:`.mime_walk` (offsets into the raw bytes,
  an explicit stack, at most ``max_parts`` parts and ``max_depth`` levels);
  why not the standard library's parser on the whole message is measured
  there;
- header fields are decoded by :mod:`.mime_fields`: the structure of an
  address list is read before its encoded words are decoded, and no CR, LF
  or other control character survives into a subject, a name or an address;
- bodies are decoded leniently by :mod:`.mime_decode` (an unknown or wrong
  charset falls back, broken base64 decodes what is there);
- attachments are metadata: their size is counted a chunk at a time and
  their bytes are never copied, so a 50 MB attachment costs no second copy;
- HTML is reduced to visible text by :func:`.html_to_text`.

What was wrong is listed in ``defects`` as short names ("bad base64",
"unknown charset", "too many parts", "nesting too deep", "header too
long"...).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.integrations.email.html_text import html_to_text
from app.integrations.email.mime_decode import (
    Defects,
    decode_text,
    decode_transfer,
    decoded_size,
)
from app.integrations.email.mime_fields import (
    Address,
    decode_unstructured,
    message_ids,
    normalise_message_id,
    parse_addresses,
    parse_date,
)
from app.integrations.email.mime_walk import Part, read_tree
from app.integrations.email.text_clean import clean_block, clean_line

__all__ = [
    "DEFAULT_LIMITS",
    "Address",
    "AttachmentInfo",
    "MimeLimits",
    "ParsedMessage",
    "normalise_message_id",
    "parse_message",
    "safe_filename",
]

_BODY_TYPES = ("text/plain", "text/html")


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """What an attachment is, without its bytes."""

    filename: str | None  # no path, no control or bidi characters
    content_type: str
    size: int  # decoded bytes
    content_id: str | None  # without the angle brackets, as in a cid: URL
    inline: bool
    truncated: bool = False  # larger than max_attachment_bytes: metadata only


@dataclass(frozen=True, slots=True)
class MimeLimits:
    max_parts: int = 500
    max_depth: int = 20  # read as at most 100
    max_header_bytes: int = 256 * 1024  # of one part's header block
    max_text_chars: int = 1_000_000
    max_attachment_bytes: int = 25 * 1024 * 1024


DEFAULT_LIMITS = MimeLimits()


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    message_id: str | None  # "<local@host>"
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None  # aware, UTC
    text: str  # text/plain, else the HTML reduced to visible text
    html_text: str | None  # the HTML reduced to visible text, if there was HTML
    attachments: tuple[AttachmentInfo, ...]
    defects: tuple[str, ...]
    size: int  # bytes of the raw message

    def __repr__(self) -> str:  # never the text of a mail in a log
        return f"ParsedMessage(id={self.message_id!r}, size={self.size})"


def parse_message(raw: bytes, limits: MimeLimits | None = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse ``raw`` (RFC 5322 bytes); see the module docstring. Never raises."""
    limits = limits or DEFAULT_LIMITS
    defects = Defects()
    try:
        data = raw if isinstance(raw, bytes) else bytes(raw)
    except Exception:  # not bytes-like at all
        defects.add("not bytes")
        data = b""
    try:
        return _parse(data, limits, defects)
    except Exception:  # a bug of ours: the caller still gets a message, marked
        defects.add("internal error")
        return _message({}, _Reader(data, limits, defects), len(data))


def _parse(data: bytes, limits: MimeLimits, defects: Defects) -> ParsedMessage:
    root, fields = read_tree(data, limits, defects)
    reader = _Reader(data, limits, defects)
    reader.collect(root)
    return _message(fields, reader, len(data))


def _message(fields: dict[str, str], reader: _Reader, size: int) -> ParsedMessage:
    defects = reader.defects

    def addresses(name: str) -> tuple[Address, ...]:
        return parse_addresses(fields[name], defects) if name in fields else ()

    senders = addresses("from")
    return ParsedMessage(
        message_id=normalise_message_id(fields.get("message-id")),
        in_reply_to=normalise_message_id(fields.get("in-reply-to")),
        references=message_ids(fields.get("references", "")),
        subject=decode_unstructured(fields.get("subject", ""), defects),
        sender=senders[0] if senders else None,
        to=addresses("to"),
        cc=addresses("cc"),
        reply_to=addresses("reply-to"),
        date=parse_date(fields["date"], defects) if "date" in fields else None,
        text=reader.text(),
        html_text=reader.html_text(),
        attachments=tuple(reader.attachments),
        defects=defects.as_tuple(),
        size=size,
    )


@dataclass(slots=True)
class _Body:
    """Readable text of a subtree (document order) and its HTML reduced to text."""

    readable: list[tuple[bool, str]]  # (from HTML?, text)
    html: list[str]


class _Reader:
    """Decodes the body parts of a tree and lists its attachments."""

    def __init__(self, data: bytes, limits: MimeLimits, defects: Defects) -> None:
        self.data = data
        self.limits = limits
        self.defects = defects
        self.attachments: list[AttachmentInfo] = []
        self.budget = 2 * max(limits.max_text_chars, 0)  # plain and HTML of one alternative
        self.body = _Body([], [])

    def collect(self, root: Part) -> None:
        self.body = self._walk(root)

    def text(self) -> str:
        pieces = [text for _, text in self.body.readable if text]
        return "\n\n".join(pieces)[: self.limits.max_text_chars]

    def html_text(self) -> str | None:
        if not self.body.html:
            return None
        return "\n\n".join(t for t in self.body.html if t)[: self.limits.max_text_chars]

    def _walk(self, part: Part) -> _Body:
        if part.unread:
            return _Body([], [])
        if not part.is_multipart:
            return self._leaf(part)
        bodies = [self._walk(child) for child in part.children]
        if part.content_type == "multipart/alternative":
            return _alternative(bodies)
        return _Body(
            [item for body in bodies for item in body.readable],
            [html for body in bodies for html in body.html],
        )

    def _leaf(self, part: Part) -> _Body:
        if part.content_type in _BODY_TYPES and part.disposition != "attachment":
            text = self._decode(part)
            if part.content_type == "text/html":
                html = html_to_text(text, max(self.limits.max_text_chars, 0))
                return _Body([(True, html)], [html])
            return _Body([(False, clean_block(text))], [])
        size = decoded_size(self.data, part.body_start, part.body_end, part.encoding, self.defects)
        name = part.disposition_params.get("filename") or part.params.get("name")
        self.attachments.append(
            AttachmentInfo(
                filename=safe_filename(name),
                content_type=part.content_type,
                size=size,
                content_id=part.content_id,
                inline=part.disposition == "inline"
                or (part.disposition is None and part.content_id is not None),
                truncated=size > self.limits.max_attachment_bytes,
            )
        )
        return _Body([], [])

    def _decode(self, part: Part) -> str:
        """A text part's body, reading at most what the text budget can use."""
        if self.budget <= 0:
            self.defects.add("text truncated")
            return ""
        most = self.budget * 6  # up to 4 bytes a character, +1/3 for base64, line breaks
        end = part.body_end
        if end - part.body_start > most:
            self.defects.add("text truncated")
            end = part.body_start + most
        data = decode_transfer(self.data[part.body_start : end], part.encoding, self.defects)
        text = decode_text(data, part.params.get("charset"), self.defects)
        self.budget -= len(text)
        return text


def _alternative(bodies: list[_Body]) -> _Body:
    """Plain text if an alternative has some (an empty text/plain beside the HTML is
    common), else the richest; HTML from the last alternative that has HTML."""
    plain = [b for b in bodies if any(not html and text for html, text in b.readable)]
    readable = plain[0] if plain else next((b for b in reversed(bodies) if b.readable), None)
    with_html = next((b for b in reversed(bodies) if b.html), None)
    return _Body(
        readable.readable if readable else [],
        with_html.html if with_html else [],
    )


def safe_filename(name: str | None) -> str | None:
    """A file name to show or save: no directories, no control or bidi characters."""
    if not name:
        return None
    cleaned = clean_line(name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = cleaned.strip(" .")[:255]
    return cleaned or None
