"""Duplicate detection (pure, table-driven) and merging in a real store."""

from __future__ import annotations

import pytest

from app.integrations.crm.dedupe import (
    find_duplicates,
    merge,
    merged_person,
    name_key,
    normalize_email,
    normalize_phone,
    phones_match,
)
from app.integrations.crm.models import (
    Activity,
    ActivityKind,
    ContactPoint,
    Deal,
    FollowUp,
    Note,
    Person,
)
from app.integrations.crm.store import CrmStore
from app.memory.db import Database, utc_now


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Ana@Example.COM ", "ana@example.com"), ("a.b+tag@gmail.com", "a.b+tag@gmail.com")],
)
def test_normalize_email_only_lowers_and_strips(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+49 (30) 123-4567", None, "+49301234567"),
        ("0049 30 1234567", None, "+49301234567"),
        ("030 1234567", None, "0301234567"),
        ("030 1234567", "49", "+49301234567"),
        ("", None, ""),
        ("+", None, ""),
    ],
)
def test_normalize_phone(raw: str, country: str | None, expected: str) -> None:
    assert normalize_phone(raw, country) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("+49301234567", "+49301234567", True),
        ("+49301234567", "0301234567", True),  # national form of the same line
        ("+49301234567", "+44301234567", False),
        ("123", "123", False),  # too short to mean anything
        ("0301234567", "0301234568", False),
        ("", "", False),
    ],
)
def test_phones_match(a: str, b: str, same: bool) -> None:
    assert phones_match(a, b) is same


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Müller, Anna", "anna muller"),
        ("José  PÉREZ", "perez jose"),
        ("O'Brien Seán", "Sean O Brien"),
    ],
)
def test_name_key(a: str, b: str) -> None:
    assert name_key(a) == name_key(b)


def p(pid: str, name: str = "", emails: tuple[str, ...] = (), phones: tuple[str, ...] = (),
      company: str | None = None) -> Person:  # fmt: skip
    return Person(
        id=pid, full_name=name, company_id=company,
        emails=tuple(ContactPoint(e) for e in emails),
        phones=tuple(ContactPoint(t) for t in phones),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("people", "pairs"),
    [
        ([p("1", emails=("A@x.com",)), p("2", emails=("a@x.com ",))],
         {("1", "2"): ("same email",)}),
        ([p("1", emails=("a.b@gmail.com",)), p("2", emails=("ab@gmail.com",))], {}),
        ([p("1", phones=("+49 30 1234567",)), p("2", phones=("030/1234567",))],
         {("1", "2"): ("same phone",)}),
        ([p("1", "Anna Müller", company="c"), p("2", "Muller, Anna", company="c")],
         {("1", "2"): ("same name",)}),
        ([p("1", "Anna Müller", company="c"), p("2", "Anna Muller", company="d")], {}),
        ([p("1", "Anna Müller"), p("2", "Anna Muller")], {}),  # no company: names alone too weak
        ([p("1", "Jonathan Smith", company="c"), p("2", "Jonathon Smith", company="c")],
         {("1", "2"): ("similar name",)}),
        ([p("1", "Ana", ("a@x.com",), ("+49301234567",), "c"),
          p("2", "Ana", ("a@x.com",), ("0301234567",), "c")],
         {("1", "2"): ("same email", "same name", "same phone")}),
    ],
)  # fmt: skip
def test_find_duplicates(
    people: list[Person], pairs: dict[tuple[str, str], tuple[str, ...]]
) -> None:
    found = {(c.first_id, c.second_id): c.reasons for c in find_duplicates(people)}
    assert found == pairs


def test_more_reasons_score_higher() -> None:
    people = [
        p("1", "Ana", ("a@x.com",), ("+49301234567",), "c"),
        p("2", "Ana", ("a@x.com",), ("+49301234567",), "c"),
        p("3", emails=("b@x.com",)),
        p("4", emails=("b@x.com",)),
    ]
    scores = [c.score for c in find_duplicates(people)]
    assert scores[0] > scores[1] > 0.9


def test_merged_person_unions_and_fills() -> None:
    keep = Person(id="k", full_name="Ana", emails=(ContactPoint("a@x.com"),), title="")
    other = Person(id="o", full_name="Ana L", title="CEO",
                   emails=(ContactPoint("A@x.com "), ContactPoint("b@x.com")),
                   phones=(ContactPoint("+1 555 0100"),), background="vip")  # fmt: skip
    merged = merged_person(keep, other)
    assert merged.id == "k" and merged.full_name == "Ana" and merged.title == "CEO"
    assert [e.value for e in merged.emails] == ["a@x.com", "b@x.com"]
    assert merged.phones == other.phones and merged.background == "vip"


def test_merge_repoints_records_and_is_explained(db: Database) -> None:
    store = CrmStore(db)
    keep = store.save_person(Person(id="", full_name="Ana", emails=(ContactPoint("a@x.com"),)))
    other = store.save_person(Person(id="", full_name="Ana L", emails=(ContactPoint("b@x.com"),)))
    deal = store.add_deal(Deal(id="", title="d", person_id=other.id))
    store.add_note(Note("", "n", person_id=other.id))
    store.add_activity(Activity("", ActivityKind.EMAIL, "s", utc_now(), person_id=other.id))
    store.add_follow_up(FollowUp("", "f", utc_now(), person_id=other.id))
    merged = merge(store, keep.id, other.id, "same name", 0.7)
    assert {e.value for e in merged.emails} == {"a@x.com", "b@x.com"}
    assert store.get_deal(deal.id).person_id == keep.id
    assert len(store.list_notes(person_id=keep.id)) == 1
    assert len(store.list_activities(person_id=keep.id)) == 1
    assert len(store.list_follow_ups(person_id=keep.id)) == 1
    assert store.get_person(other.id) is None
    tomb = store.get_person(other.id, include_deleted=True)
    assert tomb is not None and tomb.merged_into == keep.id
    [record] = store.merge_history(keep.id)
    assert (record.merged_id, record.reason, record.snapshot["full_name"]) == (
        other.id,
        "same name",
        "Ana L",
    )
    assert [p.id for p in store.find_by_email("b@x.com")] == [keep.id]
    with pytest.raises(ValueError, match="itself"):
        merge(store, keep.id, keep.id)
