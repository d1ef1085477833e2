"""Hostile mail and HTML, generated: parsing never raises and its output stays safe.

The default run tries a few hundred examples; ``pytest -m long`` runs the
same properties over 10,000.
"""

from __future__ import annotations

import base64
import binascii
import html as html_lib
import re
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from app.integrations.email.html_text import html_to_text
from app.integrations.email.mime import MimeLimits, ParsedMessage, parse_message, safe_filename
from app.integrations.email.text_clean import clean_block, clean_line

# hypothesis's own check fails generation that is slow because messages are
# large by design (a few KB of nested parts); the parser's speed is asserted
# by the limit tests in test_mime.py, not here.
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(FUZZ, max_examples=10_000)

TINY = MimeLimits(
    max_parts=3, max_depth=2, max_header_bytes=300, max_text_chars=64, max_attachment_bytes=16
)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
MESSAGE_ID = re.compile(r"<[^<>\s]+>")

# -- pieces of hostile mail -----------------------------------------------------

CHARSETS = [
    "utf-8", "UTF-8", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "iso-2022-jp",
    "gb2312", "utf-16", "utf-7", "us-ascii", "x-unknown", "unicode-escape", "idna",
    "punycode", "base64", "rot13", "", "utf-8*en", "\"utf-8\"", "ks_c_5601-1987",
]  # fmt: skip
ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "", "BASE64 x"]
NAMES = [
    "Subject", "From", "To", "Cc", "Reply-To", "Date", "Message-ID", "In-Reply-To",
    "References", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
    "Content-ID", "X-Junk", "subject", "TO", "From ", ":", "Bcc",
]  # fmt: skip
SPECIALS = [
    '"', "(", ")", "<", ">", ",", ";", ":", "@", "\\", "\r", "\n", "\r\n", "\r\n ", "\r\n\t",
    "\r\nBcc: evil@attacker.example", "=?", "?=", "\x00", "\u2028", "\u202e", " ", "[", "]",
    "undisclosed:;", "a@b.example", "Name <x@y.example>", "<id@host>", "*0*=utf-8''%E2%82",
]  # fmt: skip

text_piece = st.text(st.characters(codec="utf-8"), max_size=12)


@st.composite
def encoded_words(draw: st.DrawFn) -> str:
    charset = draw(st.sampled_from(CHARSETS))
    kind = draw(st.sampled_from("bBqQx"))
    payload = draw(st.binary(max_size=24) | st.just(b"a\r\nBcc: evil@attacker.example"))
    if kind in "bB":
        encoded = base64.b64encode(payload).decode()
    else:
        encoded = binascii.b2a_qp(payload, header=True).decode().replace("\n", "=0A")
    cut = draw(st.integers(0, 3))  # sometimes drop the end, or corrupt the padding
    word = f"=?{charset}?{kind}?{encoded}?="
    return word[: len(word) - cut] if cut < 3 else word.replace("=", "!")


header_value = st.lists(text_piece | encoded_words() | st.sampled_from(SPECIALS), max_size=8).map(
    "".join
)


@st.composite
def header_block(draw: st.DrawFn, content: str | None = None) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(NAMES) | st.text(min_size=1, max_size=8))
        lines.append(f"{name}: {draw(header_value)}")
    if content is not None:
        lines.insert(draw(st.integers(0, len(lines))), content)
    block = "\r\n".join(lines).encode("utf-8")
    if draw(st.booleans()):
        block += b"\r\nX-Raw: " + draw(st.binary(max_size=16))
    return block


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    maintype = draw(st.sampled_from(["text/plain", "text/html", "image/png", "message/rfc822"]))
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    body = draw(st.binary(max_size=64) | text_piece.map(lambda t: t.encode("utf-8")))
    if encoding.lower().startswith("base64"):
        body = base64.encodebytes(body)
    elif encoding == "quoted-printable":
        body = binascii.b2a_qp(body)
    if draw(st.booleans()):  # corrupt it
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"!*", b"=Z", b"\x00", b"="])) + body[at:]
    extra = draw(st.sampled_from(["", "Content-Disposition: attachment; filename=f.bin"]))
    content = (
        f"Content-Type: {maintype}; charset={charset}\r\nContent-Transfer-Encoding: {encoding}"
    )
    head = draw(header_block(content + ("\r\n" + extra if extra else "")))
    return head + b"\r\n\r\n" + body


BOUNDARIES = st.sampled_from(["b", "a", "--", "b b", "x" * 80, "=_part", "", '"q"', "bound"])


def multipart(children: st.SearchStrategy[list[bytes]]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        parts = draw(children)
        boundary = draw(BOUNDARIES)
        subtype = draw(st.sampled_from(["mixed", "alternative", "related", "digest", "signed"]))
        head = draw(header_block(f'Content-Type: multipart/{subtype}; boundary="{boundary}"'))
        delimiter = b"--" + boundary.encode()
        body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts)
        if draw(st.booleans()):
            body += delimiter + b"--\r\n"
        return head + b"\r\n\r\n" + draw(st.binary(max_size=8)) + b"\r\n" + body

    return build()


