"""``email.send`` exactly once: the send marker and every branch of ``reconcile``.

Against the real Dovecot + aiosmtpd of :mod:`mail_servers`; the pure
helpers of :mod:`app.integrations.email.send_marker` table-driven. The
SIGKILL version of these crashes is ``tests/test_outbox_mail_faults.py``.
"""

# The mail server fixtures are imported here, so test parameters shadow them (F811).
# ruff: noqa: F811

from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes

import pytest
from mail_servers import (  # noqa: F401  (fixtures)
    CuttingProxy,
    DovecotServer,
    MailUser,
    SmtpServer,
    cutting_proxy,
    dovecot,
    mail_user,
    smtp_server,
)

from app.agents.autonomy import Autonomy, AutonomyStore
from app.agents.outbox import Outbox
from app.agents.outbox_states import ActionState
from app.integrations.base import Account, Action, PreparedAction
from app.integrations.email import send_marker
from app.integrations.email.actions import MailActions, SendInDoubtError
from app.integrations.email.imap import ImapClient, ImapLogin
from app.integrations.email.imap_parse import FolderInfo
from app.integrations.email.send_marker import MARKER_FOLDER, MARKER_KEYWORD
from app.integrations.email.settings import EmailSettings
from app.integrations.errors import (
    ActionError,
    ConnectionLostError,
    ConnectorUnreachableError,
    RemoteRejectedError,
)
from app.memory.db import Database

pytestmark = pytest.mark.slow


class SimulatedCrashError(Exception):
    """Stands for the process dying between SMTP acceptance and the Sent copy."""


@dataclass
class Rig:
    """One account's mail actions and a way to look at its mailbox."""

    actions: MailActions
    settings: EmailSettings
    login: ImapLogin
    smtp: SmtpServer
    user: MailUser
    crash_after_smtp: list[bool] = field(default_factory=list)

    @property
    def send(self) -> Action:
        return self.actions.actions()[0]

    @property
    def draft(self) -> Action:
        return self.actions.actions()[1]

    def prepared(self, **over: object) -> PreparedAction:
        args: dict[str, object] = {"to": [self.user.email], "subject": "Hi", "body": "Hello"}
        args.update(over)
        return self.send.prepare(args)  # type: ignore[arg-type]

    def imap(self) -> ImapClient:
        return ImapClient(self.settings.imap, self.login).connect()

    def folders(self) -> set[str]:
        with self.imap() as client:
            return {f.name for f in client.list_folders()}

    def flags(self, folder: str, message_id: str) -> list[str]:
        """The flags of each copy of ``message_id`` in ``folder`` (0 copies: [])."""
        with self.imap() as client:
            if folder not in {f.name for f in client.list_folders()}:
                return []
            client.select(folder)
            uids = send_marker.uids_of(client, message_id)
            if not uids:
                return []
            return list(client.fetch_flags(",".join(map(str, uids))).values())

    def delivered(self, message_id: str) -> int:
        """How many times the SMTP server accepted a mail with ``message_id``."""
        return sum(
            1 for raw in self.smtp.received if message_from_bytes(raw)["Message-ID"] == message_id
        )

    def after_smtp(self) -> None:
        if self.crash_after_smtp and self.crash_after_smtp.pop(0):
            raise SimulatedCrashError


def make_rig(dovecot: DovecotServer, smtp: SmtpServer, user: MailUser, **over: object) -> Rig:
    config: dict[str, object] = {
        "imap_host": dovecot.host, "imap_port": dovecot.imaps_port, "imap_security": "tls",
        "smtp_host": smtp.host, "smtp_port": smtp.starttls_port, "smtp_security": "starttls",
        "username": user.name, "from_address": user.email, "ca_file": dovecot.ca_file, **over,
    }  # fmt: skip
    settings = EmailSettings.from_account(Account("work", "email", "Work", config))  # type: ignore[arg-type]
    login = ImapLogin(user.name, user.password)
    rig = Rig(None, settings, login, smtp, user)  # type: ignore[arg-type]
    rig.actions = MailActions("work", settings, lambda: login, rig.imap, after_smtp=rig.after_smtp)
    return rig


@pytest.fixture
def rig(dovecot: DovecotServer, smtp_server: SmtpServer, mail_user: MailUser) -> Rig:
    return make_rig(dovecot, smtp_server, mail_user)


