"""Find a user's address books and calendars from the one URL they typed.

Users type anything from ``https://dav.example.com`` to the full URL of one
calendar. The walk: ask the URL for ``current-user-principal``; if it does
not answer as WebDAV, try ``/.well-known/carddav`` and ``/.well-known/caldav``
(following redirects by hand, since the HTTP client never follows them);
then read the principal's home sets and list each home's collections. A URL
that is itself a collection is included even if the homes do not list it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from app.integrations.dav.webdav import (
    CALDAV,
    CALSERVER,
    CARDDAV,
    DAV,
    DavResponse,
    absolute,
    propfind,
    same_path,
    tag,
)
from app.integrations.errors import (
    ConnectorConfigError,
    MalformedDataError,
    RemoteNotFoundError,
    RemoteRejectedError,
)
from app.integrations.http import HttpClient

log = logging.getLogger("soloist.integrations.dav")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5

COLLECTION_PROPS = (
    tag(DAV, "resourcetype"),
    tag(DAV, "displayname"),
    tag(CALSERVER, "getctag"),
    tag(DAV, "sync-token"),
    tag(CALDAV, "supported-calendar-component-set"),
)


@dataclass(frozen=True, slots=True)
class Collection:
    """One address book or calendar on the server."""

    url: str
    name: str
    ctag: str | None
    sync_token: str | None
    components: tuple[str, ...] = ()  # VEVENT, VTODO... (calendars only)
    kind: str = "calendar"  # "calendar" or "addressbook"


@dataclass(frozen=True, slots=True)
class Discovery:
    principal: str | None
    address_books: list[Collection] = field(default_factory=list)
    calendars: list[Collection] = field(default_factory=list)


def discover(http: HttpClient, url: str) -> Discovery:
    """The address books and calendars reachable from ``url``."""
    principal = _principal(http, url)
    homes = _home_sets(http, principal) if principal else []
    found: dict[str, Collection] = {}
    for home in homes or [url]:
        for collection in list_collections(http, home, depth=1):
            found.setdefault(urlsplit(collection.url).path, collection)
    for collection in list_collections(http, url, depth=0):  # the URL may be a collection
        found.setdefault(urlsplit(collection.url).path, collection)
    books = [c for c in found.values() if c.kind == "addressbook"]
    calendars = [c for c in found.values() if c.kind == "calendar"]
    log.info("discovery: %d address books, %d calendars", len(books), len(calendars))
    return Discovery(principal, books, calendars)


def _principal(http: HttpClient, url: str) -> str | None:
    for candidate in (
        url,
        urljoin(url, "/.well-known/carddav"),
        urljoin(url, "/.well-known/caldav"),
    ):
        target = _follow_redirects(http, candidate)
        if target is None:
            continue
        try:
            status = propfind(http, target, [tag(DAV, "current-user-principal")], depth=0)
        except (RemoteNotFoundError, RemoteRejectedError, MalformedDataError):
            continue
        for response in status.responses:
            element = response.props.get(tag(DAV, "current-user-principal"))
            href = element.findtext(tag(DAV, "href")) if element is not None else None
            if href:
                return absolute(target, href.strip())
    return None


def _follow_redirects(http: HttpClient, url: str) -> str | None:
    current = url
    for _ in range(_MAX_REDIRECTS):
        try:
            response = http.request(
                "PROPFIND",
                current,
                headers={"Depth": "0"},
                ok_statuses=_REDIRECTS | {404, 405, 501},
            )
        except RemoteRejectedError:
            return None
        if response.status_code not in _REDIRECTS:
            return current if response.status_code == 207 else None
        location = response.headers.get("Location")
        if not location:
            return None
        current = urljoin(current, location)
    raise ConnectorConfigError("the server redirects in a loop; check the CardDAV/CalDAV URL")


def _home_sets(http: HttpClient, principal: str) -> list[str]:
    props = [tag(CARDDAV, "addressbook-home-set"), tag(CALDAV, "calendar-home-set")]
    status = propfind(http, principal, props, depth=0)
    homes: list[str] = []
    for response in status.responses:
        for name in props:
            element = response.props.get(name)
            if element is None:
                continue
            for href in element.findall(tag(DAV, "href")):
                if href.text and not any(same_path(h, href.text) for h in homes):
                    homes.append(absolute(principal, href.text.strip()))
    return homes


def list_collections(http: HttpClient, url: str, depth: int) -> list[Collection]:
    """The address books and calendars at ``url`` (depth 0) or in it (depth 1)."""
    try:
        status = propfind(http, url, COLLECTION_PROPS, depth=depth)
    except (RemoteNotFoundError, RemoteRejectedError):
        return []
    collections = (_collection(url, response) for response in status.responses)
    return [c for c in collections if c is not None]


def collection_state(http: HttpClient, url: str) -> Collection | None:
    """The ctag and sync-token of one collection now (None if it is not one)."""
    found = list_collections(http, url, depth=0)
    return found[0] if found else None


def _collection(base: str, response: DavResponse) -> Collection | None:
    resourcetype = response.props.get(tag(DAV, "resourcetype"))
    if resourcetype is None:
        return None
    kinds = {child.tag for child in resourcetype}
    if tag(CARDDAV, "addressbook") in kinds:
        kind = "addressbook"
    elif tag(CALDAV, "calendar") in kinds:
        kind = "calendar"
    else:
        return None
    url = absolute(base, response.href)
    name = response.text(tag(DAV, "displayname")) or urlsplit(url).path.rstrip("/").split("/")[-1]
    return Collection(
        url=url,
        name=name,
        ctag=response.text(tag(CALSERVER, "getctag")),
        sync_token=response.text(tag(DAV, "sync-token")),
        components=_components(response),
        kind=kind,
    )


def _components(response: DavResponse) -> tuple[str, ...]:
    element = response.props.get(tag(CALDAV, "supported-calendar-component-set"))
    if element is None:
        return ()
    names = (comp.get("name") for comp in element.findall(tag(CALDAV, "comp")))
    return tuple(n for n in names if n)
