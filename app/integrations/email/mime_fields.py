"""Header fields: encoded words, address lists, MIME parameters, ids, dates.

Why not ``email.policy.default``'s header objects: their parser is quadratic
in the length of a value (measured on Python 3.11.7: 8 KB of ``"`` in a
``To:`` header takes 2.8 s, 8 KB of commas 1 s, 16 KB of unterminated
encoded words in a ``Subject:`` 0.8 s) and its behaviour on hostile
addresses changed between patch releases (CVE-2023-27043). These parsers
are single left-to-right scans whose regexes cannot backtrack (possessive
quantifiers, bounded repeats), so their time is linear in the capped value.
Dates still go through :func:`email.utils.parsedate_tz`, which is linear.

Injection: the structure of an address list is read from the raw value
*before* encoded words are decoded, so a ``=0D=0ABcc:`` inside an encoded
word can only ever become part of a display name, and every decoded string
passes through :func:`clean_line` (no CR, LF or other control character).
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_tz

from app.integrations.email.mime_decode import Defects, b64decode_lenient, decode_text
from app.integrations.email.text_clean import clean_line, strip_invisible

MAX_ADDRESSES = 1000  # per header
MAX_IDS = 100  # per References header: the root and the newest 99
MAX_PARAMS = 64
_MAX_VALUE = 64 * 1024  # chars of one header value that are read

_ENCODED_WORD = re.compile(r"=\?([^?\s*]{1,64})(?:\*[^?\s]{0,32})?\?([bBqQ])\?([^?\s]{0,4096})\?=")
_WHITESPACE_ONLY = re.compile(r"\s*")


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: a display name ("" if none) and ``local@domain``, domain lower-cased."""

    name: str
    email: str


# -- encoded words (RFC 2047) -------------------------------------------------


def decode_words(value: str, defects: Defects) -> str:
    """``value`` with its encoded words decoded; adjacent words of one charset
    are joined as bytes first, so a character split across two words survives."""
    value = value[:_MAX_VALUE]
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""
    last_end = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[last_end : match.start()]
        charset, kind, text = match.group(1).lower(), match.group(2).lower(), match.group(3)
        adjacent = bool(pending) and _WHITESPACE_ONLY.fullmatch(between) is not None
        if not adjacent or charset != pending_charset:
            if pending:
                out.append(decode_text(b"".join(pending), pending_charset, defects))
                pending = []
            if not adjacent:
                out.append(between)
        pending_charset = charset
        pending.append(_decode_word(text, kind, defects))
        last_end = match.end()
    if pending:
        out.append(decode_text(b"".join(pending), pending_charset, defects))
    out.append(value[last_end:])
    return "".join(out)


def _decode_word(text: str, kind: str, defects: Defects) -> bytes:
    data = text.encode("utf-8", "replace")
    if kind == "b":
        return b64decode_lenient(data, defects)
    return binascii.a2b_qp(data, header=True)


def decode_unstructured(value: str, defects: Defects) -> str:
    """A subject-like header as one clean line of text."""
    return clean_line(decode_words(value, defects))


# -- address lists (RFC 5322 section 3.4) ------------------------------------

_ADDRESS_TOKEN = re.compile(
    r"""(?P<quoted>"(?:[^"\\]++|\\.)*+"?)
      | (?P<special>[(),;:<>])
      | (?P<space>\s++)
      | (?P<escape>\\.?)
      | (?P<atom>[^\s"(),;:<>\\]++)""",
    re.VERBOSE | re.DOTALL,
)
_ADDR_PART = re.compile(r"[^\s\x00-\x1f\x7f<>()\[\],;:@\\\"]{1,255}")
_DOMAIN_LITERAL = re.compile(r"\[[^\[\]\s\\]{1,255}\]")


