"""vCard 2.1/3.0/4.0 reading and 3.0/4.0 writing, without a dependency.

Address books and exports send every dialect: folded lines with CRLF or LF,
2.1 leftovers (quoted-printable values, bare ``TEL;WORK;VOICE`` types),
quoted parameters, ``TYPE=work,voice`` lists, escapes and Apple's grouped
labels (``item1.EMAIL`` + ``item1.X-ABLabel``). Reading is a linear scan (no
backtracking regex) under size and count caps, so a hostile file costs time
in proportion to its size and never hangs. A card that cannot be read is
skipped and reported as a *defect* (a position and a reason, never its
text); only a file from which no card at all can be read raises
``MalformedDataError``.

Properties the CRM does not model (PHOTO, X-..., NICKNAME...) are kept in
``VCard.extra`` and written back, so a sync never strips what another app
stored on the server.

This module is the card model and the read/write API; the syntax of one
content line (unfolding, parameters, escaping, folding at 75 octets) is in
``vcard_syntax``.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import ClassVar

from app.integrations.crm.models import ContactPoint, PostalAddress
from app.integrations.crm.vcard_syntax import (
    ContentLineError,
    Params,
    VCardProperty,
    clean,
    components,
    decode_transfer,
    escape,
    fold,
    logical_lines,
    params_text,
    parse_line,
    split_unescaped,
    unescape,
)
from app.integrations.errors import MalformedDataError

__all__ = [
    "MAX_CARDS",
    "MAX_CARD_CHARS",
    "MAX_INPUT_CHARS",
    "VCard",
    "VCardParseResult",
    "VCardProperty",
    "decode_bytes",
    "escape",
    "fold",
    "parse_vcards",
    "unescape",
    "write_vcard",
]

MAX_INPUT_CHARS = 64 * 2**20
MAX_CARD_CHARS = 4 * 2**20  # a card with a large photo still fits
MAX_CARDS = 100_000
MAX_PROPERTIES = 5_000
_MAX_DEFECTS_KEPT = 200
_PRODID = "-//Soloist//CRM//EN"

_GENERIC_TYPES = frozenset({"pref", "internet", "voice", "x400"})
_MODELLED = frozenset(
    {"FN", "N", "ORG", "TITLE", "EMAIL", "TEL", "ADR", "NOTE", "UID", "REV"}
    | {"CATEGORIES", "URL", "BDAY", "VERSION", "PRODID", "BEGIN", "END"}
)


@dataclass(frozen=True, slots=True)
class VCard:
    """The fields of a card the CRM models, plus every other property as read."""

    fn: str = ""
    family_name: str = ""
    given_name: str = ""
    additional_names: str = ""
    prefixes: str = ""
    suffixes: str = ""
    org: tuple[str, ...] = ()
    title: str = ""
    emails: tuple[ContactPoint, ...] = ()
    phones: tuple[ContactPoint, ...] = ()
    addresses: tuple[PostalAddress, ...] = ()
    urls: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    bday: str = ""
    note: str = ""
    uid: str = ""
    rev: str = ""
    version: str = "4.0"
    extra: tuple[VCardProperty, ...] = ()

    def __repr__(self) -> str:  # contact details stay out of logs
        return f"VCard(uid={self.uid!r}, emails={len(self.emails)}, phones={len(self.phones)})"


@dataclass(frozen=True, slots=True)
class VCardParseResult:
    cards: tuple[VCard, ...]
    defects: tuple[str, ...] = ()
    skipped: int = 0  # cards found but not read


class _BadCardError(ValueError):
    """A card cannot be read; the message says where, never what."""


# -- bytes ----------------------------------------------------------------------
def decode_bytes(data: bytes) -> tuple[str, str]:
    """Text and the encoding it was read with: a BOM, else UTF-8, else cp1252."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace"), "utf-16"
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
        return data.decode("latin-1"), "latin-1"


# -- reading ----------------------------------------------------------------------
def parse_vcards(source: str | bytes) -> VCardParseResult:
    """Every card in ``source``; ``MalformedDataError`` only if none can be read."""
    text = decode_bytes(source)[0] if isinstance(source, bytes) else source
    if len(text) > MAX_INPUT_CHARS:
        raise MalformedDataError(f"the vCard file is larger than {MAX_INPUT_CHARS:,} characters")
    reader = _CardReader()
    for line in logical_lines(text):
        if not reader.feed(line):
            break
    reader.finish()
    if not reader.cards:
        found = reader.found
        what = f"none of its {found} cards could be read" if found else "it holds no vCard"
        raise MalformedDataError(f"the vCard data cannot be read: {what}")
    return VCardParseResult(tuple(reader.cards), tuple(reader.defects), reader.skipped)


