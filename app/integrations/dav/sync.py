"""Keep a local copy of a DAV collection current with as little traffic as possible.

Two ways, chosen per call:

1. RFC 6578 ``sync-collection`` REPORT with the token the server gave last
   time: it lists changed hrefs (with etags) and removed ones (404). A token
   the server no longer accepts (403/409 with ``valid-sync-token``) means a
   full listing, marked ``full=True``.
2. The fallback, for servers without sync-collection (or when told not to
   use it): compare the collection's ``getctag`` with the one seen last;
   if it moved, list every href and etag (PROPFIND Depth 1) and diff them
   against the last listing.

Either way the changed objects are then read in batches with a multiget.

The token of the fallback is opaque to callers and carries its own state:
``soloist-etags:1:`` followed by URL-safe base64 of zlib-compressed JSON
``{"ctag": ..., "etags": {href: etag}}``. Callers store it as they store a
server's sync-token; a token this code cannot read is treated as none (a
full listing).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass

from app.integrations.dav.discovery import collection_state
from app.integrations.dav.objects import CollectionClient, DavObject, DavSyncResult
from app.integrations.dav.webdav import (
    DAV,
    XML_HEADERS,
    error_conditions,
    parse_multistatus,
    path_key,
    propfind,
    same_path,
    tag,
    to_bytes,
)

log = logging.getLogger("soloist.integrations.dav")

FALLBACK_PREFIX = "soloist-etags:1:"
_TOKEN_REFUSED = frozenset({403, 409})
_UNSUPPORTED = frozenset({400, 405, 415, 501})
_MAX_TOKEN_STATE = 64 * 2**20


class _SyncUnsupportedError(Exception):
    """The server does not do sync-collection on this collection."""


@dataclass(frozen=True, slots=True)
class EtagState:
    ctag: str | None
    etags: dict[str, str]

    def encode(self) -> str:
        raw = json.dumps({"ctag": self.ctag, "etags": self.etags}, separators=(",", ":"))
        packed = base64.urlsafe_b64encode(zlib.compress(raw.encode("utf-8"))).decode("ascii")
        return FALLBACK_PREFIX + packed

    @classmethod
    def decode(cls, token: str) -> EtagState | None:
        """The state in a fallback token, or None if it is not one this code wrote."""
        if not token.startswith(FALLBACK_PREFIX):
            return None
        try:
            raw = zlib.decompressobj().decompress(
                base64.urlsafe_b64decode(token[len(FALLBACK_PREFIX) :]), _MAX_TOKEN_STATE
            )
            value = json.loads(raw)
            ctag, etags = value["ctag"], value["etags"]
        except (binascii.Error, zlib.error, ValueError, KeyError, TypeError):
            return None
        if not isinstance(etags, dict) or not (ctag is None or isinstance(ctag, str)):
            return None
        return cls(ctag, {str(k): str(v) for k, v in etags.items()})


class CollectionSync:
    """Sync one collection through ``client``; see the module docstring."""

    def __init__(self, client: CollectionClient, *, use_sync_collection: bool = True) -> None:
        self.client = client
        self.use_sync_collection = use_sync_collection

    def sync(self, token: str | None) -> DavSyncResult:
        started = time.perf_counter()
        if self.use_sync_collection and not (token or "").startswith(FALLBACK_PREFIX):
            try:
                result = self._sync_collection(token)
            except _SyncUnsupportedError:
                log.info("sync-collection unsupported; using ctag/etag fallback")
                result = self._fallback(None)
        else:
            result = self._fallback(token)
        log.info(
            "synced collection: %d changed, %d deleted, full=%s in %.0f ms",
            len(result.changed),
            len(result.deleted),
            result.full,
            (time.perf_counter() - started) * 1000,
        )
        return result

    # -- RFC 6578 ------------------------------------------------------------
    def _sync_collection(self, token: str | None) -> DavSyncResult:
        http = self.client.http
        response = http.request(
            "REPORT",
            self.client.url,
            content=_sync_body(token),
            headers={**XML_HEADERS, "Depth": "1"},
            ok_statuses=_TOKEN_REFUSED | _UNSUPPORTED,
        )
        if response.status_code in _TOKEN_REFUSED:
            refused = tag(DAV, "valid-sync-token") in error_conditions(response.content)
            if token is not None and (refused or response.status_code == 409):
                log.info("sync token refused (HTTP %d); full resync", response.status_code)
                return self._sync_collection(None)
            raise http.status_error(response)
        if response.status_code in _UNSUPPORTED or response.status_code != 207:
            raise _SyncUnsupportedError
        status = parse_multistatus(response.content)
        changed: list[str] = []
        deleted: list[str] = []
        for item in status.responses:
            if same_path(item.href, self.client.url):
                continue
            (deleted if item.status == 404 else changed).append(item.href)
        objects = self.client.multiget(changed)
        gone = _missing(changed, objects)  # removed between the listing and the read
        return DavSyncResult(
            tuple(objects), tuple(deleted + gone), status.sync_token, token is None
        )

    # -- ctag / etag fallback ------------------------------------------------
    def _fallback(self, token: str | None) -> DavSyncResult:
        previous = EtagState.decode(token) if token else None
        state = collection_state(self.client.http, self.client.url)
        ctag = state.ctag if state is not None else None
        if previous is not None and ctag is not None and previous.ctag == ctag:
            return DavSyncResult((), (), token, full=False)
        etags = self._list_etags()
        if previous is None:
            wanted = list(etags)
            deleted: list[str] = []
        else:
            wanted = [href for href, etag in etags.items() if previous.etags.get(href) != etag]
            deleted = [href for href in previous.etags if href not in etags]
        objects = self.client.multiget(wanted)
        gone = _missing(wanted, objects)
        for href in gone:
            etags.pop(href, None)
        for obj in objects:  # the etag read with the data is the one to remember
            if obj.etag is not None:
                etags[obj.href] = obj.etag
        new_token = EtagState(ctag, etags).encode()
        return DavSyncResult(tuple(objects), tuple(deleted + gone), new_token, previous is None)

    def _list_etags(self) -> dict[str, str]:
        status = propfind(self.client.http, self.client.url, [tag(DAV, "getetag")], depth=1)
        return {
            item.href: item.etag
            for item in status.responses
            if item.etag is not None and not same_path(item.href, self.client.url)
        }


def _sync_body(token: str | None) -> bytes:
    root = ET.Element(tag(DAV, "sync-collection"))
    ET.SubElement(root, tag(DAV, "sync-token")).text = token or ""
    ET.SubElement(root, tag(DAV, "sync-level")).text = "1"
    prop = ET.SubElement(root, tag(DAV, "prop"))
    ET.SubElement(prop, tag(DAV, "getetag"))
    return to_bytes(root)


def _missing(hrefs: list[str], objects: list[DavObject]) -> list[str]:
    got = {path_key(obj.href) for obj in objects}
    return [href for href in hrefs if path_key(href) not in got]
