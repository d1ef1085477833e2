"""Header values from hostile mail, decoded and made safe to store and show.

RFC 2047 encoded words can carry CR/LF (``=?utf-8?q?a=0D=0ABcc:_x?=``): once
decoded, such a value must not become a second header or a line break in a
subject, so every decoded value has its control characters replaced by a
space. Values are capped before decoding so a 1 MB header costs nothing.
Nothing here raises: a header that cannot be decoded is read as latin-1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.utils import getaddresses, parsedate_to_datetime

MAX_HEADER_CHARS = 16_384
MAX_REFERENCES = 100
MAX_ADDRESSES = 500

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_MSG_ID = re.compile(r"<[^<>\s]{1,994}>")
_ADDR = re.compile(r"[^@\s<>(),;:\"\[\]\\]{1,64}@[^@\s<>(),;:\"\[\]\\]{1,255}")


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: a display name (may be empty) and an address, domain lower-cased."""

    name: str
    email: str


def one_line(value: str) -> str:
    """Control characters (CR, LF, NUL, U+2028...) become spaces; runs of space collapse."""
    return " ".join(_CONTROL.sub(" ", value).split())


def decode_value(raw: str, defects: list[str]) -> str:
    """An unstructured header (Subject) decoded from RFC 2047, on one line."""
    text = raw[:MAX_HEADER_CHARS]
    if len(raw) > MAX_HEADER_CHARS:
        defects.append("header too long")
    if "=?" not in text:
        return one_line(text)
    try:
        return one_line(str(make_header(decode_header(text))))
    except (LookupError, ValueError, UnicodeError, AssertionError, IndexError):
        defects.append("undecodable encoded word")
        return one_line(text)


def addresses(raws: list[str], defects: list[str]) -> tuple[Address, ...]:
    """The mailboxes of address headers: names decoded, addresses checked."""
    pairs: list[tuple[str, str]] = []
    try:
        pairs = getaddresses([r[:MAX_HEADER_CHARS] for r in raws])
    except Exception:  # getaddresses has raised on odd input in older releases
        defects.append("unparsable address header")
    found: list[Address] = []
    for name, addr in pairs[:MAX_ADDRESSES]:
        email = _mailbox(one_line(addr))
        if email is None:
            continue
        found.append(Address(decode_value(name, defects) if name else "", email))
    return tuple(found)


def _mailbox(text: str) -> str | None:
    match = _ADDR.fullmatch(text.strip())
    if match is None:
        return None
    local, _, domain = match.group(0).rpartition("@")
    return f"{local}@{domain.lower()}"


def message_id(raw: str | None) -> str | None:
    """The first ``<...>`` token, or a bare token wrapped in brackets; None if empty."""
    if not raw:
        return None
    text = one_line(raw[:MAX_HEADER_CHARS])
    match = _MSG_ID.search(text)
    if match:
        return match.group(0)
    token = text.split(" ")[0].strip("<>") if text else ""
    return f"<{token[:994]}>" if token and "@" in token else None


def references(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(_MSG_ID.findall(one_line(raw[: MAX_HEADER_CHARS * 4])))[-MAX_REFERENCES:]


def date(raw: str | None, defects: list[str]) -> datetime | None:
    """The Date header in UTC; a missing zone is read as UTC; nonsense is None."""
    if not raw:
        return None
    try:
        when = parsedate_to_datetime(one_line(raw[:200]))
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("unparsable date")
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        when = when.astimezone(UTC)
    except (OverflowError, ValueError):
        defects.append("unparsable date")
        return None
    if not 1970 <= when.year <= 2200:
        defects.append("implausible date")
        return None
    return when
