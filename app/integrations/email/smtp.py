"""Sending mail over SMTP with ``smtplib``: safe connection, AUTH, mapped errors.

Connections follow :mod:`.transport` (verified TLS, implicit or STARTTLS;
plain only on loopback). A server that does not offer STARTTLS on a
``starttls`` account is refused before AUTH, so a password never crosses
the network in the clear. ``smtplib`` errors are mapped here:

- AUTH refused -> :class:`ConnectorAuthError`;
- every recipient refused -> :class:`RemoteRejectedError` (nothing was sent);
  some refused -> the mail went to the others and :class:`SendReport` counts
  the refused ones, so the caller does not send it again;
- the server hanging up in the middle -> :class:`ConnectionLostError`.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from app.integrations.email.imap import ImapLogin
from app.integrations.email.transport import (
    Endpoint,
    Security,
    connection_lost,
    map_connect_error,
    tls_context,
)
from app.integrations.errors import (
    ConnectorAuthError,
    ConnectorError,
    RemoteRejectedError,
    RemoteServerError,
)

log = logging.getLogger("soloist.integrations.email")


@dataclass(frozen=True, slots=True)
class SendReport:
    accepted: int
    refused: int
    elapsed_ms: float


def check_login(endpoint: Endpoint, login: ImapLogin) -> None:
    """EHLO, TLS and AUTH, without sending anything (``test_connection``)."""
    with _session(endpoint, login):
        pass


def send(
    endpoint: Endpoint, login: ImapLogin, sender: str, recipients: Sequence[str], raw: bytes
) -> SendReport:
    """Send ``raw`` to ``recipients``; raises when nobody accepted it."""
    started = time.perf_counter()
    with _session(endpoint, login) as smtp:
        try:
            refused = smtp.sendmail(sender, list(recipients), raw)
        except smtplib.SMTPRecipientsRefused as exc:
            raise RemoteRejectedError(
                f"the SMTP server refused all {len(exc.recipients)} recipients; nothing was "
                "sent. Check the addresses"
            ) from exc
        except smtplib.SMTPSenderRefused as exc:
            raise RemoteRejectedError(
                f"the SMTP server refused the sender address (code {exc.smtp_code}); check "
                "from_address"
            ) from exc
        except smtplib.SMTPDataError as exc:
            cls = RemoteServerError if 400 <= exc.smtp_code < 500 else RemoteRejectedError
            raise cls(
                f"the SMTP server refused the mail (code {exc.smtp_code}); nothing was sent"
            ) from exc
    report = SendReport(
        len(recipients) - len(refused), len(refused), (time.perf_counter() - started) * 1000
    )
    log.info(
        "smtp sent %d bytes to %d recipients (%d refused) in %.0f ms",
        len(raw),
        report.accepted,
        report.refused,
        report.elapsed_ms,
    )
    return report


@contextmanager
def _session(endpoint: Endpoint, login: ImapLogin) -> Iterator[smtplib.SMTP]:
    smtp = _open(endpoint)
    try:
        with _mapped(endpoint, "the conversation"):
            _secure_and_login(smtp, endpoint, login)
            yield smtp
    finally:
        _quit(smtp)


def _open(endpoint: Endpoint) -> smtplib.SMTP:
    try:
        if endpoint.security is Security.TLS:
            return smtplib.SMTP_SSL(
                endpoint.host,
                endpoint.port,
                timeout=endpoint.timeout_s,
                context=tls_context(endpoint.ca_file),
            )
        return smtplib.SMTP(endpoint.host, endpoint.port, timeout=endpoint.timeout_s)
    except smtplib.SMTPConnectError as exc:
        raise RemoteServerError(
            f"the SMTP server {endpoint.describe()} refused the connection (code "
            f"{exc.smtp_code}); try again later"
        ) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise map_connect_error(exc, endpoint, "SMTP") from exc


def _secure_and_login(smtp: smtplib.SMTP, endpoint: Endpoint, login: ImapLogin) -> None:
    smtp.ehlo()
    if endpoint.security is Security.STARTTLS:
        if not smtp.has_extn("starttls"):
            raise ConnectorError(
                f"the SMTP server {endpoint.describe()} does not offer STARTTLS; nothing was "
                "sent. Choose tls (port 465) instead"
            )
        try:
            smtp.starttls(context=tls_context(endpoint.ca_file))
        except ssl.SSLError as exc:
            raise map_connect_error(exc, endpoint, "SMTP") from exc
        smtp.ehlo()
    try:
        _login_once(smtp, login)
    except smtplib.SMTPAuthenticationError as exc:
        raise ConnectorAuthError(
            f"the SMTP server {endpoint.describe()} refused the login of {login.username}; "
            "check the user name and password"
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise ConnectorError(
            f"the SMTP server {endpoint.describe()} offers no AUTH method we support"
        ) from exc


def _login_once(smtp: smtplib.SMTP, login: ImapLogin) -> None:
    """AUTH with one mechanism, PLAIN when offered, else LOGIN.

    ``smtplib.login`` tries the next mechanism after a refusal; a wrong
    password then counts twice against the account's lockout, for nothing.
    """
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("no AUTH")
    offered = smtp.esmtp_features["auth"].upper().split()
    smtp.user, smtp.password = login.username, login.password
    if "PLAIN" in offered:
        smtp.auth("PLAIN", smtp.auth_plain)
    elif "LOGIN" in offered:
        smtp.auth("LOGIN", smtp.auth_login)
    else:
        raise smtplib.SMTPNotSupportedError("no AUTH PLAIN or LOGIN")


@contextmanager
def _mapped(endpoint: Endpoint, doing: str) -> Iterator[None]:
    try:
        yield
    except smtplib.SMTPServerDisconnected as exc:
        raise connection_lost("SMTP", endpoint, doing) from exc
    except smtplib.SMTPResponseException as exc:
        raise RemoteRejectedError(
            f"the SMTP server {endpoint.describe()} answered {exc.smtp_code}; try again later"
        ) from exc
    except ssl.SSLError as exc:
        raise map_connect_error(exc, endpoint, "SMTP") from exc
    except OSError as exc:
        raise connection_lost("SMTP", endpoint, doing) from exc


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
