"""Documents read into plain text for the office's memory.

``parse_file`` turns one file (text, Markdown, HTML, email, Word, PDF) into a
:class:`ParsedDocument`: normalised text, a title, metadata and a content
hash. It refuses, with a typed error, anything it cannot read safely, so an
ingestion run records the reason and goes on to the next file::

    DocumentError                     a file was skipped; ``reason`` is a code
    ├── UnsupportedDocumentError      not a format Soloist reads
    ├── UnreadableDocumentError       the OS would not let us read it
    ├── DocumentTooLargeError         over the size limit (checked before reading)
    ├── EncryptedDocumentError        protected by a password
    ├── CorruptDocumentError          damaged, or not what its name says
    ├── BinaryContentError            binary data under a text name
    └── EmptyDocumentError            no text in it (a scanned PDF, an empty file)

Each ``str(err)`` is one line a user can read: what happened, that nothing
was changed, what to do next. Library errors (pypdf, zipfile, expat, email)
are mapped here with ``raise ... from exc``. Nothing a document contains is
ever executed: email attachments are listed, never opened, and Word files are
read as XML with DTDs refused, so no entity is expanded.

Text is normalised (:func:`normalize_text`: NFC, ``\\n`` line ends, no control
characters, at most one blank line in a row) and ``content_sha256`` hashes it
with all whitespace collapsed, so the same content under two names, or in two
formats, has one hash. Markdown stays as written: its syntax is light, its
headings help both the chunker and the embedding model, and stripping it
would eat real content (``snake_case`` names, ``*`` in prices).

Logs carry sizes, kinds and timings, never a file's name or text.
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
import io
import logging
import os
import re
import stat
import time
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from enum import StrEnum
from html.parser import HTMLParser
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar
from xml.etree import ElementTree

if TYPE_CHECKING:
    from pypdf import PageObject

log = logging.getLogger("soloist.memory")

DEFAULT_MAX_BYTES = 50 * 2**20
# A Word file's document.xml unpacks to at most this much, and at most this
# many times its packed size (real XML packs 5-20x; a zip bomb, 1000x).
DOCX_MAX_XML_BYTES = 64 * 2**20
DOCX_MAX_RATIO = 200
_TITLE_MAX_CHARS = 200
_SNIFF_CHARS = 64 * 1024
_MAX_SUSPICIOUS_RATIO = 0.05


class DocumentKind(StrEnum):
    """The formats ``parse_file`` reads; the value is stored with each document."""

    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    EMAIL = "email"
    DOCX = "docx"
    PDF = "pdf"

    @property
    def mime_type(self) -> str:
        return _MIME_TYPES[self]


_MIME_TYPES = {
    DocumentKind.TEXT: "text/plain",
    DocumentKind.MARKDOWN: "text/markdown",
    DocumentKind.HTML: "text/html",
    DocumentKind.EMAIL: "message/rfc822",
    DocumentKind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    DocumentKind.PDF: "application/pdf",
}

_KINDS_BY_SUFFIX = {
    ".txt": DocumentKind.TEXT,
    ".text": DocumentKind.TEXT,
    ".md": DocumentKind.MARKDOWN,
    ".markdown": DocumentKind.MARKDOWN,
    ".html": DocumentKind.HTML,
    ".htm": DocumentKind.HTML,
    ".eml": DocumentKind.EMAIL,
    ".docx": DocumentKind.DOCX,
    ".pdf": DocumentKind.PDF,
}
SUPPORTED_SUFFIXES = frozenset(_KINDS_BY_SUFFIX)


def kind_for(path: str | os.PathLike[str]) -> DocumentKind | None:
    """The kind ``parse_file`` would read ``path`` as (by its suffix), or None."""
    return _KINDS_BY_SUFFIX.get(Path(path).suffix.lower())


# ---------------------------------------------------------------- errors


class DocumentError(Exception):
    """Base of every error ``parse_file`` raises: the file was skipped."""

    reason: ClassVar[str] = "error"

    def __init__(self, path: str, detail: str = "") -> None:
        super().__init__(path, detail)
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return f"Skipped {self.path}: {self.detail}. The file was left as it is."


class UnsupportedDocumentError(DocumentError):
    reason = "unsupported"

    def __str__(self) -> str:
        return (
            f"Skipped {self.path}: Soloist cannot read {self.detail}. Nothing was "
            "imported from it; save it as PDF, Word (.docx), HTML or text to include it."
        )


class UnreadableDocumentError(DocumentError):
    reason = "unreadable"

    def __str__(self) -> str:
        return (
            f"Skipped {self.path}: it could not be read ({self.detail}). The file was "
            "left as it is; check that it exists and that you may open it."
        )


class DocumentTooLargeError(DocumentError):
    """Over the limit; ``size_bytes`` is the file's size or a part's unpacked size."""

    reason = "too_large"

    def __init__(self, path: str, size_bytes: int, limit_bytes: int, what: str = "it is") -> None:
        super().__init__(path, what)
        self.args = (path, size_bytes, limit_bytes, what)
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes

    def __str__(self) -> str:
        return (
            f"Skipped {self.path}: {self.detail} {_mb(self.size_bytes)}, over the "
            f"{_mb(self.limit_bytes)} limit for one document. Nothing was imported from "
            "it; split it into smaller files to include it."
        )


class EncryptedDocumentError(DocumentError):
    reason = "encrypted"

    def __str__(self) -> str:
        return (
            f"Skipped {self.path}: it is protected by a password{_paren(self.detail)}. "
            "Nothing was imported from it; save a copy without the password to include it."
        )


class CorruptDocumentError(DocumentError):
    reason = "corrupt"

    def __str__(self) -> str:
        return (
            f"Skipped {self.path}: it is damaged or not what its name says "
            f"({self.detail}). The file was left as it is; open and save it again in "
            "the program that made it to include it."
        )


class BinaryContentError(DocumentError):
    reason = "binary"

    def __str__(self) -> str:
        return (
            f"Skipped {self.path}: it holds binary data, not text. The file was left "
            "as it is; if it is a PDF or Word file, give it that extension."
        )


class EmptyDocumentError(DocumentError):
    reason = "empty"

    def __str__(self) -> str:
        return (
            f"Skipped {self.path}: it contains no text{_paren(self.detail)}. There is "
            "nothing to import; a scanned PDF needs text recognition (OCR) first."
        )


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _paren(detail: str) -> str:
    return f" ({detail})" if detail else ""


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Attachment:
    """An email attachment, listed only: its bytes are never opened."""

    name: str
    content_type: str
    size_bytes: int | None


@dataclass(frozen=True, slots=True, repr=False)
class ParsedDocument:
    """One file's text and what is known about it.

    ``page_starts[i]`` is the offset in ``text`` where page ``i + 1`` begins
    (PDF only; empty otherwise). The repr shows sizes, never text or metadata
    values (they hold names and subjects).
    """

    kind: DocumentKind
    text: str
    title: str
    content_sha256: str
    size_bytes: int
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    attachments: tuple[Attachment, ...] = ()
    page_starts: tuple[int, ...] = ()

    @property
    def mime_type(self) -> str:
        return self.kind.mime_type

    def page_at(self, offset: int) -> int | None:
        """The 1-based page that holds ``offset`` in ``text``; None if not paged."""
        if not self.page_starts:
            return None
        return max(1, bisect.bisect_right(self.page_starts, offset))

    def __repr__(self) -> str:
        return (
            f"ParsedDocument(kind={self.kind.value}, chars={len(self.text)}, "
            f"size_bytes={self.size_bytes}, sha256={self.content_sha256[:12]}, "
            f"metadata_keys={sorted(self.metadata)}, attachments={len(self.attachments)}, "
            f"pages={len(self.page_starts)})"
        )


@dataclass(frozen=True, slots=True)
class _Extracted:
    """What one parser found, before normalising and hashing."""

    text: str
    title: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    page_starts: tuple[int, ...] = ()


# ---------------------------------------------------------------- entry point


def parse_file(
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> ParsedDocument:
    """Read one document; raise a :class:`DocumentError` subclass if it must be skipped.

    The size is checked with ``stat`` before a byte is read, and the read
    itself stops at ``max_bytes + 1`` in case the file grows meanwhile.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, not {max_bytes}")
    name = os.fspath(path)
    kind = kind_for(name)
    if kind is None:
        suffix = Path(name).suffix.lower()
        raise UnsupportedDocumentError(
            name, f"'{suffix}' files" if suffix else "files without a type"
        )
    started = time.monotonic()
    try:
        data = _read_limited(name, max_bytes)
        document = _parse(kind, name, data)
    except DocumentError as exc:
        log.info("%s document skipped: %s", kind.value, exc.reason)
        raise
    log.debug(
        "%s document parsed: %d bytes, %d chars in %.0f ms",
        kind.value,
        document.size_bytes,
        len(document.text),
        (time.monotonic() - started) * 1000,
    )
    return document