# -- pure helpers -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("permanent", "expected"),
    [
        (b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)", f"(\\Seen {MARKER_KEYWORD})"),
        (b"(\\Seen \\Deleted $SoloistSending)", f"(\\Seen {MARKER_KEYWORD})"),
        (b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft)", "(\\Seen)"),  # no keywords kept
        (b"()", "(\\Seen)"),  # a read-only folder
        (None, "(\\Seen)"),  # the server sent no PERMANENTFLAGS
    ],
)
def test_the_keyword_only_where_permanentflags_keep_it(
    permanent: bytes | None, expected: str
) -> None:
    assert send_marker.marker_flags(permanent) == expected


def test_the_marker_folder_is_found_at_the_top_or_under_inbox() -> None:
    def info(name: str, delim: str = "/", flags: str = "") -> FolderInfo:
        return FolderInfo(name, delim, frozenset(flags.split()))

    assert send_marker.marker_folder([info("INBOX"), info("Drafts")]) is None
    assert send_marker.marker_folder([info(MARKER_FOLDER)]) == MARKER_FOLDER
    assert send_marker.marker_folder([info(f"INBOX.{MARKER_FOLDER}", ".")]) == (
        f"INBOX.{MARKER_FOLDER}"
    )
    assert send_marker.marker_folder([info(MARKER_FOLDER, flags="\\Noselect")]) is None


@pytest.mark.parametrize("bad", ["<ü@example.test>", '<a"b@example.test>', "<a\\b@x.test>"])
def test_a_message_id_we_could_not_search_for_is_refused(bad: str) -> None:
    with pytest.raises(ActionError, match="Message-ID"):
        send_marker.search_key(bad)


# -- the send against real servers ---------------------------------------------------------
def test_a_send_leaves_one_delivery_one_sent_copy_and_no_marker(rig: Rig) -> None:
    prepared = rig.prepared()
    message_id = prepared.idempotency_key
    assert rig.send.reconcile(prepared) is None  # neither a copy nor a marker: never sent
    assert MARKER_FOLDER not in rig.folders()  # created on demand, not before
    outcome = rig.send.execute(prepared)
    assert outcome.done and outcome.data == {"accepted": 1, "refused": 0, "copied": True}
    assert rig.delivered(message_id) == 1
    [sent_flags] = rig.flags("Sent", message_id)
    assert "\\Seen" in sent_flags
    assert MARKER_FOLDER in rig.folders() and rig.flags(MARKER_FOLDER, message_id) == []
    found = rig.send.reconcile(prepared)
    assert found is not None and found.done and "Sent" in found.summary


def test_a_second_execute_finds_the_sent_copy_and_does_not_send_again(rig: Rig) -> None:
    prepared = rig.prepared()
    rig.send.execute(prepared)
    again = rig.send.execute(prepared)
    assert again.done and "already sent" in again.summary and again.data["copied"] is False
    assert rig.delivered(prepared.idempotency_key) == 1
    assert len(rig.flags("Sent", prepared.idempotency_key)) == 1


def test_a_crash_after_smtp_leaves_the_marker_and_reconcile_cannot_tell(rig: Rig) -> None:
    prepared = rig.prepared()
    message_id = prepared.idempotency_key
    rig.crash_after_smtp.append(True)
    with pytest.raises(SimulatedCrashError):
        rig.send.execute(prepared)
    assert rig.delivered(message_id) == 1 and rig.flags("Sent", message_id) == []
    [marker_flags] = rig.flags(MARKER_FOLDER, message_id)
    assert "\\Seen" in marker_flags and MARKER_KEYWORD in marker_flags  # Dovecot keeps keywords
    with pytest.raises(SendInDoubtError, match="may or may not have gone out") as caught:
        rig.send.reconcile(prepared)
    assert MARKER_FOLDER in str(caught.value) and "Hello" not in str(caught.value)
    # Executing again does not guess either: no second delivery.
    with pytest.raises(SendInDoubtError):
        rig.send.execute(prepared)
    assert rig.delivered(message_id) == 1 and len(rig.flags(MARKER_FOLDER, message_id)) == 1


def test_a_sent_copy_with_a_leftover_marker_is_done_and_the_marker_goes(rig: Rig) -> None:
    prepared = rig.prepared()
    message_id = prepared.idempotency_key
    rig.crash_after_smtp.append(True)
    with pytest.raises(SimulatedCrashError):
        rig.send.execute(prepared)
    with rig.imap() as client:  # the Sent APPEND happened; the crash came before step 4
        client.append("Sent", "(\\Seen)", b"Message-ID: " + message_id.encode() + b"\r\n\r\nx\r\n")
    found = rig.send.reconcile(prepared)
    assert found is not None and found.done
    assert rig.flags(MARKER_FOLDER, message_id) == []
    assert rig.delivered(message_id) == 1


