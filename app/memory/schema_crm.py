"""Schema version 8: the local CRM.

Owned by the connector that uses these tables; appended to
``app.memory.migrations.MIGRATIONS``. Never edit once shipped: add a new version.

No foreign keys: DuckDB refuses many UPDATEs of rows that a foreign key
references, and merging people re-points rows; ids and indexes instead.
Emails and phones are child tables (not JSON lists) because they are the
keys people are found by (imports, dedupe, CardDAV): an index on the
normalised value answers "who has this address" without scanning every
person. Addresses, URLs and categories are only shown, so they stay JSON.
Every time is naive UTC, supplied by Python.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

CRM = Migration(
    8,
    "the local CRM",
    (
        """
        CREATE TABLE crm_companies (
            id          TEXT PRIMARY KEY,
            name        TEXT NOT NULL,
            name_key    TEXT NOT NULL,   -- casefolded, for matching by name
            domain      TEXT NOT NULL,
            created_at  TIMESTAMP NOT NULL,
            updated_at  TIMESTAMP NOT NULL
        )
        """,
        "CREATE INDEX crm_companies_name_key ON crm_companies (name_key)",
        """
        CREATE TABLE crm_people (
            id           TEXT PRIMARY KEY,
            uid          TEXT NOT NULL,   -- the vCard UID, kept for life
            full_name    TEXT NOT NULL,
            given_name   TEXT NOT NULL,
            family_name  TEXT NOT NULL,
            company_id   TEXT,
            title        TEXT NOT NULL,
            addresses    JSON NOT NULL,   -- list of address objects
            urls         JSON NOT NULL,   -- list of strings
            categories   JSON NOT NULL,   -- list of strings
            birthday     TEXT NOT NULL,   -- as written: 1980-05-01, --0501
            background   TEXT NOT NULL,   -- the vCard NOTE
            source       TEXT NOT NULL,   -- manual, csv, vcard, carddav, agent
            created_at   TIMESTAMP NOT NULL,
            updated_at   TIMESTAMP NOT NULL,
            deleted_at   TIMESTAMP,       -- a tombstone, kept for sync
            merged_into  TEXT             -- the person this one was merged into
        )
        """,
        "CREATE INDEX crm_people_uid ON crm_people (uid)",
        "CREATE INDEX crm_people_company ON crm_people (company_id)",
        """
        CREATE TABLE crm_person_emails (
            person_id   TEXT NOT NULL,
            position    INTEGER NOT NULL,
            value       TEXT NOT NULL,
            label       TEXT NOT NULL,
            normalized  TEXT NOT NULL
        )
        """,
        "CREATE INDEX crm_person_emails_person ON crm_person_emails (person_id)",
        "CREATE INDEX crm_person_emails_norm ON crm_person_emails (normalized)",
        """
        CREATE TABLE crm_person_phones (
            person_id   TEXT NOT NULL,
            position    INTEGER NOT NULL,
            value       TEXT NOT NULL,
            label       TEXT NOT NULL,
            normalized  TEXT NOT NULL
        )
        """,
        "CREATE INDEX crm_person_phones_person ON crm_person_phones (person_id)",
        "CREATE INDEX crm_person_phones_norm ON crm_person_phones (normalized)",
        """
        CREATE TABLE crm_deals (
            id           TEXT PRIMARY KEY,
            title        TEXT NOT NULL,
            stage        TEXT NOT NULL,
            person_id    TEXT,
            company_id   TEXT,
            value_cents  BIGINT,
            currency     TEXT NOT NULL,
            created_at   TIMESTAMP NOT NULL,
            updated_at   TIMESTAMP NOT NULL,
            closed_at    TIMESTAMP
        )
        """,
        "CREATE INDEX crm_deals_person ON crm_deals (person_id)",
        """
        CREATE TABLE crm_deal_stages (
            deal_id     TEXT NOT NULL,
            seq         INTEGER NOT NULL,
            from_stage  TEXT,
            to_stage    TEXT NOT NULL,
            changed_at  TIMESTAMP NOT NULL,
            PRIMARY KEY (deal_id, seq)
        )
        """,
        """
        CREATE TABLE crm_activities (
            id           TEXT PRIMARY KEY,
            kind         TEXT NOT NULL,   -- call, email, meeting, note
            subject      TEXT NOT NULL,
            body         TEXT NOT NULL,
            occurred_at  TIMESTAMP NOT NULL,
            person_id    TEXT,
            deal_id      TEXT,
            created_at   TIMESTAMP NOT NULL
        )
        """,
        "CREATE INDEX crm_activities_person ON crm_activities (person_id)",
        """
        CREATE TABLE crm_follow_ups (
            id          TEXT PRIMARY KEY,
            title       TEXT NOT NULL,
            due_at      TIMESTAMP NOT NULL,
            done_at     TIMESTAMP,        -- NULL while open
            person_id   TEXT,
            deal_id     TEXT,
            created_at  TIMESTAMP NOT NULL
        )
        """,
        "CREATE INDEX crm_follow_ups_due ON crm_follow_ups (due_at)",
        """
        CREATE TABLE crm_notes (
            id          TEXT PRIMARY KEY,
            body        TEXT NOT NULL,
            person_id   TEXT,
            deal_id     TEXT,
            company_id  TEXT,
            created_at  TIMESTAMP NOT NULL,
            updated_at  TIMESTAMP NOT NULL
        )
        """,
        "CREATE INDEX crm_notes_person ON crm_notes (person_id)",
        # One row per merge, with the merged person as it was, so it can be explained.
        """
        CREATE TABLE crm_merges (
            id          TEXT PRIMARY KEY,
            kept_id     TEXT NOT NULL,
            merged_id   TEXT NOT NULL,
            reason      TEXT NOT NULL,
            score       DOUBLE NOT NULL,
            snapshot    JSON NOT NULL,
            merged_at   TIMESTAMP NOT NULL
        )
        """,
        "CREATE INDEX crm_merges_kept ON crm_merges (kept_id)",
        # Idempotency of the connector's actions: one row per applied key.
        """
        CREATE TABLE crm_applied_actions (
            key         TEXT PRIMARY KEY,
            action      TEXT NOT NULL,
            outcome     JSON NOT NULL,
            applied_at  TIMESTAMP NOT NULL
        )
        """,
        # CardDAV: per address book, its sync token; per person, where it lives there.
        """
        CREATE TABLE crm_carddav_books (
            book        TEXT PRIMARY KEY,
            sync_token  TEXT,
            synced_at   TIMESTAMP
        )
        """,
        """
        CREATE TABLE crm_carddav_links (
            book        TEXT NOT NULL,
            person_id   TEXT NOT NULL,
            href        TEXT NOT NULL,
            etag        TEXT,
            synced_rev  TIMESTAMP NOT NULL,  -- the person's updated_at when last in step
            remote      TEXT NOT NULL,       -- the last vCard seen, for its other properties
            PRIMARY KEY (book, person_id)
        )
        """,
        "CREATE INDEX crm_carddav_links_href ON crm_carddav_links (book, href)",
    ),
)
