"""The local copy of an account's mail in DuckDB (tables of ``schema_mail``).

A message row is keyed by the server's own identity, ``(account, folder,
UIDVALIDITY, UID)``; inserts skip a key already there, so fetching a batch
twice (after a lost connection) can never duplicate a message. The folder's
``last_uid`` moves in the same transaction as the rows it covers, which is
what lets a sync resume exactly where the last committed batch ended.

Reads for the tools (search, read, thread) are here too; they return plain
dicts of JSON values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from app.integrations.base import JsonObject
from app.memory.db import Database, from_db_time, to_db_time, utc_now


def message_key(account_id: str, folder: str, uidvalidity: int, uid: int) -> str:
    """The stable local id of a stored message (what the tools hand around)."""
    digest = hashlib.sha256(f"{account_id}\0{folder}\0{uidvalidity}\0{uid}".encode()).hexdigest()
    return f"m{digest[:20]}"


@dataclass(frozen=True, slots=True)
class FolderState:
    folder: str
    uidvalidity: int
    last_uid: int
    highestmodseq: int | None
    special_use: str | None
    initial_done: bool = False

    def moved_to(self, last_uid: int) -> FolderState:
        return replace(self, last_uid=max(self.last_uid, last_uid))


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as a row; built by the sync from a parsed message."""

    uid: int
    message_id: str | None
    thread_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    from_name: str | None
    from_email: str | None
    to: tuple[tuple[str, str], ...]
    cc: tuple[tuple[str, str], ...]
    sent_at: datetime | None
    received_at: datetime | None
    size: int
    flags: str
    body_text: str
    attachments: tuple[JsonObject, ...]

    def __repr__(self) -> str:  # ids and sizes only
        return f"StoredMessage(uid={self.uid}, size={self.size})"


_COLUMNS = (
    "id, account_id, folder, uidvalidity, uid, message_id, thread_id, in_reply_to, refs, "
    "subject, from_name, from_email, to_addrs, cc_addrs, sent_at, received_at, size, flags, "
    "body_text, attachments, synced_at"
)
_JSON_FIELDS = ("to", "cc", "references", "attachments")
_SUMMARY = (
    "id, folder, uid, message_id, thread_id, subject, from_name, from_email, sent_at, "
    "received_at, flags, size"
)


