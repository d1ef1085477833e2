"""The IMAP client against a real Dovecot: TLS modes, login, errors, IDLE, lost connections."""

# The mail server fixtures are imported here, so test parameters shadow them (F811).
# ruff: noqa: F811

from __future__ import annotations

import threading
import time

import pytest
from mail_servers import (  # noqa: F401  (fixtures)
    CuttingProxy,
    DovecotServer,
    MailUser,
    cutting_proxy,
    dovecot,
    mail_user,
)

from app.integrations.email import imap_parse
from app.integrations.email.imap import ImapClient, ImapLogin
from app.integrations.email.transport import Endpoint, Security
from app.integrations.errors import (
    CertificateError,
    ConnectionLostError,
    ConnectorAuthError,
    ConnectorConfigError,
)

pytestmark = pytest.mark.slow


def _mail(n: int, body: str = "hello") -> bytes:
    return (
        f"From: Sender {n} <s{n}@example.test>\r\nTo: a@example.test\r\n"
        f"Subject: message {n}\r\nMessage-ID: <m{n}@example.test>\r\n\r\n{body} {n}\r\n"
    ).encode()


def _client(server: DovecotServer, user: MailUser, security: Security, **kw: object) -> ImapClient:
    port = server.imaps_port if security is Security.TLS else server.imap_port
    ca = kw.pop("ca_file", server.ca_file)
    endpoint = Endpoint(server.host, int(kw.pop("port", port)), security, ca)  # type: ignore[arg-type]
    password = str(kw.pop("password", user.password))
    return ImapClient(endpoint, ImapLogin(user.name, password))


@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS, Security.PLAIN])
def test_login_and_select_in_each_security_mode(
    dovecot: DovecotServer, mail_user: MailUser, security: Security
) -> None:
    dovecot.deliver(mail_user.name, _mail(1))
    with _client(dovecot, mail_user, security).connect() as client:
        inbox = client.select("INBOX")
        assert inbox.exists == 1
        assert inbox.uidvalidity > 0
        assert client.has_idle
        assert "CONDSTORE" in client.capabilities


def test_wrong_password_is_an_auth_error_with_a_readable_message(
    dovecot: DovecotServer, mail_user: MailUser
) -> None:
    client = _client(dovecot, mail_user, Security.TLS, password="not-the-password")
    with pytest.raises(ConnectorAuthError) as caught:
        client.connect()
    message = str(caught.value)
    assert mail_user.name in message and "password" in message
    assert "not-the-password" not in message
    assert not client.connected


@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS])
def test_untrusted_certificate_fails_without_a_plaintext_retry(
    dovecot: DovecotServer, mail_user: MailUser, security: Security
) -> None:
    before = dovecot.log_text().count(f"user=<{mail_user.name}>")
    client = _client(dovecot, mail_user, security, ca_file=dovecot.untrusted_ca_file)
    with pytest.raises(CertificateError) as caught:
        client.connect()
    assert "certificate" in str(caught.value) and "ca_file" in str(caught.value)
    assert not client.connected
    # Dovecot logs every login attempt with the user name: none happened.
    assert dovecot.log_text().count(f"user=<{mail_user.name}>") == before


def test_no_ca_file_means_system_cas_only(dovecot: DovecotServer, mail_user: MailUser) -> None:
    client = _client(dovecot, mail_user, Security.TLS, ca_file=None)
    with pytest.raises(CertificateError):
        client.connect()


def test_plain_is_refused_for_a_remote_host() -> None:
    with pytest.raises(ConnectorConfigError, match="loopback"):
        Endpoint("imap.example.com", 143, Security.PLAIN)


def test_fetch_cut_by_the_server_is_connection_lost(
    dovecot: DovecotServer, mail_user: MailUser, cutting_proxy: CuttingProxy
) -> None:
    for n in range(1, 6):
        dovecot.deliver(mail_user.name, _mail(n, "CUT-HERE" if n == 3 else "hello"))
    cutting_proxy.marker = b"CUT-HERE"
    client = _client(dovecot, mail_user, Security.PLAIN, port=cutting_proxy.port)
    with client.connect():
        client.select("INBOX")
        with pytest.raises(ConnectionLostError, match="closed the connection"):
            client.fetch_messages([1, 2, 3, 4, 5])
        assert not client.connected
        with pytest.raises(ConnectionLostError):
            client.noop()
    assert cutting_proxy.cuts == 1


def test_append_search_and_special_use(dovecot: DovecotServer, mail_user: MailUser) -> None:
    with _client(dovecot, mail_user, Security.TLS).connect() as client:
        folders = client.list_folders()
        assert imap_parse.special_folder(folders, "\\Sent") == "Sent"
        assert imap_parse.special_folder(folders, "\\Drafts") == "Drafts"
        uid = client.append("Sent", "(\\Seen)", _mail(7))
        client.select("Sent")
        assert client.uid_search("HEADER", "Message-ID", '"<m7@example.test>"') == [uid]
        assert client.fetch_flags("1:*") == {uid: "\\Seen"}


def test_idle_wakes_on_new_mail_and_returns_on_stop(
    dovecot: DovecotServer, mail_user: MailUser
) -> None:
    stop = threading.Event()
    with _client(dovecot, mail_user, Security.TLS).connect() as client:
        client.select("INBOX")
        timer = threading.Timer(0.3, dovecot.deliver, (mail_user.name, _mail(1)))
        started = time.monotonic()
        timer.start()
        try:
            lines = client.idle(20, stop)
        finally:
            timer.join()
        assert any(b"EXISTS" in line for line in lines)
        assert time.monotonic() - started < 15
        # The connection is usable afterwards, and a stop request ends IDLE early.
        assert client.select("INBOX").exists == 1
        stopper = threading.Timer(0.2, stop.set)
        stopper.start()
        started = time.monotonic()
        assert client.idle(20, stop) == []
        stopper.join()
        assert time.monotonic() - started < 10
        assert client.noop() is not None


@pytest.mark.parametrize(
    ("uids", "expected"),
    [([1], "1"), ([3, 1, 2], "1:3"), ([1, 2, 3, 7, 9, 10], "1:3,7,9:10"), ([5, 5], "5")],
)
def test_uid_set(uids: list[int], expected: str) -> None:
    assert imap_parse.uid_set(uids) == expected


def test_special_folders_by_flag_then_by_name() -> None:
    listed = imap_parse.parse_list(
        [
            b'(\\HasNoChildren) "." "INBOX"',
            b'(\\HasNoChildren) "." "INBOX.Sent Items"',
            b'(\\HasNoChildren \\Drafts) "." Entwurf',
            b'(\\Noselect) "." "Drafts"',
            (b'(\\HasNoChildren) "." {4}', b"Junk"),
        ]
    )
    assert [f.name for f in listed] == ["INBOX", "INBOX.Sent Items", "Entwurf", "Drafts", "Junk"]
    assert imap_parse.special_folder(listed, "\\Sent") == "INBOX.Sent Items"
    assert imap_parse.special_folder(listed, "\\Drafts") == "Entwurf"  # the flag wins
    assert imap_parse.special_folder(listed, "\\Junk") == "Junk"
    assert imap_parse.special_folder(listed, "\\Trash") is None


def test_flags_drop_recent_and_sort() -> None:
    data = [b"1 (UID 4 FLAGS (\\Seen \\Recent \\Answered))", b"2 (UID 9 FLAGS ())"]
    assert imap_parse.parse_flags(data) == {4: "\\Answered \\Seen", 9: ""}
