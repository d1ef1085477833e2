"""Threading: replies join by In-Reply-To/References, never by subject alone."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from app.integrations.email.threads import ThreadIndex, normalise_subject, thread_id_for

WHEN = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def add(index: ThreadIndex, mid: str | None, *refs: str, irt: str | None = None) -> str:
    """File a message whose References are ``refs`` (In-Reply-To defaults to the last)."""
    parent = irt if irt is not None else (refs[-1] if refs else None)
    return index.add(mid, parent, refs, "Subject", "someone@example.com", WHEN)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "hello"),
        ("Re: Hello", "hello"),
        ("RE: re: Fwd: FW: Hello", "hello"),
        ("AW: WG: Angebot", "angebot"),
        ("SV: Re: Tilbud", "tilbud"),
        ("Antw: TR: RIF: ODP: YNT: x", "x"),
        ("Re[2]: Hello", "hello"),
        ("Re : Hello", "hello"),
        ("Re：Hello", "hello"),  # full-width colon (Japanese and Chinese clients)
        ("[acme-dev] Re: [acme-dev] Build broken", "build broken"),
        ("  Many \t  spaces  ", "many spaces"),
        ("Report: Q3", "report: q3"),  # "Re" inside a word is no prefix
        ("Straße", "strasse"),  # casefold, not lower
        ("", ""),
    ],
)
def test_normalise_subject(subject: str, expected: str) -> None:
    assert normalise_subject(subject) == expected


def test_reply_joins_its_parent_by_in_reply_to() -> None:
    index = ThreadIndex()
    root = add(index, "<a@x>")
    assert add(index, "<b@x>", irt="<a@x>") == root


def test_reply_joins_by_references_when_the_parent_is_missing() -> None:
    index = ThreadIndex()
    root = add(index, "<a@x>")
    # <b@x> (the direct parent) was never synced; <a@x> is in References.
    assert add(index, "<c@x>", "<a@x>", "<b@x>") == root


def test_nearest_known_ancestor_is_asked_first() -> None:
    asked: list[Sequence[str]] = []

    def lookup(ids: Sequence[str]) -> str | None:
        asked.append(list(ids))
        return None

    thread_id_for("<d@x>", "<c@x>", ["<a@x>", "<b@x>", "<c@x>"], "s", None, None, lookup)
    assert asked == [["<c@x>", "<b@x>", "<a@x>"]]


def test_thread_found_by_lookup_is_returned_as_is() -> None:
    found = thread_id_for("<b@x>", "<a@x>", [], "s", None, None, lambda ids: "stored-thread")
    assert found == "stored-thread"


def test_children_before_their_root_still_share_one_thread() -> None:
    """Sent and Inbox sync separately: a reply can be stored before what it answers."""
    index = ThreadIndex()
    late_child = add(index, "<c@x>", "<a@x>", "<b@x>")
    sibling = add(index, "<d@x>", "<a@x>")
    root = add(index, "<a@x>")
    middle = add(index, "<b@x>", "<a@x>")
    assert late_child == sibling == root == middle


def test_same_subject_from_unrelated_senders_stays_apart() -> None:
    first = thread_id_for("<1@shop>", None, [], "Invoice", "a@one.example", WHEN, lambda _: None)
    second = thread_id_for("<2@shop>", None, [], "Invoice", "b@two.example", WHEN, lambda _: None)
    reply_like = thread_id_for(
        "<3@shop>", None, [], "Re: Invoice", "a@one.example", WHEN, lambda _: None
    )
    assert len({first, second, reply_like}) == 3


def test_new_thread_id_is_a_stable_digest_of_the_message_id() -> None:
    first = thread_id_for("<Abc@Example.com>", None, [], "s", None, None, lambda _: None)
    again = thread_id_for(" <abc@example.com> ", None, [], "other", "x@y", WHEN, lambda _: None)
    assert first == again
    assert first == hashlib.sha256(b"<abc@example.com>").hexdigest()[:16]


def test_without_message_id_the_id_comes_from_sender_date_and_subject() -> None:
    def make(sender: str, subject: str) -> str:
        return thread_id_for(None, None, [], subject, sender, WHEN, lambda _: None)

    assert make("a@x", "Hello") == make("A@X", "Re: hello")
    assert make("a@x", "Hello") != make("b@x", "Hello")
    assert len(make("a@x", "Hello")) == 16
    assert thread_id_for(None, None, [], "", None, None, lambda _: None)  # nothing at all


def test_index_counts_messages_with_an_id() -> None:
    index = ThreadIndex()
    add(index, "<a@x>")
    add(index, None)
    assert len(index) == 1
