"""The CRM connector: registration, tools, and actions that apply once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.integrations.base import (
    Account,
    Action,
    ConnectorContext,
    ConnectorEvent,
    Risk,
    connector_class,
)
from app.integrations.crm.connector import CrmConnector
from app.integrations.crm.models import ContactPoint, Deal, DealStage, FollowUp, Person
from app.integrations.errors import ActionError
from app.memory.db import Database
from app.secrets import SecretStore

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


class Memory:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def remember(
        self,
        text: str,
        kind: str = "fact",
        scope: str = "global",
        provenance: object = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> object:
        self.calls.append((text, kind, scope))
        return None


@pytest.fixture
def memory() -> Memory:
    return Memory()


@pytest.fixture
def events() -> list[ConnectorEvent]:
    return []


@pytest.fixture
def crm(db: Database, memory: Memory, events: list[ConnectorEvent]) -> CrmConnector:
    context = ConnectorContext(db=db, secrets=SecretStore(),
                               emit=events.append, memory=memory)  # fmt: skip
    return CrmConnector(Account("crm1", "crm", "CRM"), context, clock=lambda: T0)


def action(crm: CrmConnector, name: str) -> Action:
    return next(a for a in crm.actions() if a.name == name)


def test_registered_without_secrets(crm: CrmConnector) -> None:
    assert connector_class("crm") is CrmConnector
    assert CrmConnector.secret_fields == ()
    report = crm.test_connection()
    assert report.ok and report.summary == "0 people, 0 open deals"
    assert {t.name for t in crm.tools()} == {
        "crm.search", "crm.person", "crm.deals", "crm.follow_ups_due",
    }  # fmt: skip
    risks = {a.name: a.risk for a in crm.actions()}
    assert risks["crm.update_deal_stage"] is Risk.MEDIUM
    assert risks["crm.add_note"] is Risk.LOW and len(risks) == 5


def test_add_note_executes_once_and_reconciles(
    crm: CrmConnector, memory: Memory, events: list[ConnectorEvent]
) -> None:
    person = crm.store.save_person(Person(id="", full_name="Ana"))
    add_note = action(crm, "crm.add_note")
    prepared = add_note.prepare({"body": "prefers mornings", "person_id": person.id})
    assert "16 characters" in prepared.preview
    assert add_note.reconcile(prepared) is None
    first = add_note.execute(prepared)
    second = add_note.execute(prepared)
    assert first.done and first.external_id == second.external_id
    assert len(crm.store.list_notes(person_id=person.id)) == 1
    reconciled = add_note.reconcile(prepared)
    assert reconciled is not None and reconciled.external_id == first.external_id
    assert memory.calls == [("prefers mornings", "crm_fact", f"contact:{person.id}")]
    assert [e.kind for e in events] == ["crm.add_note.done"]


def test_prepare_refuses_bad_arguments(crm: CrmConnector) -> None:
    with pytest.raises(ActionError, match="person_id or a deal_id"):
        action(crm, "crm.add_note").prepare({"body": "x"})
    with pytest.raises(ActionError, match="no person"):
        action(crm, "crm.add_note").prepare({"body": "x", "person_id": "nope"})
    with pytest.raises(ActionError):
        action(crm, "crm.log_activity").prepare({"kind": "dance", "subject": "s"})


def test_log_activity_and_follow_up(crm: CrmConnector) -> None:
    person = crm.store.save_person(Person(id="", full_name="Ana"))
    log_it = action(crm, "crm.log_activity")
    prepared = log_it.prepare({"kind": "Call", "subject": "intro", "person_id": person.id,
                               "occurred_at": "2025-02-28T10:00:00Z"})  # fmt: skip
    log_it.execute(prepared)
    log_it.execute(prepared)
    [activity] = crm.store.list_activities(person_id=person.id)
    assert activity.occurred_at == datetime(2025, 2, 28, 10, tzinfo=UTC)
    follow = action(crm, "crm.create_follow_up")
    follow.execute(
        follow.prepare({"title": "call back", "due_at": "2025-03-01", "person_id": person.id})
    )
    due = crm.tools()[3].run({})
    assert isinstance(due, list) and [d["title"] for d in due] == ["call back"]  # type: ignore[index]


def test_update_deal_stage(crm: CrmConnector) -> None:
    deal = crm.store.add_deal(Deal(id="", title="Site"))
    move = action(crm, "crm.update_deal_stage")
    prepared = move.prepare({"deal_id": deal.id, "stage": "proposal"})
    assert prepared.risk is Risk.MEDIUM and "lead to proposal" in prepared.preview
    move.execute(prepared)
    assert move.execute(prepared).done
    assert crm.store.get_deal(deal.id).stage is DealStage.PROPOSAL
    assert len(crm.store.stage_history(deal.id)) == 2
    stale = move.prepare({"deal_id": deal.id, "stage": "won"})
    crm.store.move_deal(deal.id, DealStage.LOST)
    with pytest.raises(ActionError, match="moved to lost"):
        move.execute(stale)
    assert move.reconcile(stale) is None


def test_upsert_person_creates_then_updates_by_email(crm: CrmConnector) -> None:
    upsert = action(crm, "crm.upsert_person")
    created = upsert.prepare({"full_name": "Ana", "emails": ["a@x.com"], "company": "Acme"})
    assert created.payload["mode"] == "create"
    upsert.execute(created)
    upsert.execute(created)
    assert len(crm.store.list_people()) == 1
    updated = upsert.prepare({"emails": ["A@x.com", "b@x.com"], "title": "CEO"})
    assert updated.payload["mode"] == "update"
    outcome = upsert.execute(updated)
    [ana] = crm.store.list_people()
    assert ana.id == outcome.external_id == created.payload["person_id"]
    assert (ana.full_name, ana.title, ana.company_name) == ("Ana", "CEO", "Acme")
    assert [e.value for e in ana.emails] == ["a@x.com", "b@x.com"]


def test_tools_read(crm: CrmConnector) -> None:
    person = crm.store.save_person(
        Person(id="", full_name="Ana Müller", emails=(ContactPoint("a@x.com"),))
    )
    crm.store.add_deal(Deal(id="", title="Big", person_id=person.id))
    crm.store.add_follow_up(FollowUp("", "later", T0 + timedelta(days=3), person_id=person.id))
    tools = {t.name: t for t in crm.tools()}
    hits = tools["crm.search"].run({"query": "muller"})
    assert isinstance(hits, list) and hits[0]["id"] == person.id  # type: ignore[index,call-overload]
    card = tools["crm.person"].run({"id": person.id})
    assert isinstance(card, dict) and card["deals"][0]["stage"] == "lead"  # type: ignore[index,call-overload]
    assert tools["crm.person"].run({"id": "nope"}) == {"error": "no such person"}
    assert tools["crm.deals"].run({"stage": "won"}) == []
    assert "unknown deal stage" in str(tools["crm.deals"].run({"stage": "nope"}))
    later = tools["crm.follow_ups_due"].run({"before": "2025-03-10"})
    assert isinstance(later, list) and len(later) == 1
