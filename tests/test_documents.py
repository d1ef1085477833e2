"""Parsing documents into text, and refusing bad ones with a typed reason.

Every fixture file is built here, in tmp_path, at test time: text in several
encodings, HTML, emails made with ``EmailMessage``, Word files made with
``zipfile``, and PDFs written by hand (pypdf cannot add text to a page) then
encrypted with pypdf itself.
"""

from __future__ import annotations

import io
import logging
import pickle
import random
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PageObject, PdfReader, PdfWriter

from app.memory import documents
from app.memory.documents import (
    BinaryContentError,
    CorruptDocumentError,
    DocumentError,
    DocumentKind,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    UnreadableDocumentError,
    UnsupportedDocumentError,
    content_sha256,
    kind_for,
    normalize_text,
    parse_file,
)

SECRET = "Zanzibar-7734 private figures"


def write(directory: Path, name: str, data: bytes | str) -> Path:
    path = directory / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ---------------------------------------------------------------- builders


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF, one Helvetica text line per ``\\n`` on each page."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        lines = " ".join(f"({line}) Tj 0 -16 Td" for line in text.split("\n") if line)
        stream = f"BT /F1 12 Tf 72 720 Td {lines} ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n%b\nendstream" % (len(stream), stream))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%b\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def rewrite_pdf(data: bytes, *, user_password: str | None = None, title: str = "") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    if title:
        writer.add_metadata({"/Title": title})
    if user_password is not None:
        writer.encrypt(user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)


def para(text: str) -> str:
    return f'<w:p><w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>'


def document_xml(body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<w:document xmlns:w="{W_NS}"><w:body>{body}</w:body></w:document>'
    )


def make_docx(body: str, *, title: str = "", xml: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("word/document.xml", xml if xml is not None else document_xml(body))
        if title:
            archive.writestr(
                "docProps/core.xml",
                '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
                'metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
                f"<dc:title>{title}</dc:title></cp:coreProperties>",
            )
    return out.getvalue()


def make_email(*, html_only: bool = False, attach: bool = False) -> bytes:
    message = EmailMessage()
    message["From"] = "Ana Client <ana@example.com>"
    message["To"] = "me@example.org"
    message["Subject"] = "Invoice 42 — revised"
    message["Date"] = "Tue, 04 Mar 2025 10:00:00 +0000"
    if html_only:
        message.set_content(
            "<html><head><style>p{color:red}</style></head><body><p>Please pay by "
            "<b>Friday</b> &amp; thanks.</p><script>alert('x')</script></body></html>",
            subtype="html",
        )
    else:
        message.set_content("Please pay by Friday.\nThanks, Ana")
        message.add_alternative("<p>HTML version, not preferred</p>", subtype="html")
    if attach:
        message.add_attachment(
            b"#!/bin/sh\necho never run\n" * 10,
            maintype="application",
            subtype="x-sh",
            filename="run-me.sh",
        )
    return message.as_bytes()


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("encoding", "prefix", "expected_encoding"),
    [
        ("utf-8", b"", "utf-8"),
        ("utf-8", b"\xef\xbb\xbf", "utf-8-sig"),
        ("utf-16", b"", "utf-16"),  # Python writes a BOM, little-endian here
        ("utf-16-be", b"\xfe\xff", "utf-16"),
        ("utf-32", b"", "utf-32"),
    ],
)
def test_text_in_unicode_encodings(
    tmp_path: Path, encoding: str, prefix: bytes, expected_encoding: str
) -> None:
    text = "Café naïve — 東京 ✓\r\nline two"
    path = write(tmp_path, "notes.txt", prefix + text.encode(encoding))
    document = parse_file(path)
    assert document.text == "Café naïve — 東京 ✓\nline two"
    assert document.metadata["encoding"] == expected_encoding
    assert document.kind is DocumentKind.TEXT
    assert document.mime_type == "text/plain"
    assert document.title == "notes"
    assert document.size_bytes == path.stat().st_size


