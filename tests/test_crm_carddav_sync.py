"""Two-way CardDAV sync: an in-memory address book for the rules, Radicale end to end."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from dav_server import DavServer, radicale  # noqa: F401  (a real Radicale fixture)

from app.integrations.crm.carddav_sync import CardDavSync
from app.integrations.crm.models import ContactPoint, Person
from app.integrations.crm.store import CrmStore
from app.integrations.crm.vcard import parse_vcards
from app.integrations.errors import RemoteConflictError, RemoteNotFoundError
from app.memory.db import Database

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass(frozen=True)
class Obj:
    href: str
    etag: str | None
    data: str


@dataclass(frozen=True)
class Result:
    changed: tuple[Obj, ...]
    deleted: tuple[str, ...]
    token: str | None
    full: bool


class FakeBook:
    """An address book with sync tokens, ETags and If-Match, in memory."""

    def __init__(self) -> None:
        self.cards: dict[str, Obj] = {}
        self.log: list[tuple[int, str]] = []
        self.version = 0

    def _bump(self, href: str) -> str:
        self.version += 1
        self.log.append((self.version, href))
        return f'"{self.version}"'

    def sync(self, token: str | None) -> Result:
        if token is None:
            return Result(tuple(self.cards.values()), (), str(self.version), True)
        since = {href for v, href in self.log if v > int(token)}
        changed = tuple(self.cards[h] for h in sorted(since) if h in self.cards)
        deleted = tuple(h for h in sorted(since) if h not in self.cards)
        return Result(changed, deleted, str(self.version), False)

    def get(self, href: str) -> Obj:
        return self.cards[href]

    def put(self, href: str | None, data: str, etag: str | None = None) -> Obj:
        if href is None:
            href = f"/book/{parse_vcards(data).cards[0].uid}.vcf"
            if href in self.cards:
                raise RemoteConflictError("exists")
        elif etag is not None and self.cards[href].etag != etag:
            raise RemoteConflictError("etag")
        obj = Obj(href, self._bump(href), data)
        self.cards[href] = obj
        return obj

    def delete(self, href: str, etag: str | None = None) -> None:
        if href not in self.cards:
            raise RemoteNotFoundError("gone")
        if etag is not None and self.cards[href].etag != etag:
            raise RemoteConflictError("etag")
        del self.cards[href]
        self._bump(href)

    def edit(self, href: str, old: str, new: str) -> None:
        """A change made by another app on the server."""
        self.put(href, self.cards[href].data.replace(old, new))


@pytest.fixture
def store(db: Database) -> CrmStore:
    return CrmStore(db, Clock())


@pytest.fixture
def book() -> FakeBook:
    return FakeBook()


def card(book: FakeBook) -> str:
    [obj] = book.cards.values()
    return obj.data


def ana(store: CrmStore) -> Person:
    return store.save_person(
        Person(
            id="",
            full_name="Ana Lima",
            emails=(ContactPoint("a@x.com", "work"),),
            company_name="Acme",
        )
    )


def test_push_then_nothing_to_do(store: CrmStore, book: FakeBook) -> None:
    ana(store)
    store.save_person(Person(id="", full_name="Rui"))
    first = CardDavSync(store, book, "b").run()
    assert (first.pushed_new, first.pulled_new) == (2, 0)
    assert len(book.cards) == 2
    second = CardDavSync(store, book, "b").run()
    assert second == type(second)()  # all zeros: our own writes are not read back as changes


def test_server_change_is_pulled_and_extras_survive_a_push(store: CrmStore, book: FakeBook) -> None:
    person = ana(store)
    sync = CardDavSync(store, book, "b")
    sync.run()
    [href] = book.cards
    book.edit(href, "FN:Ana Lima", "FN:Ana Souza\r\nX-FOO:kept")
    report = sync.run()
    assert (report.pulled_updated, report.pushed_updated) == (1, 0)
    assert store.require_person(person.id).full_name == "Ana Souza"
    store.save_person(replace(store.require_person(person.id), title="CEO"))
    assert sync.run().pushed_updated == 1
    text = card(book)
    assert "TITLE:CEO" in text and "X-FOO:kept" in text and "FN:Ana Souza" in text


def test_conflict_later_server_rev_wins_and_local_is_kept_as_note(
    store: CrmStore, book: FakeBook
) -> None:
    person = ana(store)
    sync = CardDavSync(store, book, "b")
    sync.run()
    [href] = book.cards
    store.save_person(replace(store.require_person(person.id), title="Local title"))
    later = "REV:20300101T000000Z"
    data = card(book)
    rev_line = next(line for line in data.split("\r\n") if line.startswith("REV:"))
    book.edit(href, rev_line, f"{later}\r\nTITLE:Server title")
    report = sync.run()
    assert report.conflicts == 1
    assert store.require_person(person.id).title == "Server title"
    [note] = store.list_notes(person_id=person.id)
    assert "from the CRM" in note.body and "Local title" in note.body
    assert "Server title" in card(book)


def test_conflict_later_local_change_wins_and_server_is_kept_as_note(
    store: CrmStore, book: FakeBook
) -> None:
    person = ana(store)
    sync = CardDavSync(store, book, "b")
    sync.run()
    [href] = book.cards
    data = card(book)
    rev_line = next(line for line in data.split("\r\n") if line.startswith("REV:"))
    book.edit(href, rev_line, "REV:20000101T000000Z\r\nTITLE:Server title")
    store.save_person(replace(store.require_person(person.id), title="Local title"))
    report = sync.run()
    assert (report.conflicts, report.pushed_updated) == (1, 1)
    assert store.require_person(person.id).title == "Local title"
    [note] = store.list_notes(person_id=person.id)
    assert "from the address book" in note.body and "Server title" in note.body
    assert "TITLE:Local title" in card(book)


def test_deletions_both_ways(store: CrmStore, book: FakeBook) -> None:
    first = ana(store)
    second = store.save_person(Person(id="", full_name="Rui"))
    sync = CardDavSync(store, book, "b")
    sync.run()
    href = next(h for h, o in book.cards.items() if "Rui" in o.data)
    book.delete(href)
    store.delete_person(first.id)
    report = sync.run()
    assert (report.pulled_deleted, report.pushed_deleted) == (1, 1)
    assert book.cards == {}
    tomb = store.get_person(second.id, include_deleted=True)
    assert tomb is not None and tomb.deleted_at is not None
    assert sync.run() == type(report)()


def test_new_and_unreadable_server_cards(store: CrmStore, book: FakeBook) -> None:
    book.put(None, "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:s1\r\nFN:From Phone\r\nEND:VCARD\r\n")
    book.cards["/book/bad.vcf"] = Obj("/book/bad.vcf", '"x"', "not a card")
    report = CardDavSync(store, book, "b").run()
    assert report.pulled_new == 1 and len(report.defects) == 1
    assert "/book/bad.vcf" in report.defects[0]
    [person] = store.list_people()
    assert (person.full_name, person.uid, person.source) == ("From Phone", "s1", "carddav")


def test_full_resync_notices_cards_gone_while_token_was_lost(
    store: CrmStore, book: FakeBook
) -> None:
    person = ana(store)
    sync = CardDavSync(store, book, "b")
    sync.run()
    [href] = book.cards
    del book.cards[href]  # vanished without a log entry; a full listing must notice
    store.db.execute("UPDATE crm_carddav_books SET sync_token = NULL")
    assert sync.run().pulled_deleted == 1
    assert store.get_person(person.id) is None


# -- against a real server -------------------------------------------------------------
def test_radicale_end_to_end(store: CrmStore, radicale: DavServer) -> None:  # noqa: F811
    from app.integrations.dav import AddressBookClient, dav_http_client

    http = dav_http_client(radicale.url, radicale.user, radicale.password)
    try:
        _round_trip(store, AddressBookClient(http, radicale.book_url))
    finally:
        http.close()


def _round_trip(store: CrmStore, client: object) -> None:
    from app.integrations.dav import AddressBookClient

    assert isinstance(client, AddressBookClient)
    sync = CardDavSync(store, client, "radicale", version="3.0")
    anna = store.save_person(
        Person(id="", full_name="Anna Müller", emails=(ContactPoint("anna@x.com", "work"),))
    )
    rui = store.save_person(Person(id="", full_name="Rui; Costa, Jr.", title="CFO"))
    assert sync.run().pushed_new == 2
    listing = client.sync(None)
    assert len(listing.changed) == 2
    anna_obj = next(o for o in listing.changed if "Anna" in o.data)
    client.put(
        anna_obj.href, anna_obj.data.replace("FN:Anna Müller", "FN:Anna Schmidt"), anna_obj.etag
    )
    store.save_person(replace(store.require_person(rui.id), title="CEO"))
    report = sync.run()
    assert (report.pulled_updated, report.pushed_updated, report.conflicts) == (1, 1, 0)
    assert store.require_person(anna.id).full_name == "Anna Schmidt"
    server = {parse_vcards(o.data).cards[0].fn: parse_vcards(o.data).cards[0]
              for o in client.sync(None).changed}  # fmt: skip
    assert set(server) == {"Anna Schmidt", "Rui; Costa, Jr."}
    assert server["Rui; Costa, Jr."].title == "CEO"
    assert sync.run() == type(report)()
    rui_href = next(o.href for o in client.sync(None).changed if "Rui" in o.data)
    client.delete(rui_href)
    assert sync.run().pulled_deleted == 1
    tomb = store.get_person(rui.id, include_deleted=True)
    assert tomb is not None and tomb.deleted_at is not None
