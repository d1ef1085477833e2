"""The contacts-and-calendars connector: one CardDAV/CalDAV account.

Settings are the server URL (anything discovery can start from), the user
name, optionally a CA file for a self-hosted server's certificate, and the
time zone floating times are read in; the password is in the keyring.

``sync()`` discovers the collections, brings each one's local copy up to
date (``DavStore``) and emits ``contacts.changed`` / ``calendar.changed``
with counts for each collection that changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any, ClassVar

import httpx

from app.integrations.base import (
    Account,
    Action,
    ConnectionReport,
    Connector,
    ConnectorContext,
    ConnectorEvent,
    Tool,
    register,
)
from app.integrations.dav.actions import CalendarActions
from app.integrations.dav.caldav import CalendarClient
from app.integrations.dav.carddav import AddressBookClient
from app.integrations.dav.discovery import Discovery, discover
from app.integrations.dav.objects import DavSyncResult
from app.integrations.dav.store import DavStore, StoredCollection
from app.integrations.dav.tools import DavTools, zone
from app.integrations.errors import ActionError, ConnectorConfigError, ConnectorError
from app.integrations.http import HttpClient
from app.integrations.ratelimit import Backoff, TokenBucket

log = logging.getLogger("soloist.integrations.dav")


def dav_http_client(
    url: str,
    username: str,
    password: str,
    ca_file: str | None = None,
    **kw: Any,
) -> HttpClient:
    """An HttpClient for a DAV server with basic auth (TLS verified, with ``ca_file`` if given)."""
    kw.setdefault("bucket", TokenBucket(capacity=20, rate_per_s=10))
    return HttpClient(
        url,
        service="The contacts and calendar server",
        auth=httpx.BasicAuth(username, password),
        verify=ca_file if ca_file else True,
        **kw,
    )


@dataclass(frozen=True, slots=True)
class SyncSummary:
    address_books: int
    calendars: int
    changed: int
    deleted: int
    defects: int


@register
class DavConnector(Connector):
    kind: ClassVar[str] = "dav"
    display_name: ClassVar[str] = "Contacts and calendars (CardDAV / CalDAV)"
    settings_schema: ClassVar[dict[str, str]] = {
        "url": "Server URL, e.g. https://dav.example.com/ (discovery finds the rest)",
        "username": "User name",
        "ca_file": "Optional: a CA certificate file for a self-hosted server",
        "timezone": "Optional: your time zone, e.g. Europe/Lisbon (default UTC)",
    }
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    def __init__(
        self,
        account: Account,
        context: ConnectorContext,
        *,
        transport: httpx.BaseTransport | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(account, context)
        self._transport = transport
        self._backoff = backoff
        self._http: HttpClient | None = None
        # False forces the ctag/etag fallback (servers without RFC 6578, and tests).
        self.use_sync_collection = account.setting("use_sync_collection", True) is not False
        self.tz = _account_zone(account)
        self.store = DavStore(context.db, account.id, self.tz)

    def _setting(self, key: str, required: bool = True) -> str | None:
        value = self.account.setting(key)
        if value in (None, "") and not required:
            return None
        if not isinstance(value, str) or not value:
            raise ConnectorConfigError(f"{self.account.name}: the {key} setting is missing")
        return value

    @property
    def http(self) -> HttpClient:
        if self._http is None:
            url = self._setting("url") or ""
            self._http = dav_http_client(
                url,
                self._setting("username") or "",
                self.secret("password"),
                self._setting("ca_file", required=False),
                transport=self._transport,
                backoff=self._backoff,
            )
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def discover(self) -> Discovery:
        return discover(self.http, self._setting("url") or "")

    def test_connection(self) -> ConnectionReport:
        started = time.perf_counter()
        try:
            found = self.discover()
        except ConnectorError as exc:
            return ConnectionReport(False, str(exc), elapsed_ms=_ms(started))
        ok = bool(found.address_books or found.calendars)
        summary = (
            f"{len(found.address_books)} address books, {len(found.calendars)} calendars"
            if ok
            else "connected, but no address book or calendar was found at this URL"
        )
        details = tuple(f"{c.kind}: {c.name}" for c in found.address_books + found.calendars)
        return ConnectionReport(ok, summary, details, _ms(started))

    # -- sync ----------------------------------------------------------------
    def client_for(self, url: str) -> CalendarClient:
        return CalendarClient(self.http, url, use_sync_collection=self.use_sync_collection)

    def sync(self) -> SyncSummary:
        """Bring every address book and calendar up to date; emits events on changes."""
        found = self.discover()
        collections = found.address_books + found.calendars
        for collection in collections:
            self.store.save_collection(collection)
        self.store.forget_collections_except({c.url for c in collections})
        changed = deleted = defects = 0
        for stored in self.store.collections():
            if self.context.cancel.is_set():
                break
            result = self._sync_one(stored)
            defects += self.store.apply(stored, result)
            changed += len(result.changed)
            deleted += len(result.deleted)
            if result.changed or result.deleted:
                self._emit(stored, result)
        return SyncSummary(
            len(found.address_books), len(found.calendars), changed, deleted, defects
        )

    def _sync_one(self, stored: StoredCollection) -> DavSyncResult:
        if stored.kind == "addressbook":
            book = AddressBookClient(
                self.http, stored.url, use_sync_collection=self.use_sync_collection
            )
            return book.sync(stored.sync_token)
        return self.client_for(stored.url).sync(stored.sync_token)

    def _emit(self, stored: StoredCollection, result: DavSyncResult) -> None:
        kind = "contacts.changed" if stored.kind == "addressbook" else "calendar.changed"
        self.context.emit(
            ConnectorEvent(
                kind,
                self.account.id,
                {
                    "collection": stored.url,
                    "changed": len(result.changed),
                    "deleted": len(result.deleted),
                    "full": result.full,
                },
            )
        )

    # -- tools and actions ---------------------------------------------------
    def tools(self) -> Sequence[Tool]:
        return DavTools(self.store, self.tz).tools()

    def actions(self) -> Sequence[Action]:
        return CalendarActions(self.account.id, self.store, self.client_for, self.tz).actions()


def _account_zone(account: Account) -> tzinfo:
    try:
        return zone(account.setting("timezone"), UTC)
    except ActionError as exc:
        raise ConnectorConfigError(f"{account.name}: {exc}") from exc


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
