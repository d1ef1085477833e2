"""The read-only tools of the DAV connector: events, free/busy, contact search.

They read the local copy (``DavStore``) that ``DavConnector.sync`` keeps
current, so an agent's question costs no round trip; answers say as of
when. Arguments are JSON; times are ISO 8601, and a time without an offset
is read in the account's time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.integrations.base import JsonObject, JsonValue, Tool
from app.integrations.dav.carddav import vcard_values
from app.integrations.dav.freebusy import (
    Interval,
    WorkingHours,
    busy_intervals,
    free_slots,
    occurrences,
)
from app.integrations.dav.ical import parse_calendar
from app.integrations.dav.store import DavStore
from app.integrations.errors import ActionError, MalformedDataError

_WINDOW: JsonObject = {
    "start": {"type": "string", "description": "ISO 8601 start, e.g. 2026-12-01T00:00"},
    "end": {"type": "string", "description": "ISO 8601 end (exclusive)"},
}


def parse_when(text: JsonValue, tz: tzinfo, what: str = "time") -> datetime:
    """An aware datetime from ISO text; naive text is read in ``tz``."""
    if not isinstance(text, str):
        raise ActionError(f"the {what} must be an ISO 8601 date-time text")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ActionError(f"the {what} {text[:40]!r} is not an ISO 8601 date-time") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def zone(name: JsonValue, default: tzinfo) -> tzinfo:
    if name is None or name == "":
        return default
    if not isinstance(name, str):
        raise ActionError("the time zone must be an IANA name such as Europe/Lisbon")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ActionError(
            f"unknown time zone {name[:60]!r}; use a name like Europe/Lisbon"
        ) from exc


def window_of(args: JsonObject, tz: tzinfo) -> Interval:
    start = parse_when(args.get("start"), tz, "start")
    end = parse_when(args.get("end"), tz, "end")
    if end <= start:
        raise ActionError("the end of the window must be after its start")
    return Interval(start, end)


class DavTools:
    """Builds the tools over one account's store."""

    def __init__(self, store: DavStore, tz: tzinfo) -> None:
        self.store = store
        self.tz = tz

    def tools(self) -> Sequence[Tool]:
        return (
            Tool("calendar.events", "Events in a time window (synced copy).",
                 _schema(_WINDOW, ["start", "end"]), self.events),
            Tool("calendar.free_busy", "Busy intervals and free slots in a window.",
                 _schema({**_WINDOW, **_FREE_BUSY}, ["start", "end"]), self.free_busy),
            Tool("contacts.search", "Contacts whose name, email or organisation matches.",
                 _schema(_SEARCH, ["query"]), self.search_contacts),
        )  # fmt: skip

    def _calendars(self, window: Interval) -> list[object]:
        calendars: list[object] = []
        for obj in self.store.events_between(window.start, window.end):
            try:
                calendars.append(parse_calendar(obj.data, self.tz).calendar)
            except MalformedDataError:
                continue  # counted when it was synced
        return calendars

    def events(self, args: JsonObject) -> JsonValue:
        window = window_of(args, self.tz)
        found = occurrences(self._calendars(window), window, self.tz)
        return [
            {
                "uid": o.uid,
                "summary": o.summary,
                "start": o.interval.start.astimezone(self.tz).isoformat(),
                "end": o.interval.end.astimezone(self.tz).isoformat(),
                "all_day": o.all_day,
                "location": o.location,
                "busy": o.blocks_time,
            }
            for o in found
        ]

    def free_busy(self, args: JsonObject) -> JsonValue:
        window = window_of(args, self.tz)
        busy = busy_intervals(self._calendars(window), window, self.tz)
        hours = WorkingHours(
            start=_clock(args.get("day_start", "09:00")),
            end=_clock(args.get("day_end", "17:00")),
            tz=self.tz,
        )
        minutes = args.get("min_minutes", 30)
        if not isinstance(minutes, int | float) or minutes <= 0:
            raise ActionError("min_minutes must be a positive number")
        free = free_slots(window, busy, float(minutes), hours)
        return {
            "busy": [_pair(i, self.tz) for i in busy],
            "free": [_pair(i, self.tz) for i in free],
        }

    def search_contacts(self, args: JsonObject) -> JsonValue:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ActionError("contacts.search needs a non-empty query")
        limit = args.get("limit", 20)
        rows = self.store.search_contacts(query.strip(), limit if isinstance(limit, int) else 20)
        return [
            {
                "uid": row.uid,
                "name": row.title,
                "emails": list(vcard_values(row.data, "EMAIL")),
                "href": row.href,
            }
            for row in rows
        ]


_FREE_BUSY: JsonObject = {
    "min_minutes": {"type": "number", "description": "shortest free slot worth offering"},
    "day_start": {"type": "string", "description": "working day start, HH:MM (09:00)"},
    "day_end": {"type": "string", "description": "working day end, HH:MM (17:00)"},
}
_SEARCH: JsonObject = {
    "query": {"type": "string", "description": "part of a name, email or organisation"},
    "limit": {"type": "integer"},
}


def _schema(properties: JsonObject, required: list[str]) -> JsonObject:
    return {"type": "object", "properties": properties, "required": list[JsonValue](required)}


def _clock(value: JsonValue) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError as exc:
        raise ActionError(f"{str(value)[:20]!r} is not a time of day like 09:00") from exc


def _pair(interval: Interval, tz: tzinfo) -> JsonObject:
    return {
        "start": interval.start.astimezone(tz).isoformat(),
        "end": interval.end.astimezone(tz).isoformat(),
    }