def _read_limited(path: str, max_bytes: int) -> bytes:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            # A FIFO or device would block or never end; a folder is no document.
            raise UnreadableDocumentError(path, "not a regular file")
        if info.st_size > max_bytes:
            raise DocumentTooLargeError(path, info.st_size, max_bytes)
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UnreadableDocumentError(path, exc.strerror or type(exc).__name__) from exc
    if len(data) > max_bytes:
        raise DocumentTooLargeError(path, len(data), max_bytes)
    return data


def _parse(kind: DocumentKind, path: str, data: bytes) -> ParsedDocument:
    if not data:
        raise EmptyDocumentError(path, "the file is empty")
    extracted = _PARSERS[kind](path, data)
    text = normalize_text(extracted.text)
    if not text:
        raise EmptyDocumentError(path)
    title = " ".join(extracted.title.split())[:_TITLE_MAX_CHARS] or Path(path).stem
    return ParsedDocument(
        kind=kind,
        text=text,
        title=title,
        content_sha256=content_sha256(text),
        size_bytes=len(data),
        metadata=MappingProxyType(dict(extracted.metadata)),
        attachments=extracted.attachments,
        page_starts=extracted.page_starts,
    )


# ---------------------------------------------------------------- text


_NEWLINES = re.compile(r"\r\n|[\r\f\v\x85\u2028\u2029]")
_DROPPED = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufeff]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_BLANK_LINES = re.compile(r"\n{3,}")
# What text has next to none of and decoded binary has plenty of: C0 controls
# (not tab, line ends or the ESC of ANSI logs), replacement characters from
# undecodable bytes, and the private-use area (a tenth of random UTF-16).
_SUSPICIOUS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f\ufffd\ue000-\uf8ff]")


