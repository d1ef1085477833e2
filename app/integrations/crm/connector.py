"""The local CRM as a connector: read tools and local, reversible actions.

The CRM lives in the office database, so there is nothing to log in to
(``secret_fields = ()``) and ``test_connection`` only checks its tables.
``sync`` keeps people in step with the address book of a contacts account
the settings link to (``dav_link``); without a link it has nothing to do.
Its actions still go through prepare / execute / reconcile like any other
side effect, so the outbox treats them alike: ``prepare`` validates and
fixes every id (the note's, the person's...) and an idempotency key;
``execute`` applies the change and records the key in
``crm_applied_actions`` in the same transaction, so running it twice
applies it once; ``reconcile`` answers from that ledger.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, ClassVar

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
    Tool,
    register,
)
from app.integrations.crm.carddav_sync import CardDavSync
from app.integrations.crm.connector_actions import ActionSpec, ActionSpecs, parse_time
from app.integrations.crm.dav_link import dav_link, open_linked_book
from app.integrations.crm.models import DealStage
from app.integrations.crm.store import CrmStore, person_as_dict
from app.integrations.errors import ActionError
from app.memory.db import utc_now
from app.memory.errors import StoreError

log = logging.getLogger("soloist.integrations.crm")

Clock = Callable[[], datetime]
NOT_LINKED = "no address book linked"


def _obj(**props: JsonValue) -> JsonObject:
    return {"type": "object", "properties": dict(props)}


_STR: JsonObject = {"type": "string"}


def _json(value: Any) -> JsonValue:
    """Dataclass values as JSON: times as ISO text, enums by name."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, DealStage):
        return value.label
    if hasattr(value, "value") and not isinstance(value, (str, int, float)):
        return _json(value.value)
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value  # type: ignore[no-any-return]


def to_json(record: object) -> JsonObject:
    data = _json(asdict(record))  # type: ignore[call-overload]
    return data if isinstance(data, dict) else {}