mime_tree = st.recursive(
    leaf(), lambda children: multipart(st.lists(children, max_size=4)), max_leaves=12
)


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    raw = draw(mime_tree | st.binary(max_size=200))
    for _ in range(draw(st.integers(0, 3))):  # splice in random bytes
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=6)) + raw[at:]
    newline = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    raw = raw.replace(b"\r\n", newline)
    return raw[: draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw


# -- properties --------------------------------------------------------------------


def check_message(raw: bytes, limits: MimeLimits) -> ParsedMessage:
    parsed = parse_message(raw, limits)
    assert isinstance(parsed, ParsedMessage)
    assert parsed.size == len(raw)
    people = [*parsed.to, *parsed.cc, *parsed.reply_to]
    if parsed.sender is not None:
        people.append(parsed.sender)
    one_line = [parsed.subject, *(p.name for p in people), *(p.email for p in people)]
    one_line += [a.filename or "" for a in parsed.attachments]
    one_line += [a.content_type for a in parsed.attachments]
    one_line += [*parsed.defects, *parsed.references]
    for value in one_line:
        assert not CONTROL.search(value), value
        value.encode("utf-8")  # no lone surrogates: every value can be stored
    for person in people:
        local, at, domain = person.email.rpartition("@")
        assert at and local and domain == domain.lower()
        assert not any(c.isspace() for c in person.email)
    for mid in (parsed.message_id, parsed.in_reply_to, *parsed.references):
        assert mid is None or MESSAGE_ID.fullmatch(mid)
    assert parsed.date is None or parsed.date.utcoffset() is not None
    assert len(parsed.attachments) <= max(limits.max_parts, 1)
    for attachment in parsed.attachments:
        assert attachment.size >= 0
        assert attachment.truncated == (attachment.size > limits.max_attachment_bytes)
        assert not {"/", "\\"} & set(attachment.filename or "")
    for text in (parsed.text, parsed.html_text or ""):
        assert "\x00" not in text
        text.encode("utf-8")
        assert len(text) <= max(limits.max_text_chars, 0)
    assert all(0 < len(d) < 40 for d in parsed.defects)
    return parsed


@FUZZ
@given(hostile_messages(), st.sampled_from([MimeLimits(), TINY]))
def test_hostile_mail_parses_safely(raw: bytes, limits: MimeLimits) -> None:
    check_message(raw, limits)


@pytest.mark.long
@LONG
@given(hostile_messages(), st.sampled_from([MimeLimits(), TINY]))
def test_hostile_mail_parses_safely_long(raw: bytes, limits: MimeLimits) -> None:
    check_message(raw, limits)


# -- well-formed mail round-trips through the stdlib's writer ------------------------

words = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cf", "Zl", "Zp", "Co", "Cn")),
    min_size=1,
    max_size=30,
).filter(lambda t: t.strip() and "=?" not in t)
local_parts = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,15}", fullmatch=True)


@st.composite
def stdlib_messages(draw: st.DrawFn) -> tuple[EmailMessage, dict[str, object]]:
    subject, name, body = draw(words), draw(words), draw(words)
    local = draw(local_parts)
    filename = draw(words)
    msg = EmailMessage(policy=default_policy)
    msg["Subject"] = subject
    msg["From"] = HeaderAddress(display_name=name, username=local, domain="Example.COM")
    msg["To"] = HeaderAddress(username=local, domain="Example.COM")
    msg.set_content(body + "\n")
    if draw(st.booleans()):
        msg.add_alternative(f"<p>{html_lib.escape(body)}</p>", subtype="html")
    msg.add_attachment(b"data", maintype="application", subtype="octet-stream", filename=filename)
    expected = {"subject": clean_line(subject), "name": clean_line(name)}
    return msg, expected | {"email": f"{local}@example.com", "file": filename, "body": body}


def check_round_trip(msg: EmailMessage, expected: dict[str, object]) -> None:
    raw = msg.as_bytes()
    note(repr(raw.split(b"\n\n", 1)[0]))
    parsed = check_message(raw, MimeLimits())
    assert parsed.subject == expected["subject"]
    assert [p.email for p in parsed.to] == [expected["email"]]
    assert parsed.sender is not None
    assert parsed.sender.email == expected["email"]
    # Python's writer folds a long display name at a space between two encoded
    # words; RFC 2047 (6.2) says such a space is not text, and we read it so.
    assert parsed.sender.name.replace(" ", "") == str(expected["name"]).replace(" ", "")
    [attachment] = parsed.attachments
    assert attachment.filename == safe_filename(str(expected["file"]))
    assert attachment.size == 4
    assert parsed.text == clean_block(str(expected["body"]))


