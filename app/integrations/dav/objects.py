"""Objects in a DAV collection: read one, many (multiget), write and delete.

CardDAV and CalDAV differ only in names (``address-data`` versus
``calendar-data``, ``.vcf`` versus ``.ics``); :class:`ObjectKind` holds those
names and :class:`CollectionClient` does the HTTP for both. Writes use
conditional requests so nothing is overwritten unseen: a new object goes
with ``If-None-Match: *``, a change with ``If-Match: <etag>``; a ``412``
becomes :class:`RemoteConflictError`.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from app.integrations.dav.webdav import DAV, report, same_path, tag, to_bytes
from app.integrations.errors import RemoteConflictError
from app.integrations.http import HttpClient

log = logging.getLogger("soloist.integrations.dav")

MULTIGET_BATCH = 100  # hrefs per multiget REPORT


@dataclass(frozen=True, slots=True)
class DavObject:
    """One vCard or iCalendar resource: where it is, its version, its text."""

    href: str
    etag: str | None
    data: str

    def __repr__(self) -> str:  # the text holds contact details: never in logs
        return f"DavObject(href={self.href!r}, etag={self.etag!r}, {len(self.data)} chars)"


@dataclass(frozen=True, slots=True)
class DavSyncResult:
    """What changed in a collection since a token.

    ``full``: the listing is complete (first sync or the old token was
    refused): ``changed`` holds every object, and anything the caller kept
    that is not in it is gone from the server. ``token`` is what to pass to
    the next sync.
    """

    changed: tuple[DavObject, ...]
    deleted: tuple[str, ...]
    token: str | None
    full: bool


@dataclass(frozen=True, slots=True)
class ObjectKind:
    namespace: str
    multiget: str  # addressbook-multiget / calendar-multiget
    data: str  # address-data / calendar-data
    content_type: str
    extension: str


VCARD = ObjectKind(
    "urn:ietf:params:xml:ns:carddav",
    "addressbook-multiget",
    "address-data",
    "text/vcard; charset=utf-8",
    ".vcf",
)
ICALENDAR = ObjectKind(
    "urn:ietf:params:xml:ns:caldav",
    "calendar-multiget",
    "calendar-data",
    "text/calendar; charset=utf-8",
    ".ics",
)


class CollectionClient:
    """Reads and writes the objects of one collection at ``url``."""

    def __init__(self, http: HttpClient, url: str, kind: ObjectKind) -> None:
        self.http = http
        self.url = url if url.endswith("/") else url + "/"
        self.kind = kind

    def resolve(self, href: str) -> str:
        """An absolute URL for an href (a path from the server, or a full URL)."""
        parts = urlsplit(self.url)
        if href.startswith(("http://", "https://")):
            return href
        if href.startswith("/"):
            return f"{parts.scheme}://{parts.netloc}{href}"
        return self.url + href

    def href_for(self, uid: str) -> str:
        return object_href(self.url, uid, self.kind.extension)

    def get(self, href: str) -> DavObject:
        response = self.http.request("GET", self.resolve(href))
        return DavObject(_path(href), response.headers.get("ETag"), response.text)

    def put(self, href: str, data: str, *, etag: str | None = None, create: bool) -> DavObject:
        """Write ``data``; ``create`` sends If-None-Match: *, ``etag`` sends If-Match."""
        headers = {"Content-Type": self.kind.content_type}
        if create:
            headers["If-None-Match"] = "*"
        elif etag is not None:
            headers["If-Match"] = etag
        try:
            response = self.http.request(
                "PUT", self.resolve(href), content=data.encode("utf-8"), headers=headers
            )
        except RemoteConflictError as exc:
            what = "an object with this name already exists" if create else "it changed"
            raise RemoteConflictError(
                f"{self.http.service}: {what} on the server; refresh and review again"
            ) from exc
        new_etag = response.headers.get("ETag")
        if new_etag is None:  # some servers do not say: read it back
            return self.get(href)
        return DavObject(_path(href), new_etag, data)

    def delete(self, href: str, etag: str | None = None) -> None:
        headers = {"If-Match": etag} if etag is not None else {}
        self.http.request("DELETE", self.resolve(href), headers=headers)

    def multiget(self, hrefs: Sequence[str]) -> list[DavObject]:
        """The objects at ``hrefs`` (missing ones are left out)."""
        found: list[DavObject] = []
        for start in range(0, len(hrefs), MULTIGET_BATCH):
            found.extend(self._multiget_batch(hrefs[start : start + MULTIGET_BATCH]))
        return found

    def _multiget_batch(self, hrefs: Sequence[str]) -> list[DavObject]:
        if not hrefs:
            return []
        root = ET.Element(tag(self.kind.namespace, self.kind.multiget))
        prop = ET.SubElement(root, tag(DAV, "prop"))
        ET.SubElement(prop, tag(DAV, "getetag"))
        ET.SubElement(prop, tag(self.kind.namespace, self.kind.data))
        for href in hrefs:
            ET.SubElement(root, tag(DAV, "href")).text = _path(href)
        status = report(self.http, self.url, to_bytes(root), depth=1)
        objects = []
        for response in status.responses:
            data = response.props.get(tag(self.kind.namespace, self.kind.data))
            if data is None or data.text is None or same_path(response.href, self.url):
                continue
            objects.append(DavObject(response.href, response.etag, data.text))
        return objects


def object_href(collection_url: str, uid: str, extension: str) -> str:
    """The path a new object with this UID gets: ``<collection path>/<uid>.ics``."""
    base = urlsplit(collection_url).path
    base = base if base.endswith("/") else base + "/"
    return base + quote(uid, safe="@-_.+") + extension


def _path(href: str) -> str:
    return urlsplit(href).path if href.startswith(("http://", "https://")) else href
