"""The CRM synced with a contacts account's address book, through ``Connections``.

End to end: a real Radicale (``dav_server``), the real office DuckDB, the
accounts and the sync of ``app.integrations.service``; only the keyring is
in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from contract_server import ContractServer
from dav_server import DavServer, radicale  # noqa: F401  (a real Radicale fixture)
from keyring_service import MemoryKeyring

from app.integrations.base import ConnectorEvent, JsonValue
from app.integrations.crm.connector import NOT_LINKED, CrmConnector
from app.integrations.crm.models import ContactPoint, Person
from app.integrations.dav import AddressBookClient, dav_http_client
from app.integrations.service import Connections
from app.memory.db import Database
from app.secrets import SecretStore


@pytest.fixture
def keyring() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
def connections(db: Database, keyring: MemoryKeyring) -> Iterator[Connections]:
    made = Connections(db, SecretStore(backend=keyring))  # type: ignore[arg-type]
    yield made
    made.close()


@pytest.fixture
def events(connections: Connections) -> list[ConnectorEvent]:
    seen: list[ConnectorEvent] = []
    connections.subscribe(seen.append)
    return seen


def add_dav(connections: Connections, server: DavServer, password: str | None = None) -> None:
    settings: dict[str, JsonValue] = {"url": server.url, "username": server.user}
    connections.accounts.add("dav", "Contacts", settings, account_id="dav1")
    connections.accounts.set_secret("dav1", "password", password or server.password)


def add_crm(connections: Connections, **settings: JsonValue) -> CrmConnector:
    connections.accounts.add("crm", "CRM", settings, account_id="crm1")
    crm = connections.connector("crm1")
    assert isinstance(crm, CrmConnector)
    return crm


def book_on(server: DavServer) -> Iterator[AddressBookClient]:
    http = dav_http_client(server.url, server.user, server.password)
    try:
        yield AddressBookClient(http, server.book_url)
    finally:
        http.close()


@pytest.fixture
def book(radicale: DavServer) -> Iterator[AddressBookClient]:  # noqa: F811
    yield from book_on(radicale)


def test_a_person_reaches_the_server_and_a_server_change_comes_back(
    connections: Connections,
    radicale: DavServer,  # noqa: F811
    book: AddressBookClient,
    events: list[ConnectorEvent],
) -> None:
    add_dav(connections, radicale)
    crm = add_crm(connections, dav_account="dav1", address_book=radicale.book_url)
    anna = crm.store.save_person(
        Person(id="", full_name="Anna Müller", emails=(ContactPoint("anna@example.com", "work"),))
    )

    first = connections.sync("crm1")
    assert first.ok, first.message
    assert "to it 1 new" in first.message
    [card] = book.sync(None).changed
    assert "FN:Anna Müller" in card.data and "anna@example.com" in card.data

    book.put(card.href, card.data.replace("FN:Anna Müller", "FN:Anna Schmidt"), card.etag)
    second = connections.sync("crm1")
    assert second.ok, second.message
    assert "from the address book 0 new, 1 updated" in second.message
    assert crm.store.require_person(anna.id).full_name == "Anna Schmidt"
    synced = [e.data for e in events if e.kind == "crm.address_book_synced"]
    assert [(d["pushed_new"], d["pulled_updated"]) for d in synced] == [(1, 0), (0, 1)]


def test_without_a_named_book_the_accounts_only_book_is_found(
    connections: Connections,
    radicale: DavServer,  # noqa: F811
    book: AddressBookClient,
) -> None:
    add_dav(connections, radicale)
    crm = add_crm(connections, dav_account="dav1")
    crm.store.save_person(Person(id="", full_name="Rui Costa"))
    status = connections.sync("crm1")
    assert status.ok, status.message
    assert ["Rui Costa" in obj.data for obj in book.sync(None).changed] == [True]


def test_without_a_link_there_is_nothing_to_do(connections: Connections, db: Database) -> None:
    add_crm(connections)
    assert "crm1" in connections.syncable_accounts()
    status = connections.sync("crm1")
    assert (status.ok, status.message) == (True, NOT_LINKED)
    assert db.fetchone("SELECT count(*) FROM crm_carddav_books") == (0,)


@pytest.mark.parametrize(
    ("crm_settings", "expected"),
    [
        ({"dav_account": "gone"}, "'gone', which no longer exists"),
        ({"dav_account": "crm2"}, "only a contacts (CardDAV) account has address books"),
        ({"address_book": "http://127.0.0.1:9/ana/book/"}, "no contacts account"),
        ({"dav_account": "dav1", "address_book": "file:///etc/"}, "not an http(s) URL"),
    ],
)
def test_a_bad_link_fails_the_sync_with_a_clear_message(
    connections: Connections,
    crm_settings: dict[str, JsonValue],
    expected: str,
    events: list[ConnectorEvent],
) -> None:
    connections.accounts.add("dav", "Contacts", {"url": "http://127.0.0.1:9/"}, account_id="dav1")
    connections.accounts.add("crm", "Other CRM", {}, account_id="crm2")
    add_crm(connections, **crm_settings)
    status = connections.sync("crm1")
    assert not status.ok and expected in status.message
    assert [e.kind for e in events] == ["sync.failed"]


def test_a_turned_off_or_passwordless_account_is_not_used(connections: Connections) -> None:
    settings: dict[str, JsonValue] = {"url": "http://127.0.0.1:9/", "username": "ana"}
    connections.accounts.add("dav", "Contacts", settings, account_id="dav1")
    add_crm(connections, dav_account="dav1")
    no_password = connections.sync("crm1")
    assert not no_password.ok and "no password is stored for Contacts" in no_password.message
    connections.accounts.set_secret("dav1", "password", "pw")
    connections.accounts.set_enabled("dav1", False)
    turned_off = connections.sync("crm1")
    assert not turned_off.ok and "Contacts is turned off" in turned_off.message


def test_a_wrong_password_is_an_auth_failure_that_is_not_echoed(
    connections: Connections,
    radicale: DavServer,  # noqa: F811
) -> None:
    add_dav(connections, radicale, password="not-the-password-42")
    add_crm(connections, dav_account="dav1", address_book=radicale.book_url)
    status = connections.sync("crm1")
    assert not status.ok and status.failures_in_a_row == 1
    assert "credentials were refused" in status.message
    assert "not-the-password-42" not in status.message


def test_a_book_on_another_server_gets_nothing_not_even_the_password(
    connections: Connections,
    radicale: DavServer,  # noqa: F811
) -> None:
    add_dav(connections, radicale)
    with ContractServer() as elsewhere:
        add_crm(connections, dav_account="dav1", address_book=f"{elsewhere.url}/ana/book/")
        status = connections.sync("crm1")
        assert elsewhere.requests == []
    assert not status.ok and "not one of Contacts's address books" in status.message
