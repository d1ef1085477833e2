"""A CardDAV address book: sync, read, write and delete vCards.

This is the interface the CRM syncs its people through. It moves vCard text
and never parses it beyond the one ``UID`` line a new card's file name
needs (``app.integrations.crm.vcard`` parses vCards).
"""

from __future__ import annotations

import uuid

from app.integrations.dav.objects import VCARD, CollectionClient, DavObject, DavSyncResult
from app.integrations.dav.sync import CollectionSync
from app.integrations.http import HttpClient


class AddressBookClient:
    """One address book collection at ``url``."""

    def __init__(self, http: HttpClient, url: str, *, use_sync_collection: bool = True) -> None:
        self._objects = CollectionClient(http, url, VCARD)
        self._sync = CollectionSync(self._objects, use_sync_collection=use_sync_collection)

    @property
    def url(self) -> str:
        return self._objects.url

    def sync(self, token: str | None) -> DavSyncResult:
        """Changes since ``token`` (None: every card, ``full=True``)."""
        return self._sync.sync(token)

    def get(self, href: str) -> DavObject:
        return self._objects.get(href)

    def put(self, href: str | None, data: str, etag: str | None = None) -> DavObject:
        """Create (``href`` None: ``<uid>.vcf``, If-None-Match: *) or replace a card.

        A card without a ``UID`` line gets one. ``etag`` makes the write
        conditional; a mismatch raises ``RemoteConflictError``.
        """
        if href is None:
            uid = vcard_uid(data)
            if uid is None:
                uid = str(uuid.uuid4())
                data = _with_uid(data, uid)
            return self._objects.put(self._objects.href_for(uid), data, create=True)
        return self._objects.put(href, data, etag=etag, create=False)

    def delete(self, href: str, etag: str | None = None) -> None:
        self._objects.delete(href, etag)


def unfolded_lines(text: str) -> list[str]:
    """Content lines with RFC 6350 folding undone (a leading space continues a line)."""
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    return lines


def vcard_values(text: str, name: str) -> list[str]:
    """The raw values of property ``name`` (``FN``, ``EMAIL``...), parameters dropped."""
    wanted = name.upper()
    values = []
    for line in unfolded_lines(text):
        head, sep, value = line.partition(":")
        if not sep:
            continue
        prop = head.split(";", 1)[0].rsplit(".", 1)[-1].upper()  # "item1.EMAIL" -> EMAIL
        if prop == wanted:
            values.append(value.strip())
    return values


def vcard_uid(text: str) -> str | None:
    values = vcard_values(text, "UID")
    return values[0] if values and values[0] else None


def _with_uid(text: str, uid: str) -> str:
    marker = "END:VCARD"
    index = text.upper().rfind(marker)
    if index < 0:
        return text
    return f"{text[:index]}UID:{uid}\r\n{text[index:]}"
