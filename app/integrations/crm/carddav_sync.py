"""Two-way sync between the CRM's people and one CardDAV address book.

Each person is one vCard. Per person and book the CRM keeps the card's
href, its ETag, the person's ``updated_at`` when both sides last agreed
(``synced_rev``) and the last card seen (for properties the CRM does not
model, written back untouched). A sync first *pulls* (``sync(token)``: what
changed on the server), then *pushes* (``put`` with ``If-Match``: what
changed locally), then keeps the new token.

Who wins, decided in one place (``_pull_changed``):

- only the server changed: the server's card is applied;
- only the CRM changed: the CRM's person is written;
- both changed: the later of the card's ``REV`` and the person's
  ``updated_at`` wins; a card without ``REV`` counts as changed now (it
  was seen changed after the last sync), so it wins. The losing version is
  never dropped: it is kept as a note on the person.
- deleted on the server: the person gets a tombstone, unless it changed
  locally since the last sync; then it is written again as a new card.
- deleted in the CRM (a tombstone, or merged into someone): the card is
  deleted on the server, unless the server changed it later (then it
  comes back).

The address book is reached through :class:`AddressBook`, the four methods
of ``app.integrations.dav.AddressBookClient``; tests pass an in-memory one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from app.integrations.crm.mapping import parse_rev, person_from_vcard, same_content
from app.integrations.crm.mapping import vcard_from_person as _to_card
from app.integrations.crm.models import Note, Person
from app.integrations.crm.store import CrmStore
from app.integrations.crm.vcard import VCard, parse_vcards, write_vcard
from app.integrations.errors import MalformedDataError, RemoteConflictError, RemoteNotFoundError
from app.memory.db import from_db_time, to_db_time

__all__ = ["AddressBook", "CardDavSync", "SyncReport"]

log = logging.getLogger("soloist.integrations.crm")

_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class DavObjectLike(Protocol):
    @property
    def href(self) -> str: ...
    @property
    def etag(self) -> str | None: ...
    @property
    def data(self) -> str: ...


class DavSyncResultLike(Protocol):
    @property
    def changed(self) -> tuple[DavObjectLike, ...]: ...
    @property
    def deleted(self) -> tuple[str, ...]: ...
    @property
    def token(self) -> str | None: ...
    @property
    def full(self) -> bool: ...


class AddressBook(Protocol):
    """What the sync needs of an address book (``AddressBookClient`` has it)."""

    def sync(self, token: str | None) -> DavSyncResultLike: ...
    def get(self, href: str) -> DavObjectLike: ...
    def put(self, href: str | None, data: str, etag: str | None = None) -> DavObjectLike: ...
    def delete(self, href: str, etag: str | None = None) -> None: ...


@dataclass
class SyncReport:
    """Counts of one sync run; ``defects`` name cards by href, never by content."""

    pulled_new: int = 0
    pulled_updated: int = 0
    pulled_deleted: int = 0
    pushed_new: int = 0
    pushed_updated: int = 0
    pushed_deleted: int = 0
    conflicts: int = 0
    defects: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line for the sync status: counts only."""
        text = (
            f"from the address book {self.pulled_new} new, {self.pulled_updated} updated, "
            f"{self.pulled_deleted} deleted; to it {self.pushed_new} new, "
            f"{self.pushed_updated} updated, {self.pushed_deleted} deleted"
        )
        if self.conflicts:
            text += f"; {self.conflicts} conflicts (each losing version kept as a note)"
        if self.defects:
            text += f"; {len(self.defects)} cards left as they were"
        return text

    def counts(self) -> dict[str, int]:
        """The counts by name, for an event."""
        names = ("pulled_new", "pulled_updated", "pulled_deleted", "pushed_new",
                 "pushed_updated", "pushed_deleted", "conflicts")  # fmt: skip
        return {name: int(getattr(self, name)) for name in names} | {"defects": len(self.defects)}


@dataclass(frozen=True, slots=True)
class _Link:
    person_id: str
    href: str
    etag: str | None
    synced_rev: datetime
    remote: str


