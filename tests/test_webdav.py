"""WebDAV XML handling (units) and discovery against a real Radicale server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from dav_server import DavServer, radicale  # noqa: F401  (fixture)

from app.integrations.dav import dav_http_client, discover
from app.integrations.dav.webdav import (
    DAV,
    MAX_XML_BYTES,
    error_conditions,
    parse_multistatus,
    parse_xml,
    same_path,
    tag,
)
from app.integrations.errors import MalformedDataError
from app.integrations.http import HttpClient

MULTISTATUS = b"""<?xml version="1.0" encoding="utf-8"?>
<d:multistatus xmlns:d="DAV:">
  <d:sync-token>tok-2</d:sync-token>
  <d:response><d:href>/cal/a.ics</d:href>
    <d:propstat><d:prop><d:getetag>"e1"</d:getetag></d:prop>
      <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
    <d:propstat><d:prop><d:displayname/></d:prop>
      <d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
  </d:response>
  <d:response><d:href>/cal/gone.ics</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>
</d:multistatus>"""


@pytest.fixture
def http(radicale: DavServer) -> Iterator[HttpClient]:  # noqa: F811
    client = dav_http_client(radicale.url, radicale.user, radicale.password)
    yield client
    client.close()


def test_multistatus_parses_props_status_and_token() -> None:
    status = parse_multistatus(MULTISTATUS)
    assert status.sync_token == "tok-2"
    first, gone = status.responses
    assert (first.href, first.etag, first.status) == ("/cal/a.ics", '"e1"', None)
    assert tag(DAV, "displayname") not in first.props  # a 404 propstat is not a value
    assert (gone.href, gone.status) == ("/cal/gone.ics", 404)


@pytest.mark.parametrize(
    "content",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        b'<!doctype x SYSTEM "file:///etc/passwd"><x/>',
        b"<d:multistatus xmlns:d='DAV:'><d:response>",  # cut short
        b"not xml at all",
    ],
)
def test_hostile_or_broken_xml_is_refused(content: bytes) -> None:
    with pytest.raises(MalformedDataError):
        parse_xml(content)


def test_oversize_xml_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedDataError, match="over the limit"):
        parse_xml(b" " * (MAX_XML_BYTES + 1))


def test_not_a_multistatus_is_refused() -> None:
    with pytest.raises(MalformedDataError, match="multistatus"):
        parse_multistatus(b"<html><body>login</body></html>")


def test_error_conditions_reads_preconditions() -> None:
    body = b'<?xml version="1.0"?><error xmlns="DAV:"><valid-sync-token/></error>'
    assert error_conditions(body) == {tag(DAV, "valid-sync-token")}
    assert error_conditions(b"<html/>") == frozenset()


def test_same_path_ignores_host_quoting_and_slash() -> None:
    assert same_path("http://h:1/a%20b/", "/a b")
    assert not same_path("/a/b", "/a/c")


def test_discovery_finds_book_and_calendar(radicale: DavServer, http: HttpClient) -> None:  # noqa: F811
    found = discover(http, radicale.url)
    assert found.principal is not None and same_path(found.principal, f"/{radicale.user}/")
    assert [(b.name, same_path(b.url, radicale.book_url)) for b in found.address_books] == [
        ("Contacts", True)
    ]
    (calendar,) = found.calendars
    assert calendar.name == "Work" and same_path(calendar.url, radicale.calendar_url)
    assert calendar.components == ("VEVENT",)
    assert calendar.ctag and calendar.sync_token and calendar.kind == "calendar"


def test_discovery_from_a_collection_url(radicale: DavServer, http: HttpClient) -> None:  # noqa: F811
    found = discover(http, radicale.calendar_url)
    assert [c.name for c in found.calendars] == ["Work"]
    assert [c.name for c in found.address_books] == ["Contacts"]


def test_discovery_through_well_known_redirect() -> None:
    """A server whose root is not WebDAV but whose /.well-known/caldav redirects."""
    principal = b"""<multistatus xmlns="DAV:"><response><href>/dav/</href><propstat><prop>
      <current-user-principal><href>/dav/me/</href></current-user-principal></prop>
      <status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"""
    homes = b"""<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
      <response><href>/dav/me/</href><propstat><prop><C:calendar-home-set>
      <href>/dav/me/cals/</href></C:calendar-home-set></prop>
      <status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"""
    listing = b"""<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
      <response><href>/dav/me/cals/home/</href><propstat><prop>
      <resourcetype><collection/><C:calendar/></resourcetype><displayname>Home</displayname>
      </prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"""
    seen: list[str] = []
    routes = {
        ("/.well-known/caldav", None): httpx.Response(301, headers={"Location": "/dav/"}),
        ("/dav/", None): httpx.Response(207, content=principal),
        ("/dav/me/", b"home-set"): httpx.Response(207, content=homes),
        ("/dav/me/cals/", b"resourcetype"): httpx.Response(207, content=listing),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        for (path, needle), response in routes.items():
            if request.url.path == path and (needle is None or needle in request.content):
                return response
        return httpx.Response(404)

    with HttpClient(
        "https://dav.test/", service="t", transport=httpx.MockTransport(handler)
    ) as client:
        found = discover(client, "https://dav.test/")
    assert [(c.name, c.url) for c in found.calendars] == [
        ("Home", "https://dav.test/dav/me/cals/home/")
    ]
    assert "/.well-known/caldav" in seen