class _CardReader:
    """Groups logical lines into cards (BEGIN..END) and reads each one."""

    def __init__(self) -> None:
        self.cards: list[VCard] = []
        self.defects: list[str] = []
        self.skipped = 0
        self.found = 0
        self._lines: list[str] | None = None
        self._chars = 0
        self._outside_reported = False

    def feed(self, line: str) -> bool:
        """Take one line; False once the card cap is reached."""
        marker = line.strip().upper()
        if self._lines is None:
            if marker == "BEGIN:VCARD":
                return self._begin()
            if marker and not self._outside_reported:
                self._defect("text outside any card was ignored")
                self._outside_reported = True
            return True
        if marker == "END:VCARD":
            self._end()
        elif marker == "BEGIN:VCARD":
            self._fail("has no END line")
            return self._begin()
        else:
            self._chars += len(line)
            self._lines.append(line)
            if self._chars > MAX_CARD_CHARS or len(self._lines) > MAX_PROPERTIES:
                self._fail("is too large")
                self._lines = None
        return True

    def finish(self) -> None:
        if self._lines is not None:
            self._fail("has no END line")
            self._lines = None

    def _begin(self) -> bool:
        if self.found >= MAX_CARDS:
            self._defect(f"stopped after {MAX_CARDS:,} cards")
            return False
        self.found += 1
        self._lines, self._chars = [], 0
        return True

    def _end(self) -> None:
        lines, self._lines = self._lines or [], None
        try:
            self.cards.append(_read_card(lines))
        except _BadCardError as exc:
            self._fail(str(exc))

    def _fail(self, reason: str) -> None:
        self.skipped += 1
        self._defect(f"card {self.found} {reason}; skipped")

    def _defect(self, text: str) -> None:
        if len(self.defects) < _MAX_DEFECTS_KEPT:
            self.defects.append(text)


def _read_card(lines: list[str]) -> VCard:
    props: list[VCardProperty] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            props.append(decode_transfer(parse_line(line)))
        except ContentLineError as exc:
            raise _BadCardError(f"line {number} {exc}") from None
    return _card_from(props)


def _label(prop: VCardProperty, labels: dict[str, str]) -> str:
    if prop.group and prop.group.upper() in labels:
        return labels[prop.group.upper()]
    return ",".join(t for t in prop.param("TYPE") if t not in _GENERIC_TYPES)