def normalize_text(text: str) -> str:
    """NFC, ``\\n`` line ends, no control characters or trailing spaces,
    at most one blank line in a row, no surrounding whitespace. Idempotent."""
    text = _NEWLINES.sub("\n", text)
    text = _DROPPED.sub("", text)
    text = _SURROGATES.sub("\ufffd", text)
    text = unicodedata.normalize("NFC", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def content_sha256(text: str) -> str:
    """SHA-256 of ``text`` in NFC with every run of whitespace made one space."""
    collapsed = " ".join(unicodedata.normalize("NFC", text).split())
    return hashlib.sha256(collapsed.encode("utf-8", "surrogatepass")).hexdigest()


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(path: str, data: bytes, declared: str | None = None) -> tuple[str, str]:
    """``data`` as text, and the encoding used; ``BinaryContentError`` if it is not text.

    A BOM decides; else UTF-8 if the bytes are valid UTF-8 (legacy text almost
    never is); else the ``declared`` charset; else cp1252, which reads Latin-1
    too and replaces the five bytes it lacks, so no text file fails to decode.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data.decode(encoding, errors="replace")
            _reject_binary(path, text)
            return text, encoding
    if b"\x00" in data:
        raise BinaryContentError(path, "NUL bytes")
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        encoding = _known_codec(declared) or "cp1252"
        text = data.decode(encoding, errors="replace")
    _reject_binary(path, text)
    return text, encoding


def _known_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _reject_binary(path: str, text: str) -> None:
    sample = text[:_SNIFF_CHARS]
    suspicious = len(_SUSPICIOUS.findall(sample))
    if "\x00" in text or suspicious > len(sample) * _MAX_SUSPICIOUS_RATIO:
        raise BinaryContentError(path, f"{suspicious} control or undecodable characters")


_MD_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def _parse_text(path: str, data: bytes) -> _Extracted:
    text, encoding = decode_text(path, data)
    return _Extracted(text, metadata={"encoding": encoding})


def _parse_markdown(path: str, data: bytes) -> _Extracted:
    text, encoding = decode_text(path, data)
    heading = _MD_HEADING.search(text)
    return _Extracted(text, heading.group(1) if heading else "", {"encoding": encoding})


# ---------------------------------------------------------------- HTML


_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "object"})
# fmt: off
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
    "tfoot", "thead", "tr", "ul",
})
# fmt: on
_CELL_TAGS = frozenset({"td", "th"})
_SPACES = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


class _HtmlText(HTMLParser):
    """Collects the visible text of a page: no script, style or head; block
    elements become line breaks; entities are decoded by the parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skipping = 0
        self._in_head = False
        self._in_title = False
        self._in_pre = 0

    def handle_starttag(self, tag: str, attrs: Sequence[tuple[str, str | None]]) -> None:
        if tag == "body" or tag in _BLOCK_TAGS or tag in _CELL_TAGS:
            self._in_head = False  # as browsers do when </head> is missing
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag == "head":
            self._in_head = True
        elif tag == "title":
            self._in_title = True
        elif tag == "pre":
            self._in_pre += 1
        elif tag in _CELL_TAGS and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append(" | ")
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "head":
            self._in_head = False
        elif tag == "title":
            self._in_title = False
        elif tag == "pre":
            self._in_pre = max(0, self._in_pre - 1)
        self._break(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not (self._skipping or self._in_head):
            if not self._in_pre:
                data = _SPACES.sub(" ", data)
                if not self.parts or self.parts[-1].endswith("\n"):
                    data = data.lstrip(" ")
            if data:
                self.parts.append(data)

    def _break(self, tag: str) -> None:
        """A line break for a <br>; else, around a block, a line break (list
        items, rows) or a blank line, merged with the break already there."""
        if tag not in _BLOCK_TAGS or self._skipping:
            return
        if tag == "br":
            self.parts.append("\n")
            return
        wanted = "\n" if tag in {"li", "tr", "dt", "dd"} else "\n\n"
        if self.parts and not self.parts[-1].strip("\n"):
            wanted = max(wanted, self.parts.pop(), key=len)
        self.parts.append(wanted)


def html_to_text(path: str, markup: str) -> tuple[str, str]:
    """The visible text of ``markup`` and its ``<title>``."""
    parser = _HtmlText()
    try:
        parser.feed(markup)
        parser.close()
    except AssertionError as exc:  # what html.parser raises on some broken markup
        raise CorruptDocumentError(path, "unreadable HTML markup") from exc
    return "".join(parser.parts), "".join(parser.title_parts)


def _parse_html(path: str, data: bytes) -> _Extracted:
    declared = _META_CHARSET.search(data[:4096])
    markup, encoding = decode_text(path, data, declared.group(1).decode() if declared else None)
    text, title = html_to_text(path, markup)
    return _Extracted(text, title, {"encoding": encoding})


# ---------------------------------------------------------------- email


_EMAIL_HEADERS = (("from", "From"), ("to", "To"), ("cc", "Cc"), ("date", "Date"))


def _parse_email(path: str, data: bytes) -> _Extracted:
    """Headers as metadata (and atop the text, so a search finds the sender);
    the plain body, else the HTML one reduced to text; attachments listed."""
    if b"\x00" in data:
        raise BinaryContentError(path, "NUL bytes")
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        headers = {key: str(message.get(name, "")).strip() for key, name in _EMAIL_HEADERS}
        headers["subject"] = str(message.get("Subject", "")).strip()
        headers["message_id"] = str(message.get("Message-ID", "")).strip()
        body = _email_body(path, message)
        attachments = tuple(_attachment(part) for part in message.iter_attachments())
    except DocumentError:
        raise
    except Exception as exc:  # hostile mail can break the parser anywhere; skip the file
        raise CorruptDocumentError(path, f"unreadable email: {type(exc).__name__}") from exc
    metadata = {key: value for key, value in headers.items() if value}
    lines = [f"{name}: {headers[key]}" for key, name in _EMAIL_HEADERS if headers[key]]
    if headers["subject"]:
        lines.append(f"Subject: {headers['subject']}")
    text = "\n".join(lines) + "\n\n" + body
    return _Extracted(text, headers["subject"], metadata, attachments)


def _email_body(path: str, message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):  # an unknown charset: read the bytes as cp1252
        payload = part.get_payload(decode=True)
        content = payload.decode("cp1252", errors="replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        return html_to_text(path, content)[0]
    return content


def _attachment(part: EmailMessage) -> Attachment:
    payload = part.get_payload(decode=True)
    return Attachment(
        name=part.get_filename() or "",
        content_type=part.get_content_type(),
        size_bytes=len(payload) if isinstance(payload, bytes) else None,
    )


# ---------------------------------------------------------------- Word


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_CORE_XML = "docProps/core.xml"
# Office's compound-file magic: a password-protected .docx, or an old .doc.
_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")


def _parse_docx(path: str, data: bytes) -> _Extracted:
    if data.startswith(_CFB_MAGIC):
        if _ENCRYPTED_PACKAGE in data:
            raise EncryptedDocumentError(path)
        raise UnsupportedDocumentError(path, "old Word (.doc) files")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            document = _zip_member(path, archive, "word/document.xml")
            has_core = _CORE_XML in archive.namelist()
            core = _zip_member(path, archive, _CORE_XML) if has_core else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise CorruptDocumentError(path, "not a readable Word archive") from exc
    body = _xml(path, document).find(f"{_W}body")
    if body is None:
        raise CorruptDocumentError(path, "no document body")
    try:
        text = "\n\n".join(block for block in _docx_blocks(body) if block.strip())
    except RecursionError as exc:
        raise CorruptDocumentError(path, "nesting too deep") from exc
    title = ""
    if core is not None:
        title = _xml(path, core).findtext(_DC_TITLE) or ""
    return _Extracted(text, title)


def _zip_member(path: str, archive: zipfile.ZipFile, name: str) -> bytes:
    """One member, after checking its declared size and ratio (zipfile never
    inflates past the declared size, so the check covers the read)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise CorruptDocumentError(path, f"no {name}: not a Word document") from None
    if info.file_size > DOCX_MAX_XML_BYTES:
        raise DocumentTooLargeError(path, info.file_size, DOCX_MAX_XML_BYTES, "its text unpacks to")
    if info.file_size > 2**20 and info.file_size > DOCX_MAX_RATIO * max(info.compress_size, 1):
        raise CorruptDocumentError(
            path, f"{name} would unpack {info.file_size // max(info.compress_size, 1)}x: a zip bomb"
        )
    try:
        with archive.open(info) as member:
            return member.read(DOCX_MAX_XML_BYTES + 1)
    except RuntimeError as exc:  # zipfile's "encrypted, password required"
        raise EncryptedDocumentError(path) from exc
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
        raise CorruptDocumentError(path, f"{name} cannot be unpacked") from exc


def _xml(path: str, data: bytes) -> ElementTree.Element:
    # OOXML never has a DTD; refusing one means no entity is ever expanded.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise CorruptDocumentError(path, "XML with a DTD")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise CorruptDocumentError(path, "malformed XML") from exc


def _docx_blocks(element: ElementTree.Element) -> Iterator[str]:
    """Paragraphs, and tables as one block with a line per row, in order."""
    for child in element:
        if child.tag == f"{_W}p":
            yield _docx_paragraph(child)
        elif child.tag == f"{_W}tbl":
            yield "\n".join(_docx_rows(child))
        else:  # content controls, custom XML, tracked insertions: look inside
            yield from _docx_blocks(child)


def _docx_rows(table: ElementTree.Element) -> Iterator[str]:
    for row in table.findall(f"{_W}tr"):
        cells = (
            " ".join(_docx_paragraph(p) for p in cell.iter(f"{_W}p")).strip()
            for cell in row.findall(f"{_W}tc")
        )
        yield " | ".join(cell for cell in cells if cell)


def _docx_paragraph(paragraph: ElementTree.Element) -> str:
    pieces = []
    for node in paragraph.iter():
        if node.tag == f"{_W}t":
            pieces.append(node.text or "")
        elif node.tag == f"{_W}tab":
            pieces.append("\t")
        elif node.tag in {f"{_W}br", f"{_W}cr"}:
            pieces.append("\n")
    return "".join(pieces)


# ---------------------------------------------------------------- PDF


def _parse_pdf(path: str, data: bytes) -> _Extracted:
    """Text per page. pypdf reports what it repairs through its logger and,
    rarely, Python warnings: both are noise here, so its logger is quietened
    and warnings are dropped around the call (warnings filters are process
    wide: ingestion parses on one worker thread)."""
    if b"%PDF-" not in data[:1024]:
        raise CorruptDocumentError(path, "no PDF header")
    logging.getLogger("pypdf").setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pages, info = _read_pdf(path, data)
    texts = [normalize_text(page or "") for page in pages]
    starts, offset = [], 0
    for page_text in texts:
        starts.append(offset)
        if page_text:
            offset += len(page_text) + 2
    metadata = {"pages": str(len(pages))} | {key: value for key, value in info.items() if value}
    if unreadable := sum(page is None for page in pages):
        metadata["unreadable_pages"] = str(unreadable)
    text = "\n\n".join(page_text for page_text in texts if page_text)
    return _Extracted(text, info.get("title", ""), metadata, page_starts=tuple(starts))


def _read_pdf(path: str, data: bytes) -> tuple[list[str | None], dict[str, str]]:
    """Each page's text (None for a damaged page) and the title and author."""
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise EncryptedDocumentError(path)
        pages = [_pdf_page_text(page) for page in reader.pages]
        meta = reader.metadata
        info = {"title": meta.title or "", "author": meta.author or ""} if meta else {}
    except DocumentError:
        raise
    except (FileNotDecryptedError, DependencyError, NotImplementedError) as exc:
        raise EncryptedDocumentError(path, "an encryption Soloist cannot open") from exc
    except LimitReachedError as exc:
        raise CorruptDocumentError(path, "a part unpacks past the safety limit") from exc
    except Exception as exc:  # pypdf on a damaged file can raise almost anything
        raise CorruptDocumentError(path, f"unreadable PDF: {type(exc).__name__}") from exc
    if pages and all(page is None for page in pages):
        raise CorruptDocumentError(path, "no page could be read")
    return pages, info


def _pdf_page_text(page: PageObject) -> str | None:
    """One page's text; None if this page alone is damaged (the rest still count)."""
    try:
        return page.extract_text()
    except Exception:  # one bad page must not cost the document
        return None


_PARSERS = {
    DocumentKind.TEXT: _parse_text,
    DocumentKind.MARKDOWN: _parse_markdown,
    DocumentKind.HTML: _parse_html,
    DocumentKind.EMAIL: _parse_email,
    DocumentKind.DOCX: _parse_docx,
    DocumentKind.PDF: _parse_pdf,
}
