"""The CRM store in a real DuckDB file: people, companies, deals, work records, search."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.integrations.crm.models import (
    Activity,
    ActivityKind,
    ContactPoint,
    Deal,
    DealStage,
    FollowUp,
    Note,
    Person,
    PostalAddress,
    allowed_stages,
    can_move,
)
from app.integrations.crm.store import CrmNotFoundError, CrmStore, StageTransitionError
from app.memory.db import Database

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(db: Database) -> CrmStore:
    return CrmStore(db, Clock())


def ana(**kw: object) -> Person:
    base = Person(
        id="",
        full_name="Ana Lima",
        given_name="Ana",
        family_name="Lima",
        company_name="Acme",
        title="CEO",
        emails=(ContactPoint("Ana@Acme.com", "work"), ContactPoint("ana@home.pt", "home")),
        phones=(ContactPoint("+351 21 000 0000", "work"),),
        addresses=(PostalAddress(street="Rua A", locality="Lisboa", label="work"),),
        urls=("https://acme.example",),
        categories=("client",),
        birthday="1980-05-01",
        background="met at a fair",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_person_round_trips_with_all_fields(store: CrmStore) -> None:
    saved = store.save_person(ana())
    again = store.require_person(saved.id)
    assert again == saved
    assert again.emails[0] == ContactPoint("Ana@Acme.com", "work")
    assert again.company_name == "Acme" and again.company_id is not None
    assert again.uid and again.created_at == again.updated_at


def test_update_replaces_emails_and_bumps_updated_at(store: CrmStore) -> None:
    saved = store.save_person(ana())
    changed = store.save_person(replace(saved, emails=(ContactPoint("new@acme.com"),)))
    assert changed.emails == (ContactPoint("new@acme.com"),)
    assert changed.updated_at is not None and saved.updated_at is not None
    assert changed.updated_at > saved.updated_at
    assert changed.created_at == saved.created_at
    assert store.find_by_email("ANA@acme.com ") == []
    assert [p.id for p in store.find_by_email("NEW@acme.com")] == [saved.id]


def test_companies_are_shared_by_name_in_any_case(store: CrmStore) -> None:
    first = store.save_person(ana())
    second = store.save_person(ana(full_name="Rui", emails=(), company_name="ACME "))
    assert first.company_id == second.company_id
    assert [c.name for c in store.list_companies()] == ["Acme"]


def test_delete_leaves_a_tombstone(store: CrmStore) -> None:
    saved = store.save_person(ana())
    store.delete_person(saved.id)
    assert store.get_person(saved.id) is None
    tomb = store.get_person(saved.id, include_deleted=True)
    assert tomb is not None and tomb.deleted_at is not None
    assert store.list_people() == []
    assert len(store.list_people(include_deleted=True)) == 1


def test_bulk_add(store: CrmStore) -> None:
    people = [Person(id="", full_name=f"P{i}", company_name=f"C{i % 3}",
                     emails=(ContactPoint(f"p{i}@x.com"),)) for i in range(50)]  # fmt: skip
    ids = store.add_people(people)
    assert len(set(ids)) == 50
    assert len(store.list_people()) == 50
    assert len(store.list_companies()) == 3
    assert len(store.email_index()) == 50


def test_stage_transitions_live_in_one_table() -> None:
    assert can_move(DealStage.LEAD, DealStage.WON)
    assert not can_move(DealStage.WON, DealStage.LOST)
    assert allowed_stages(DealStage.LOST) == {DealStage.LEAD, DealStage.QUALIFIED}
    assert all(stage not in allowed_stages(stage) for stage in DealStage)
    assert DealStage.NEGOTIATION < DealStage.WON and DealStage.WON.is_closed


def test_deal_moves_and_history(store: CrmStore) -> None:
    deal = store.add_deal(Deal(id="", title="Website", value_cents=500_000))
    store.move_deal(deal.id, DealStage.PROPOSAL)
    won = store.move_deal(deal.id, DealStage.WON)
    assert won.closed_at is not None
    with pytest.raises(StageTransitionError, match="won deal cannot move to lost"):
        store.move_deal(deal.id, DealStage.LOST)
    history = [(c.from_stage, c.to_stage) for c in store.stage_history(deal.id)]
    assert history == [
        (None, DealStage.LEAD),
        (DealStage.LEAD, DealStage.PROPOSAL),
        (DealStage.PROPOSAL, DealStage.WON),
    ]
    assert store.list_deals(open_only=True) == []
    assert [d.id for d in store.list_deals(DealStage.WON)] == [deal.id]
    with pytest.raises(CrmNotFoundError):
        store.get_deal("missing")


def test_activities_follow_ups_and_notes(store: CrmStore) -> None:
    person = store.save_person(ana())
    store.add_activity(Activity("", ActivityKind.CALL, "intro", T0, person_id=person.id))
    due = store.add_follow_up(
        FollowUp("", "send offer", T0 + timedelta(days=1), person_id=person.id)
    )
    store.add_follow_up(FollowUp("", "later", T0 + timedelta(days=9), person_id=person.id))
    store.add_note(Note("", "likes green", person_id=person.id))
    assert [a.kind for a in store.list_activities(person_id=person.id)] == [ActivityKind.CALL]
    assert [f.id for f in store.follow_ups_due(T0 + timedelta(days=2))] == [due.id]
    done = store.complete_follow_up(due.id)
    assert done.done and store.follow_ups_due(T0 + timedelta(days=2)) == []
    assert len(store.follow_ups_due(T0 + timedelta(days=2), include_done=True)) == 1
    assert [n.body for n in store.list_notes(person_id=person.id)] == ["likes green"]


def test_search_is_accent_and_case_blind_and_needs_every_word(store: CrmStore) -> None:
    person = store.save_person(ana(full_name="Ana Müller"))
    store.save_person(ana(full_name="Rui Costa", emails=(), company_name="Other"))
    store.add_deal(Deal(id="", title="Müller rebrand", person_id=person.id))
    store.add_note(Note("", "Prefers calls after 5", person_id=person.id))
    assert [h.id for h in store.search("muller acme") if h.kind == "person"] == [person.id]
    assert {h.kind for h in store.search("MÜLLER")} == {"person", "deal"}
    assert [h.kind for h in store.search("ana@acme")] == ["person"]
    assert [h.kind for h in store.search("calls after")] == ["note"]
    assert store.search("   ") == []
    assert store.search("nobody") == []


def test_applied_action_ledger(store: CrmStore) -> None:
    assert store.applied_outcome("k1") is None
    store.record_applied("k1", "crm.add_note", {"id": "n1"})
    assert store.applied_outcome("k1") == {"id": "n1"}
