"""DavConnector end to end: a real Radicale server, a real DuckDB, keyring secrets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from dav_server import DavServer, radicale  # noqa: F401  (fixture)
from keyring_service import MemoryKeyring
from servers import free_port

from app.integrations.base import Account, ConnectorContext, ConnectorEvent, connector_class
from app.integrations.dav import AddressBookClient, CalendarClient, DavConnector, dav_http_client
from app.integrations.dav.ical import EventFields, build_event
from app.integrations.errors import ConnectorAuthError, ConnectorUnreachableError
from app.integrations.ratelimit import Backoff
from app.memory.db import Database
from app.secrets import SecretStore

CARD = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nEMAIL:{email}\r\n" \
       "ORG:{org}\r\nEND:VCARD\r\n"  # fmt: skip


def make_connector(
    db: Database,
    secrets: SecretStore,
    url: str,
    *,
    user: str,
    password: str,
    events: list[ConnectorEvent],
    **config: Any,
) -> DavConnector:
    account = Account("dav1", "dav", "Home server", {"url": url, "username": user, **config})
    secrets.set(account.secret_ref("password"), password)
    context = ConnectorContext(db=db, secrets=secrets, emit=events.append)
    return DavConnector(account, context, backoff=Backoff(base_s=0.01, cap_s=0.02, max_retries=1))


@pytest.fixture
def seeded(radicale: DavServer) -> Iterator[DavServer]:  # noqa: F811
    with dav_http_client(radicale.url, radicale.user, radicale.password) as http:
        book = AddressBookClient(http, radicale.book_url)
        book.put(None, CARD.format(uid="c1", name="Ana Lima", email="ana@lima.pt", org="Lima Lda"))
        book.put(None, CARD.format(uid="c2", name="Rui Costa", email="rui@x.pt", org="Costa SA"))
        calendar = CalendarClient(http, radicale.calendar_url)
        start = datetime(2026, 12, 1, 10, tzinfo=UTC)
        fields = EventFields("Review", start, start + timedelta(hours=1))
        calendar.create(calendar.href_for("e1"), build_event("e1", fields))
    yield radicale


def run_tool(connector: DavConnector, name: str, args: dict[str, Any]) -> Any:
    (tool,) = [t for t in connector.tools() if t.name == name]
    return tool.run(args)


@pytest.mark.parametrize("use_sync_collection", [True, False], ids=["rfc6578", "ctag-etag"])
def test_sync_fills_the_store_and_tools_read_it(
    seeded: DavServer, db: Database, use_sync_collection: bool
) -> None:
    events: list[ConnectorEvent] = []
    connector = make_connector(
        db, SecretStore(MemoryKeyring()), seeded.url, user=seeded.user,
        password=seeded.password, events=events, use_sync_collection=use_sync_collection,
    )  # fmt: skip
    try:
        assert connector_class("dav") is DavConnector
        report = connector.test_connection()
        assert report.ok and report.summary == "1 address books, 1 calendars"
        summary = connector.sync()
        assert (summary.changed, summary.deleted, summary.defects) == (3, 0, 0)
        assert sorted((e.kind, e.data["changed"], e.data["full"]) for e in events) == [
            ("calendar.changed", 1, True),
            ("contacts.changed", 2, True),
        ]
        found = run_tool(connector, "contacts.search", {"query": "lima"})
        assert [(c["uid"], c["name"], c["emails"]) for c in found] == [
            ("c1", "Ana Lima", ["ana@lima.pt"])
        ]
        assert [c["uid"] for c in run_tool(connector, "contacts.search", {"query": "COSTA"})] == [
            "c2"
        ]
        listed = run_tool(connector, "calendar.events",
                          {"start": "2026-12-01T00:00Z", "end": "2026-12-02T00:00Z"})  # fmt: skip
        assert [(e["uid"], e["summary"], e["start"]) for e in listed] == [
            ("e1", "Review", "2026-12-01T10:00:00+00:00")
        ]
        fb = run_tool(connector, "calendar.free_busy",
                      {"start": "2026-12-01T00:00", "end": "2026-12-02T00:00"})  # fmt: skip
        assert fb["busy"] == [{"start": "2026-12-01T10:00:00+00:00",
                               "end": "2026-12-01T11:00:00+00:00"}]  # fmt: skip
        assert [f["start"][11:16] + "-" + f["end"][11:16] for f in fb["free"]] == [
            "09:00-10:00",
            "11:00-17:00",
        ]
        events.clear()
        again = connector.sync()
        assert (again.changed, again.deleted, events) == (0, 0, [])
    finally:
        connector.close()


def test_sync_picks_up_deletions(seeded: DavServer, db: Database) -> None:
    events: list[ConnectorEvent] = []
    connector = make_connector(
        db, SecretStore(MemoryKeyring()), seeded.url, user=seeded.user, password=seeded.password,
        events=events,
    )  # fmt: skip
    try:
        connector.sync()
        with dav_http_client(seeded.url, seeded.user, seeded.password) as http:
            AddressBookClient(http, seeded.book_url).delete(f"/{seeded.user}/book/c2.vcf")
        events.clear()
        summary = connector.sync()
        assert (summary.changed, summary.deleted) == (0, 1)
        assert [(e.kind, e.data["deleted"]) for e in events] == [("contacts.changed", 1)]
        assert run_tool(connector, "contacts.search", {"query": "rui"}) == []
    finally:
        connector.close()


@pytest.mark.slow
def test_with_the_real_keyring(seeded: DavServer, db: Database, secret_service: str) -> None:
    events: list[ConnectorEvent] = []
    connector = make_connector(
        db, SecretStore(), seeded.url, user=seeded.user, password=seeded.password, events=events
    )
    try:
        assert connector.sync().changed == 3
    finally:
        connector.close()


def test_wrong_password_is_an_auth_error(radicale: DavServer, db: Database) -> None:  # noqa: F811
    connector = make_connector(
        db, SecretStore(MemoryKeyring()), radicale.url, user=radicale.user,
        password="wrong-password", events=[],
    )  # fmt: skip
    try:
        report = connector.test_connection()
        assert not report.ok and "credentials were refused" in report.summary
        assert "wrong-password" not in report.summary
        with pytest.raises(ConnectorAuthError):
            connector.sync()
    finally:
        connector.close()


def test_server_down_is_unreachable(db: Database) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    connector = make_connector(
        db, SecretStore(MemoryKeyring()), url, user="ana", password="pw", events=[]
    )
    try:
        assert not connector.test_connection().ok
        with pytest.raises(ConnectorUnreachableError):
            connector.sync()
    finally:
        connector.close()


def test_a_tls_certificate_that_does_not_verify_is_refused(db: Database) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")

    account = Account("dav1", "dav", "Home", {"url": "https://dav.test/", "username": "ana"})
    secrets = SecretStore(MemoryKeyring())
    secrets.set(account.secret_ref("password"), "pw")
    connector = DavConnector(
        account, ConnectorContext(db=db, secrets=secrets), transport=httpx.MockTransport(handler)
    )
    try:
        report = connector.test_connection()
        assert not report.ok and "certificate" in report.summary
    finally:
        connector.close()