@FUZZ
@given(stdlib_messages())
def test_mail_written_by_the_stdlib_round_trips(
    case: tuple[EmailMessage, dict[str, object]],
) -> None:
    check_round_trip(*case)


@pytest.mark.long
@LONG
@given(stdlib_messages())
def test_mail_written_by_the_stdlib_round_trips_long(
    case: tuple[EmailMessage, dict[str, object]],
) -> None:
    check_round_trip(*case)


# -- HTML: nothing hidden ever leaks ----------------------------------------------------

MARKER = "QQSECRETQQ"
OPENERS = [
    ("<script>", "</script>"),
    ("<SCRIPT type=x>", "</script >"),
    ("<style>", "</style>"),
    ("<template>", "</template>"),
    ("<noscript>", "</noscript>"),
    ("<title>", "</title>"),
    ("<textarea>", "</textarea>"),
    ("<!--", "-->"),
    ('<div style="display:none">', "</div>"),
    ('<span style="visibility: hidden !important">', "</span>"),
    ("<div hidden>", "</div>"),
    ('<div aria-hidden="true">', "</div>"),
    ('<span style="font-size:0px">', "</span>"),
    ('<div style="opacity:0">', "</div>"),
    ('<div style="max-height:0;overflow:hidden">', "</div>"),
    ('<div style="mso-hide:all">', "</div>"),
]
# Inside a hidden element: markup that cannot end it (no end tags, no tags that
# close others implicitly), but plenty that is malformed.
INSIDE = st.sampled_from(
    [
        *("<b>", "<i class=x>", "<span style='color:red'>", "<img src=x alt='a'>", "<br/>"),
        *("&amp;", "&#x202e;", "<", "< 1", "<<", ">", "<!-- c -->", "\u200b", "\r\n"),
        *("<a href='https://x.example'>", "<font color=white>", "<b title='x>y'>", "<!x>"),
        *("<?p?>", "&", "&#0;"),
    ]
) | st.text(st.characters(exclude_characters="</Q"), max_size=10)
# Outside: anything at all, except the marker.
# Outside: anything that ends where it starts, and never in "<" (a construct
# left open would legitimately swallow the next hidden element's opening tag:
# in "<a <div hidden>X", "<div" is an attribute of <a> and X is visible)...
OUTSIDE = st.sampled_from(
    [
        *("<p>", "</p>", "<div>", "</div>", "<table><tr><td>", "</td><td>", "<ul><li>", "</li>"),
        *("<br>", "<a href='javascript:x'>", "</a>", "<img width=1 height=1>", "a < b", "< < "),
        *("&lt;", "</x >", "<![CDATA[x]]>", "<head>", "<body>", "<pre>", "</pre>", "<!x>", "</>"),
        *("<textarea>", "</textarea>", "<a b='x>y'>", "<!-- c -->", "<3", "&#x200b;"),
    ]
) | st.text(st.characters(exclude_characters="<Q"), max_size=12)
# ... and, only at the very end, constructs that run to the end of the input.
TAIL = st.sampled_from(["", '<a b="', "<a b='", "<a ", "</x ", "<!--", "</", "<!", "<a"])


@st.composite
def hostile_html(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(OUTSIDE, max_size=8))
    for _ in range(draw(st.integers(1, 3))):
        opener, closer = draw(st.sampled_from(OPENERS))
        inner = draw(st.lists(INSIDE, max_size=6))
        if opener == "<!--":  # "<!-->" and any "->" inside end a comment: keep neither
            inner = [piece for piece in inner if "-" not in piece and ">" not in piece]
            inner.insert(0, " ")
        inner.insert(draw(st.integers(0, len(inner))), MARKER)
        # Any element may be left open (the rest is then hidden too), except a
        # comment: a later "-->" would end it and show what follows, as it should.
        closed = opener == "<!--" or draw(st.booleans())
        hidden = opener + "".join(inner) + (closer if closed else "")
        pieces.insert(draw(st.integers(0, len(pieces))), hidden)
    return "".join(pieces) + draw(TAIL)


INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\x00]")


def check_html(html: str, max_chars: int) -> None:
    out = html_to_text(html, max_chars)
    assert isinstance(out, str)
    assert MARKER not in out
    assert "[javascript:" not in out.lower()
    assert not INVISIBLE.search(out)
    assert len(out) <= max_chars


@FUZZ
@given(hostile_html(), st.sampled_from([1_000_000, 20]))
def test_hidden_html_never_leaks(html: str, max_chars: int) -> None:
    check_html(html, max_chars)


@pytest.mark.long
@LONG
@given(hostile_html(), st.sampled_from([1_000_000, 20]))
def test_hidden_html_never_leaks_long(html: str, max_chars: int) -> None:
    check_html(html, max_chars)


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_html_string_is_reduced_without_error(html: str) -> None:
    out = html_to_text(html)
    assert not INVISIBLE.search(out)