class _Piece:
    """One address being read: its phrase, ``<angle>`` part and comment."""

    __slots__ = ("angle", "comment", "in_angle", "phrase")

    def __init__(self) -> None:
        self.phrase: list[str] = []
        self.angle: list[str] | None = None
        self.comment: list[str] = []
        self.in_angle = False

    def empty(self) -> bool:
        return not self.angle and not "".join(self.phrase).strip()


def parse_addresses(value: str, defects: Defects) -> tuple[Address, ...]:
    """The addresses of an address-list header (groups flattened)."""
    found: list[Address] = []
    piece = _Piece()
    depth = 0  # comment nesting
    for token in _ADDRESS_TOKEN.finditer(value[:_MAX_VALUE]):
        kind, text = token.lastgroup, token.group()
        if depth:
            depth += (text == "(") - (text == ")") if kind == "special" else 0
            if depth:
                piece.comment.append(text)
            continue
        if kind != "special":
            (piece.angle if piece.in_angle and piece.angle is not None else piece.phrase).append(
                text
            )
        elif text == "(":
            depth = 1
        elif text == "<" and piece.angle is None:
            piece.angle, piece.in_angle = [], True
        elif text == ">":
            piece.in_angle = False
        elif text == ":" and not piece.in_angle and _is_group_name(piece):
            piece = _Piece()  # "friends: a@b, c@d;" -> the group's name is dropped
        elif text in ",;" and not piece.in_angle:
            _finish(piece, found, defects)
            piece = _Piece()
            if len(found) >= MAX_ADDRESSES:
                defects.add("too many addresses")
                return tuple(found)
        elif piece.in_angle and piece.angle is not None:
            piece.angle.append(text)
        else:
            piece.phrase.append(text)
    _finish(piece, found, defects)
    return tuple(found[:MAX_ADDRESSES])


def _is_group_name(piece: _Piece) -> bool:
    return piece.angle is None and "@" not in "".join(piece.phrase)


def _finish(piece: _Piece, found: list[Address], defects: Defects) -> None:
    if piece.empty():
        return
    name_words = piece.phrase
    if piece.angle is not None:
        spec = "".join(piece.angle).strip()
        spec = spec.rsplit(":", 1)[-1]  # an obsolete route "@a,@b:user@host"
    else:
        words = "".join(piece.phrase).split()
        candidates = [word for word in words if "@" in word]
        if len(candidates) != 1:
            defects.add("bad address")
        spec = candidates[0] if candidates else ""
        name_words = piece.comment
    email = _valid_email(spec)
    if email is None:
        defects.add("bad address")
        return
    name = "".join(_unquote(word) for word in name_words)
    found.append(Address(decode_unstructured(name, defects), email))


def _unquote(word: str) -> str:
    if len(word) >= 2 and word[0] == '"':
        inner = word[1:-1] if word.endswith('"') else word[1:]
        return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)
    return word


def _valid_email(spec: str) -> str | None:
    """``local@domain`` with the domain lower-cased, or None if it is not one."""
    local, at, domain = spec.rpartition("@")
    if not at or len(spec) > 320 or strip_invisible(spec) != spec:
        return None  # C1 controls, bidi overrides, zero-width: never in an address we keep
    if local.startswith('"') and local.endswith('"') and len(local) > 2:
        inner = _unquote(local)
        local = inner if _ADDR_PART.fullmatch(inner) else ""
    if not _ADDR_PART.fullmatch(local):
        return None
    if not (_ADDR_PART.fullmatch(domain) or _DOMAIN_LITERAL.fullmatch(domain)):
        return None
    return f"{local}@{domain.lower()}"


# -- MIME parameters (RFC 2045, RFC 2231) ------------------------------------

_PARAM = re.compile(r"""([^\s=;"]{1,128}+)\s*+=\s*+("(?:[^"\\]++|\\.)*+"?|[^;]*+)""", re.DOTALL)
_SECTION = re.compile(r"(.+?)\*(\d{1,3})?(\*)?$")


