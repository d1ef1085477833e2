"""The email connector end to end: Dovecot + aiosmtpd, the keyring, tools and actions."""

# The mail server fixtures are imported here, so test parameters shadow them (F811).
# ruff: noqa: F811

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from mail_servers import (  # noqa: F401  (fixtures)
    DovecotServer,
    MailUser,
    SmtpServer,
    dovecot,
    mail_user,
    smtp_server,
)

from app.integrations.base import Account, ConnectorContext, connector_class
from app.integrations.email.connector import EmailConnector
from app.integrations.errors import ActionError, ConnectorConfigError
from app.memory.db import Database
from app.secrets import SecretRef, SecretStore

pytestmark = pytest.mark.slow


class DictSecrets(SecretStore):
    """A keyring stand-in for tests that are not about the keyring."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def get(self, ref: SecretRef) -> str:  # type: ignore[override]
        from app.secrets import SecretNotFoundError

        try:
            return self._values[ref.key]
        except KeyError:
            raise SecretNotFoundError(ref.key) from None


def _account(server: DovecotServer, smtp: SmtpServer, user: MailUser, **over: object) -> Account:
    config: dict[str, object] = {
        "imap_host": server.host,
        "imap_port": server.imaps_port,
        "imap_security": "tls",
        "smtp_host": smtp.host,
        "smtp_port": smtp.starttls_port,
        "smtp_security": "starttls",
        "username": user.name,
        "from_address": user.email,
        "from_name": "Test User",
        "ca_file": server.ca_file,
    }
    config.update(over)
    return Account("work", "email", "Work mail", config)  # type: ignore[arg-type]


@pytest.fixture
def connector(
    dovecot: DovecotServer, smtp_server: SmtpServer, mail_user: MailUser, db: Database
) -> Iterator[EmailConnector]:
    secrets = DictSecrets({"email:work:password": mail_user.password})
    conn = EmailConnector(_account(dovecot, smtp_server, mail_user), ConnectorContext(db, secrets))
    yield conn
    conn.close()


def _action(conn: EmailConnector, name: str):  # type: ignore[no-untyped-def]
    return next(a for a in conn.actions() if a.name == name)


def test_registered_and_test_connection(connector: EmailConnector) -> None:
    assert connector_class("email") is EmailConnector
    report = connector.test_connection()
    assert report.ok, report.summary
    assert any("IMAP" in d for d in report.details) and any("SMTP" in d for d in report.details)


def test_test_connection_reports_a_wrong_password(
    dovecot: DovecotServer, smtp_server: SmtpServer, mail_user: MailUser, db: Database
) -> None:
    secrets = DictSecrets({"email:work:password": "wrong"})
    conn = EmailConnector(_account(dovecot, smtp_server, mail_user), ConnectorContext(db, secrets))
    report = conn.test_connection()
    assert not report.ok and "password" in report.summary


def test_plain_to_a_remote_host_is_refused(
    dovecot: DovecotServer, smtp_server: SmtpServer, mail_user: MailUser, db: Database
) -> None:
    account = _account(dovecot, smtp_server, mail_user, imap_host="mail.example.com")
    account = Account("work", "email", "w", {**account.config, "imap_security": "plain"})
    with pytest.raises(ConnectorConfigError, match="loopback"):
        EmailConnector(account, ConnectorContext(db, DictSecrets({})))


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_send_is_readable_back_and_copied_to_sent_once(
    dovecot: DovecotServer,
    smtp_server: SmtpServer,
    mail_user: MailUser,
    db: Database,
    security: str,
) -> None:
    port = smtp_server.starttls_port if security == "starttls" else smtp_server.tls_port
    account = _account(dovecot, smtp_server, mail_user, smtp_port=port, smtp_security=security)
    secrets = DictSecrets({"email:work:password": mail_user.password})
    conn = EmailConnector(account, ConnectorContext(db, secrets))
    try:
        send = _action(conn, "email.send")
        prepared = send.prepare({"to": [mail_user.email], "subject": "Hi", "body": "Hello there"})
        assert (
            prepared.idempotency_key.startswith("<") and "example.test" in prepared.idempotency_key
        )
        assert "Subject: Hi" in prepared.preview and "Hello there" in prepared.preview
        assert send.reconcile(prepared) is None  # nothing there yet
        outcome = send.execute(prepared)
        assert outcome.done and outcome.external_id == prepared.idempotency_key
        # A crash after sending: reconcile finds the copy; a second execute sends nothing.
        found = send.reconcile(prepared)
        assert found is not None and found.done
        again = send.execute(prepared)
        assert again.data["copied"] is False
        conn.sync_all(["INBOX", "Sent"])
        inbox = conn.store.find_by_message_id(prepared.idempotency_key, "INBOX")
        sent = conn.store.find_by_message_id(prepared.idempotency_key, "Sent")
        assert len(inbox) == 1  # the second execute found the Sent copy and sent nothing
        assert len(sent) == 1 and "\\Seen" in sent[0]["flags"]
        read = next(t for t in conn.tools() if t.name == "email.read").run({"id": inbox[0]["id"]})
        assert isinstance(read, dict) and "Hello there" in str(read["text"])
    finally:
        conn.close()


def test_save_draft_lands_in_drafts(connector: EmailConnector) -> None:
    draft = _action(connector, "email.save_draft")
    prepared = draft.prepare({"to": ["bob@example.test"], "subject": "Later", "body": "draft"})
    assert draft.reconcile(prepared) is None
    assert draft.execute(prepared).done
    assert draft.reconcile(prepared) is not None
    connector.sync("Drafts")
    stored = connector.store.find_by_message_id(prepared.idempotency_key, "Drafts")
    assert len(stored) == 1 and "\\Draft" in stored[0]["flags"]


def test_header_injection_is_refused_at_prepare(connector: EmailConnector) -> None:
    send = _action(connector, "email.send")
    with pytest.raises(ActionError, match="line break"):
        send.prepare({"to": ["bob@example.test"], "subject": "x\r\nBcc: e@vil.test", "body": ""})


def test_tools_search_read_thread(connector: EmailConnector, dovecot: DovecotServer) -> None:
    user = connector.settings.username
    dovecot.deliver(user, b"From: Ann <ann@example.test>\r\nSubject: Invoice 42\r\n"
                    b"Message-ID: <a1@example.test>\r\n\r\nPlease pay invoice 42.\r\n")  # fmt: skip
    dovecot.deliver(user, b"From: Bo <bo@example.test>\r\nSubject: Re: Invoice 42\r\n"
                    b"Message-ID: <a2@example.test>\r\nIn-Reply-To: <a1@example.test>\r\n"
                    b"References: <a1@example.test>\r\n\r\nPaid.\r\n")  # fmt: skip
    connector.sync("INBOX")
    tools = {t.name: t for t in connector.tools()}
    hits = tools["email.search"].run({"text": "pay invoice"})
    assert isinstance(hits, list) and [h["message_id"] for h in hits] == ["<a1@example.test>"]  # type: ignore[index]
    by_sender = tools["email.search"].run({"from": "bo@"})
    assert isinstance(by_sender, list) and len(by_sender) == 1
    thread_id = by_sender[0]["thread_id"]  # type: ignore[index]
    thread = tools["email.thread"].run({"id": thread_id})
    assert isinstance(thread, list) and len(thread) == 2


def test_password_only_in_the_keyring(  # noqa: PLR0917  (fixtures)
    secret_service: str,
    dovecot: DovecotServer,
    smtp_server: SmtpServer,
    mail_user: MailUser,
    db: Database,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    account = _account(dovecot, smtp_server, mail_user)
    secrets = SecretStore()
    secrets.set(account.secret_ref("password"), mail_user.password)
    dovecot.deliver(mail_user.name, b"Subject: s\r\nMessage-ID: <k1@example.test>\r\n\r\nbody\r\n")
    conn = EmailConnector(account, ConnectorContext(db, secrets))
    try:
        assert conn.test_connection().ok
        conn.sync_all()
        send = _action(conn, "email.send")
        send.execute(send.prepare({"to": [mail_user.email], "subject": "k", "body": "k"}))
    finally:
        conn.close()
    db.execute("CHECKPOINT")
    assert mail_user.password.encode() not in db_path.read_bytes()
    assert mail_user.password not in caplog.text
    assert "imap connected" in caplog.text  # the logs were captured