def test_legacy_cp1252_text_parses_instead_of_crashing(tmp_path: Path) -> None:
    data = "Café – naïve, 20 €".encode("cp1252") + b" odd byte \x81 end"
    document = parse_file(write(tmp_path, "old.txt", data))
    assert document.text == "Café – naïve, 20 € odd byte \ufffd end"
    assert document.metadata["encoding"] == "cp1252"


def test_latin1_text_reads_through_cp1252(tmp_path: Path) -> None:
    document = parse_file(write(tmp_path, "latin.txt", "Grüße aus Köln".encode("latin-1")))
    assert document.text == "Grüße aus Köln"


@pytest.mark.parametrize(
    "data",
    [
        random.Random(5).randbytes(64 * 1024),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(200),
        bytes(range(1, 32)) * 40,  # no NUL, but control characters throughout
        b"\xff\xfe" + random.Random(6).randbytes(4096),  # a UTF-16 BOM, then noise
    ],
    ids=["random", "png", "controls", "bom-then-noise"],
)
def test_binary_file_named_txt_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(BinaryContentError) as caught:
        parse_file(write(tmp_path, "photo.txt", data))
    assert caught.value.reason == "binary"


def test_a_few_control_characters_do_not_make_text_binary(tmp_path: Path) -> None:
    data = b"build log\n\x1b[32mok\x1b[0m\n\x07 bell\n" + b"plain text line\n" * 20
    document = parse_file(write(tmp_path, "build.txt", data))
    assert "plain text line" in document.text
    assert "\x07" not in document.text
    assert "\x1b" not in document.text


@pytest.mark.parametrize("data", [b"", b"   \n\n\t \r\n", b"\xef\xbb\xbf"])
def test_empty_files_are_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(EmptyDocumentError):
        parse_file(write(tmp_path, "empty.txt", data))


def test_200_mb_file_is_refused_before_any_byte_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as f:
        f.truncate(200 * 2**20)  # sparse: no disk, no time

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened")

    monkeypatch.setattr(documents, "open", no_reading, raising=False)
    with pytest.raises(DocumentTooLargeError) as caught:
        parse_file(path)
    assert caught.value.size_bytes == 200 * 2**20
    assert caught.value.limit_bytes == documents.DEFAULT_MAX_BYTES
    assert "200.0 MB" in str(caught.value)


def test_size_limit_is_configurable(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", "x" * 2000)
    with pytest.raises(DocumentTooLargeError):
        parse_file(path, max_bytes=1000)
    assert parse_file(path, max_bytes=2000).text == "x" * 2000
    with pytest.raises(ValueError, match="max_bytes"):
        parse_file(path, max_bytes=0)


def test_unsupported_suffix_is_refused_without_touching_the_file(tmp_path: Path) -> None:
    for name in ("setup.exe", "Makefile", "sheet.xlsx"):
        with pytest.raises(UnsupportedDocumentError):
            parse_file(tmp_path / name)  # none of these exist
    assert kind_for("A.PDF") is DocumentKind.PDF
    assert kind_for("x.xlsx") is None
    assert {".txt", ".md", ".html", ".eml", ".docx", ".pdf"} <= documents.SUPPORTED_SUFFIXES


def test_missing_file_and_folder_are_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableDocumentError):
        parse_file(tmp_path / "gone.txt")
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(UnreadableDocumentError, match="not a regular file"):
        parse_file(tmp_path / "folder.txt")


def test_markdown_is_kept_as_written_with_its_heading_as_title(tmp_path: Path) -> None:
    source = "Intro line\n\n# Price list 2025 #\n\n* **Design**: 40 €/h\n* `snake_case` kept\n"
    document = parse_file(write(tmp_path, "prices.md", source))
    assert document.kind is DocumentKind.MARKDOWN
    assert document.title == "Price list 2025"
    assert document.text == source.strip()


# ---------------------------------------------------------------- HTML