def test_a_refused_send_removes_its_marker_and_is_safe_to_retry(rig: Rig) -> None:
    prepared = rig.prepared(to=["nobody1@example.test"])  # aiosmtpd refuses nobody*
    with pytest.raises(RemoteRejectedError, match="nothing was"):
        rig.send.execute(prepared)
    assert rig.flags(MARKER_FOLDER, prepared.idempotency_key) == []
    assert rig.send.reconcile(prepared) is None
    assert rig.delivered(prepared.idempotency_key) == 0


def test_drafts_and_send_markers_are_never_confused(rig: Rig) -> None:
    draft = rig.draft.prepare({"to": [rig.user.email], "subject": "Later", "body": "text"})
    message_id = draft.idempotency_key
    assert rig.draft.execute(draft).done
    # A send of the same Message-ID: the draft is not a marker, so it is safe to send.
    send = rig.prepared(message_id=message_id, date=draft.payload["date"])
    assert send.idempotency_key == message_id
    assert rig.send.reconcile(send) is None
    rig.crash_after_smtp.append(True)
    with pytest.raises(SimulatedCrashError):
        rig.send.execute(send)
    with pytest.raises(SendInDoubtError):
        rig.send.reconcile(send)
    # The marker is not a draft: the draft's copy is the only one in Drafts.
    assert len(rig.flags("Drafts", message_id)) == 1
    found = rig.draft.reconcile(draft)
    assert found is not None and "Drafts" in found.summary
    other = rig.draft.prepare({"to": [rig.user.email], "subject": "x", "body": "y"})
    rig.crash_after_smtp.append(True)
    sent_other = rig.prepared(message_id=other.idempotency_key)
    with pytest.raises(SimulatedCrashError):
        rig.send.execute(sent_other)
    assert rig.draft.reconcile(other) is None  # a marker with its Message-ID is no draft


def test_the_outbox_shows_a_send_interrupted_after_smtp_as_in_doubt(rig: Rig, db: Database) -> None:
    outbox = Outbox(db, lambda account, name: rig.send, AutonomyStore(db))
    prepared = rig.prepared()
    rig.crash_after_smtp.append(True)
    record = outbox.propose("agent", "run", prepared, (), (), Autonomy.SILENT)
    [after] = outbox.execute_approved()
    assert after.id == record.id and after.state is ActionState.IN_DOUBT
    assert after.error is not None and "SendInDoubtError" in after.error
    assert [r.id for r in outbox.pending()] == [record.id]
    [still] = outbox.recheck_in_doubt()
    assert still.state is ActionState.IN_DOUBT
    assert outbox.execute_approved() == []
    assert rig.delivered(prepared.idempotency_key) == 1


def test_the_outbox_sends_once_with_the_copy_in_sent(rig: Rig, db: Database) -> None:
    outbox = Outbox(db, lambda account, name: rig.send, AutonomyStore(db))
    prepared = rig.prepared()
    outbox.propose("agent", "run", prepared, (), (), Autonomy.SILENT)
    [done] = outbox.execute_approved()
    assert done.state is ActionState.DONE and done.outcome_summary is not None
    assert "copy in Sent" in done.outcome_summary
    assert rig.delivered(prepared.idempotency_key) == 1


def test_a_connection_lost_while_appending_the_marker_sends_nothing_and_cleans_up(
    dovecot: DovecotServer,
    smtp_server: SmtpServer,
    mail_user: MailUser,
    cutting_proxy: CuttingProxy,
) -> None:
    rig = make_rig(dovecot, smtp_server, mail_user, imap_port=cutting_proxy.port,
                   imap_security="plain")  # fmt: skip
    prepared = rig.prepared()
    cutting_proxy.marker = b"[APPENDUID"  # Dovecot stored the marker; its answer is cut
    with pytest.raises(ConnectorUnreachableError, match="nothing was sent") as caught:
        rig.send.execute(prepared)
    assert not isinstance(caught.value, ConnectionLostError)  # the outbox retries it plainly
    assert cutting_proxy.cuts == 1
    cutting_proxy.marker = None
    assert rig.flags(MARKER_FOLDER, prepared.idempotency_key) == []  # removed again
    assert rig.send.reconcile(prepared) is None
    assert rig.delivered(prepared.idempotency_key) == 0
