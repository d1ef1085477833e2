"""Folder sync against a real Dovecot: incremental, flags, deletions, lost connections."""

# The mail server fixtures are imported here, so test parameters shadow them (F811).
# ruff: noqa: F811

from __future__ import annotations

import imaplib
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from mail_servers import (  # noqa: F401  (fixtures)
    CuttingProxy,
    DovecotServer,
    MailUser,
    cutting_proxy,
    dovecot,
    mail_user,
)

from app.integrations.base import ConnectorEvent
from app.integrations.email.imap import ImapClient, ImapLogin
from app.integrations.email.imap_sync import MailSync
from app.integrations.email.mail_store import MailStore
from app.integrations.email.transport import Endpoint, Security
from app.integrations.errors import ConnectionLostError
from app.memory.db import Database

pytestmark = pytest.mark.slow


@dataclass
class Remembered:
    text: str
    kind: str
    scope: str
    provenance: Any
    metadata: Mapping[str, Any] | None


class RecordingMemory:
    """A MemorySink that records what it is asked to remember."""

    def __init__(self) -> None:
        self.calls: list[Remembered] = []

    def remember(
        self,
        text: str,
        kind: str = "note",
        scope: str = "global",
        provenance: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> object:
        self.calls.append(Remembered(text, kind, scope, provenance, metadata))
        return None


def mail(n: int, body: str = "hello", reply_to: int | None = None) -> bytes:
    extra = f"In-Reply-To: <m{reply_to}@example.test>\r\n" if reply_to else ""
    return (
        f"From: Sender {n} <s{n}@example.test>\r\nTo: a@example.test\r\n"
        f"Subject: message {n}\r\nMessage-ID: <m{n}@example.test>\r\n"
        f"Date: Mon, 06 May 2024 10:{n % 60:02d}:00 +0000\r\n{extra}\r\n{body} {n}\r\n"
    ).encode()


class Harness:
    def __init__(self, server: DovecotServer, user: MailUser, db: Database, port: int = 0) -> None:
        self.server, self.user = server, user
        self.events: list[ConnectorEvent] = []
        self.memory = RecordingMemory()
        self.store = MailStore(db, "acct")
        security = Security.PLAIN if port else Security.TLS
        self.endpoint = Endpoint(server.host, port or server.imaps_port, security, server.ca_file)
        self.sync = MailSync(
            "acct", self.connect, self.store, self.events.append, self.memory, batch_size=10
        )

    def connect(self) -> ImapClient:
        return ImapClient(self.endpoint, ImapLogin(self.user.name, self.user.password)).connect()

    def admin(self) -> imaplib.IMAP4_SSL:
        ctx = ssl.create_default_context(cafile=self.server.ca_file)
        imap = imaplib.IMAP4_SSL(self.server.host, self.server.imaps_port, ssl_context=ctx)
        imap.login(self.user.name, self.user.password)
        return imap


@pytest.fixture
def harness(dovecot: DovecotServer, mail_user: MailUser, db: Database) -> Iterator[Harness]:
    h = Harness(dovecot, mail_user, db)
    yield h
    h.sync.close()


def test_incremental_sync_fetches_only_new_mail(harness: Harness) -> None:
    for n in range(1, 31):
        harness.server.deliver(harness.user.name, mail(n))
    first = harness.sync.sync_folder("INBOX")
    assert first.fetched == 30 and first.new_uids == tuple(range(1, 31))
    assert harness.events == []  # the first sync announces nothing
    assert len(harness.memory.calls) == 30
    for n in range(31, 36):
        harness.server.deliver(harness.user.name, mail(n, reply_to=1 if n == 31 else None))
    second = harness.sync.sync_folder("INBOX")
    assert second.fetched == 5 and second.new_uids == tuple(range(31, 36))
    assert [e.kind for e in harness.events] == ["mail.received"]
    assert harness.events[0].data == {"folder": "INBOX", "count": 5, "uids": [31, 32, 33, 34, 35]}
    new_memories = harness.memory.calls[30:]
    assert len(new_memories) == 5
    call = new_memories[0]
    assert call.kind == "email_summary" and call.scope == "global"
    assert "Subject: message 31" in call.text and "s31@example.test" in call.text
    assert call.provenance.tool == "email.sync"
    assert call.provenance.source_url.startswith("imap://acct/INBOX;UIDVALIDITY=")
    assert call.provenance.source_url.endswith(";UID=31")
    assert call.metadata is not None and call.metadata["message_id"] == "<m31@example.test>"
    # threaded onto message 1, which it replies to
    first_thread = harness.store.find_by_message_id("<m1@example.test>")[0]["thread_id"]
    assert call.metadata["thread_id"] == first_thread
    third = harness.sync.sync_folder("INBOX")
    assert third.fetched == 0 and len(harness.memory.calls) == 35 and len(harness.events) == 1
    assert harness.store.uids("INBOX") == list(range(1, 36))


def test_initial_sync_remembers_only_the_newest(harness: Harness) -> None:
    harness.sync.initial_memory_limit = 4
    for n in range(1, 11):
        harness.server.deliver(harness.user.name, mail(n))
    harness.sync.sync_folder("INBOX")
    urls = [c.provenance.source_url for c in harness.memory.calls]
    assert [u.rsplit("=", 1)[1] for u in urls] == ["7", "8", "9", "10"]


def test_flag_changes_and_deletions_are_picked_up(harness: Harness) -> None:
    for n in range(1, 6):
        harness.server.deliver(harness.user.name, mail(n))
    harness.sync.sync_folder("INBOX")
    admin = harness.admin()
    try:
        admin.select("INBOX")
        admin.uid("STORE", "2", "+FLAGS", "(\\Seen \\Flagged)")
        admin.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
        admin.expunge()
    finally:
        admin.logout()
    result = harness.sync.sync_folder("INBOX")
    assert (result.flag_changes, result.deleted, result.fetched) == (1, 1, 0)
    assert harness.store.uids("INBOX") == [1, 2, 3, 5]
    flags = harness.store.known_flags("INBOX", result.uidvalidity)
    assert flags[2] == "\\Flagged \\Seen" and flags[1] == ""
    unread = [m["uid"] for m in harness.store.search(_query(unread=True))]
    assert sorted(unread) == [1, 3, 5]


def _query(**kw: Any) -> Any:
    from app.integrations.email.mail_store import MailQuery

    return MailQuery(**kw)


def test_connection_cut_mid_fetch_resumes_without_duplicates_or_gaps(
    dovecot: DovecotServer, mail_user: MailUser, db: Database, cutting_proxy: CuttingProxy
) -> None:
    harness = Harness(dovecot, mail_user, db, port=cutting_proxy.port)
    for n in range(1, 31):
        dovecot.deliver(mail_user.name, mail(n, "CUT-HERE" if n == 15 else "hello"))
    cutting_proxy.marker = b"CUT-HERE"
    try:
        with pytest.raises(ConnectionLostError):
            harness.sync.sync_folder("INBOX")
        assert harness.store.uids("INBOX") == list(range(1, 11))  # the first batch was committed
        cutting_proxy.marker = None
        result = harness.sync.sync_folder("INBOX")
    finally:
        harness.sync.close()
    assert result.new_uids == tuple(range(11, 31))
    assert harness.store.uids("INBOX") == list(range(1, 31))
    assert cutting_proxy.cuts == 1


def test_uidvalidity_change_resyncs_without_duplicates(harness: Harness) -> None:
    admin = harness.admin()
    try:
        admin.create("Archive")
        for n in range(1, 4):
            admin.append("Archive", "", None, mail(n))
        first = harness.sync.sync_folder("Archive")
        admin.delete("Archive")
        admin.create("Archive")
        for n in range(1, 6):
            admin.append("Archive", "", None, mail(n + 100))
    finally:
        admin.logout()
    second = harness.sync.sync_folder("Archive")
    assert second.reset and second.uidvalidity != first.uidvalidity
    stored = harness.store.search(_query(folder="Archive", limit=50))
    assert sorted(m["message_id"] for m in stored) == [
        f"<m{n}@example.test>" for n in range(101, 106)
    ]
    assert harness.events == []


def test_sync_all_lists_folders_with_special_use(harness: Harness) -> None:
    harness.server.deliver(harness.user.name, mail(1))
    results = {r.folder: r for r in harness.sync.sync_all()}
    assert set(results) >= {"INBOX", "Sent", "Drafts", "Trash"}
    states = {s.folder: s.special_use for s in harness.store.folders()}
    assert states["Sent"] == "\\Sent" and states["INBOX"] is None


def test_idle_wakes_when_mail_arrives(harness: Harness) -> None:
    harness.sync.sync_folder("INBOX")
    stop = threading.Event()
    timer = threading.Timer(0.3, harness.server.deliver, (harness.user.name, mail(1)))
    started = time.monotonic()
    timer.start()
    try:
        assert harness.sync.idle("INBOX", 20, stop) is True
    finally:
        timer.join()
    assert time.monotonic() - started < 15
    assert harness.sync.sync_folder("INBOX").new_uids == (1,)


def test_polling_fallback_when_idle_is_not_used(harness: Harness) -> None:
    harness.sync.use_idle = False
    harness.sync.poll_interval_s = 0.1
    stop = threading.Event()
    timer = threading.Timer(0.3, harness.server.deliver, (harness.user.name, mail(1)))
    timer.start()
    try:
        assert harness.sync.idle("INBOX", 20, stop) is True
    finally:
        timer.join()
    stop.set()
    assert harness.sync.idle("INBOX", 20, stop) is False


@pytest.mark.parametrize("count", [500])
def test_initial_sync_speed(harness: Harness, count: int) -> None:
    """Prints messages/s of a first sync (quoted in the issue)."""
    harness.sync.batch_size = 50
    for n in range(1, count + 1):
        harness.server.deliver(harness.user.name, mail(n, "lorem ipsum dolor sit amet " * 40))
    started = time.perf_counter()
    result = harness.sync.sync_folder("INBOX")
    elapsed = time.perf_counter() - started
    print(f"\ninitial sync: {count} messages in {elapsed:.2f} s = {count / elapsed:.0f} msg/s")
    assert result.fetched == count
    assert harness.store.uids("INBOX") == list(range(1, count + 1))