def test_html_keeps_visible_text_only(tmp_path: Path) -> None:
    page = """<!DOCTYPE html><html><head><title>Terms &amp; conditions</title>
    <style>body { color: red }</style><script>var secret = "steal";</script>
    <meta name="x" content="head text"></head>
    <body><h1>Terms</h1><p>Payment   within
    30&nbsp;days &lt;net&gt;.</p><script>track()</script>
    <ul><li>one</li><li>two</li></ul>
    <table><tr><th>Item</th><td>Price</td></tr><tr><td>Logo</td><td>400</td></tr></table>
    <noscript>enable js</noscript><p>Caf&eacute;<br>next line</p></body></html>"""
    document = parse_file(write(tmp_path, "terms.html", page))
    assert document.title == "Terms & conditions"
    assert document.text == (
        "Terms\n\nPayment within 30 days <net>.\n\none\ntwo\n\n"
        "Item | Price\nLogo | 400\n\nCafé\nnext line"
    )
    for hidden in ("steal", "track", "color", "enable js"):
        assert hidden not in document.text


def test_html_with_an_unclosed_head_still_has_its_body(tmp_path: Path) -> None:
    page = "<html><head><title>T</title><style>x{}</style><p>Body text</p></html>"
    assert parse_file(write(tmp_path, "sloppy.html", page)).text == "Body text"


def test_html_declared_charset_is_used_for_legacy_bytes(tmp_path: Path) -> None:
    page = '<html><head><meta charset="iso-8859-15"></head><body>Prix: 20 €</body></html>'
    document = parse_file(write(tmp_path, "old.htm", page.encode("iso-8859-15")))
    assert document.text == "Prix: 20 €"
    assert document.metadata["encoding"] == "iso8859-15"


# ---------------------------------------------------------------- email


def test_email_headers_become_metadata_and_plain_body_is_preferred(tmp_path: Path) -> None:
    document = parse_file(write(tmp_path, "mail.eml", make_email()))
    assert document.kind is DocumentKind.EMAIL
    assert document.title == "Invoice 42 — revised"
    assert document.metadata["from"] == "Ana Client <ana@example.com>"
    assert document.metadata["to"] == "me@example.org"
    assert document.metadata["subject"] == "Invoice 42 — revised"
    assert document.metadata["date"] == "Tue, 04 Mar 2025 10:00:00 +0000"
    assert document.text.startswith("From: Ana Client <ana@example.com>\nTo: me@example.org")
    assert document.text.endswith("Please pay by Friday.\nThanks, Ana")
    assert "HTML version" not in document.text
    assert document.attachments == ()


def test_html_only_email_with_attachment(tmp_path: Path) -> None:
    document = parse_file(write(tmp_path, "mail.eml", make_email(html_only=True, attach=True)))
    assert document.text.endswith("Please pay by Friday & thanks.")
    assert "alert" not in document.text
    assert "color" not in document.text
    assert "never run" not in document.text  # attachments are listed, never read as text
    [attachment] = document.attachments
    assert attachment.name == "run-me.sh"
    assert attachment.content_type == "application/x-sh"
    assert attachment.size_bytes == len(b"#!/bin/sh\necho never run\n" * 10)


def test_email_with_unknown_charset_still_parses(tmp_path: Path) -> None:
    raw = (
        b"From: a@example.com\r\nSubject: odd\r\nContent-Type: text/plain; charset=x-klingon\r\n"
        b"\r\nHello caf\xe9\r\n"
    )
    document = parse_file(write(tmp_path, "odd.eml", raw))
    assert document.text.endswith("Hello café")


def test_binary_file_named_eml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BinaryContentError):
        parse_file(write(tmp_path, "x.eml", random.Random(1).randbytes(2048)))


# ---------------------------------------------------------------- Word


