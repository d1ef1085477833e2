"""SMTP sending against a real aiosmtpd (STARTTLS and implicit TLS), and composing."""

# The mail server fixtures are imported here, so test parameters shadow them (F811).
# ruff: noqa: F811

from __future__ import annotations

import email
from email import policy

import pytest
from mail_servers import (  # noqa: F401  (fixtures)
    DovecotServer,
    MailUser,
    SmtpServer,
    dovecot,
    mail_user,
    smtp_server,
)

from app.integrations.email import compose, smtp
from app.integrations.email.imap import ImapLogin
from app.integrations.email.transport import Endpoint, Security
from app.integrations.errors import (
    ActionError,
    CertificateError,
    ConnectorAuthError,
    RemoteRejectedError,
)


def _draft(**fields: object) -> compose.Draft:
    payload: dict[str, object] = {
        "to": ["bob@example.test"],
        "subject": "Quarterly numbers",
        "body": "Hello Bob,\nsee below.\n",
        "date": "Mon, 06 May 2024 10:00:00 +0000",
        "message_id": "<fixed.1@example.test>",
    }
    payload.update(fields)
    return compose.draft_from_payload(payload, "alice@example.test", "Alice A")  # type: ignore[arg-type]


def _endpoint(server: SmtpServer, security: Security, ca: str | None = None) -> Endpoint:
    port = server.tls_port if security is Security.TLS else server.starttls_port
    return Endpoint(server.host, port, security, ca or server.ca_file)


@pytest.mark.parametrize(
    "field",
    [
        {"subject": "Hi\r\nBcc: victim@example.test"},
        {"subject": "Hi\nX-Injected: 1"},
        {"to": ["bob@example.test\r\nBcc: victim@example.test"]},
        {"cc": ["Bob <bob@example.test>\nX: y"]},
        {"message_id": "<a@b>\r\nX: y"},
    ],
)
def test_header_injection_is_refused(field: dict[str, object]) -> None:
    with pytest.raises(ActionError, match="line break"):
        _draft(**field)


@pytest.mark.parametrize("bad", ["", "bob", "bob@", "<>", "a@b@c.d", "bob@example"])
def test_bad_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ActionError):
        _draft(to=[bad])


def test_render_is_deterministic_and_carries_the_fixed_identity() -> None:
    draft = _draft(cc=["Carol <carol@example.test>"], bcc=["dan@example.test"])
    raw = compose.render(draft)
    assert raw == compose.render(
        _draft(cc=["Carol <carol@example.test>"], bcc=["dan@example.test"])
    )
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Message-ID"] == "<fixed.1@example.test>"
    assert parsed["Cc"] == "carol@example.test"
    assert parsed["Bcc"] is None  # only in the envelope
    assert draft.envelope_recipients == [
        "bob@example.test",
        "carol@example.test",
        "dan@example.test",
    ]
    assert b"\r\n" in raw and b"\n\n" not in raw.replace(b"\r\n", b"")
    assert "Subject: Quarterly numbers" in compose.preview(draft)


@pytest.mark.slow
@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS])
def test_send_is_delivered(
    smtp_server: SmtpServer, dovecot: DovecotServer, mail_user: MailUser, security: Security
) -> None:
    draft = _draft(to=[mail_user.email])
    login = ImapLogin(mail_user.name, mail_user.password)
    report = smtp.send(
        _endpoint(smtp_server, security), login, draft.from_address, draft.envelope_recipients,
        compose.render(draft),
    )  # fmt: skip
    assert (report.accepted, report.refused) == (1, 0)
    assert smtp_server.received == [compose.render(draft)]
    delivered = list((dovecot.maildir(mail_user.name) / "new").iterdir())
    assert len(delivered) == 1


@pytest.mark.slow
def test_wrong_password_is_an_auth_error(smtp_server: SmtpServer, mail_user: MailUser) -> None:
    login = ImapLogin(mail_user.name, "wrong-password")
    with pytest.raises(ConnectorAuthError) as caught:
        smtp.check_login(_endpoint(smtp_server, Security.STARTTLS), login)
    assert "wrong-password" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS])
def test_untrusted_certificate_is_refused_before_auth(
    smtp_server: SmtpServer, dovecot: DovecotServer, mail_user: MailUser, security: Security
) -> None:
    endpoint = _endpoint(smtp_server, security, ca=dovecot.untrusted_ca_file)
    with pytest.raises(CertificateError, match="certificate"):
        smtp.check_login(endpoint, ImapLogin(mail_user.name, mail_user.password))
    assert smtp_server.received == []


@pytest.mark.slow
def test_refused_recipients(smtp_server: SmtpServer, mail_user: MailUser) -> None:
    login = ImapLogin(mail_user.name, mail_user.password)
    endpoint = _endpoint(smtp_server, Security.TLS)
    all_refused = _draft(to=["nobody1@example.test", "nobody2@example.test"])
    with pytest.raises(RemoteRejectedError, match="all 2 recipients"):
        smtp.send(endpoint, login, all_refused.from_address, all_refused.envelope_recipients, b"x")
    some = _draft(to=[mail_user.email, "nobody3@example.test"])
    report = smtp.send(
        endpoint, login, some.from_address, some.envelope_recipients, compose.render(some)
    )
    assert (report.accepted, report.refused) == (1, 1)
    assert len(smtp_server.received) == 1