class CardDavSync:
    """Sync the CRM's people with the address book ``book`` (known as ``book_id``)."""

    def __init__(
        self, store: CrmStore, book: AddressBook, book_id: str, *, version: str = "4.0"
    ) -> None:
        self.store = store
        self.book = book
        self.book_id = book_id
        self.version = version

    def run(self) -> SyncReport:
        report = SyncReport()
        token = self._pull(report)
        self._push(report)
        self._save_token(token)
        log.info(
            "carddav sync %s: pulled %d/%d/%d, pushed %d/%d/%d, %d conflicts, %d defects",
            self.book_id, report.pulled_new, report.pulled_updated, report.pulled_deleted,
            report.pushed_new, report.pushed_updated, report.pushed_deleted,
            report.conflicts, len(report.defects),
        )  # fmt: skip
        return report

    # -- pull ----------------------------------------------------------------------------
    def _pull(self, report: SyncReport) -> str | None:
        result = self.book.sync(self._token())
        by_href = {link.href: link for link in self._links().values()}
        for obj in result.changed:
            self._pull_one(obj, by_href.get(obj.href), report)
        gone = set(result.deleted)
        if result.full:
            gone |= set(by_href) - {obj.href for obj in result.changed}
        for href in sorted(gone):
            if href in by_href:
                self._pull_deleted(by_href[href], report)
        return result.token

    def _pull_one(self, obj: DavObjectLike, link: _Link | None, report: SyncReport) -> None:
        try:
            card = parse_vcards(obj.data).cards[0]
        except MalformedDataError:
            report.defects.append(f"{obj.href}: not a readable vCard; left as it is")
            return
        if link is not None and obj.etag is not None and link.etag == obj.etag:
            return  # our own write, or nothing new
        person = self._local_for(card, link)
        if person is None:
            saved = self.store.save_person(person_from_vcard(card, source="carddav"))
            self._link(saved, obj, obj.data)
            report.pulled_new += 1
            return
        self._pull_changed(person, card, obj, link, report)

    def _local_for(self, card: VCard, link: _Link | None) -> Person | None:
        if link is not None:
            return self.store.get_person(link.person_id, include_deleted=True)
        if not card.uid:
            return None
        person = self.store.find_by_uid(card.uid)
        return person if person is not None and person.merged_into is None else None

    def _pull_changed(
        self,
        person: Person,
        card: VCard,
        obj: DavObjectLike,
        link: _Link | None,
        report: SyncReport,
    ) -> None:
        updated = _updated(person)
        local_changed = link is None or updated > link.synced_rev
        if not local_changed:
            self._apply_remote(person, card, obj, report)
            return
        remote_time = parse_rev(card.rev)
        local_time = person.deleted_at or updated
        if same_content(person_from_vcard(card, base=person), person) and not person.deleted_at:
            self._link(person, obj, obj.data)  # both sides say the same: nothing to resolve
            return
        report.conflicts += 1
        if remote_time is None or remote_time >= local_time:
            if person.deleted_at is None:
                self._keep_loser(person.id, person, "the CRM")
            self._apply_remote(person, card, obj, report)
        else:
            remote_person = person_from_vcard(card, base=person)
            if person.deleted_at is None:
                self._keep_loser(person.id, remote_person, "the address book")
            # Local wins: remember the server's version so the push's If-Match holds.
            synced = link.synced_rev if link else _NEVER
            self._save_link(_Link(person.id, obj.href, obj.etag, synced, obj.data))

    def _apply_remote(
        self, person: Person, card: VCard, obj: DavObjectLike, report: SyncReport
    ) -> None:
        incoming = replace(person_from_vcard(card, base=person), deleted_at=None, merged_into=None)
        saved = person if same_content(incoming, person) else self.store.save_person(incoming)
        self._link(saved, obj, obj.data)
        report.pulled_updated += 1

    def _pull_deleted(self, link: _Link, report: SyncReport) -> None:
        person = self.store.get_person(link.person_id, include_deleted=True)
        self._drop_link(link.person_id)
        if person is None or person.deleted_at is not None:
            return
        if _updated(person) > link.synced_rev:
            return  # changed here since: the push writes it again as a new card
        self.store.delete_person(person.id)
        report.pulled_deleted += 1

    def _keep_loser(self, person_id: str, loser: Person, side: str) -> None:
        body = f"Address book sync conflict: this version from {side} lost to a newer one.\n"
        self.store.add_note(Note(id="", body=body + _describe(loser), person_id=person_id))

    # -- push ----------------------------------------------------------------------------
    def _push(self, report: SyncReport) -> None:
        links = self._links()
        for person in self.store.list_people(include_deleted=True):
            link = links.get(person.id)
            if person.deleted_at is not None:
                if link is not None:
                    self._push_delete(link, report)
            elif link is None:
                self._push_new(person, report)
            elif person.updated_at is not None and person.updated_at > link.synced_rev:
                self._push_update(person, link, report, retry=True)

    def _card_text(self, person: Person, previous: str | None) -> str:
        before = None
        if previous:
            try:
                before = parse_vcards(previous).cards[0]
            except MalformedDataError:
                before = None
        return write_vcard(_to_card(person, before), self.version)

    def _push_new(self, person: Person, report: SyncReport) -> None:
        data = self._card_text(person, None)
        obj = self.book.put(None, data)
        self._link(person, obj, data)
        report.pushed_new += 1

    def _push_update(self, person: Person, link: _Link, report: SyncReport, retry: bool) -> None:
        data = self._card_text(person, link.remote)
        try:
            obj = self.book.put(link.href, data, link.etag)
        except RemoteConflictError:
            if not retry:
                report.defects.append(f"{link.href}: changed again during the sync; next time")
                return
            self._pull_one(self.book.get(link.href), link, report)
            fresh = self._links().get(person.id)
            current = self.store.get_person(person.id)
            if fresh is not None and current is not None and _updated(current) > fresh.synced_rev:
                self._push_update(current, fresh, report, retry=False)
            return
        self._link(person, obj, data)
        report.pushed_updated += 1

    def _push_delete(self, link: _Link, report: SyncReport) -> None:
        try:
            self.book.delete(link.href, link.etag)
        except RemoteNotFoundError:
            pass
        except RemoteConflictError:
            report.defects.append(f"{link.href}: changed on the server; kept until next sync")
            return
        self._drop_link(link.person_id)
        report.pushed_deleted += 1

    # -- state ---------------------------------------------------------------------------
    def _token(self) -> str | None:
        row = self.store.db.fetchone(
            "SELECT sync_token FROM crm_carddav_books WHERE book = ?", (self.book_id,)
        )
        return None if row is None else row[0]

    def _save_token(self, token: str | None) -> None:
        self.store.db.execute(
            "INSERT OR REPLACE INTO crm_carddav_books VALUES (?, ?, ?)",
            (self.book_id, token, to_db_time(self.store.now())),
        )

    def _links(self) -> dict[str, _Link]:
        rows = self.store.db.fetchall(
            "SELECT person_id, href, etag, synced_rev, remote FROM crm_carddav_links "
            "WHERE book = ?",
            (self.book_id,),
        )
        return {r[0]: _Link(r[0], r[1], r[2], from_db_time(r[3]), r[4]) for r in rows}

    def _link(self, person: Person, obj: DavObjectLike, data: str) -> None:
        self._save_link(_Link(person.id, obj.href, obj.etag, _updated(person), data))

    def _save_link(self, link: _Link) -> None:
        self.store.db.execute(
            "INSERT OR REPLACE INTO crm_carddav_links VALUES (?, ?, ?, ?, ?, ?)",
            (self.book_id, link.person_id, link.href, link.etag, to_db_time(link.synced_rev),
             link.remote),
        )  # fmt: skip

    def _drop_link(self, person_id: str) -> None:
        self.store.db.execute(
            "DELETE FROM crm_carddav_links WHERE book = ? AND person_id = ?",
            (self.book_id, person_id),
        )


def _describe(person: Person) -> str:
    lines = [f"Name: {person.full_name}"]
    if person.company_name:
        lines.append(f"Company: {person.company_name}")
    if person.title:
        lines.append(f"Title: {person.title}")
    lines += [f"Email: {e.value}" for e in person.emails]
    lines += [f"Phone: {p.value}" for p in person.phones]
    if person.background:
        lines.append(f"Note: {person.background}")
    return "\n".join(lines)


def _updated(person: Person) -> datetime:
    if person.updated_at is None:  # a stored person always has one
        raise ValueError(f"person {person.id} has no updated_at")
    return person.updated_at
