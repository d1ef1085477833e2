"""iCalendar reading and writing: odd time zones, broken files, and a fuzz test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.integrations.dav.ical import EventFields, build_event, parse_calendar, update_event_text
from app.integrations.errors import MalformedDataError

LISBON = ZoneInfo("Europe/Lisbon")


def cal(*body: str) -> str:
    return "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:test", *body, "END:VCALENDAR"])


def event(*lines: str, uid: str = "e1") -> str:
    return "\r\n".join(["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z", *lines,
                        "END:VEVENT"])  # fmt: skip


CUSTOM_TZ = "\r\n".join([
    "BEGIN:VTIMEZONE", "TZID:My Office Time", "BEGIN:STANDARD", "DTSTART:19700101T000000",
    "TZOFFSETFROM:+0530", "TZOFFSETTO:+0530", "TZNAME:MOT", "END:STANDARD", "END:VTIMEZONE",
])  # fmt: skip

# (case, ics, expected start in UTC, floating, defect substring or None)
TIME_ZONE_CASES = [
    ("utc", cal(event("DTSTART:20261201T100000Z", "DTEND:20261201T103000Z")),
     datetime(2026, 12, 1, 10, tzinfo=UTC), False, None),
    ("iana", cal(event("DTSTART;TZID=Europe/Berlin:20260701T100000", "DURATION:PT1H")),
     datetime(2026, 7, 1, 8, tzinfo=UTC), False, None),
    ("windows name", cal(event("DTSTART;TZID=W. Europe Standard Time:20261201T100000",
                               "DTEND;TZID=W. Europe Standard Time:20261201T110000")),
     datetime(2026, 12, 1, 9, tzinfo=UTC), False, None),
    ("custom vtimezone", cal(CUSTOM_TZ, event("DTSTART;TZID=My Office Time:20261201T100000")),
     datetime(2026, 12, 1, 4, 30, tzinfo=UTC), False, None),
    ("floating", cal(event("DTSTART:20261201T100000", "DTEND:20261201T110000")),
     datetime(2026, 12, 1, 10, tzinfo=UTC), True, None),
    ("unknown tzid", cal(event("DTSTART;TZID=Mars/Olympus:20261201T100000")),
     datetime(2026, 12, 1, 10, tzinfo=UTC), False, "unknown time zone 'Mars/Olympus'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ics", "start_utc", "floating", "defect"),
    [case[1:] for case in TIME_ZONE_CASES],
    ids=[case[0] for case in TIME_ZONE_CASES],
)
def test_time_zones(ics: str, start_utc: datetime, floating: bool, defect: str | None) -> None:
    parsed = parse_calendar(ics)
    (ev,) = parsed.events
    assert ev.start_utc() == start_utc
    assert ev.floating is floating
    assert ev.end_utc() >= ev.start_utc()
    if defect is None:
        assert parsed.defects == ()
    else:
        assert any(defect in d for d in parsed.defects), parsed.defects


def test_floating_time_is_read_in_the_fallback_zone() -> None:
    (ev,) = parse_calendar(cal(event("DTSTART:20260701T100000")), LISBON).events
    assert ev.start_utc(LISBON) == datetime(2026, 7, 1, 9, tzinfo=UTC)


def test_all_fields_of_a_full_event() -> None:
    ics = cal(event(
        "DTSTART;VALUE=DATE:20261201", "SUMMARY:Offsite", "LOCATION:Porto",
        "DESCRIPTION:Plan 2027", "ORGANIZER:mailto:boss@example.com",
        "ATTENDEE;CN=Ana:mailto:ana@example.pt", "ATTENDEE:MAILTO:rui@example.pt",
        "STATUS:tentative", "TRANSP:TRANSPARENT", "RRULE:FREQ=WEEKLY;COUNT=4",
        "EXDATE;VALUE=DATE:20261208",
    ), event("RECURRENCE-ID;VALUE=DATE:20261215", "DTSTART;VALUE=DATE:20261216",
             "SUMMARY:Offsite moved"))  # fmt: skip
    master, moved = parse_calendar(ics).events
    assert (master.summary, master.location, master.description) == ("Offsite", "Porto",
                                                                     "Plan 2027")  # fmt: skip
    assert master.all_day and master.end == date(2026, 12, 2)
    assert master.attendees == ("ana@example.pt", "rui@example.pt")
    assert master.organizer == "boss@example.com"
    assert (master.status, master.transparency) == ("TENTATIVE", "TRANSPARENT")
    assert master.rrule == "FREQ=WEEKLY;COUNT=4" and master.exdates == (date(2026, 12, 8),)
    assert moved.recurrence_id == date(2026, 12, 15) and moved.summary == "Offsite moved"


# (case, ics, events kept, defect substring)
BROKEN_EVENT_CASES = [
    ("no dtstart", cal(event("SUMMARY:x"), event("DTSTART:20261201T100000Z", uid="ok")),
     1, "skipped"),
    ("bad dtstart", cal(event("DTSTART:tomorrow"), event("DTSTART:20261201T100000Z", uid="ok")),
     1, "skipped"),
    ("end before start", cal(event("DTSTART:20261201T100000Z", "DTEND:20261201T090000Z")),
     1, "DTEND does not fit"),
    ("bad dtend", cal(event("DTSTART:20261201T100000Z", "DTEND:soon")), 1, "DTEND"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ics", "kept", "defect"),
    [case[1:] for case in BROKEN_EVENT_CASES],
    ids=[case[0] for case in BROKEN_EVENT_CASES],
)
def test_broken_events_are_skipped_with_a_defect(ics: str, kept: int, defect: str) -> None:
    parsed = parse_calendar(ics)
    assert len(parsed.events) == kept
    assert any(defect in d for d in parsed.defects), parsed.defects
    assert all(e.end_utc() >= e.start_utc() for e in parsed.events)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20261201T100000Z\r\n",  # never ends
        "x" * (10 * 2**20 + 1),
    ],
    ids=["empty", "text", "vcard", "unterminated", "oversize"],
)
def test_malformed_files_raise_malformed_data(text: str) -> None:
    with pytest.raises(MalformedDataError):
        parse_calendar(text)


def test_build_and_read_back() -> None:
    start = datetime(2026, 12, 1, 10, tzinfo=LISBON)
    fields = EventFields("Call with Ana", start, start + timedelta(minutes=30), "Zoom", "",
                         ("ana@example.pt",))  # fmt: skip
    text = build_event("u-1@soloist", fields)
    assert "BEGIN:VTIMEZONE" in text and "TZID:Europe/Lisbon" in text
    (ev,) = parse_calendar(text).events
    assert (ev.uid, ev.summary, ev.start, ev.location) == ("u-1@soloist", "Call with Ana", start,
                                                           "Zoom")  # fmt: skip
    assert ev.attendees == ("ana@example.pt",) and ev.tzid == "Europe/Lisbon"


def test_update_keeps_other_components_and_bumps_sequence() -> None:
    ics = cal(event("DTSTART:20261201T100000Z", "SUMMARY:Old", "SEQUENCE:3",
                    "RRULE:FREQ=DAILY;COUNT=3"),
              event("RECURRENCE-ID:20261202T100000Z", "DTSTART:20261202T120000Z",
                    "SUMMARY:Moved"))  # fmt: skip
    start = datetime(2026, 12, 1, 11, tzinfo=UTC)
    new = update_event_text(ics, "e1", EventFields("New", start, start + timedelta(hours=1)))
    master, moved = parse_calendar(new).events
    assert (master.summary, master.start, master.rrule) == ("New", start, "FREQ=DAILY;COUNT=3")
    assert moved.summary == "Moved" and "SEQUENCE:4" in new


VALID = cal(CUSTOM_TZ, event("DTSTART;TZID=My Office Time:20261201T100000", "SUMMARY:a",
                             "RRULE:FREQ=WEEKLY;COUNT=3", "ATTENDEE:mailto:a@b.c"))  # fmt: skip


@st.composite
def mangled(draw: st.DrawFn) -> str:
    lines = VALID.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "junk", "cut", "swap"]))
        if action == "drop" and len(lines) > 1:
            lines.pop(index)
        elif action == "dup":
            lines.insert(index, lines[index])
        elif action == "junk":
            lines[index] = draw(st.text(max_size=30))
        elif action == "cut":
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))]
        else:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
    return "\r\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled())
def test_mangled_input_raises_only_malformed_data(text: str) -> None:
    try:
        parsed = parse_calendar(text)
    except MalformedDataError as exc:
        assert str(exc)
        return
    for ev in parsed.events:
        assert ev.end_utc() >= ev.start_utc()