def parse_content_header(value: str, defects: Defects) -> tuple[str, dict[str, str]]:
    """``("text/plain", {"charset": "utf-8"})`` from a Content-Type-like value."""
    value = value[:_MAX_VALUE]
    head, _, rest = value.partition(";")
    plain: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[bool, str]]] = {}
    for count, match in enumerate(_PARAM.finditer(rest)):
        if count >= MAX_PARAMS:
            defects.add("too many parameters")
            break
        name, raw_value = match.group(1).lower(), match.group(2).strip()
        text = _unquote(raw_value) if raw_value.startswith('"') else raw_value
        section = _SECTION.match(name)
        if section is None:
            plain.setdefault(name, text)
        else:
            base, index, extended = section.group(1), section.group(2), section.group(3)
            parts = sections.setdefault(base, {})
            parts.setdefault(int(index or 0), (bool(extended) or index is None, text))
    params = {name: _maybe_encoded(text, defects) for name, text in plain.items()}
    for base, parts in sections.items():
        params[base] = _join_rfc2231(parts, defects)
    return clean_line(head).lower(), params


def _maybe_encoded(text: str, defects: Defects) -> str:
    """RFC 2047 inside a parameter is not standard, but Outlook writes file names so."""
    return decode_words(text, defects) if "=?" in text else text


def _join_rfc2231(parts: dict[int, tuple[bool, str]], defects: Defects) -> str:
    """Continuations ``name*0*=utf-8''%E2%82%AC; name*1=...`` as one string."""
    charset = ""
    data = bytearray()
    for number, index in enumerate(sorted(parts)):
        extended, text = parts[index]
        if number == 0 and extended and text.count("'") >= 2:
            charset, _, text = text.split("'", 2)
        if extended:
            data += urllib.parse.unquote_to_bytes(text)
        else:
            data += text.encode("utf-8", "replace")
    return decode_text(bytes(data), charset or "utf-8", defects)


# -- message ids and dates ----------------------------------------------------

_BRACKETED_ID = re.compile(r"<\s*+([^<>\s]{1,500})\s*+>")
_BARE_ID = re.compile(r"[^<>\s,;\"()]{1,500}@[^<>\s,;\"()]{1,500}")


def normalise_message_id(value: str | None) -> str | None:
    """``<local@host>`` from a Message-ID-like value, or None if there is none."""
    if not value:
        return None
    ids = message_ids(value, limit=1)
    return ids[0] if ids else None


def message_ids(value: str, limit: int = MAX_IDS) -> tuple[str, ...]:
    """Every ``<id>`` in a References-like value, in order, each once.

    Values without angle brackets (some broken clients) fall back to bare
    ``local@host`` tokens. Over ``limit`` ids, the first (the thread's root)
    and the newest are kept, as RFC 5322 asks of clients that trim.
    """
    value = clean_line(value[:_MAX_VALUE])
    found = _BRACKETED_ID.findall(value) or _BARE_ID.findall(value)
    ids = list(dict.fromkeys(f"<{found_id}>" for found_id in found))
    if len(ids) > limit:
        ids = ids[:1] + ids[len(ids) - limit + 1 :] if limit > 1 else ids[:1]
    return tuple(ids)


def parse_date(value: str, defects: Defects) -> datetime | None:
    """An aware UTC datetime from a Date header; None (and a defect) if it is garbage."""
    try:
        parsed = parsedate_tz(clean_line(value[:256]))
    except (ValueError, TypeError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        defects.add("bad date")
        return None
    year, month, day, hour, minute, second = parsed[:6]
    offset = parsed[9] or 0
    try:
        naive = datetime(year, month, day, hour, minute, second)
    except (ValueError, OverflowError):
        defects.add("bad date")
        return None
    if abs(offset) >= 24 * 3600:
        defects.add("bad date")
        offset = 0
    try:
        return naive.replace(tzinfo=timezone(timedelta(seconds=offset))).astimezone(UTC)
    except (ValueError, OverflowError):
        defects.add("bad date")
        return None
