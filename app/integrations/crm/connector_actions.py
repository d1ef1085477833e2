"""What each CRM action checks at prepare and does at execute.

``validate`` runs at prepare: it checks the arguments, fixes every id the
action will create, and returns the exact payload and a one-line preview.
``apply`` runs inside the execute transaction with that payload and returns
what happened as JSON (it is stored in the idempotency ledger). Kept apart
from ``connector.py``, which owns the life cycle common to all of them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from app.integrations.base import ConnectorContext, JsonObject, JsonValue, Risk
from app.integrations.crm.dedupe import merged_person
from app.integrations.crm.models import (
    Activity,
    ActivityKind,
    ContactPoint,
    DealStage,
    FollowUp,
    Note,
    Person,
    can_move,
)
from app.integrations.crm.store import CrmStore
from app.memory.provenance import Provenance

log = logging.getLogger("soloist.integrations.crm")

_STR: JsonObject = {"type": "string"}
_LIST: JsonObject = {"type": "array", "items": {"type": "string"}}


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    description: str
    parameters: JsonObject
    risk: Risk
    validate: Callable[[JsonObject], tuple[JsonObject, str]]
    apply: Callable[[JsonObject], dict[str, Any]]


def parse_time(text: str) -> datetime:
    """An ISO date or date-time; a date means its midnight, a time without zone UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date or date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _text(args: JsonObject, key: str, *, required: bool = False) -> str:
    value = args.get(key)
    if value is None or value == "":
        if required:
            raise ValueError(f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text")
    return value.strip()


def _texts(args: JsonObject, key: str) -> list[str]:
    value = args.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of text")
    return [str(v).strip() for v in value if str(v).strip()]


def _schema(required: list[str], **props: JsonValue) -> JsonObject:
    return {"type": "object", "properties": dict(props), "required": list(required)}


class ActionSpecs:
    """The CRM's actions over one store."""

    def __init__(self, store: CrmStore, context: ConnectorContext, account_id: str) -> None:
        self.store = store
        self.context = context
        self.account_id = account_id

    def specs(self) -> tuple[ActionSpec, ...]:
        return (
            ActionSpec("crm.add_note", "Add a note to a person or a deal.",
                       _schema(["body"], body=_STR, person_id=_STR, deal_id=_STR),
                       Risk.LOW, self._validate_note, self._apply_note),
            ActionSpec("crm.log_activity", "Log a call, email, meeting or note.",
                       _schema(["kind", "subject"], kind=_STR, subject=_STR, body=_STR,
                               occurred_at=_STR, person_id=_STR, deal_id=_STR),
                       Risk.LOW, self._validate_activity, self._apply_activity),
            ActionSpec("crm.create_follow_up", "Create a follow-up with a due date.",
                       _schema(["title", "due_at"], title=_STR, due_at=_STR, person_id=_STR,
                               deal_id=_STR),
                       Risk.LOW, self._validate_follow_up, self._apply_follow_up),
            ActionSpec("crm.update_deal_stage", "Move a deal to another stage.",
                       _schema(["deal_id", "stage"], deal_id=_STR, stage=_STR),
                       Risk.MEDIUM, self._validate_stage, self._apply_stage),
            ActionSpec("crm.upsert_person", "Create a person, or update one (by id or email).",
                       _schema([], id=_STR, full_name=_STR, emails=_LIST, phones=_LIST,
                               company=_STR, title=_STR, background=_STR),
                       Risk.LOW, self._validate_person, self._apply_person),
        )  # fmt: skip

    def after(self, name: str, payload: JsonObject, outcome: dict[str, Any]) -> None:
        """Effects outside the transaction: a note on a person becomes a CRM fact in memory."""
        memory = self.context.memory
        person_id = payload.get("person_id")
        if name != "crm.add_note" or memory is None or not isinstance(person_id, str):
            return
        memory.remember(
            str(payload["body"]),
            kind="crm_fact",
            scope=f"contact:{person_id}",
            provenance=Provenance(tool=name),
            metadata={"note_id": outcome.get("id"), "account_id": self.account_id},
        )

    # -- links ---------------------------------------------------------------------
    def _links(self, args: JsonObject, *, required: bool) -> tuple[str | None, str | None]:
        person_id = _text(args, "person_id") or None
        deal_id = _text(args, "deal_id") or None
        if person_id is not None:
            self.store.require_person(person_id)
        if deal_id is not None:
            self.store.get_deal(deal_id)
        if required and person_id is None and deal_id is None:
            raise ValueError("give a person_id or a deal_id")
        return person_id, deal_id

    # -- notes ---------------------------------------------------------------------
    def _validate_note(self, args: JsonObject) -> tuple[JsonObject, str]:
        body = _text(args, "body", required=True)
        person_id, deal_id = self._links(args, required=True)
        payload: JsonObject = {"note_id": uuid.uuid4().hex, "body": body,
                               "person_id": person_id, "deal_id": deal_id}  # fmt: skip
        return payload, f"Add a note ({len(body)} characters) to {self._about(person_id, deal_id)}"

    def _apply_note(self, p: JsonObject) -> dict[str, Any]:
        note = self.store.add_note(
            Note(str(p["note_id"]), str(p["body"]), _opt(p, "person_id"), _opt(p, "deal_id"))
        )
        return {"id": note.id, "summary": "note added"}

    # -- activities ----------------------------------------------------------------
    def _validate_activity(self, args: JsonObject) -> tuple[JsonObject, str]:
        kind = ActivityKind(_text(args, "kind", required=True).lower())
        subject = _text(args, "subject", required=True)
        when = _text(args, "occurred_at")
        occurred = parse_time(when) if when else self.store.now()
        person_id, deal_id = self._links(args, required=False)
        payload: JsonObject = {
            "activity_id": uuid.uuid4().hex, "kind": kind.value, "subject": subject,
            "body": _text(args, "body"), "occurred_at": occurred.isoformat(),
            "person_id": person_id, "deal_id": deal_id,
        }  # fmt: skip
        return payload, f"Log a {kind.value} for {self._about(person_id, deal_id)}"

    def _apply_activity(self, p: JsonObject) -> dict[str, Any]:
        activity = Activity(
            str(p["activity_id"]), ActivityKind(str(p["kind"])), str(p["subject"]),
            parse_time(str(p["occurred_at"])), str(p["body"]), _opt(p, "person_id"),
            _opt(p, "deal_id"),
        )  # fmt: skip
        return {"id": self.store.add_activity(activity).id, "summary": f"{p['kind']} logged"}

    # -- follow-ups ----------------------------------------------------------------
    def _validate_follow_up(self, args: JsonObject) -> tuple[JsonObject, str]:
        title = _text(args, "title", required=True)
        due = parse_time(_text(args, "due_at", required=True))
        person_id, deal_id = self._links(args, required=False)
        payload: JsonObject = {"follow_up_id": uuid.uuid4().hex, "title": title,
                               "due_at": due.isoformat(), "person_id": person_id,
                               "deal_id": deal_id}  # fmt: skip
        return (
            payload,
            f"Follow up by {due:%Y-%m-%d %H:%M} UTC on {self._about(person_id, deal_id)}",
        )

    def _apply_follow_up(self, p: JsonObject) -> dict[str, Any]:
        follow_up = FollowUp(
            str(p["follow_up_id"]), str(p["title"]), parse_time(str(p["due_at"])),
            person_id=_opt(p, "person_id"), deal_id=_opt(p, "deal_id"),
        )  # fmt: skip
        return {"id": self.store.add_follow_up(follow_up).id, "summary": "follow-up created"}

    # -- deal stages ---------------------------------------------------------------
    def _validate_stage(self, args: JsonObject) -> tuple[JsonObject, str]:
        deal = self.store.get_deal(_text(args, "deal_id", required=True))
        stage = DealStage.parse(_text(args, "stage", required=True))
        if not can_move(deal.stage, stage):
            raise ValueError(f"a {deal.stage.label} deal cannot move to {stage.label}")
        payload: JsonObject = {"deal_id": deal.id, "from_stage": deal.stage.label,
                               "stage": stage.label}  # fmt: skip
        return payload, f"Move deal {deal.title!r} from {deal.stage.label} to {stage.label}"

    def _apply_stage(self, p: JsonObject) -> dict[str, Any]:
        deal = self.store.get_deal(str(p["deal_id"]))
        if deal.stage.label != p["from_stage"]:
            raise ValueError(f"the deal moved to {deal.stage.label} since this was prepared")
        moved = self.store.move_deal(deal.id, DealStage.parse(str(p["stage"])))
        return {"id": moved.id, "summary": f"deal moved to {moved.stage.label}"}

    # -- people --------------------------------------------------------------------
    def _validate_person(self, args: JsonObject) -> tuple[JsonObject, str]:
        emails = _texts(args, "emails")
        person_id = _text(args, "id") or None
        if person_id is not None:
            self.store.require_person(person_id)
        elif emails and (found := self.store.find_by_email(emails[0])):
            person_id = found[0].id
        mode = "update" if person_id else "create"
        name = _text(args, "full_name")
        if mode == "create" and not (name or emails):
            raise ValueError("a new person needs a full_name or an email")
        payload: JsonObject = {
            "person_id": person_id or uuid.uuid4().hex, "mode": mode, "full_name": name,
            "emails": list(emails), "phones": list(_texts(args, "phones")),
            "company": _text(args, "company"), "title": _text(args, "title"),
            "background": _text(args, "background"),
        }  # fmt: skip
        return payload, f"{mode.capitalize()} person {person_id or payload['person_id']}"

    def _apply_person(self, p: JsonObject) -> dict[str, Any]:
        incoming = Person(
            id=str(p["person_id"]), full_name=str(p["full_name"]),
            company_name=str(p["company"]), title=str(p["title"]),
            emails=tuple(ContactPoint(str(e)) for e in _as_list(p["emails"])),
            phones=tuple(ContactPoint(str(t)) for t in _as_list(p["phones"])),
            background=str(p["background"]), source="agent",
        )  # fmt: skip
        existing = self.store.get_person(incoming.id)
        if p["mode"] == "update" and existing is not None:
            incoming = _updated(existing, incoming)
        elif not incoming.full_name:
            incoming = replace(incoming, full_name=incoming.emails[0].value)
        saved = self.store.save_person(incoming)
        return {"id": saved.id, "summary": f"person {p['mode']}d"}

    def _about(self, person_id: str | None, deal_id: str | None) -> str:
        parts = [f"person {person_id}" if person_id else "", f"deal {deal_id}" if deal_id else ""]
        return " and ".join(p for p in parts if p) or "no one in particular"


def _updated(existing: Person, incoming: Person) -> Person:
    """Given fields replace the existing ones; emails and phones are added."""
    merged = merged_person(existing, incoming)
    given = {
        k: getattr(incoming, k)
        for k in ("full_name", "title", "background", "company_name")
        if getattr(incoming, k)
    }
    if "company_name" in given and given["company_name"] != existing.company_name:
        given["company_id"] = None
    return replace(merged, **given)


def _opt(payload: JsonObject, key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) else None


def _as_list(value: JsonValue) -> list[JsonValue]:
    return value if isinstance(value, list) else []
