"""Schema version 7: contacts and calendars (CardDAV, CalDAV).

Owned by the connector that uses these tables; appended to
``app.memory.migrations.MIGRATIONS``. Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

DAV = Migration(
    7,
    "contacts and calendars (CardDAV, CalDAV)",
    (
        # One row per address book or calendar of an account. ``sync_token`` is
        # the server's RFC 6578 token or the connector's own ctag/etag token
        # (app.integrations.dav.sync); NULL before the first sync.
        """
        CREATE TABLE dav_collections (
            account_id  TEXT NOT NULL,
            url         TEXT NOT NULL,
            kind        TEXT NOT NULL,      -- 'addressbook' or 'calendar'
            name        TEXT NOT NULL,
            components  TEXT NOT NULL,      -- space-separated: 'VEVENT VTODO'
            ctag        TEXT,
            sync_token  TEXT,
            synced_at   TIMESTAMP,          -- UTC
            PRIMARY KEY (account_id, url)
        )
        """,
        # One row per vCard or iCalendar object. ``data`` is the raw text; the
        # other columns are read from it for search and time windows. For
        # events, starts_at/ends_at are the first (or only) occurrence in UTC;
        # a recurring series matches any window and is expanded when read.
        """
        CREATE TABLE dav_objects (
            account_id      TEXT NOT NULL,
            collection_url  TEXT NOT NULL,
            href            TEXT NOT NULL,
            etag            TEXT,
            kind            TEXT NOT NULL,  -- 'vcard' or 'icalendar'
            uid             TEXT,
            data            TEXT NOT NULL,
            title           TEXT,           -- vCard FN, or the event's SUMMARY
            emails          TEXT,           -- vCard EMAIL values, space-separated
            org             TEXT,           -- vCard ORG
            starts_at       TIMESTAMP,      -- UTC; events only
            ends_at         TIMESTAMP,      -- UTC; events only
            all_day         BOOLEAN NOT NULL,
            recurring       BOOLEAN NOT NULL,
            synced_at       TIMESTAMP NOT NULL,
            PRIMARY KEY (account_id, href)
        )
        """,
    ),
)
