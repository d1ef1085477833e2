"""vCard reading and writing: dialects, defects, caps, folding, round trips."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.integrations.crm.models import ContactPoint, PostalAddress
from app.integrations.crm.vcard import (
    MAX_CARD_CHARS,
    VCard,
    fold,
    parse_vcards,
    write_vcard,
)
from app.integrations.errors import MalformedDataError


def one(text: str) -> VCard:
    result = parse_vcards(text)
    assert len(result.cards) == 1, result.defects
    return result.cards[0]


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ana Lima\r\nEND:VCARD\r\n", "fn", "Ana Lima"),
        ("BEGIN:VCARD\nFN:Ana\n  Lima\nEND:VCARD\n", "fn", "Ana Lima"),  # LF, fold + space
        ("BEGIN:VCARD\nFN:Ana\n\tLima\nEND:VCARD\n", "fn", "AnaLima"),  # tab fold
        ("BEGIN:VCARD\nFN:a\\, b\\; c\\nd\\\\e\nEND:VCARD", "fn", "a, b; c\nd\\e"),
        ("begin:vcard\nfn:lower\nend:vcard", "fn", "lower"),
        ("BEGIN:VCARD\nN:Lima;Ana;Maria;Dr.;PhD\nEND:VCARD", "family_name", "Lima"),
        ("BEGIN:VCARD\nN:Lima;Ana;Maria;Dr.;PhD\nEND:VCARD", "suffixes", "PhD"),
        ("BEGIN:VCARD\nN:Lima\\;Souza;Ana\nEND:VCARD", "family_name", "Lima;Souza"),
        ("BEGIN:VCARD\nORG:Acme\\, Inc.;Sales\nEND:VCARD", "org", ("Acme, Inc.", "Sales")),
        ("BEGIN:VCARD\nTITLE:CEO\nEND:VCARD", "title", "CEO"),
        ("BEGIN:VCARD\nUID:urn:uuid:1234\nEND:VCARD", "uid", "urn:uuid:1234"),
        ("BEGIN:VCARD\nREV:20240501T101500Z\nEND:VCARD", "rev", "20240501T101500Z"),
        ("BEGIN:VCARD\nBDAY:--0501\nEND:VCARD", "bday", "--0501"),
        ("BEGIN:VCARD\nCATEGORIES:a,b\\,c,,d\nEND:VCARD", "categories", ("a", "b,c", "d")),
        (
            "BEGIN:VCARD\nURL:https://x.example/a?b=1\nEND:VCARD",
            "urls",
            ("https://x.example/a?b=1",),
        ),
        ("BEGIN:VCARD\nNOTE:one\nNOTE:two\nEND:VCARD", "note", "one\n\ntwo"),
        (
            "BEGIN:VCARD\nVERSION:2.1\nNOTE;ENCODING=QUOTED-PRINTABLE;CHARSET=UTF-8:caf=C3=A9 =\n"
            "au lait\nEND:VCARD",
            "note",
            "café au lait",
        ),
        (
            "BEGIN:VCARD\nN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:M=FCller;J=F6rg\nEND:VCARD",
            "given_name",
            "Jörg",
        ),
    ],
)
def test_fields_are_read(text: str, field: str, expected: object) -> None:
    assert getattr(one(text), field) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("EMAIL;TYPE=INTERNET,WORK:a@x.com", ContactPoint("a@x.com", "work")),
        ('EMAIL;TYPE="home,pref":a@x.com', ContactPoint("a@x.com", "home")),
        ("EMAIL;type=WORK;type=pref:a@x.com", ContactPoint("a@x.com", "work")),
        ("EMAIL:a@x.com", ContactPoint("a@x.com", "")),
        ("TEL;TYPE=work,voice:+1 555 0100", ContactPoint("+1 555 0100", "work")),
        ("TEL;WORK;VOICE:+1 555 0100", ContactPoint("+1 555 0100", "work")),  # 2.1 bare
        ("TEL;VALUE=uri;TYPE=cell:tel:+1-555-0100", ContactPoint("+1-555-0100", "cell")),
        ("TEL;TYPE=work,fax:+1 555", ContactPoint("+1 555", "work,fax")),
    ],
)
def test_emails_and_phones_keep_their_labels(line: str, expected: ContactPoint) -> None:
    card = one(f"BEGIN:VCARD\nVERSION:4.0\n{line}\nEND:VCARD")
    assert (card.emails or card.phones) == (expected,)


def test_apple_grouped_labels_name_the_property() -> None:
    card = one(
        "BEGIN:VCARD\nitem1.EMAIL;type=INTERNET:a@x.com\nitem1.X-ABLabel:_$!<Other>!$_\n"
        "item2.TEL:123\nitem2.X-ABLabel:Studio\nEND:VCARD"
    )
    assert card.emails == (ContactPoint("a@x.com", "other"),)
    assert card.phones == (ContactPoint("123", "studio"),)
    assert card.extra == ()


def test_address_components_and_unmodelled_properties() -> None:
    card = one(
        "BEGIN:VCARD\nADR;TYPE=home:;Apt 2;Rua A\\, 1;Lisboa;;1000-001;Portugal\n"
        'PHOTO;ENCODING=b;TYPE=JPEG:AAAA\nX-SOCIAL;X-SERVICE="a:b":@ana\nEND:VCARD'
    )
    assert card.addresses == (
        PostalAddress("Rua A, 1", "Lisboa", "", "1000-001", "Portugal", "", "Apt 2", "home"),
    )
    assert [p.name for p in card.extra] == ["PHOTO", "X-SOCIAL"]
    assert card.extra[1].param("X-SERVICE") == ("a:b",)
    written = write_vcard(card)
    assert 'X-SOCIAL;X-SERVICE="a:b":@ana' in written
    assert one(written).extra == card.extra


def test_bad_cards_are_skipped_with_defects() -> None:
    text = (
        "garbage before\n"
        "BEGIN:VCARD\nFN:Good\nEND:VCARD\n"
        "BEGIN:VCARD\nthis line has no colon\nEND:VCARD\n"
        "BEGIN:VCARD\nF N:bad name\nEND:VCARD\n"
        "BEGIN:VCARD\nFN:Second good\nEND:VCARD\n"
        "BEGIN:VCARD\nFN:never closed\n"
    )
    result = parse_vcards(text)
    assert [c.fn for c in result.cards] == ["Good", "Second good"]
    assert result.skipped == 3
    assert len(result.defects) == 4  # the garbage, then three cards
    assert all("never closed" not in d and "bad name" not in d for d in result.defects)


@pytest.mark.parametrize(
    "text",
    ["", "hello", "BEGIN:VCARD\nno colon\nEND:VCARD", "END:VCARD", "BEGIN:VCARD\nFN:x"],
)
def test_nothing_readable_raises(text: str) -> None:
    with pytest.raises(MalformedDataError):
        parse_vcards(text)


def test_oversized_card_is_skipped() -> None:
    big = "BEGIN:VCARD\nNOTE:" + "x" * (MAX_CARD_CHARS + 10) + "\nEND:VCARD\n"
    result = parse_vcards(big + "BEGIN:VCARD\nFN:small\nEND:VCARD\n")
    assert [c.fn for c in result.cards] == ["small"]
    assert result.skipped == 1


def test_bytes_in_cp1252_and_utf8_bom() -> None:
    card = "BEGIN:VCARD\nFN:José\nEND:VCARD\n"
    assert one_bytes(card.encode("cp1252")) == "José"
    assert one_bytes(b"\xef\xbb\xbf" + card.encode()) == "José"


def one_bytes(data: bytes) -> str:
    return parse_vcards(data).cards[0].fn


@pytest.mark.parametrize("line", ["A" * 200, "NOTE:" + "é" * 100, "NOTE:" + "😀" * 40])
def test_fold_cuts_at_75_octets_between_characters(line: str) -> None:
    folded = fold(line)
    pieces = folded.split("\r\n")
    assert len(pieces) > 1
    assert all(len(p.encode()) <= 75 for p in pieces)
    assert all(p.startswith(" ") for p in pieces[1:])
    assert "".join([pieces[0], *(p[1:] for p in pieces[1:])]) == line


@pytest.mark.parametrize("version", ["3.0", "4.0"])
def test_writer_output(version: str) -> None:
    card = VCard(fn="Ana", uid="u-1", emails=(ContactPoint("a@x.com", "work,pref"),))
    text = write_vcard(card, version)
    assert text.startswith(f"BEGIN:VCARD\r\nVERSION:{version}\r\n")
    assert text.endswith("END:VCARD\r\n")
    assert "EMAIL;TYPE=work,pref:a@x.com\r\n" in text
    assert "\n" not in text.replace("\r\n", "")


def test_writer_refuses_other_versions() -> None:
    with pytest.raises(ValueError, match=r"2\.1"):
        write_vcard(VCard(fn="x"), "2.1")


# -- properties ------------------------------------------------------------------------
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), whitelist_characters="\n"),
    max_size=60,
)
_LABEL = st.sampled_from(["", "work", "home", "cell", "work,fax"])
_POINT = st.builds(ContactPoint, _TEXT, _LABEL)
_ADDRESS = st.builds(PostalAddress, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _LABEL).filter(
    lambda a: not a.is_empty
)
_CARDS = st.builds(
    VCard,
    fn=_TEXT,
    family_name=_TEXT,
    given_name=_TEXT,
    org=st.lists(_TEXT, max_size=2).map(tuple).filter(lambda o: o != ("",)),
    title=_TEXT,
    emails=st.lists(_POINT, max_size=3).map(tuple),
    phones=st.lists(_POINT, max_size=3).map(tuple),
    addresses=st.lists(_ADDRESS, max_size=2).map(tuple),
    urls=st.lists(
        st.from_regex(r"https://[a-z]{1,10}\.example/[a-z0-9?=&;,]{0,12}", fullmatch=True),
        max_size=2,
    ).map(tuple),
    categories=st.lists(_TEXT.filter(bool), max_size=3).map(tuple),
    bday=_TEXT,
    note=_TEXT,
    uid=_TEXT,
    rev=st.sampled_from(["", "20240501T101500Z"]),
    version=st.sampled_from(["3.0", "4.0"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_CARDS)
def test_write_then_parse_round_trips(card: VCard) -> None:
    text = write_vcard(card, card.version)
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    assert one(text) == card


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400) | st.builds(lambda s: f"BEGIN:VCARD\n{s}\nEND:VCARD", st.text()))
def test_parse_never_raises_anything_else(text: str) -> None:
    try:
        result = parse_vcards(text)
    except MalformedDataError:
        return
    assert result.cards
