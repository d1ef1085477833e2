"""An email account's settings, read and checked once from ``Account.config``.

Checking here means a wrong setting (a plain connection to a remote host, a
missing CA file, a port that is not a number) is a ``ConnectorConfigError``
before any socket opens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.integrations.base import Account
from app.integrations.email.compose import check_address, check_line
from app.integrations.email.transport import DEFAULT_TIMEOUT_S, Endpoint, Security
from app.integrations.errors import ActionError, ConnectorConfigError

SETTINGS_SCHEMA: Mapping[str, str] = {
    "imap_host": "IMAP server, e.g. imap.example.com",
    "imap_port": "IMAP port (993 for tls, 143 for starttls)",
    "imap_security": "tls, starttls or plain (plain only for a server on this computer)",
    "smtp_host": "SMTP server, e.g. smtp.example.com",
    "smtp_port": "SMTP port (465 for tls, 587 for starttls)",
    "smtp_security": "tls, starttls or plain (plain only for a server on this computer)",
    "username": "User name for IMAP and SMTP",
    "from_address": "The address mail is sent from",
    "from_name": "The name shown beside it",
    "ca_file": "Optional: a PEM file of the CA that signed a self-hosted server's certificate",
}


@dataclass(frozen=True, slots=True)
class EmailSettings:
    imap: Endpoint
    smtp: Endpoint
    username: str
    from_address: str
    from_name: str

    @classmethod
    def from_account(cls, account: Account) -> EmailSettings:
        config = account.config
        ca_file = str(config.get("ca_file") or "") or None
        timeout = float(str(config.get("timeout_s") or DEFAULT_TIMEOUT_S))
        username = _required(config, "username")
        from_address = str(config.get("from_address") or username)
        try:
            check_address(from_address, "from address")
            from_name = check_line(str(config.get("from_name") or ""), "from name")
        except ActionError as exc:
            raise ConnectorConfigError(str(exc)) from None
        return cls(
            imap=_endpoint(config, "imap", ca_file, timeout),
            smtp=_endpoint(config, "smtp", ca_file, timeout),
            username=username,
            from_address=from_address,
            from_name=from_name,
        )


def _endpoint(
    config: Mapping[str, object], prefix: str, ca: str | None, timeout: float
) -> Endpoint:
    host = _required(config, f"{prefix}_host")
    security = Security.parse(config.get(f"{prefix}_security") or "tls", prefix.upper())
    port_value = config.get(f"{prefix}_port")
    try:
        port = (
            int(str(port_value))
            if port_value not in (None, "")
            else _default_port(prefix, security)
        )
    except ValueError:
        raise ConnectorConfigError(f"{prefix}_port {port_value!r} is not a number") from None
    return Endpoint(host, port, security, ca, timeout)


def _default_port(prefix: str, security: Security) -> int:
    if prefix == "imap":
        return 993 if security is Security.TLS else 143
    return {Security.TLS: 465, Security.STARTTLS: 587, Security.PLAIN: 25}[security]


def _required(config: Mapping[str, object], key: str) -> str:
    value = str(config.get(key) or "").strip()
    if not value:
        raise ConnectorConfigError(f"the email account has no {key}; fill it in Connections")
    return value
