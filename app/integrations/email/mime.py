"""Mail as bytes from a server → a :class:`ParsedMessage` the office can store.

Parsing uses the standard library's modern policy (``email.policy.default``)
for the structure, but every value that reaches Soloist is re-checked here,
because mail is written by strangers:

- headers are read raw and decoded by :mod:`mime_headers` (no CR/LF can
  survive into a subject or an address list);
- the MIME tree is walked without recursion, at most ``max_parts`` parts and
  ``max_depth`` levels deep;
- body text is decoded leniently: an unknown or wrong charset falls back to
  UTF-8 then cp1252, broken base64 decodes what it can; each problem is a
  short entry in ``defects``;
- attachments are metadata only (name, type, size estimated from the encoded
  length): their bytes are never decoded, so a 50 MB attachment costs no
  second copy;
- HTML is reduced to visible text by :func:`html_to_text`.

:func:`parse_message` never raises. If the structure cannot be read at all
(the stdlib parser gave up), the headers and the raw body as text are kept
with the defect ``structure unreadable``.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser

from app.integrations.email import mime_headers as headers
from app.integrations.email.html_text import html_to_text
from app.integrations.email.mime_headers import Address

__all__ = ["Address", "AttachmentInfo", "MimeLimits", "ParsedMessage", "parse_message"]

_BASE64_CHARS = re.compile(rb"[A-Za-z0-9+/]")
# Text codecs that turn escapes into characters: never for mail bodies.
_REFUSED_CODECS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "punycode", "idna", "undefined"}
)


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """What an attachment is, without its bytes."""

    filename: str | None
    content_type: str
    size: int  # decoded bytes (estimated from the encoded length for base64)
    content_id: str | None
    inline: bool
    truncated: bool = False  # larger than max_attachment_bytes: never to be fetched whole


@dataclass(frozen=True, slots=True)
class MimeLimits:
    max_parts: int = 500
    max_depth: int = 20
    max_header_bytes: int = 256 * 1024
    max_text_chars: int = 1_000_000
    max_attachment_bytes: int = 25 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    text: str
    html_text: str | None
    attachments: tuple[AttachmentInfo, ...]
    defects: tuple[str, ...]
    size: int

    def __repr__(self) -> str:  # never the text of a mail in a log
        return f"ParsedMessage(id={self.message_id!r}, size={self.size})"


@dataclass
class _Walk:
    limits: MimeLimits
    defects: list[str] = field(default_factory=list)
    plain: str | None = None
    html: str | None = None
    attachments: list[AttachmentInfo] = field(default_factory=list)
    parts: int = 0


def parse_message(raw: bytes, limits: MimeLimits | None = None) -> ParsedMessage:
    """Parse ``raw`` (RFC 5322 bytes); see the module docstring. Never raises."""
    limits = limits or MimeLimits()
    defects: list[str] = []
    data = _cap_header_block(bytes(raw), limits, defects)
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        walk = _Walk(limits, defects)
        _walk_tree(message, walk)
    except Exception:  # RecursionError on absurd nesting, or a parser bug: keep what we can
        defects.append("structure unreadable")
        return _fallback(data, len(raw), limits, defects)
    return _assemble(message, walk, len(raw))


def _cap_header_block(raw: bytes, limits: MimeLimits, defects: list[str]) -> bytes:
    end = _header_end(raw)
    if end <= limits.max_header_bytes:
        return raw
    defects.append("headers too large")
    head = raw[: limits.max_header_bytes]
    head = head[: max(head.rfind(b"\n"), 0)]
    return head + b"\r\n\r\n" + raw[end:]


def _header_end(raw: bytes) -> int:
    found = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return min(found) if found else len(raw)


def _walk_tree(message: Message, walk: _Walk) -> None:
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        walk.parts += 1
        if walk.parts > walk.limits.max_parts:
            walk.defects.append("too many parts")
            return
        if part.is_multipart():
            if depth >= walk.limits.max_depth:
                walk.defects.append("nesting too deep")
                continue
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((child, depth + 1) for child in reversed(children))
            continue
        try:
            _leaf(part, walk)
        except Exception:
            walk.defects.append("unreadable part")


def _leaf(part: Message, walk: _Walk) -> None:
    content_type = part.get_content_type()
    disposition = part.get_content_disposition()
    filename = _filename(part, walk.defects)
    is_body = content_type in ("text/plain", "text/html") and disposition != "attachment"
    if is_body and filename is None:
        if content_type == "text/plain" and walk.plain is None:
            walk.plain = _text(part, walk)
            return
        if content_type == "text/html" and walk.html is None:
            walk.html = html_to_text(_text(part, walk), walk.limits.max_text_chars)
            return
    size = _encoded_size(part)
    walk.attachments.append(
        AttachmentInfo(
            filename=filename,
            content_type=content_type,
            size=size,
            content_id=headers.message_id(_raw_header(part, "content-id")),
            inline=disposition == "inline",
            truncated=size > walk.limits.max_attachment_bytes,
        )
    )


def _filename(part: Message, defects: list[str]) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        defects.append("unreadable file name")
        return None
    if not name:
        return None
    cleaned = headers.one_line(str(name)).replace("/", "_").replace("\\", "_")
    return cleaned[:255] or None


def _text(part: Message, walk: _Walk) -> str:
    payload = part.get_payload(decode=True)
    if part.defects:
        walk.defects.extend(sorted({type(d).__name__ for d in part.defects}))
    if not isinstance(payload, bytes):
        return ""
    cap = walk.limits.max_text_chars * 4
    if len(payload) > cap:
        walk.defects.append("text too long")
        payload = payload[:cap]
    return _decode(payload, part.get_content_charset(), walk.defects)[: walk.limits.max_text_chars]


def _decode(payload: bytes, charset: str | None, defects: list[str]) -> str:
    codec = _codec(charset, defects)
    if codec is not None:
        try:
            return payload.decode(codec)
        except (UnicodeDecodeError, LookupError):
            defects.append("text not in its declared charset")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("cp1252", errors="replace")


def _codec(charset: str | None, defects: list[str]) -> str | None:
    name = (charset or "utf-8").strip().strip("\"'").lower()[:40]
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        defects.append("unknown charset")
        return None
    if info.name in _REFUSED_CODECS or not getattr(info, "_is_text_encoding", True):
        defects.append("refused charset")
        return None
    return info.name


def _encoded_size(part: Message) -> int:
    body = part.get_payload()
    if not isinstance(body, str):
        return 0
    encoding = str(_raw_header(part, "content-transfer-encoding") or "").strip().lower()
    if encoding == "base64":
        return len(_BASE64_CHARS.findall(body.encode("ascii", "surrogateescape"))) * 3 // 4
    return len(body)


def _raw_header(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _raw_all(message: Message, name: str) -> list[str]:
    return [str(v) for k, v in message.raw_items() if k.lower() == name]


def _assemble(message: Message, walk: _Walk, size: int) -> ParsedMessage:
    defects = walk.defects
    senders = headers.addresses(_raw_all(message, "from"), defects)
    html_text = walk.html
    text = walk.plain if walk.plain is not None else (html_text or "")
    return ParsedMessage(
        message_id=headers.message_id(_raw_header(message, "message-id")),
        in_reply_to=headers.message_id(_raw_header(message, "in-reply-to")),
        references=headers.references(_raw_header(message, "references")),
        subject=headers.decode_value(_raw_header(message, "subject") or "", defects),
        sender=senders[0] if senders else None,
        to=headers.addresses(_raw_all(message, "to"), defects),
        cc=headers.addresses(_raw_all(message, "cc"), defects),
        reply_to=headers.addresses(_raw_all(message, "reply-to"), defects),
        date=headers.date(_raw_header(message, "date"), defects),
        text=text,
        html_text=html_text,
        attachments=tuple(walk.attachments),
        defects=tuple(dict.fromkeys(defects)),
        size=size,
    )


def _fallback(data: bytes, size: int, limits: MimeLimits, defects: list[str]) -> ParsedMessage:
    message: Message
    try:
        message = BytesHeaderParser(policy=policy.default).parsebytes(data)
    except Exception:
        message = Message()
    body = data[_header_end(data) :][: limits.max_text_chars]
    walk = _Walk(limits, defects, plain=body.decode("utf-8", errors="replace"))
    return _assemble(message, walk, size)