def test_docx_paragraphs_tables_and_title(tmp_path: Path) -> None:
    body = (
        para("Statement of work")
        + "<w:p><w:r><w:t>Rate:</w:t><w:tab/><w:t>90 €</w:t></w:r></w:p>"
        + "<w:tbl><w:tr><w:tc>"
        + para("Phase")
        + "</w:tc><w:tc>"
        + para("Days")
        + "</w:tc></w:tr><w:tr><w:tc>"
        + para("Design")
        + "</w:tc><w:tc>"
        + para("5")
        + "</w:tc></w:tr></w:tbl>"
        + "<w:sdt><w:sdtContent>"
        + para("Signed &amp; dated")
        + "</w:sdtContent></w:sdt>"
        + "<w:p><w:r><w:delText>deleted words</w:delText></w:r></w:p>"
    )
    document = parse_file(write(tmp_path, "sow.docx", make_docx(body, title="SOW Acme")))
    assert document.kind is DocumentKind.DOCX
    assert document.title == "SOW Acme"
    assert document.text == (
        "Statement of work\n\nRate:\t90 €\n\nPhase | Days\nDesign | 5\n\nSigned & dated"
    )


def test_docx_zip_bomb_is_refused_before_unpacking(tmp_path: Path) -> None:
    bomb = make_docx("", xml=document_xml(para(" " * (16 * 2**20))))
    assert len(bomb) < 100_000  # 16 MB of XML packed into a few KB
    with pytest.raises(CorruptDocumentError, match="zip bomb"):
        parse_file(write(tmp_path, "bomb.docx", bomb))


def test_docx_text_over_the_unpacked_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "DOCX_MAX_XML_BYTES", 2**20)
    words = random.Random(3).choices(["alpha", "beta", "gamma", "delta"], k=400_000)
    data = make_docx(para(" ".join(words)))
    with pytest.raises(DocumentTooLargeError) as caught:
        parse_file(write(tmp_path, "long.docx", data))
    assert caught.value.size_bytes > 2**20
    assert "unpacks to" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"PK\x03\x04 not really a zip", CorruptDocumentError),
        (b"just text in a .docx", CorruptDocumentError),
        (
            make_docx("", xml='<!DOCTYPE x [<!ENTITY a "aaaa">]><w:document/>'),
            CorruptDocumentError,
        ),
        (make_docx("", xml="<w:document><unclosed>"), CorruptDocumentError),
        (make_docx("", xml=f'<w:document xmlns:w="{W_NS}"/>'), CorruptDocumentError),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le"),
            EncryptedDocumentError,
        ),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), UnsupportedDocumentError),
    ],
    ids=["bad-zip", "text", "dtd", "malformed-xml", "no-body", "encrypted", "old-doc"],
)
def test_bad_docx_is_refused(tmp_path: Path, data: bytes, error: type[DocumentError]) -> None:
    with pytest.raises(error):
        parse_file(write(tmp_path, "bad.docx", data))


def test_zip_without_word_document_is_refused(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(CorruptDocumentError, match="not a Word document"):
        parse_file(write(tmp_path, "fake.docx", out.getvalue()))


# ---------------------------------------------------------------- PDF


def test_pdf_text_per_page_with_page_offsets(tmp_path: Path) -> None:
    data = rewrite_pdf(make_pdf(["Hello world.\nSecond line", "", "Page three"]), title="Q3")
    document = parse_file(write(tmp_path, "report.pdf", data))
    assert document.kind is DocumentKind.PDF
    assert document.title == "Q3"
    assert document.metadata["pages"] == "3"
    assert document.text == "Hello world.\nSecond line\n\nPage three"
    assert document.page_starts == (0, 26, 26)
    assert document.page_at(0) == 1
    assert document.page_at(document.text.index("Page three")) == 3
    assert parse_file(write(tmp_path, "plain.txt", "x")).page_at(0) is None


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    data = rewrite_pdf(make_pdf(["Secret terms"]), user_password="hunter2")
    with pytest.raises(EncryptedDocumentError) as caught:
        parse_file(write(tmp_path, "locked.pdf", data))
    assert "password" in str(caught.value)


def test_pdf_encrypted_with_an_empty_user_password_opens(tmp_path: Path) -> None:
    data = rewrite_pdf(make_pdf(["Open to read"]), user_password="")
    assert parse_file(write(tmp_path, "owner-only.pdf", data)).text == "Open to read"


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + random.Random(2).randbytes(4096),
        make_pdf(["Hello world"])[:300],
        b"not a pdf at all",
    ],
    ids=["garbage-after-header", "truncated", "no-header"],
)
def test_corrupt_pdf_is_refused_quietly(
    tmp_path: Path, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(CorruptDocumentError):
        parse_file(write(tmp_path, "broken.pdf", data))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_one_damaged_pdf_page_does_not_cost_the_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = PageObject.extract_text

    def flaky(self: PageObject, *args: object, **kwargs: object) -> str:
        text = original(self)
        if "damaged" in text:
            raise KeyError("/Font")  # what pypdf raises on some broken pages
        return text

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    document = parse_file(write(tmp_path, "mixed.pdf", make_pdf(["Good page", "damaged page"])))
    assert document.text == "Good page"
    assert document.metadata["unreadable_pages"] == "1"
    with pytest.raises(CorruptDocumentError, match="no page could be read"):
        parse_file(write(tmp_path, "bad.pdf", make_pdf(["damaged", "damaged too"])))


def test_pdf_without_text_layer_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyDocumentError, match="OCR"):
        parse_file(write(tmp_path, "scan.pdf", make_pdf([""])))


