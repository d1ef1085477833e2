"""The HubSpot connector: read the CRM, change it through approved actions, sync contacts.

Why each action can be reconciled after a crash (HubSpot has no idempotency
header for CRM writes):

- ``hubspot.create_contact``: email is unique among HubSpot contacts, so
  ``execute`` first searches by email and creates only when nobody has it;
  ``reconcile`` does the same search.
- ``hubspot.update_deal_stage``: setting a stage is idempotent; ``reconcile``
  reads the deal's current ``dealstage``.
- ``hubspot.add_note``: the note body ends with an invisible HTML comment
  ``<!-- soloist-<key> -->`` (the key is hex, so one search token);
  ``reconcile`` searches notes with ``hs_note_body CONTAINS_TOKEN`` the
  marker. HubSpot's search index lags a few seconds behind writes, so a crash
  in that window may give a duplicate note: acceptable for a LOW-risk action.

``sync_contacts`` pulls contacts modified since the last sync into
``hubspot_contacts`` through ``sync.ContactSync``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from app.integrations.base import (
    Account,
    Action,
    ActionOutcome,
    ConnectionReport,
    Connector,
    ConnectorContext,
    ConnectorEvent,
    JsonObject,
    JsonValue,
    PreparedAction,
    Risk,
    Tool,
    register,
)
from app.integrations.errors import ActionError, ConnectorError, RemoteConflictError
from app.integrations.hubspot.client import (
    DEFAULT_BASE_URL,
    DEFAULT_PER_10S,
    NOTE_ASSOCIATION_TYPES,
    HubSpotClient,
    properties_of,
    results_of,
)
from app.integrations.hubspot.sync import CONTACT_PROPS, ContactSync
from app.integrations.ratelimit import Clock, Sleep

log = logging.getLogger("soloist.integrations.hubspot")

DEAL_PROPS = ("dealname", "amount", "dealstage", "pipeline", "closedate")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_NOTE_MARKER = "<!-- soloist-{key} -->"


def _obj(properties: dict[str, JsonValue], required: Sequence[str] = ()) -> JsonObject:
    return {"type": "object", "properties": properties, "required": list(required)}


@register
class HubSpotConnector(Connector):
    kind: ClassVar[str] = "hubspot"
    display_name: ClassVar[str] = "HubSpot"
    settings_schema: ClassVar[dict[str, str]] = {
        "base_url": f"API address (default {DEFAULT_BASE_URL})",
        "requests_per_10s": "the private app's burst limit: 100, or 190 on Pro / Enterprise",
    }
    secret_fields: ClassVar[tuple[str, ...]] = ("token",)

    def __init__(
        self,
        account: Account,
        context: ConnectorContext,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        verify: Any = True,
    ) -> None:
        super().__init__(account, context)
        self._seams: dict[str, Any] = {
            "transport": transport,
            "sleep": sleep,
            "clock": clock,
            "verify": verify,
        }
        self._client: HubSpotClient | None = None

    @property
    def client(self) -> HubSpotClient:
        if self._client is None:
            per_10s = self.account.setting("requests_per_10s", DEFAULT_PER_10S)
            self._client = HubSpotClient(
                self.secret("token"),
                base_url=str(self.account.setting("base_url", DEFAULT_BASE_URL)),
                per_10s=int(per_10s) if isinstance(per_10s, int | str) else DEFAULT_PER_10S,
                **self._seams,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def test_connection(self) -> ConnectionReport:
        started = time.perf_counter()
        try:
            page = self.client.list_page("contacts", ("email",), limit=1)
        except ConnectorError as exc:
            return ConnectionReport(False, str(exc), elapsed_ms=_ms(started))
        details = (f"contacts readable ({len(results_of(page))} read)",)
        return ConnectionReport(True, "Connected to HubSpot", details, _ms(started))

    # -- tools ----------------------------------------------------------
    def tools(self) -> Sequence[Tool]:
        return (
            Tool(
                "hubspot.search_contacts",
                "Search HubSpot contacts by email or free text (name, company).",
                _obj({"query": {"type": "string"}, "limit": {"type": "integer"}}, ["query"]),
                self.search_contacts,
            ),
            Tool(
                "hubspot.get_contact",
                "One HubSpot contact by id or email.",
                _obj({"id": {"type": "string"}, "email": {"type": "string"}}),
                self.get_contact,
            ),
            Tool(
                "hubspot.deals",
                "HubSpot deals, optionally in one stage, with stage names.",
                _obj({"stage": {"type": "string"}, "limit": {"type": "integer"}}),
                self.deals,
            ),
        )

    def search_contacts(self, args: JsonObject) -> JsonValue:
        query = str(args.get("query") or "").strip()
        limit = min(int(_num(args.get("limit"), 20)), 100)
        if _EMAIL.fullmatch(query):
            page = self.client.search(
                "contacts", filters=[_eq("email", query)], properties=CONTACT_PROPS, limit=limit
            )
        else:
            page = self.client.search(
                "contacts", query=query, properties=CONTACT_PROPS, limit=limit
            )
        return [_contact_view(record) for record in results_of(page)]

    def get_contact(self, args: JsonObject) -> JsonValue:
        if args.get("id"):
            record = self.client.get("contacts", str(args["id"]), CONTACT_PROPS)
        elif args.get("email"):
            email = str(args["email"])
            record = self.client.get("contacts", email, CONTACT_PROPS, id_property="email")
        else:
            raise ActionError("hubspot.get_contact needs an id or an email")
        return _contact_view(record)

    def deals(self, args: JsonObject) -> JsonValue:
        limit = min(int(_num(args.get("limit"), 20)), 100)
        filters = [_eq("dealstage", str(args["stage"]))] if args.get("stage") else []
        page = self.client.search("deals", filters=filters, properties=DEAL_PROPS, limit=limit)
        labels = self._stage_labels()
        out: list[JsonValue] = []
        for record in results_of(page):
            props = properties_of(record)
            stage = props.get("dealstage")
            out.append(
                {
                    "id": record.get("id"),
                    "name": props.get("dealname"),
                    "amount": props.get("amount"),
                    "stage": stage,
                    "stage_label": labels.get(str(stage), stage),
                    "pipeline": props.get("pipeline"),
                    "close_date": props.get("closedate"),
                }
            )
        return out

    def _stage_labels(self, pipeline: str | None = None) -> dict[str, str]:
        labels: dict[str, str] = {}
        for pipe in self.client.pipelines("deals"):
            if pipeline is not None and str(pipe.get("id")) != pipeline:
                continue
            stages = pipe.get("stages")
            for stage in stages if isinstance(stages, list) else []:
                if isinstance(stage, dict):
                    labels[str(stage.get("id"))] = str(stage.get("label"))
        return labels

    # -- actions ----------------------------------------------------------
    def actions(self) -> Sequence[Action]:
        email_args: dict[str, JsonValue] = {
            "email": {"type": "string"},
            "firstname": {"type": "string"},
            "lastname": {"type": "string"},
            "company": {"type": "string"},
            "phone": {"type": "string"},
        }
        stage_args: dict[str, JsonValue] = {
            "deal_id": {"type": "string"},
            "stage": {"type": "string"},
        }
        note_types: list[JsonValue] = [*sorted(NOTE_ASSOCIATION_TYPES)]
        note_args: dict[str, JsonValue] = {
            "object_type": {"type": "string", "enum": note_types},
            "object_id": {"type": "string"},
            "body": {"type": "string"},
        }
        return (
            Action(
                "hubspot.create_contact",
                "Create a HubSpot contact (nothing happens if the email already exists).",
                _obj(dict(email_args), ["email"]),
                Risk.MEDIUM,
                self._prepare_contact,
                self._execute_contact,
                self._reconcile_contact,
            ),
            Action(
                "hubspot.update_deal_stage",
                "Move a HubSpot deal to another stage of its pipeline.",
                _obj(dict(stage_args), ["deal_id", "stage"]),
                Risk.MEDIUM,
                self._prepare_stage,
                self._execute_stage,
                self._reconcile_stage,
            ),
            Action(
                "hubspot.add_note",
                "Add a note to a HubSpot contact, company or deal.",
                _obj(dict(note_args), ["object_type", "object_id", "body"]),
                Risk.LOW,
                self._prepare_note,
                self._execute_note,
                self._reconcile_note,
            ),
        )

    def _prepared(
        self, action: str, payload: JsonObject, preview: str, risk: Risk, key: str
    ) -> PreparedAction:
        return PreparedAction(action, self.account.id, payload, preview, risk, key)

    def _prepare_contact(self, args: JsonObject) -> PreparedAction:
        email = str(args.get("email") or "").strip().lower()
        if not _EMAIL.fullmatch(email):
            raise ActionError("hubspot.create_contact needs a valid email address")
        props: JsonObject = {"email": email}
        for name in ("firstname", "lastname", "company", "phone"):
            if args.get(name):
                props[name] = str(args[name]).strip()
        names = " ".join(str(props[n]) for n in ("firstname", "lastname") if n in props)
        preview = f"Create HubSpot contact {email}" + (f" ({names})" if names else "")
        key = uuid.uuid4().hex
        return self._prepared("hubspot.create_contact", {"properties": props}, preview,
                              Risk.MEDIUM, key)  # fmt: skip

    def _execute_contact(self, prepared: PreparedAction) -> ActionOutcome:
        existing = self._reconcile_contact(prepared)
        if existing is not None:
            return existing
        props = prepared.payload["properties"]
        assert isinstance(props, dict)
        try:
            record = self.client.create("contacts", props)
        except RemoteConflictError:  # created meanwhile (or the search index lagged)
            found = self._reconcile_contact(prepared)
            if found is None:
                raise
            return found
        log.info("HubSpot contact %s created (key %s)", record.get("id"), prepared.idempotency_key)
        return ActionOutcome(True, "Contact created in HubSpot", str(record.get("id")))

    def _reconcile_contact(self, prepared: PreparedAction) -> ActionOutcome | None:
        props = prepared.payload["properties"]
        assert isinstance(props, dict)
        page = self.client.search(
            "contacts", filters=[_eq("email", str(props["email"]))], properties=("email",), limit=1
        )
        found = results_of(page)
        if not found:
            return None
        return ActionOutcome(True, "The contact is in HubSpot", str(found[0].get("id")))

    def _prepare_stage(self, args: JsonObject) -> PreparedAction:
        deal_id, stage = str(args.get("deal_id") or ""), str(args.get("stage") or "")
        if not deal_id or not stage:
            raise ActionError("hubspot.update_deal_stage needs a deal_id and a stage")
        deal = properties_of(self.client.get("deals", deal_id, DEAL_PROPS))
        labels = self._stage_labels(str(deal.get("pipeline") or "default"))
        if stage not in labels:
            raise ActionError(f"stage {stage!r} is not in the deal's pipeline")
        current = labels.get(str(deal.get("dealstage")), str(deal.get("dealstage")))
        preview = f"Move deal {deal.get('dealname')!s} from {current} to {labels[stage]}"
        payload: JsonObject = {"deal_id": deal_id, "properties": {"dealstage": stage}}
        key = f"deal-{deal_id}-stage-{stage}"
        return self._prepared("hubspot.update_deal_stage", payload, preview, Risk.MEDIUM, key)

    def _execute_stage(self, prepared: PreparedAction) -> ActionOutcome:
        props = prepared.payload["properties"]
        assert isinstance(props, dict)
        deal_id = str(prepared.payload["deal_id"])
        self.client.update("deals", deal_id, props)
        return ActionOutcome(True, "Deal stage updated in HubSpot", deal_id)

    def _reconcile_stage(self, prepared: PreparedAction) -> ActionOutcome | None:
        props = prepared.payload["properties"]
        assert isinstance(props, dict)
        deal_id = str(prepared.payload["deal_id"])
        current = properties_of(self.client.get("deals", deal_id, ("dealstage",)))
        if current.get("dealstage") != props["dealstage"]:
            return None
        return ActionOutcome(True, "The deal is already in that stage", deal_id)

    def _prepare_note(self, args: JsonObject) -> PreparedAction:
        object_type = str(args.get("object_type") or "")
        object_id, body = str(args.get("object_id") or ""), str(args.get("body") or "").strip()
        if object_type not in NOTE_ASSOCIATION_TYPES or not object_id or not body:
            raise ActionError("hubspot.add_note needs object_type, object_id and a body")
        key = uuid.uuid4().hex
        association: JsonObject = {
            "to": {"id": object_id},
            "types": [
                {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": NOTE_ASSOCIATION_TYPES[object_type],
                }
            ],
        }
        payload: JsonObject = {
            "properties": {
                "hs_note_body": f"{body}\n{_NOTE_MARKER.format(key=key)}",
                "hs_timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            },
            "associations": [association],
        }
        preview = f"Add a note ({len(body)} characters) to HubSpot {object_type} {object_id}"
        return self._prepared("hubspot.add_note", payload, preview, Risk.LOW, key)

    def _execute_note(self, prepared: PreparedAction) -> ActionOutcome:
        props, associations = prepared.payload["properties"], prepared.payload["associations"]
        assert isinstance(props, dict) and isinstance(associations, list)
        record = self.client.create(
            "notes", props, [a for a in associations if isinstance(a, dict)]
        )
        return ActionOutcome(True, "Note added in HubSpot", str(record.get("id")))

    def _reconcile_note(self, prepared: PreparedAction) -> ActionOutcome | None:
        marker = f"soloist-{prepared.idempotency_key}"
        page = self.client.search(
            "notes",
            filters=[{"propertyName": "hs_note_body", "operator": "CONTAINS_TOKEN",
                      "value": marker}],
            properties=("hs_note_body",),
            limit=1,
        )  # fmt: skip
        for record in results_of(page):
            if marker in str(properties_of(record).get("hs_note_body", "")):
                return ActionOutcome(True, "The note is in HubSpot", str(record.get("id")))
        return None

    # -- sync -------------------------------------------------------------
    def sync(self) -> dict[str, int]:
        """What the office's background sync calls (``Syncable``): contacts only."""
        return {"contacts": self.sync_contacts()}

    def sync_contacts(self) -> int:
        """Pull contacts modified since the last sync into ``hubspot_contacts``; the count."""
        total = ContactSync(self.client, self.context.db, self.account.id).run()
        self.context.emit(
            ConnectorEvent("hubspot.contacts_synced", self.account.id, {"count": total})
        )
        return total


def _eq(name: str, value: str) -> JsonObject:
    return {"propertyName": name, "operator": "EQ", "value": value}


def _contact_view(record: JsonObject) -> JsonValue:
    props = properties_of(record)
    view: JsonObject = {"id": record.get("id")}
    for name in ("email", "firstname", "lastname", "company", "phone"):
        view[name] = props.get(name)
    return view


def _num(value: object, default: int) -> int:
    return value if isinstance(value, int) and value > 0 else default


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
