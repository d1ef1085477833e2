"""CalDAV reads, writes, queries and the calendar actions against a real Radicale server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dav_server import DavServer, radicale  # noqa: F401  (fixture)

from app.integrations.base import Risk
from app.integrations.dav import CalendarClient, dav_http_client, discover
from app.integrations.dav.actions import CalendarActions
from app.integrations.dav.freebusy import Interval, busy_intervals
from app.integrations.dav.ical import EventFields, build_event, parse_calendar
from app.integrations.dav.store import DavStore
from app.integrations.dav.webdav import path_key
from app.integrations.errors import RemoteConflictError, RemoteNotFoundError
from app.integrations.http import HttpClient
from app.memory.db import Database

LISBON = ZoneInfo("Europe/Lisbon")
WEEKLY = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:test\r
BEGIN:VEVENT\r
UID:weekly-1\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=Europe/Lisbon:20261201T100000\r
DTEND;TZID=Europe/Lisbon:20261201T110000\r
RRULE:FREQ=WEEKLY;COUNT=4\r
EXDATE;TZID=Europe/Lisbon:20261215T100000\r
SUMMARY:Weekly review\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weekly-1\r
DTSTAMP:20260101T000000Z\r
RECURRENCE-ID;TZID=Europe/Lisbon:20261208T100000\r
DTSTART;TZID=Europe/Lisbon:20261208T140000\r
DTEND;TZID=Europe/Lisbon:20261208T143000\r
SUMMARY:Weekly review (moved)\r
END:VEVENT\r
END:VCALENDAR\r
"""


def single(uid: str, start: datetime, minutes: int = 30, summary: str = "Meeting") -> str:
    return build_event(uid, EventFields(summary, start, start + timedelta(minutes=minutes)))


@pytest.fixture
def http(radicale: DavServer) -> Iterator[HttpClient]:  # noqa: F811
    client = dav_http_client(radicale.url, radicale.user, radicale.password)
    yield client
    client.close()


@pytest.fixture
def calendar(radicale: DavServer, http: HttpClient) -> CalendarClient:  # noqa: F811
    return CalendarClient(http, radicale.calendar_url)


@pytest.fixture
def actions(
    radicale: DavServer,  # noqa: F811
    http: HttpClient,
    calendar: CalendarClient,
    db: Database,
) -> CalendarActions:
    store = DavStore(db, "acct", LISBON)
    for collection in discover(http, radicale.url).calendars:
        store.save_collection(collection)
    (stored,) = store.collections("calendar")
    store.apply(stored, calendar.sync(None))
    return CalendarActions("acct", store, lambda url: CalendarClient(http, url), LISBON)


def resync(actions: CalendarActions, calendar: CalendarClient) -> None:
    (stored,) = actions.store.collections("calendar")
    actions.store.apply(stored, calendar.sync(stored.sync_token))


def test_put_get_delete_an_event(calendar: CalendarClient) -> None:
    href = calendar.href_for("ev-1@soloist")
    created = calendar.create(href, single("ev-1@soloist", datetime(2026, 12, 1, 10, tzinfo=UTC)))
    fetched = calendar.get(href)
    assert fetched.etag == created.etag
    assert [e.uid for e in parse_calendar(fetched.data).events] == ["ev-1@soloist"]
    with pytest.raises(RemoteConflictError):
        calendar.create(href, single("ev-1@soloist", datetime(2026, 12, 2, 10, tzinfo=UTC)))
    calendar.delete(href, created.etag)
    with pytest.raises(RemoteNotFoundError):
        calendar.get(href)


