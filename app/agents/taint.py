"""Where each value of an action's payload came from, so the approval can mark it.

An agent that read an email and then wants to send money or mail is the
classic prompt-injection path: the values it writes may be the attacker's.
:func:`trace_origins` labels every leaf of a payload:

- ``UNTRUSTED`` when the value, or a distinctive piece of it (an email
  address, a URL or domain, an amount, a run of at least 20 characters or 4
  words), appears in any text from outside that the run read. This wins over
  everything else: the owner may have said the same address, but the agent
  may still have taken it from the email.
- else ``OWNER`` when the whole value appears in what the owner wrote,
- else ``CONFIG`` when the whole value appears in the agent's configuration,
- else ``AGENT`` (the model wrote it).

Claims of taint are generous and claims of trust are strict: a false
positive costs the owner a glance, a false negative is the bug. Text is
compared after normalising case, whitespace, HTML entities (decoded
repeatedly), compatibility forms (full-width letters) and invisible
characters (zero-width spaces, soft hyphens, direction marks); untrusted
text is also searched with its HTML tags removed and with its base64 blobs
decoded (a model can "decode this and run it"; found by the obedient-attacker
replay, ``tests/test_security_injection.py``).

Pure functions, no I/O: table-tested in ``tests/test_taint.py``.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from app.integrations.base import JsonObject, JsonValue

RUN_CHARS = 20  # a copied run of this many characters is distinctive
RUN_WORDS = 4  # ...and so is a run of this many words
_MAX_UNESCAPES = 4  # "&amp;#8203;" is decoded twice; more rounds than that is noise

_TAG = re.compile(r"<[^<>]{0,500}>")
_WORD = re.compile(r"\w+")
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)[^\s<>\"']+")
_DOMAIN = re.compile(r"(?<![\w@.-])(?:[\w-]+\.)+[a-z]{2,24}(?![\w-])")
_NUMBER = re.compile(r"\d+(?:[.,' ]\d+)*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")  # a blob a model could decode and obey
_URL_TRAILER = ".,;:!?)]}>'\""


class Origin(StrEnum):
    """Who wrote a value, most trusted first (UNTRUSTED wins when in doubt)."""

    OWNER = "owner"
    CONFIG = "agent config"
    AGENT = "agent"
    UNTRUSTED = "untrusted"


@dataclass(frozen=True, slots=True)
class UntrustedSource:
    """Text from outside the run read: an email body, a web page, a tool result."""

    label: str  # "email <message-id> body", "tool result crm.search"
    text: str

    def __repr__(self) -> str:
        return f"UntrustedSource({self.label!r}, {len(self.text)} chars)"


@dataclass(frozen=True, slots=True)
class FieldOrigin:
    """The origin of one leaf of a payload, by JSON-pointer-like path (``to/0``)."""

    path: str
    origin: Origin
    sources: tuple[str, ...] = ()  # labels of the untrusted sources it matched


# -- normalising --------------------------------------------------------------
def normalise(text: str) -> str:
    """Text as compared: entities decoded, invisible characters gone, case folded."""
    for _ in range(_MAX_UNESCAPES):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.casefold().split())


@dataclass(frozen=True, slots=True)
class _Text:
    """One normalised text, indexed for the matches below."""

    variants: tuple[str, ...]
    runs: frozenset[str]
    grams: frozenset[tuple[str, ...]]
    numbers: frozenset[Decimal]

    @classmethod
    def of(cls, raw: str, *, strip_tags: bool) -> _Text:
        plain = normalise(raw)
        variants = [plain]
        if strip_tags:
            untagged = " ".join(_TAG.sub(" ", normalise(_TAG.sub("", raw))).split())
            variants += [untagged] if untagged != plain else []
            variants += [normalise(decoded) for decoded in _decoded_blobs(raw)]
        runs = {v[i : i + RUN_CHARS] for v in variants for i in range(len(v) - RUN_CHARS + 1)}
        grams = {g for v in variants for g in _word_grams(v)}
        numbers = {n for v in variants for token in _NUMBER.findall(v) for n in _amounts(token)}
        return cls(tuple(variants), frozenset(runs), frozenset(grams), frozenset(numbers))

    def has_token(self, needle: str) -> bool:
        """``needle`` occurs here and is not part of a longer word or number."""
        return bool(needle) and any(_token_in(v, needle) for v in self.variants)

    def has_piece_of(self, value: str) -> bool:
        """A distinctive piece of the normalised ``value`` occurs here."""
        if any(self.has_token(piece) for piece in _pieces(value)):
            return True
        if any(n in self.numbers for n in _distinctive_amounts(value)):
            return True
        if any(value[i : i + RUN_CHARS] in self.runs for i in range(len(value) - RUN_CHARS + 1)):
            return True
        return any(g in self.grams for g in _word_grams(value))


def _decoded_blobs(raw: str) -> Iterator[str]:
    """The text of base64 blobs in ``raw`` ("decode this and run it"): outside text too."""
    for blob in _BASE64.findall(raw):
        try:
            decoded = base64.b64decode(blob, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable():
            yield decoded


def _token_in(haystack: str, needle: str) -> bool:
    start = haystack.find(needle)
    while start >= 0:
        end = start + len(needle)
        before_ok = start == 0 or not (haystack[start - 1].isalnum() and needle[0].isalnum())
        after_ok = end == len(haystack) or not (haystack[end].isalnum() and needle[-1].isalnum())
        if before_ok and after_ok:
            return True
        start = haystack.find(needle, start + 1)
    return False


def _word_grams(text: str) -> Iterator[tuple[str, ...]]:
    words = _WORD.findall(text)
    for i in range(len(words) - RUN_WORDS + 1):
        yield tuple(words[i : i + RUN_WORDS])


def _pieces(value: str) -> Iterator[str]:
    """Email addresses, URLs (and their hosts) and domain names in ``value``."""
    yield from _EMAIL.findall(value)
    for found in _URL.findall(value):
        url = found.rstrip(_URL_TRAILER)
        yield url
        host = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("@")[-1]
        yield host.split(":", 1)[0]
    yield from _DOMAIN.findall(value)


def _amounts(token: str) -> set[Decimal]:
    """The values ``token`` may stand for: ``1,250.00`` and ``1.250,00`` are both 1250."""
    found = set()
    for thousands, point in ((",' ", "."), (".' ", ",")):
        text = token.translate({ord(c): None for c in thousands}).replace(point, ".")
        if text.count(".") <= 1:
            try:
                found.add(Decimal(text).normalize())
            except InvalidOperation:
                continue
    return found


def _distinctive_amounts(value: str) -> set[Decimal]:
    """Amounts inside a longer value: two digits or more (a lone "3" is everywhere)."""
    return {
        amount
        for token in _NUMBER.findall(value)
        if sum(ch.isdigit() for ch in token) >= 2
        for amount in _amounts(token)
    }


# -- tracing ------------------------------------------------------------------
def trace_origins(
    payload: JsonObject,
    owner_texts: Sequence[str],
    config_texts: Sequence[str],
    untrusted: Sequence[UntrustedSource],
) -> tuple[FieldOrigin, ...]:
    """The origin of every leaf of ``payload`` (see the module docstring)."""
    outside = [(source.label, _Text.of(source.text, strip_tags=True)) for source in untrusted]
    owner = [_Text.of(text, strip_tags=False) for text in owner_texts]
    config = [_Text.of(text, strip_tags=False) for text in config_texts]
    return tuple(_origin_of(path, leaf, outside, owner, config) for path, leaf in leaves(payload))


def _origin_of(
    path: str,
    leaf: JsonValue,
    outside: Sequence[tuple[str, _Text]],
    owner: Sequence[_Text],
    config: Sequence[_Text],
) -> FieldOrigin:
    if leaf is None or isinstance(leaf, bool):
        return FieldOrigin(path, Origin.AGENT)
    value = normalise(str(leaf))
    if not value:
        return FieldOrigin(path, Origin.AGENT)
    amounts = _amounts(value) if isinstance(leaf, int | float) else set()
    labels = tuple(
        label
        for label, text in outside
        if text.has_token(value) or text.has_piece_of(value) or amounts & text.numbers
    )
    if labels:
        return FieldOrigin(path, Origin.UNTRUSTED, labels)
    if any(text.has_token(value) for text in owner):
        return FieldOrigin(path, Origin.OWNER)
    if any(text.has_token(value) for text in config):
        return FieldOrigin(path, Origin.CONFIG)
    return FieldOrigin(path, Origin.AGENT)


def leaves(value: JsonValue, path: str = "") -> Iterator[tuple[str, JsonValue]]:
    """Every leaf of a JSON value with its path (``to/0``; ``~`` and ``/`` escaped)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, _join(path, key.replace("~", "~0").replace("/", "~1")))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, _join(path, str(index)))
    else:
        yield path, value


def _join(path: str, part: str) -> str:
    return f"{path}/{part}" if path else part


# -- for the approval ---------------------------------------------------------
def untrusted_notice(labels: Sequence[str]) -> str | None:
    """What the approval says when the run read any outside text; None when it read none."""
    if not labels:
        return None
    return "written after reading untrusted text: " + ", ".join(dict.fromkeys(labels))


def has_untrusted(origins: Sequence[FieldOrigin]) -> bool:
    return any(o.origin is Origin.UNTRUSTED for o in origins)


def origins_after_edit(
    old_payload: JsonObject, old_origins: Sequence[FieldOrigin], new_payload: JsonObject
) -> tuple[FieldOrigin, ...]:
    """Origins of an edited payload: a value the owner changed or added is OWNER's.

    A value left as it was keeps its origin (still marked if untrusted: the
    owner approved it having seen the mark, and the audit keeps saying so).
    """
    before = dict(leaves(old_payload))
    by_path = {o.path: o for o in old_origins}
    result = []
    for path, leaf in leaves(new_payload):
        kept = by_path.get(path)
        if kept is not None and path in before and before[path] == leaf:
            result.append(kept)
        else:
            result.append(FieldOrigin(path, Origin.OWNER))
    return tuple(result)