class MailStore:
    """The stored mail of one account."""

    def __init__(self, db: Database, account_id: str) -> None:
        self.db = db
        self.account_id = account_id

    # -- folder state ---------------------------------------------------
    def folder_state(self, folder: str) -> FolderState | None:
        row = self.db.fetchone(
            "SELECT folder, uidvalidity, last_uid, highestmodseq, special_use, initial_done "
            "FROM mail_folders WHERE account_id = ? AND folder = ?",
            [self.account_id, folder],
        )
        return _state(row) if row is not None else None

    def folders(self) -> list[FolderState]:
        rows = self.db.fetchall(
            "SELECT folder, uidvalidity, last_uid, highestmodseq, special_use, initial_done "
            "FROM mail_folders WHERE account_id = ? ORDER BY folder",
            [self.account_id],
        )
        return [_state(r) for r in rows]

    def reset_folder(self, state: FolderState) -> int:
        """Forget the folder's messages (a new UIDVALIDITY), write ``state``; count dropped."""
        with self.db.transaction():
            dropped = self._count(state.folder)
            self.db.execute(
                "DELETE FROM mail_messages WHERE account_id = ? AND folder = ?",
                [self.account_id, state.folder],
            )
            self.write_state(state)
        return dropped

    def forget_folder(self, folder: str) -> None:
        """The folder is gone from the server: drop its rows and its state."""
        with self.db.transaction():
            for table in ("mail_messages", "mail_folders"):
                self.db.execute(
                    f"DELETE FROM {table} WHERE account_id = ? AND folder = ?",
                    [self.account_id, folder],
                )

    def write_state(self, state: FolderState) -> None:
        self.db.execute(
            """
            INSERT INTO mail_folders (account_id, folder, special_use, uidvalidity, last_uid,
                                      highestmodseq, initial_done, synced_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (account_id, folder) DO UPDATE SET
                special_use = excluded.special_use, uidvalidity = excluded.uidvalidity,
                last_uid = excluded.last_uid, highestmodseq = excluded.highestmodseq,
                initial_done = excluded.initial_done, synced_at = excluded.synced_at
            """,
            [
                self.account_id, state.folder, state.special_use, state.uidvalidity,
                state.last_uid, state.highestmodseq, state.initial_done, _now(),
            ],
        )  # fmt: skip

    # -- messages -------------------------------------------------------
    def save_batch(
        self, state: FolderState, messages: Sequence[StoredMessage]
    ) -> tuple[FolderState, list[StoredMessage]]:
        """Insert ``messages`` and move ``last_uid`` in one transaction.

        Returns the new state and the messages that were really new (a key
        already stored is skipped).
        """
        inserted: list[StoredMessage] = []
        new_state = state.moved_to(max([0, *(m.uid for m in messages)]))
        with self.db.transaction():
            present = self._present(state.folder, state.uidvalidity, [m.uid for m in messages])
            for message in messages:
                if message.uid not in present:
                    self._insert(state, message)
                    inserted.append(message)
            self.write_state(new_state)
        return new_state, inserted

    def _insert(self, state: FolderState, m: StoredMessage) -> None:
        key = message_key(self.account_id, state.folder, state.uidvalidity, m.uid)
        self.db.execute(
            f"INSERT INTO mail_messages ({_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                key, self.account_id, state.folder, state.uidvalidity, m.uid, m.message_id,
                m.thread_id, m.in_reply_to, json.dumps(list(m.references)), m.subject,
                m.from_name, m.from_email, json.dumps(m.to), json.dumps(m.cc),
                _db_time(m.sent_at), _db_time(m.received_at), m.size, m.flags, m.body_text,
                json.dumps(list(m.attachments)), _now(),
            ],
        )  # fmt: skip

    def _present(self, folder: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        if not uids:
            return set()
        rows = self.db.fetchall(
            "SELECT uid FROM mail_messages WHERE account_id = ? AND folder = ? "
            "AND uidvalidity = ? AND uid BETWEEN ? AND ?",
            [self.account_id, folder, uidvalidity, min(uids), max(uids)],
        )
        return {int(r[0]) for r in rows}

    def known_flags(self, folder: str, uidvalidity: int) -> dict[int, str]:
        rows = self.db.fetchall(
            "SELECT uid, flags FROM mail_messages WHERE account_id = ? AND folder = ? "
            "AND uidvalidity = ?",
            [self.account_id, folder, uidvalidity],
        )
        return {int(r[0]): str(r[1]) for r in rows}

    def update_flags(self, folder: str, uidvalidity: int, changes: Mapping[int, str]) -> None:
        with self.db.transaction():
            for uid, flags in changes.items():
                self.db.execute(
                    "UPDATE mail_messages SET flags = ? WHERE account_id = ? AND folder = ? "
                    "AND uidvalidity = ? AND uid = ?",
                    [flags, self.account_id, folder, uidvalidity, uid],
                )

    def delete_uids(self, folder: str, uidvalidity: int, uids: Iterable[int]) -> None:
        with self.db.transaction():
            for uid in uids:
                self.db.execute(
                    "DELETE FROM mail_messages WHERE account_id = ? AND folder = ? "
                    "AND uidvalidity = ? AND uid = ?",
                    [self.account_id, folder, uidvalidity, uid],
                )

    def uids(self, folder: str) -> list[int]:
        rows = self.db.fetchall(
            "SELECT uid FROM mail_messages WHERE account_id = ? AND folder = ? ORDER BY uid",
            [self.account_id, folder],
        )
        return [int(r[0]) for r in rows]

    def _count(self, folder: str) -> int:
        row = self.db.fetchone(
            "SELECT count(*) FROM mail_messages WHERE account_id = ? AND folder = ?",
            [self.account_id, folder],
        )
        return int(row[0]) if row else 0

    def thread_of(self, message_ids: Sequence[str]) -> str | None:
        """The thread id of any stored message among ``message_ids`` (for threading)."""
        if not message_ids:
            return None
        marks = ", ".join("?" for _ in message_ids)
        row = self.db.fetchone(
            f"SELECT thread_id FROM mail_messages WHERE account_id = ? "
            f"AND message_id IN ({marks}) ORDER BY received_at NULLS LAST LIMIT 1",
            [self.account_id, *message_ids],
        )
        return str(row[0]) if row else None

    # -- reads for the tools --------------------------------------------
    def search(self, query: MailQuery) -> list[JsonObject]:
        where, params = query.where(self.account_id)
        rows = self.db.fetchall(
            f"SELECT {_SUMMARY} FROM mail_messages WHERE {where} "
            "ORDER BY coalesce(received_at, sent_at) DESC NULLS LAST, uid DESC LIMIT ?",
            [*params, query.limit],
        )
        return [_summary(r) for r in rows]

    def read(self, message_id: str) -> JsonObject | None:
        row = self.db.fetchone(
            f"SELECT {_SUMMARY}, to_addrs, cc_addrs, in_reply_to, refs, body_text, attachments "
            "FROM mail_messages WHERE account_id = ? AND id = ?",
            [self.account_id, message_id],
        )
        if row is None:
            return None
        full = _summary(row)
        names = ("to", "cc", "in_reply_to", "references", "text", "attachments")
        for name, value in zip(names, row[12:], strict=True):
            full[name] = json.loads(value) if name in _JSON_FIELDS else value
        return full

    def thread(self, thread_id: str, limit: int = 200) -> list[JsonObject]:
        rows = self.db.fetchall(
            f"SELECT {_SUMMARY} FROM mail_messages WHERE account_id = ? AND thread_id = ? "
            "ORDER BY coalesce(sent_at, received_at) NULLS LAST, uid LIMIT ?",
            [self.account_id, thread_id, limit],
        )
        return [_summary(r) for r in rows]

    def find_by_message_id(self, message_id: str, folder: str | None = None) -> list[JsonObject]:
        sql = f"SELECT {_SUMMARY} FROM mail_messages WHERE account_id = ? AND message_id = ?"
        params: list[object] = [self.account_id, message_id]
        if folder is not None:
            sql += " AND folder = ?"
            params.append(folder)
        return [_summary(r) for r in self.db.fetchall(sql, params)]


@dataclass(frozen=True, slots=True)
class MailQuery:
    """What ``email.search`` filters on; every field optional."""

    text: str | None = None
    sender: str | None = None
    folder: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    unread: bool | None = None
    limit: int = 20

    def where(self, account_id: str) -> tuple[str, list[object]]:
        clauses = ["account_id = ?"]
        params: list[object] = [account_id]
        if self.text:
            clauses.append("(contains(lower(subject), ?) OR contains(lower(body_text), ?))")
            params += [self.text.lower()] * 2
        if self.sender:
            clauses.append(
                "(contains(lower(from_email), ?) OR contains(lower(coalesce(from_name, '')), ?))"
            )
            params += [self.sender.lower()] * 2
        if self.folder:
            clauses.append("folder = ?")
            params.append(self.folder)
        if self.since:
            clauses.append("coalesce(received_at, sent_at) >= ?")
            params.append(to_db_time(self.since))
        if self.until:
            clauses.append("coalesce(received_at, sent_at) < ?")
            params.append(to_db_time(self.until))
        if self.unread is not None:
            seen = "contains(flags, '\\Seen')"
            clauses.append(f"NOT {seen}" if self.unread else seen)
        return " AND ".join(clauses), params


def _summary(row: Sequence[Any]) -> JsonObject:
    return {
        "id": row[0],
        "folder": row[1],
        "uid": int(row[2]),
        "message_id": row[3],
        "thread_id": row[4],
        "subject": row[5],
        "from_name": row[6],
        "from_email": row[7],
        "date": _iso(row[8]),
        "received": _iso(row[9]),
        "flags": row[10].split() if row[10] else [],
        "unread": "\\Seen" not in (row[10] or "").split(),
        "size": int(row[11]),
    }


def _state(row: Sequence[Any]) -> FolderState:
    return FolderState(row[0], int(row[1]), int(row[2]), row[3], row[4], bool(row[5]))


def _iso(value: datetime | None) -> str | None:
    return from_db_time(value).isoformat() if value is not None else None


def _db_time(value: datetime | None) -> datetime | None:
    return to_db_time(value) if value is not None else None


def _now() -> datetime:
    return to_db_time(utc_now())
