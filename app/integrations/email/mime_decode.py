"""Bytes to text for email: charsets, transfer encodings, defect names.

Everything here is lenient and bounded: a wrong or unknown charset falls
back (declared codec, then UTF-8, then Windows-1252 with replacement), broken
base64 is decoded from whatever alphabet characters are there, and the
decoded size of an attachment is measured chunk by chunk without holding
its bytes. Nothing raises on bad data; what was wrong is named in
:class:`Defects`.
"""

from __future__ import annotations

import binascii
import codecs

MAX_DEFECTS = 32
_CHUNK = 1 << 20  # attachments are measured a MiB of encoded text at a time

# Charsets that mail declares but whose real content is a superset (WHATWG
# practice): decoding with the superset never loses a character the
# declared one would have decoded.
_SUPERSETS = {
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso-8859-9": "cp1254",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "tis-620": "cp874",
    "big5": "big5hkscs",
}
# Python codecs that are text encodings but no charset a mail may declare:
# escape decoders make up characters, punycode/idna are quadratic on long input.
_REFUSED_CODECS = frozenset(
    {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined", "mbcs", "oem"}
)

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_NOT_ALPHABET = bytes(b for b in range(256) if b not in _B64_ALPHABET)
_B64_HARMLESS = _B64_ALPHABET + b"= \t\r\n"  # what may appear without being a defect

TRANSFER_ENCODINGS = frozenset({"7bit", "8bit", "binary", "base64", "quoted-printable"})


class Defects:
    """Short names of what was wrong with a message, in order, each once, capped."""

    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: dict[str, None] = {}

    def add(self, name: str) -> None:
        if len(self._names) < MAX_DEFECTS:
            self._names[name] = None

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self._names)


def lookup_charset(name: str | None) -> str | None:
    """The Python codec for a declared charset, or None if unknown or refused."""
    if not name:
        return None
    label = name.strip().strip("\"'").lower()[:64]
    label = _SUPERSETS.get(label, label)
    try:
        codec = codecs.lookup(label).name
    except (LookupError, ValueError):
        return None
    if codec in _REFUSED_CODECS:
        return None
    try:
        b"".decode(codec)  # binary codecs (base64, zlib...) are no text encodings
    except (LookupError, ValueError):
        return None
    return codec


def decode_text(data: bytes, charset: str | None, defects: Defects) -> str:
    """``data`` as text in ``charset``, falling back rather than failing."""
    codec = lookup_charset(charset)
    if charset and codec is None:
        defects.add("unknown charset")
    for candidate in dict.fromkeys(c for c in (codec, "utf-8") if c is not None):
        try:
            text = data.decode(candidate)
        except UnicodeDecodeError:
            continue
        except (LookupError, ValueError):  # pragma: no cover - lookup_charset checked it
            continue
        if codec is not None and candidate != codec:
            defects.add("charset mismatch")
        return text
    if codec is not None:
        defects.add("charset mismatch")
        return data.decode(codec, "replace")
    return data.decode("cp1252", "replace")


def header_bytes_to_str(data: bytes) -> str:
    """Raw 8-bit header bytes (RFC 6532 UTF-8, or an old 8-bit charset) as text."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def b64decode_lenient(data: bytes, defects: Defects) -> bytes:
    """Base64 that survives junk characters, missing padding and stray ``=``."""
    if data.translate(None, _B64_HARMLESS):
        defects.add("bad base64")
    clean = data.translate(None, _B64_NOT_ALPHABET)
    if len(clean) % 4 == 1:
        defects.add("bad base64")
        clean = clean[:-1]
    clean += b"=" * (-len(clean) % 4)
    try:
        return binascii.a2b_base64(clean)
    except binascii.Error:  # pragma: no cover - only alphabet characters are left
        defects.add("bad base64")
        return b""


def decode_transfer(data: bytes, encoding: str, defects: Defects) -> bytes:
    """The body bytes of a part with transfer encoding ``encoding`` removed."""
    if encoding == "base64":
        return b64decode_lenient(data, defects)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


def decoded_size(raw: bytes, start: int, end: int, encoding: str, defects: Defects) -> int:
    """Bytes that ``raw[start:end]`` decodes to, read a chunk at a time.

    Base64 size is exact from the count of alphabet characters (3 bytes per
    4), so the attachment is never decoded; quoted-printable is decoded per
    chunk split at a line end and only its length kept.
    """
    if encoding not in ("base64", "quoted-printable"):
        return max(0, end - start)
    size = 0
    alphabet_chars = 0
    pos = start
    while pos < end:
        stop = min(end, pos + _CHUNK)
        if stop < end:
            newline = raw.rfind(b"\n", pos, stop)
            stop = newline + 1 if newline > pos else stop
        chunk = raw[pos:stop]
        if encoding == "base64":
            if chunk.translate(None, _B64_HARMLESS):
                defects.add("bad base64")
            alphabet_chars += len(chunk.translate(None, _B64_NOT_ALPHABET))
        else:
            size += len(binascii.a2b_qp(chunk))
        pos = stop
    if encoding == "base64":
        if alphabet_chars % 4 == 1:
            defects.add("bad base64")
        size = alphabet_chars * 3 // 4
    return size