# ---------------------------------------------------------------- hashing


def test_duplicate_content_under_two_names_has_one_hash(tmp_path: Path) -> None:
    text = "Invoice 42\n\nPlease pay within 30 days."
    first = parse_file(write(tmp_path, "a.txt", text))
    second = parse_file(write(tmp_path, "copy of a.txt", text.encode("utf-16")))
    as_markdown = parse_file(
        write(tmp_path, "a.md", "Invoice   42\r\n\r\n\r\nPlease pay within 30 days.\n")
    )
    as_word = parse_file(
        write(
            tmp_path, "a.docx", make_docx(para("Invoice 42") + para("Please pay within 30 days."))
        )
    )
    assert first.content_sha256 == second.content_sha256
    assert first.content_sha256 == as_markdown.content_sha256 == as_word.content_sha256
    other = parse_file(write(tmp_path, "b.txt", "Invoice 43\n\nPlease pay within 30 days."))
    assert other.content_sha256 != first.content_sha256


def test_content_hash_ignores_whitespace_and_unicode_form() -> None:
    assert content_sha256("Café  au\n lait") == content_sha256("Cafe\u0301 au lait")
    assert content_sha256("a b") != content_sha256("ab")
    assert len(content_sha256("")) == 64


@given(st.text())
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert once == once.strip()
    assert "\r" not in once
    assert "\n\n\n" not in once


# ---------------------------------------------------------------- errors and logs


def test_errors_are_readable_picklable_and_coded(tmp_path: Path) -> None:
    errors: list[DocumentError] = [
        UnsupportedDocumentError("a.xyz", "'.xyz' files"),
        UnreadableDocumentError("a.txt", "Permission denied"),
        DocumentTooLargeError("a.pdf", 300 * 2**20, 50 * 2**20),
        EncryptedDocumentError("a.pdf"),
        CorruptDocumentError("a.pdf", "no PDF header"),
        BinaryContentError("a.txt", "NUL bytes"),
        EmptyDocumentError("a.txt"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert str(error).startswith("Skipped a.")
        assert "\n" not in str(error)
    assert len({error.reason for error in errors}) == len(errors)


def test_logs_and_repr_carry_no_name_or_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="soloist.memory"):
        document = parse_file(write(tmp_path, f"{SECRET}.txt", f"{SECRET}\n"))
        with pytest.raises(BinaryContentError):
            parse_file(write(tmp_path, f"{SECRET}.md", b"\x00" + SECRET.encode()))
    assert "text document parsed" in caplog.text
    assert "skipped: binary" in caplog.text
    assert "Zanzibar" not in caplog.text
    assert "Zanzibar" not in repr(document)
    assert "chars=" in repr(document)
