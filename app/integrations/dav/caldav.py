"""A CalDAV calendar: time-range queries, multiget, sync and conditional writes.

The time-range query (RFC 4791 §7.8) asks the server which objects have an
occurrence in a window; the server expands recurrences for that test, and
the objects come back whole (series master plus changed occurrences), for
``freebusy`` to expand locally.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime

from app.integrations.dav.objects import ICALENDAR, CollectionClient, DavObject, DavSyncResult
from app.integrations.dav.sync import CollectionSync
from app.integrations.dav.webdav import CALDAV, DAV, report, same_path, tag, to_bytes
from app.integrations.http import HttpClient


class CalendarClient:
    """One calendar collection at ``url``."""

    def __init__(self, http: HttpClient, url: str, *, use_sync_collection: bool = True) -> None:
        self._objects = CollectionClient(http, url, ICALENDAR)
        self._sync = CollectionSync(self._objects, use_sync_collection=use_sync_collection)

    @property
    def url(self) -> str:
        return self._objects.url

    def href_for(self, uid: str) -> str:
        return self._objects.href_for(uid)

    def sync(self, token: str | None) -> DavSyncResult:
        return self._sync.sync(token)

    def get(self, href: str) -> DavObject:
        return self._objects.get(href)

    def multiget(self, hrefs: Sequence[str]) -> list[DavObject]:
        return self._objects.multiget(hrefs)

    def create(self, href: str, data: str) -> DavObject:
        """PUT with If-None-Match: * (RemoteConflictError if ``href`` exists)."""
        return self._objects.put(href, data, create=True)

    def update(self, href: str, data: str, etag: str | None) -> DavObject:
        """PUT with If-Match: ``etag`` (RemoteConflictError if it changed meanwhile)."""
        return self._objects.put(href, data, etag=etag, create=False)

    def delete(self, href: str, etag: str | None = None) -> None:
        self._objects.delete(href, etag)

    def query(self, start: datetime, end: datetime, component: str = "VEVENT") -> list[DavObject]:
        """Objects with a ``component`` occurrence overlapping [start, end)."""
        status = report(self._objects.http, self.url, _time_range_body(start, end, component))
        objects = []
        for response in status.responses:
            data = response.props.get(tag(CALDAV, "calendar-data"))
            if data is None or data.text is None or same_path(response.href, self.url):
                continue
            objects.append(DavObject(response.href, response.etag, data.text))
        return objects


def _utc_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a time-range query needs aware datetimes")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _time_range_body(start: datetime, end: datetime, component: str) -> bytes:
    root = ET.Element(tag(CALDAV, "calendar-query"))
    prop = ET.SubElement(root, tag(DAV, "prop"))
    ET.SubElement(prop, tag(DAV, "getetag"))
    ET.SubElement(prop, tag(CALDAV, "calendar-data"))
    outer = ET.SubElement(ET.SubElement(root, tag(CALDAV, "filter")), tag(CALDAV, "comp-filter"))
    outer.set("name", "VCALENDAR")
    inner = ET.SubElement(outer, tag(CALDAV, "comp-filter"))
    inner.set("name", component)
    time_range = ET.SubElement(inner, tag(CALDAV, "time-range"))
    time_range.set("start", _utc_text(start))
    time_range.set("end", _utc_text(end))
    return to_bytes(root)