def test_time_range_query_and_multiget(calendar: CalendarClient) -> None:
    for day in (1, 3, 9):
        uid = f"day-{day}"
        calendar.create(
            calendar.href_for(uid), single(uid, datetime(2026, 12, day, 10, tzinfo=UTC))
        )
    calendar.create(calendar.href_for("weekly-1"), WEEKLY)
    found = calendar.query(datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC))
    uids = {parse_calendar(o.data).events[0].uid for o in found}
    assert uids == {"day-3"}  # the weekly series has no occurrence on 2-3 Dec
    found = calendar.query(datetime(2026, 12, 8, tzinfo=UTC), datetime(2026, 12, 9, tzinfo=UTC))
    assert {parse_calendar(o.data).events[0].uid for o in found} == {"weekly-1"}
    got = calendar.multiget([calendar.href_for("day-1"), calendar.href_for("day-9")])
    assert {path_key(o.href) for o in got} == {
        path_key(calendar.href_for("day-1")),
        path_key(calendar.href_for("day-9")),
    }


def test_free_busy_over_a_recurring_series_from_the_server(calendar: CalendarClient) -> None:
    calendar.create(calendar.href_for("weekly-1"), WEEKLY)
    window = Interval(datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
    objects = calendar.query(window.start, window.end)
    busy = busy_intervals([parse_calendar(o.data).calendar for o in objects], window, LISBON)
    assert [(b.start.day, b.start.hour, b.minutes) for b in busy] == [
        (1, 10, 60),
        (8, 14, 30),  # the moved occurrence
        (22, 10, 60),  # 15 Dec is excluded
    ]


def test_create_event_prepare_execute_reconcile(
    actions: CalendarActions, calendar: CalendarClient
) -> None:
    prepared = actions.prepare_create({
        "summary": "Call with Ana", "start": "2026-12-01T10:00", "duration_minutes": 30,
        "timezone": "Europe/Lisbon", "attendees": ["ana@example.pt"],
    })  # fmt: skip
    assert prepared.risk is Risk.MEDIUM and prepared.idempotency_key.endswith("@soloist")
    assert prepared.preview == (
        "Create 'Call with Ana' on Tue 1 Dec 2026 10:00–10:30 (Europe/Lisbon) in calendar Work, "
        "attendees ana@example.pt"
    )
    assert actions.reconcile_create(prepared) is None  # not there yet: safe to execute
    outcome = actions.execute_create(prepared)
    assert outcome.done and outcome.external_id == prepared.idempotency_key
    again = actions.reconcile_create(prepared)
    assert again is not None and again.done
    second = actions.execute_create(prepared)  # a retry: 412, recognised as ours
    assert second.done and second.summary == "event already created"
    everything = calendar.sync(None).changed
    assert [parse_calendar(o.data).events[0].uid for o in everything] == [prepared.idempotency_key]
    (event,) = parse_calendar(everything[0].data).events
    assert event.start == datetime(2026, 12, 1, 10, tzinfo=LISBON)
    assert event.attendees == ("ana@example.pt",)


def test_update_event_diff_conflict_and_reconcile(
    actions: CalendarActions, calendar: CalendarClient
) -> None:
    start = datetime(2026, 12, 1, 10, tzinfo=LISBON)
    href = calendar.href_for("upd-1")
    calendar.create(href, single("upd-1", start, summary="Planning"))
    resync(actions, calendar)
    prepared = actions.prepare_update({"uid": "upd-1", "summary": "Planning 2027",
                                       "start": "2026-12-01T11:00"})  # fmt: skip
    assert prepared.preview == (
        "Update 'Planning': title 'Planning' → 'Planning 2027'; time Tue 1 Dec 2026 10:00–10:30 "
        "(Europe/Lisbon) → Tue 1 Dec 2026 11:00–11:30 (Europe/Lisbon)"
    )
    assert actions.reconcile_update(prepared) is None
    outcome = actions.execute_update(prepared)
    assert outcome.done
    assert actions.reconcile_update(prepared) is not None  # the server has what we intended
    (event,) = parse_calendar(calendar.get(href).data).events
    assert (event.summary, event.start) == ("Planning 2027", start + timedelta(hours=1))

    stale = actions.prepare_update({"uid": "upd-1", "location": "Porto"})
    calendar.update(href, single("upd-1", start, summary="Changed elsewhere"), None)
    with pytest.raises(RemoteConflictError, match="changed since you approved"):
        actions.execute_update(stale)
    assert actions.reconcile_update(replace(stale)) is None  # not applied: review again
