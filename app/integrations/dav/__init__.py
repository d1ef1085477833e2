"""Contacts and calendars over CardDAV and CalDAV.

The clients (``AddressBookClient``, ``CalendarClient``) speak to one
collection; ``discover`` finds the collections of an account; ``DavConnector``
keeps a local copy in DuckDB and offers the calendar tools and actions.
"""

from app.integrations.dav.caldav import CalendarClient
from app.integrations.dav.carddav import AddressBookClient
from app.integrations.dav.connector import DavConnector, SyncSummary, dav_http_client
from app.integrations.dav.discovery import Collection, Discovery, discover
from app.integrations.dav.freebusy import Interval, WorkingHours, busy_intervals, free_slots
from app.integrations.dav.ical import CalendarEvent, EventFields, ParsedCalendar, parse_calendar
from app.integrations.dav.objects import DavObject, DavSyncResult

__all__ = [
    "AddressBookClient",
    "CalendarClient",
    "CalendarEvent",
    "Collection",
    "DavConnector",
    "DavObject",
    "DavSyncResult",
    "Discovery",
    "EventFields",
    "Interval",
    "ParsedCalendar",
    "SyncSummary",
    "WorkingHours",
    "busy_intervals",
    "dav_http_client",
    "discover",
    "free_slots",
    "parse_calendar",
]