@register
class CrmConnector(Connector):
    kind: ClassVar[str] = "crm"
    display_name: ClassVar[str] = "CRM (people, companies, deals; kept on this computer)"
    settings_schema: ClassVar[dict[str, str]] = {
        "default_country_code": "Optional: your country's calling code for phone numbers, e.g. 49",
        "dav_account": "Optional: the id of a contacts (CardDAV) account to keep people in step",
        "address_book": "Optional: the URL of that account's address book, if it has several",
    }
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, account: Account, context: ConnectorContext, *, clock: Clock = utc_now
    ) -> None:
        super().__init__(account, context)
        self.store = CrmStore(context.db, clock)
        self._specs = ActionSpecs(self.store, context, account.id)

    def test_connection(self) -> ConnectionReport:
        started = time.perf_counter()
        try:
            people = self.store.db.fetchone(
                "SELECT count(*) FROM crm_people WHERE deleted_at IS NULL"
            )
            deals = self.store.db.fetchone("SELECT count(*) FROM crm_deals WHERE closed_at IS NULL")
        except StoreError as exc:
            return ConnectionReport(False, f"the CRM tables cannot be read: {exc}")
        summary = f"{people[0] if people else 0} people, {deals[0] if deals else 0} open deals"
        return ConnectionReport(True, summary, elapsed_ms=(time.perf_counter() - started) * 1000)

    # -- address book sync --------------------------------------------------------------
    def sync(self) -> str:
        """Two-way sync with the linked address book (``Syncable``); a one-line summary."""
        link = dav_link(self.account)
        if link is None:
            return NOT_LINKED
        book = open_linked_book(link, self.context)
        try:
            report = CardDavSync(self.store, book.client, book.book_id).run()
        finally:
            book.close()
        self.context.emit(
            ConnectorEvent("crm.address_book_synced", self.account.id, report.counts())
        )
        return report.summary

    # -- tools ------------------------------------------------------------------------
    def tools(self) -> Sequence[Tool]:
        return (
            Tool("crm.search", "Find people, companies, deals and notes by words.",
                 _obj(query=_STR, limit={"type": "integer"}) | {"required": ["query"]},
                 self._search),
            Tool("crm.person", "One person with deals, activities, follow-ups and notes.",
                 _obj(id=_STR) | {"required": ["id"]}, self._person),
            Tool("crm.deals", "Deals, optionally of one stage or only open ones.",
                 _obj(stage=_STR, open_only={"type": "boolean"}), self._deals),
            Tool("crm.follow_ups_due", "Open follow-ups due before a time (default: now).",
                 _obj(before=_STR, include_done={"type": "boolean"}), self._follow_ups_due),
        )  # fmt: skip

    def _search(self, args: JsonObject) -> JsonValue:
        limit = args.get("limit", 20)
        hits = self.store.search(
            str(args.get("query", "")), int(limit) if isinstance(limit, int) else 20
        )
        return [to_json(hit) for hit in hits]

    def _person(self, args: JsonObject) -> JsonValue:
        person = self.store.get_person(str(args.get("id", "")))
        if person is None:
            return {"error": "no such person"}
        pid = person.id
        return {
            "person": _json(person_as_dict(person)),
            "deals": [to_json(d) for d in self.store.list_deals(person_id=pid)],
            "activities": [to_json(a) for a in self.store.list_activities(person_id=pid)[:20]],
            "follow_ups": [to_json(f) for f in self.store.list_follow_ups(person_id=pid)],
            "notes": [to_json(n) for n in self.store.list_notes(person_id=pid)[:20]],
            "merges": [
                {"merged_id": m.merged_id, "kept_id": m.kept_id, "reason": m.reason}
                for m in self.store.merge_history(pid)
            ],
        }

    def _deals(self, args: JsonObject) -> JsonValue:
        stage = args.get("stage")
        try:
            parsed = DealStage.parse(stage) if isinstance(stage, str) and stage else None
        except ValueError as exc:
            return {"error": str(exc)}
        deals = self.store.list_deals(parsed, open_only=bool(args.get("open_only", False)))
        return [to_json(d) for d in deals]

    def _follow_ups_due(self, args: JsonObject) -> JsonValue:
        before = args.get("before")
        try:
            moment = parse_time(before) if isinstance(before, str) and before else self.store.now()
        except ValueError as exc:
            return {"error": str(exc)}
        due = self.store.follow_ups_due(moment, include_done=bool(args.get("include_done")))
        return [to_json(f) for f in due]

    # -- actions ----------------------------------------------------------------------
    def actions(self) -> Sequence[Action]:
        return tuple(self._action(spec) for spec in self._specs.specs())

    def _action(self, spec: ActionSpec) -> Action:
        def prepare(args: JsonObject) -> PreparedAction:
            try:
                payload, preview = spec.validate(args)
            except (LookupError, ValueError, StoreError) as exc:
                raise ActionError(f"{spec.name} cannot be prepared: {exc}") from exc
            key = uuid.uuid4().hex
            return PreparedAction(spec.name, self.account.id, payload, preview, spec.risk, key)

        def execute(prepared: PreparedAction) -> ActionOutcome:
            return self._execute(spec, prepared)

        def reconcile(prepared: PreparedAction) -> ActionOutcome | None:
            stored = self.store.applied_outcome(prepared.idempotency_key)
            return None if stored is None else _outcome(stored)

        return Action(spec.name, spec.description, spec.parameters, spec.risk, prepare,
                      execute, reconcile)  # fmt: skip

    def _execute(self, spec: ActionSpec, prepared: PreparedAction) -> ActionOutcome:
        key = prepared.idempotency_key
        try:
            with self.store.db.transaction():
                stored = self.store.applied_outcome(key)
                if stored is not None:
                    return _outcome(stored)
                outcome = spec.apply(prepared.payload)
                self.store.record_applied(key, spec.name, outcome)
        except (LookupError, ValueError, StoreError) as exc:
            raise ActionError(f"{spec.name} failed: {exc}") from exc
        log.info("action %s applied (key %s)", spec.name, key)
        self._specs.after(spec.name, prepared.payload, outcome)
        self.context.emit(
            ConnectorEvent(f"{spec.name}.done", self.account.id, {"id": outcome.get("id")})
        )
        return _outcome(outcome)


def _outcome(stored: dict[str, Any]) -> ActionOutcome:
    return ActionOutcome(True, str(stored.get("summary", "")), stored.get("id"), stored)
