"""Calendar side effects: create and update an event, with previews and reconcile.

``calendar.create_event`` fixes the UID (uuid4 + ``@soloist``) and the
object's href at prepare time and writes with ``If-None-Match: *``, so a
second execute (after a crash, or a retry) cannot make a duplicate: the
server answers 412, and the object at that href is checked to hold our UID.

``calendar.update_event`` reads the event and its etag at prepare time and
writes with ``If-Match``: if anyone changed the event after the owner
approved the preview, the write is refused and the owner reviews again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from app.integrations.base import Action, ActionOutcome, JsonObject, PreparedAction, Risk
from app.integrations.dav.caldav import CalendarClient
from app.integrations.dav.ical import (
    CalendarEvent,
    EventFields,
    Moment,
    build_event,
    parse_calendar,
    update_event_text,
)
from app.integrations.dav.objects import ICALENDAR, object_href
from app.integrations.dav.store import DavStore, StoredCollection
from app.integrations.dav.tools import parse_when, zone
from app.integrations.errors import ActionError, RemoteConflictError, RemoteNotFoundError

ClientFactory = Callable[[str], CalendarClient]

_EVENT_FIELDS: JsonObject = {
    "summary": {"type": "string"},
    "start": {"type": "string", "description": "ISO 8601; a date alone for all-day"},
    "end": {"type": "string", "description": "ISO 8601 (or use duration_minutes)"},
    "duration_minutes": {"type": "integer"},
    "timezone": {"type": "string", "description": "IANA zone, e.g. Europe/Lisbon"},
    "location": {"type": "string"},
    "description": {"type": "string"},
    "attendees": {"type": "array", "items": {"type": "string"}},
}


@dataclass
class CalendarActions:
    """The actions of one account; ``client_for(url)`` gives a CalendarClient."""

    account_id: str
    store: DavStore
    client_for: ClientFactory
    tz: tzinfo

    def actions(self) -> Sequence[Action]:
        create_params: JsonObject = {
            "type": "object",
            "properties": {**_EVENT_FIELDS, "calendar": {"type": "string"}},
            "required": ["summary", "start"],
        }
        update_params: JsonObject = {
            "type": "object",
            "properties": {**_EVENT_FIELDS, "uid": {"type": "string"}},
            "required": ["uid"],
        }
        return (
            Action("calendar.create_event", "Create an event in a calendar.", create_params,
                   Risk.MEDIUM, self.prepare_create, self.execute_create, self.reconcile_create),
            Action("calendar.update_event", "Change an existing event.", update_params,
                   Risk.MEDIUM, self.prepare_update, self.execute_update, self.reconcile_update),
        )  # fmt: skip

    # -- create --------------------------------------------------------------
    def prepare_create(self, args: JsonObject) -> PreparedAction:
        tz = zone(args.get("timezone"), self.tz)
        summary = _required_text(args, "summary")
        start, end = _times(args, tz, None)
        fields = EventFields(
            summary, start, end, _text(args, "location"), _text(args, "description"),
            _attendees(args),
        )  # fmt: skip
        calendar = self._calendar(args.get("calendar"))
        uid = f"{uuid.uuid4()}@soloist"
        href = object_href(calendar.url, uid, ICALENDAR.extension)
        preview = (
            f"Create {summary!r} on {describe_span(start, end, tz)} in calendar {calendar.name}"
        )
        if fields.attendees:
            preview += ", attendees " + ", ".join(fields.attendees)
        payload: JsonObject = {
            "calendar_url": calendar.url,
            "href": href,
            "uid": uid,
            "data": build_event(uid, fields),
        }
        return PreparedAction(
            "calendar.create_event", self.account_id, payload, preview, Risk.MEDIUM, uid
        )

    def execute_create(self, prepared: PreparedAction) -> ActionOutcome:
        client = self.client_for(_payload_text(prepared, "calendar_url"))
        href = _payload_text(prepared, "href")
        try:
            created = client.create(href, _payload_text(prepared, "data"))
        except RemoteConflictError as exc:
            done = self.reconcile_create(prepared)
            if done is not None:
                return done
            raise ActionError(
                "another calendar object already uses this event's name; prepare it again"
            ) from exc
        return ActionOutcome(
            True, "event created", prepared.idempotency_key, {"href": href, "etag": created.etag}
        )

    def reconcile_create(self, prepared: PreparedAction) -> ActionOutcome | None:
        client = self.client_for(_payload_text(prepared, "calendar_url"))
        href = _payload_text(prepared, "href")
        try:
            current = client.get(href)
        except RemoteNotFoundError:
            return None
        uids = {event.uid for event in parse_calendar(current.data, self.tz).events}
        if prepared.idempotency_key not in uids:
            raise ActionError("the event's address holds another event; prepare it again")
        return ActionOutcome(
            True, "event already created", prepared.idempotency_key,
            {"href": href, "etag": current.etag},
        )  # fmt: skip

    # -- update --------------------------------------------------------------
    def prepare_update(self, args: JsonObject) -> PreparedAction:
        uid = _required_text(args, "uid")
        stored = self.store.find_event(uid)
        if stored is None:
            raise ActionError("no synced event has this UID; sync calendars and try again")
        client = self.client_for(stored.collection_url)
        current = client.get(stored.href)
        before = _master(current.data, uid, self.tz)
        tz = zone(args.get("timezone"), _zone_of(before.start, self.tz))
        start, end = _times(args, tz, before)
        after = EventFields(
            _text(args, "summary", before.summary), start, end,
            _text(args, "location", before.location),
            _text(args, "description", before.description),
            _attendees(args) if "attendees" in args else before.attendees,
        )  # fmt: skip
        changes = field_diff(before, after, tz)
        if not changes:
            raise ActionError("the update changes nothing in the event")
        payload: JsonObject = {
            "calendar_url": stored.collection_url,
            "href": stored.href,
            "uid": uid,
            "etag": current.etag,
            "data": update_event_text(current.data, uid, after),
        }
        preview = f"Update {before.summary!r}: " + "; ".join(changes)
        return PreparedAction(
            "calendar.update_event", self.account_id, payload, preview, Risk.MEDIUM,
            f"{uid}#{current.etag}",
        )  # fmt: skip

    def execute_update(self, prepared: PreparedAction) -> ActionOutcome:
        client = self.client_for(_payload_text(prepared, "calendar_url"))
        etag = prepared.payload.get("etag")
        try:
            updated = client.update(
                _payload_text(prepared, "href"),
                _payload_text(prepared, "data"),
                etag if isinstance(etag, str) else None,
            )
        except RemoteConflictError as exc:
            raise RemoteConflictError("the event changed since you approved; review again") from exc
        return ActionOutcome(
            True, "event updated", _payload_text(prepared, "uid"), {"etag": updated.etag}
        )

    def reconcile_update(self, prepared: PreparedAction) -> ActionOutcome | None:
        client = self.client_for(_payload_text(prepared, "calendar_url"))
        uid = _payload_text(prepared, "uid")
        try:
            current = client.get(_payload_text(prepared, "href"))
        except RemoteNotFoundError:
            return None
        intended = _master(_payload_text(prepared, "data"), uid, self.tz)
        server = _master(current.data, uid, self.tz)
        if _comparable(server, self.tz) != _comparable(intended, self.tz):
            return None
        return ActionOutcome(True, "event already updated", uid, {"etag": current.etag})

    def _calendar(self, wanted: object) -> StoredCollection:
        calendars = self.store.collections("calendar")
        if not calendars:
            raise ActionError("no calendar is synced yet; sync the account first")
        if not wanted:
            return calendars[0]
        for calendar in calendars:
            if wanted in (calendar.url, calendar.name) or (
                isinstance(wanted, str) and calendar.name.lower() == wanted.lower()
            ):
                return calendar
        raise ActionError(f"no calendar is called {str(wanted)[:60]!r}")


def describe_span(start: Moment, end: Moment, tz: tzinfo) -> str:
    """'Tue 1 Dec 2026 10:00–10:30 (Europe/Lisbon)', or a date span for all-day events."""
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        last = end - timedelta(days=1)
        days = f"{start:%a} {start.day} {start:%b %Y}"
        return days + (f"–{last:%a} {last.day} {last:%b %Y}" if last > start else "") + " (all day)"
    start, end = start.astimezone(tz), end.astimezone(tz)
    head = f"{start:%a} {start.day} {start:%b %Y %H:%M}"
    tail = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a} {end.day} {end:%b %Y %H:%M}"
    return f"{head}–{tail} ({tz})"


def field_diff(before: CalendarEvent, after: EventFields, tz: tzinfo) -> list[str]:
    """Human lines for what differs, e.g. "location 'Lisbon' → 'Porto'"."""
    changes = []
    if before.summary != after.summary:
        changes.append(f"title {before.summary!r} → {after.summary!r}")
    if (before.start, before.end) != (after.start, after.end):
        old = describe_span(before.start, before.end, tz)
        changes.append(f"time {old} → {describe_span(after.start, after.end, tz)}")
    if before.location != after.location:
        changes.append(f"location {before.location!r} → {after.location!r}")
    if before.description != after.description:
        changes.append("description changed")
    if sorted(before.attendees) != sorted(after.attendees):
        changes.append("attendees " + ", ".join(after.attendees or ["none"]))
    return changes


def _comparable(event: CalendarEvent, tz: tzinfo) -> tuple[object, ...]:
    return (
        event.summary, event.start_utc(tz), event.end_utc(tz), event.location,
        event.description, tuple(sorted(event.attendees)),
    )  # fmt: skip


def _master(data: str, uid: str, tz: tzinfo) -> CalendarEvent:
    for event in parse_calendar(data, tz).events:
        if event.uid == uid and event.recurrence_id is None:
            return event
    raise ActionError("the event is not readable on the server any more; sync and try again")


def _zone_of(moment: Moment, default: tzinfo) -> tzinfo:
    return moment.tzinfo or default if isinstance(moment, datetime) else default


def _times(args: JsonObject, tz: tzinfo, before: CalendarEvent | None) -> tuple[Moment, Moment]:
    raw_start = args.get("start")
    if raw_start is None and before is not None:
        start: Moment = before.start
    elif isinstance(raw_start, str) and len(raw_start) == 10:  # "2026-12-01": all day
        start = _date(raw_start)
    else:
        start = parse_when(raw_start, tz, "start").astimezone(tz)
    if isinstance(args.get("end"), str):
        raw_end = str(args["end"])
        end: Moment = _date(raw_end) if len(raw_end) == 10 else parse_when(raw_end, tz, "end")
    elif isinstance(args.get("duration_minutes"), int):
        end = start + timedelta(minutes=int(str(args["duration_minutes"])))
    elif before is not None:
        end = start + (_as_dt(before.end, tz) - _as_dt(before.start, tz))
    else:
        end = start + (timedelta(hours=1) if isinstance(start, datetime) else timedelta(days=1))
    if type(end) is not type(start) or _as_dt(end, tz) <= _as_dt(start, tz):
        raise ActionError("the event must end after it starts (and both be dates or times)")
    return start, end


def _as_dt(moment: Moment, tz: tzinfo) -> datetime:
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)
    return datetime(moment.year, moment.month, moment.day, tzinfo=tz)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ActionError(f"{text!r} is not a date like 2026-12-01") from exc


def _text(args: JsonObject, key: str, default: str = "") -> str:
    value = args.get(key, default)
    if not isinstance(value, str):
        raise ActionError(f"{key} must be text")
    return value


def _required_text(args: JsonObject, key: str) -> str:
    value = _text(args, key).strip()
    if not value:
        raise ActionError(f"{key} is required")
    return value


def _attendees(args: JsonObject) -> tuple[str, ...]:
    value = args.get("attendees", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and "@" in v for v in value):
        raise ActionError("attendees must be a list of email addresses")
    return tuple(str(v).strip() for v in value)


def _payload_text(prepared: PreparedAction, key: str) -> str:
    value = prepared.payload.get(key)
    if not isinstance(value, str) or not value:
        raise ActionError(f"the prepared action lacks {key}; prepare it again")
    return value
