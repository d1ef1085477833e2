"""WebDAV plumbing for CardDAV and CalDAV: XML in and out, and discovery.

Servers answer PROPFIND and REPORT with ``207 Multi-Status`` XML. That XML
comes from the network, so :func:`parse_xml` refuses a DTD or an entity
declaration (billion laughs, external entities) and caps the size before
``xml.etree.ElementTree`` sees it; anything it cannot read becomes a
:class:`MalformedDataError`.

Discovery follows RFC 6764 / RFC 4918 / RFC 4791 / RFC 6352: the URL the
user typed (or its ``/.well-known/carddav``) → ``current-user-principal`` →
``addressbook-home-set`` and ``calendar-home-set`` → the collections in
each home with their display name, ctag, sync-token and components.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from app.integrations.errors import MalformedDataError, RemoteRejectedError
from app.integrations.http import HttpClient

log = logging.getLogger("soloist.integrations.dav")

DAV = "DAV:"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CALSERVER = "http://calendarserver.org/ns/"

MAX_XML_BYTES = 32 * 2**20  # a multistatus bigger than this is refused
_FORBIDDEN_XML = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

for _prefix, _uri in (("d", DAV), ("card", CARDDAV), ("cal", CALDAV), ("cs", CALSERVER)):
    ET.register_namespace(_prefix, _uri)


def tag(namespace: str, name: str) -> str:
    """The ElementTree name of an element: ``{DAV:}href``."""
    return f"{{{namespace}}}{name}"


# -- XML in ------------------------------------------------------------------


def parse_xml(content: bytes | str) -> ET.Element:
    """Parse a server's XML; DTDs, entities, oversize or broken XML raise MalformedDataError."""
    if len(content) > MAX_XML_BYTES:
        raise MalformedDataError(
            f"the server sent {len(content)} bytes of XML, over the limit; try a smaller collection"
        )
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    if _FORBIDDEN_XML.search(text):
        raise MalformedDataError("the server's XML declares a DTD or entities; refused for safety")
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)  # the encoding was already applied
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise MalformedDataError(f"the server sent XML that cannot be parsed ({exc})") from exc


@dataclass(frozen=True, slots=True)
class DavResponse:
    """One ``<response>`` of a multistatus: an href and its found properties."""

    href: str
    status: int | None  # a status for the whole response (404 for a deleted member)
    props: Mapping[str, ET.Element] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        element = self.props.get(name)
        if element is None or element.text is None:
            return None
        return element.text.strip() or None

    @property
    def etag(self) -> str | None:
        return self.text(tag(DAV, "getetag"))


@dataclass(frozen=True, slots=True)
class MultiStatus:
    responses: tuple[DavResponse, ...]
    sync_token: str | None = None


def _status_code(element: ET.Element | None) -> int | None:
    if element is None or not element.text:
        return None
    parts = element.text.split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def _parse_response(element: ET.Element) -> DavResponse | None:
    href = element.findtext(tag(DAV, "href"))
    if href is None:
        return None
    props: dict[str, ET.Element] = {}
    for propstat in element.findall(tag(DAV, "propstat")):
        code = _status_code(propstat.find(tag(DAV, "status")))
        prop = propstat.find(tag(DAV, "prop"))
        if prop is None or code is None or not 200 <= code < 300:
            continue
        for child in prop:
            props[child.tag] = child
    return DavResponse(href.strip(), _status_code(element.find(tag(DAV, "status"))), props)


def parse_multistatus(content: bytes | str) -> MultiStatus:
    """The responses of a ``207 Multi-Status`` body (and its sync-token, if any)."""
    root = parse_xml(content)
    if root.tag != tag(DAV, "multistatus"):
        raise MalformedDataError("the server's answer is not a WebDAV multistatus")
    responses = [_parse_response(el) for el in root.findall(tag(DAV, "response"))]
    token = root.findtext(tag(DAV, "sync-token"))
    return MultiStatus(
        tuple(r for r in responses if r is not None), token.strip() if token else None
    )


def error_conditions(content: bytes) -> frozenset[str]:
    """The precondition names in a ``<DAV:error>`` body (empty if it is not one)."""
    try:
        root = parse_xml(content)
    except MalformedDataError:
        return frozenset()
    if root.tag != tag(DAV, "error"):
        return frozenset()
    return frozenset(child.tag for child in root)


# -- XML out -----------------------------------------------------------------


def propfind_body(props: Iterable[str]) -> bytes:
    root = ET.Element(tag(DAV, "propfind"))
    prop = ET.SubElement(root, tag(DAV, "prop"))
    for name in props:
        ET.SubElement(prop, name)
    return to_bytes(root)


def to_bytes(root: ET.Element) -> bytes:
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


XML_HEADERS = {"Content-Type": "application/xml; charset=utf-8"}


def propfind(http: HttpClient, url: str, props: Iterable[str], depth: int) -> MultiStatus:
    response = http.request(
        "PROPFIND",
        url,
        content=propfind_body(props),
        headers={**XML_HEADERS, "Depth": str(depth)},
    )
    return _multistatus(response)


def report(http: HttpClient, url: str, body: bytes, depth: int = 1) -> MultiStatus:
    response = http.request(
        "REPORT", url, content=body, headers={**XML_HEADERS, "Depth": str(depth)}
    )
    return _multistatus(response)


def _multistatus(response: httpx.Response) -> MultiStatus:
    if response.status_code != 207:
        raise RemoteRejectedError(
            f"the server answered HTTP {response.status_code} where WebDAV expects 207; "
            "check that the URL is a CardDAV/CalDAV server"
        )
    return parse_multistatus(response.content)


def path_key(href: str) -> str:
    """An href/URL reduced to compare with others (no host, quoting or end slash)."""
    return unquote(urlsplit(href).path).rstrip("/")


def same_path(a: str, b: str) -> bool:
    """Whether two hrefs/URLs name the same resource."""
    return path_key(a) == path_key(b)


def absolute(base: str, href: str) -> str:
    return urljoin(base, href)
