"""The local copy of an account's address books and calendars (tables of schema 7).

Sync results land here in one transaction per collection, together with the
new token, so a crash never leaves a token that claims changes we did not
store. Raw vCard / iCalendar text is kept as the server sent it; a few
columns are read from it for search (name, emails) and for time windows
(start and end in UTC, recurring or not).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from app.integrations.dav.carddav import vcard_uid, vcard_values
from app.integrations.dav.discovery import Collection
from app.integrations.dav.ical import parse_calendar
from app.integrations.dav.objects import DavObject, DavSyncResult
from app.integrations.errors import MalformedDataError
from app.memory.db import Database, from_db_time, to_db_time, utc_now

log = logging.getLogger("soloist.integrations.dav")


@dataclass(frozen=True, slots=True)
class StoredCollection:
    url: str
    kind: str
    name: str
    sync_token: str | None


@dataclass(frozen=True, slots=True)
class StoredObject:
    collection_url: str
    href: str
    etag: str | None
    uid: str | None
    data: str
    title: str | None

    def __repr__(self) -> str:
        return f"StoredObject(href={self.href!r}, etag={self.etag!r})"


@dataclass(frozen=True, slots=True)
class _Columns:
    uid: str | None = None
    title: str | None = None
    emails: str | None = None
    org: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    all_day: bool = False
    recurring: bool = False


class DavStore:
    """Rows of one account in ``dav_collections`` and ``dav_objects``."""

    def __init__(self, db: Database, account_id: str, fallback_tz: tzinfo = UTC) -> None:
        self.db = db
        self.account_id = account_id
        self.fallback_tz = fallback_tz

    # -- collections ---------------------------------------------------------
    def save_collection(self, collection: Collection) -> None:
        self.db.execute(
            """
            INSERT INTO dav_collections (account_id, url, kind, name, components, ctag)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (account_id, url) DO UPDATE SET
                kind = excluded.kind, name = excluded.name, components = excluded.components
            """,
            (
                self.account_id,
                collection.url,
                collection.kind,
                collection.name,
                " ".join(collection.components),
                collection.ctag,
            ),
        )

    def collections(self, kind: str | None = None) -> list[StoredCollection]:
        rows = self.db.fetchall(
            "SELECT url, kind, name, sync_token FROM dav_collections"
            " WHERE account_id = ? AND (? IS NULL OR kind = ?) ORDER BY name, url",
            (self.account_id, kind, kind),
        )
        return [StoredCollection(*row) for row in rows]

    def forget_collections_except(self, urls: set[str]) -> int:
        """Drop collections (and their objects) the server no longer lists."""
        gone = [c.url for c in self.collections() if c.url not in urls]
        with self.db.transaction():
            for url in gone:
                self._delete_objects_of(url)
                self.db.execute(
                    "DELETE FROM dav_collections WHERE account_id = ? AND url = ?",
                    (self.account_id, url),
                )
        return len(gone)

    # -- applying a sync -----------------------------------------------------
    def apply(self, collection: StoredCollection, result: DavSyncResult) -> int:
        """Store a sync result and its token atomically; returns parse defects."""
        now = to_db_time(utc_now())
        defects = 0
        with self.db.transaction():
            if result.full:
                self._delete_objects_of(collection.url)
            for href in result.deleted:
                self.db.execute(
                    "DELETE FROM dav_objects WHERE account_id = ? AND href = ?",
                    (self.account_id, href),
                )
            for obj in result.changed:
                columns, bad = self._columns(collection.kind, obj)
                defects += bad
                self._upsert(collection, obj, columns, now)
            self.db.execute(
                "UPDATE dav_collections SET sync_token = ?, synced_at = ?"
                " WHERE account_id = ? AND url = ?",
                (result.token, now, self.account_id, collection.url),
            )
        return defects

    def _delete_objects_of(self, url: str) -> None:
        self.db.execute(
            "DELETE FROM dav_objects WHERE account_id = ? AND collection_url = ?",
            (self.account_id, url),
        )

    def _upsert(
        self, collection: StoredCollection, obj: DavObject, c: _Columns, now: datetime
    ) -> None:
        self.db.execute(
            "DELETE FROM dav_objects WHERE account_id = ? AND href = ?", (self.account_id, obj.href)
        )
        self.db.execute(
            """
            INSERT INTO dav_objects (account_id, collection_url, href, etag, kind, uid, data,
                title, emails, org, starts_at, ends_at, all_day, recurring, synced_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (
                self.account_id,
                collection.url,
                obj.href,
                obj.etag,
                "vcard" if collection.kind == "addressbook" else "icalendar",
                c.uid,
                obj.data,
                c.title,
                c.emails,
                c.org,
                c.starts_at,
                c.ends_at,
                c.all_day,
                c.recurring,
                now,
            ),
        )

    def _columns(self, kind: str, obj: DavObject) -> tuple[_Columns, int]:
        if kind == "addressbook":
            names = vcard_values(obj.data, "FN")
            return _Columns(
                uid=vcard_uid(obj.data),
                title=names[0] if names else None,
                emails=" ".join(vcard_values(obj.data, "EMAIL")) or None,
                org=" ".join(vcard_values(obj.data, "ORG")).replace(";", " ").strip() or None,
            ), 0
        try:
            parsed = parse_calendar(obj.data, self.fallback_tz)
        except MalformedDataError:
            log.warning("unreadable calendar object %s kept raw", obj.href)
            return _Columns(), 1
        masters = [e for e in parsed.events if e.recurrence_id is None] or list(parsed.events)
        if not masters:
            return _Columns(), len(parsed.defects)
        first = masters[0]
        return _Columns(
            uid=first.uid,
            title=first.summary,
            starts_at=to_db_time(first.start_utc(self.fallback_tz)),
            ends_at=to_db_time(first.end_utc(self.fallback_tz)),
            all_day=first.all_day,
            recurring=any(e.rrule for e in parsed.events) or "RDATE" in obj.data,
        ), len(parsed.defects)

    # -- reading -------------------------------------------------------------
    def events_between(self, start: datetime, end: datetime) -> list[StoredObject]:
        """Calendar objects that may have an occurrence in [start, end)."""
        rows = self.db.fetchall(
            """
            SELECT collection_url, href, etag, uid, data, title FROM dav_objects
            WHERE account_id = ? AND kind = 'icalendar'
              AND (recurring OR starts_at IS NULL OR (starts_at < ? AND ends_at >= ?))
            ORDER BY starts_at, href
            """,
            (self.account_id, to_db_time(end), to_db_time(start)),
        )
        return [StoredObject(*row) for row in rows]

    def find_event(self, uid: str) -> StoredObject | None:
        row = self.db.fetchone(
            "SELECT collection_url, href, etag, uid, data, title FROM dav_objects"
            " WHERE account_id = ? AND kind = 'icalendar' AND uid = ? LIMIT 1",
            (self.account_id, uid),
        )
        return StoredObject(*row) if row else None

    def search_contacts(self, query: str, limit: int = 20) -> list[StoredObject]:
        """Cards whose name, email or organisation contains ``query`` (any case)."""
        needle = query.lower()
        rows = self.db.fetchall(
            """
            SELECT collection_url, href, etag, uid, data, title FROM dav_objects
            WHERE account_id = ? AND kind = 'vcard'
              AND strpos(lower(concat_ws(' ', title, emails, org)), ?) > 0
            ORDER BY title, href LIMIT ?
            """,
            (self.account_id, needle, limit),
        )
        return [StoredObject(*row) for row in rows]

    def last_synced(self) -> datetime | None:
        row = self.db.fetchone(
            "SELECT max(synced_at) FROM dav_collections WHERE account_id = ?", (self.account_id,)
        )
        return from_db_time(row[0]) if row and row[0] is not None else None
