"""vCard content-line syntax: unfolding, parameters, escaping and folding.

Everything here works on one line (or the raw text) and knows nothing of
what a card means; ``vcard`` builds cards from these pieces. Every scan is
linear (no backtracking regex), so a hostile line costs time in proportion
to its length.

- Reading: :func:`logical_lines` undoes folding (a leading space or tab,
  and 2.1 quoted-printable soft breaks); :func:`parse_line` splits
  ``group.NAME;PARAM=a,b:value`` with quotes respected and 2.1 bare
  parameters (``TEL;WORK;VOICE``) read as TYPE; :func:`decode_transfer`
  undoes quoted-printable; :func:`unescape` and :func:`split_unescaped`
  read values.
- Writing: :func:`escape` for values, :func:`params_text` for parameters
  (RFC 6868 caret escapes in 4.0), :func:`fold` at 75 octets of UTF-8.
"""

from __future__ import annotations

import quopri
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ContentLineError",
    "Params",
    "VCardProperty",
    "clean",
    "components",
    "decode_transfer",
    "escape",
    "fold",
    "logical_lines",
    "params_text",
    "parse_line",
    "split_unescaped",
    "unescape",
]

FOLD_OCTETS = 75

Params = tuple[tuple[str, tuple[str, ...]], ...]
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_NAME_OK = re.compile(r"[A-Za-z0-9-]+")
_ENCODING_WORDS = frozenset({"QUOTED-PRINTABLE", "BASE64", "B", "8BIT", "7BIT"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class VCardProperty:
    """One content line as read: ``value`` is still in vCard syntax (escaped)."""

    name: str
    value: str
    params: Params = ()
    group: str = ""

    def param(self, key: str) -> tuple[str, ...]:
        for name, values in self.params:
            if name == key:
                return values
        return ()


class ContentLineError(ValueError):
    """A content line cannot be read; the message says what is wrong, never the text."""


# -- reading ------------------------------------------------------------------------
def logical_lines(text: str) -> list[str]:
    """Unfold: a line starting with space or tab continues the one before;
    a 2.1 quoted-printable line ending in ``=`` continues on the next."""
    lines: list[str] = []
    parts: list[str] = []
    for raw in _LINE_BREAK.split(text):
        if parts and raw[:1] in (" ", "\t"):
            parts.append(raw[1:])
        elif parts and parts[-1].endswith("=") and _is_quoted_printable(parts[0]):
            parts[-1] = parts[-1][:-1]
            parts.append(raw)
        else:
            if parts:
                lines.append("".join(parts))
            parts = [raw]
    if parts:
        lines.append("".join(parts))
    return lines


def _is_quoted_printable(first_part: str) -> bool:
    head = first_part.split(":", 1)[0]
    return "QUOTED-PRINTABLE" in head.upper()


def parse_line(line: str) -> VCardProperty:
    """``group.NAME;PARAM=value:value`` as a property; ``ContentLineError`` if it is none."""
    colon = _index_outside_quotes(line, ":")
    if colon < 0:
        colon = line.find(":")
    if colon <= 0:
        raise ContentLineError("has no name and value")
    head = _split_outside_quotes(line[:colon], ";")
    group, _, name = head[0].strip().rpartition(".")
    if not _NAME_OK.fullmatch(name) or (group and not _NAME_OK.fullmatch(group)):
        raise ContentLineError("has an invalid property name")
    params = _merge_params(_parse_param(p) for p in head[1:] if p.strip())
    return VCardProperty(name.upper(), line[colon + 1 :], params, group)


def _index_outside_quotes(text: str, char: str) -> int:
    quoted = False
    for index, current in enumerate(text):
        if current == '"':
            quoted = not quoted
        elif current == char and not quoted:
            return index
    return -1


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    start, quoted = 0, False
    for index, current in enumerate(text):
        if current == '"':
            quoted = not quoted
        elif current == sep and not quoted:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _parse_param(text: str) -> tuple[str, tuple[str, ...]]:
    name, eq, raw = text.partition("=")
    name = name.strip().upper()
    if not eq:  # 2.1: TEL;WORK;VOICE or ;QUOTED-PRINTABLE
        key = "ENCODING" if name in _ENCODING_WORDS else "TYPE"
        return key, (name.lower() if key == "TYPE" else name,)
    values = tuple(_param_value(v) for v in _split_outside_quotes(raw, ","))
    if name == "TYPE":  # TYPE="home,pref" is a list too
        values = tuple(t.strip().lower() for v in values for t in v.split(",") if t.strip())
    return name, values


def _param_value(raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if "^" in value:  # RFC 6868
        value = re.sub(r"\^(\^|n|')", lambda m: {"^": "^", "n": "\n", "'": '"'}[m[1]], value)
    return value


def _merge_params(params: Iterable[tuple[str, tuple[str, ...]]]) -> Params:
    merged: dict[str, tuple[str, ...]] = {}
    for name, values in params:
        merged[name] = merged.get(name, ()) + values
    return tuple(merged.items())


def decode_transfer(prop: VCardProperty) -> VCardProperty:
    """Undo 2.1 quoted-printable, so the value reads like any other."""
    encoding = tuple(v.upper() for v in prop.param("ENCODING"))
    if "QUOTED-PRINTABLE" not in encoding:
        return prop
    charset = (prop.param("CHARSET") or ("utf-8",))[0]
    raw = quopri.decodestring(prop.value.encode("utf-8", errors="replace"))
    try:
        value = raw.decode(charset, errors="replace")
    except LookupError:
        value = raw.decode("utf-8", errors="replace")
    kept = tuple(p for p in prop.params if p[0] not in ("ENCODING", "CHARSET"))
    return VCardProperty(prop.name, value, kept, prop.group)


def split_unescaped(value: str, sep: str) -> list[str]:
    """Split at ``sep`` characters that no backslash escapes."""
    parts: list[str] = []
    start, index = 0, 0
    while index < len(value):
        char = value[index]
        if char == "\\":
            index += 2
            continue
        if char == sep:
            parts.append(value[start:index])
            start = index + 1
        index += 1
    parts.append(value[start:])
    return parts


def unescape(value: str) -> str:
    """``\\n`` to a newline, ``\\,`` ``\\;`` ``\\\\`` to the character; others kept bare."""
    if "\\" not in value:
        return value
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            nxt = value[index + 1]
            out.append("\n" if nxt in "nN" else nxt)
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def components(value: str, count: int) -> list[str]:
    """The first ``count`` ``;``-separated components of a structured value, unescaped."""
    parts = [unescape(p) for p in split_unescaped(value, ";")]
    return (parts + [""] * count)[:count]


# -- writing ------------------------------------------------------------------------
def clean(text: str) -> str:
    """Newlines as \\n; control characters vCard cannot carry removed."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def escape(text: str) -> str:
    cleaned = clean(text)
    return (
        cleaned.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;").replace("\n", "\\n")
    )


def _param_text(value: str, version: str) -> str:
    cleaned = clean(value)
    if version == "4.0":
        cleaned = cleaned.replace("^", "^^").replace("\n", "^n").replace('"', "^'")
    else:
        cleaned = cleaned.replace("\n", " ").replace('"', "'")
    if cleaned and not any(c in cleaned for c in ',;:"'):
        return cleaned
    return f'"{cleaned}"'


def params_text(params: Params, version: str) -> str:
    """``;NAME=a,b`` for each parameter, quoted where a value needs it."""
    out = []
    for name, values in params:
        out.append(f";{name}=" + ",".join(_param_text(v, version) for v in values))
    return "".join(out)


def fold(line: str) -> str:
    """Fold a content line at 75 octets of UTF-8, never inside a character."""
    if len(line.encode("utf-8")) <= FOLD_OCTETS:
        return line
    chunks: list[str] = []
    current: list[str] = []
    size, limit = 0, FOLD_OCTETS
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            chunks.append("".join(current))
            current, size, limit = [], 0, FOLD_OCTETS - 1
        current.append(char)
        size += width
    chunks.append("".join(current))
    return "\r\n ".join(chunks)
