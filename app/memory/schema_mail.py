"""Schema version 6: connector accounts and email.

Owned by the connector that uses these tables; appended to
``app.memory.migrations.MIGRATIONS``. Never edit once shipped: add a new version.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

MAIL = Migration(
    6,
    "connector accounts and email",
    (
        # One row per configured account of any connector kind. ``config`` is JSON
        # of non-secret settings (host, port, user name); secrets live in the keyring.
        """
        CREATE TABLE connector_accounts (
            id          TEXT PRIMARY KEY,
            kind        TEXT NOT NULL,
            name        TEXT NOT NULL,
            config      TEXT NOT NULL,
            enabled     BOOLEAN NOT NULL,
            created_at  TIMESTAMP NOT NULL,
            updated_at  TIMESTAMP NOT NULL
        )
        """,
        # IMAP sync state per folder: which UIDVALIDITY the stored rows belong
        # to and the highest UID stored; a sync fetches only UIDs above it.
        """
        CREATE TABLE mail_folders (
            account_id    TEXT NOT NULL,
            folder        TEXT NOT NULL,      -- the server's mailbox name
            special_use   TEXT,               -- '\\Sent', '\\Drafts'... or NULL
            uidvalidity   BIGINT NOT NULL,
            last_uid      BIGINT NOT NULL,    -- highest UID stored; 0 before any
            highestmodseq BIGINT,             -- CONDSTORE: flags known up to it
            initial_done  BOOLEAN NOT NULL,   -- the first full sync finished
            synced_at     TIMESTAMP NOT NULL, -- UTC
            PRIMARY KEY (account_id, folder)
        )
        """,
        # One row per message per folder. ``id`` is the stable local id tools
        # use; the key is the server's (UIDVALIDITY, UID). Addresses and
        # references are JSON arrays. Raw bytes are not kept.
        """
        CREATE TABLE mail_messages (
            id            TEXT NOT NULL UNIQUE,
            account_id    TEXT NOT NULL,
            folder        TEXT NOT NULL,
            uidvalidity   BIGINT NOT NULL,
            uid           BIGINT NOT NULL,
            message_id    TEXT,
            thread_id     TEXT NOT NULL,
            in_reply_to   TEXT,
            refs          JSON NOT NULL,
            subject       TEXT NOT NULL,
            from_name     TEXT,
            from_email    TEXT,
            to_addrs      JSON NOT NULL,      -- [[name, email], ...]
            cc_addrs      JSON NOT NULL,
            sent_at       TIMESTAMP,          -- UTC, the Date header
            received_at   TIMESTAMP,          -- UTC, the server's INTERNALDATE
            size          BIGINT NOT NULL,
            flags         TEXT NOT NULL,      -- space-separated IMAP flags
            body_text     TEXT NOT NULL,
            attachments   JSON NOT NULL,
            synced_at     TIMESTAMP NOT NULL, -- UTC
            PRIMARY KEY (account_id, folder, uidvalidity, uid)
        )
        """,
        "CREATE INDEX mail_messages_message_id ON mail_messages (account_id, message_id)",
        "CREATE INDEX mail_messages_thread ON mail_messages (account_id, thread_id)",
    ),
)