def _apple_labels(props: list[VCardProperty]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for prop in props:
        if prop.name == "X-ABLABEL" and prop.group:
            text = unescape(prop.value)
            if text.startswith("_$!<") and text.endswith(">!$_"):
                text = text[4:-4]
            labels[prop.group.upper()] = text.lower()
    return labels


class _CardBuilder:
    """Collects a card's properties; the first FN, N, ORG... wins, lists append."""

    _SINGLE: ClassVar[dict[str, str]] = {
        "FN": "fn",
        "TITLE": "title",
        "UID": "uid",
        "REV": "rev",
        "BDAY": "bday",
    }

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.single: dict[str, str] = {}
        self.name: list[str] = []
        self.org: tuple[str, ...] = ()
        self.emails: list[ContactPoint] = []
        self.phones: list[ContactPoint] = []
        self.addresses: list[PostalAddress] = []
        self.urls: list[str] = []
        self.categories: list[str] = []
        self.notes: list[str] = []
        self.extra: list[VCardProperty] = []
        self.version = "4.0"

    def add(self, prop: VCardProperty) -> None:
        name = prop.name
        if name in self._SINGLE:
            self.single.setdefault(self._SINGLE[name], unescape(prop.value))
        elif name == "VERSION":
            self.version = prop.value.strip()
        elif name == "N" and not self.name:
            self.name = components(prop.value, 5)
        elif name == "ORG" and not self.org:
            self.org = tuple(unescape(p) for p in split_unescaped(prop.value, ";"))
        elif name == "EMAIL":
            self.emails.append(ContactPoint(unescape(prop.value), _label(prop, self.labels)))
        elif name == "TEL":
            number = unescape(prop.value)
            number = number[4:] if number[:4].lower() == "tel:" else number
            self.phones.append(ContactPoint(number, _label(prop, self.labels)))
        elif name == "ADR":
            box, ext, street, city, region, code, country = components(prop.value, 7)
            label = _label(prop, self.labels)
            self.addresses.append(
                PostalAddress(street, city, region, code, country, box, ext, label)
            )
        else:
            self._add_other(prop)

    def _add_other(self, prop: VCardProperty) -> None:
        name = prop.name
        if name == "URL":
            self.urls.append(prop.value)
        elif name == "CATEGORIES":
            parts = map(unescape, split_unescaped(prop.value, ","))
            self.categories.extend(c for c in parts if c)
        elif name == "NOTE":
            self.notes.append(unescape(prop.value))
        elif name not in _MODELLED and not (name == "X-ABLABEL" and prop.group):
            self.extra.append(prop)

    def build(self) -> VCard:
        family, given, additional, prefixes, suffixes = self.name or [""] * 5
        return VCard(
            fn=self.single.get("fn", ""),
            family_name=family,
            given_name=given,
            additional_names=additional,
            prefixes=prefixes,
            suffixes=suffixes,
            org=self.org,
            title=self.single.get("title", ""),
            emails=tuple(self.emails),
            phones=tuple(self.phones),
            addresses=tuple(self.addresses),
            urls=tuple(self.urls),
            categories=tuple(self.categories),
            bday=self.single.get("bday", ""),
            note="\n\n".join(self.notes),
            uid=self.single.get("uid", ""),
            rev=self.single.get("rev", ""),
            version=self.version,
            extra=tuple(self.extra),
        )


def _card_from(props: list[VCardProperty]) -> VCard:
    builder = _CardBuilder(_apple_labels(props))
    for prop in props:
        builder.add(prop)
    return builder.build()


# -- writing ------------------------------------------------------------------------
def _type_params(label: str) -> Params:
    types = tuple(t.strip().lower() for t in label.split(",") if t.strip())
    return (("TYPE", types),) if types else ()


def write_vcard(card: VCard, version: str = "4.0") -> str:
    """One card as vCard ``version`` (4.0 or 3.0): CRLF lines folded at 75 octets."""
    if version not in ("3.0", "4.0"):
        raise ValueError(f"can write vCard 3.0 or 4.0, not {version!r}")
    out = ["BEGIN:VCARD", f"VERSION:{version}"]
    for name, params, value in _modelled_lines(card):
        out.append(fold(f"{name}{params_text(params, version)}:{value}"))
    out.extend(fold(_extra_line(prop, version)) for prop in card.extra)
    out.append("END:VCARD")
    return "\r\n".join(out) + "\r\n"


def _modelled_lines(card: VCard) -> list[tuple[str, Params, str]]:
    lines: list[tuple[str, Params, str]] = [("PRODID", (), _PRODID)]
    if card.uid:
        lines.append(("UID", (), escape(card.uid)))
    lines.append(("FN", (), escape(card.fn)))
    name = (card.family_name, card.given_name, card.additional_names, card.prefixes)
    lines.append(("N", (), ";".join(escape(p) for p in (*name, card.suffixes))))
    if card.org:
        lines.append(("ORG", (), ";".join(escape(p) for p in card.org)))
    if card.title:
        lines.append(("TITLE", (), escape(card.title)))
    lines += [("EMAIL", _type_params(e.label), escape(e.value)) for e in card.emails]
    lines += [("TEL", _type_params(p.label), escape(p.value)) for p in card.phones]
    lines += [("ADR", _type_params(a.label), _adr_value(a)) for a in card.addresses]
    lines += [("URL", (), clean(url).replace("\n", "")) for url in card.urls]
    if card.categories:
        lines.append(("CATEGORIES", (), ",".join(escape(c) for c in card.categories)))
    for key, value in (("BDAY", card.bday), ("NOTE", card.note), ("REV", card.rev)):
        if value:
            lines.append((key, (), escape(value)))
    return lines


def _adr_value(adr: PostalAddress) -> str:
    parts = (adr.po_box, adr.extended, adr.street, adr.locality, adr.region, adr.postal_code)
    return ";".join(escape(p) for p in (*parts, adr.country))


def _extra_line(prop: VCardProperty, version: str) -> str:
    group = f"{prop.group}." if prop.group else ""
    value = clean(prop.value).replace("\n", "\\n")
    return f"{group}{prop.name}{params_text(prop.params, version)}:{value}"
