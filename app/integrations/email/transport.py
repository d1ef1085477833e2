"""How the mail clients reach a server: security mode, TLS context, error mapping.

IMAP and SMTP share the rules, so they live here once:

- certificate verification is always on; a private CA is trusted only
  through the account's ``ca_file``. A failed verification is a
  :class:`CertificateError` and the connection is dropped: there is no
  retry in plaintext, ever;
- ``plain`` (no TLS at all) is refused unless the host is a loopback
  address, where nothing crosses a network;
- socket and TLS errors of ``imaplib``/``smtplib`` are mapped here, at the
  boundary, to the connector error tree.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from app.integrations.errors import (
    CertificateError,
    ConnectionLostError,
    ConnectorConfigError,
    ConnectorError,
    ConnectorUnreachableError,
)

DEFAULT_TIMEOUT_S = 30.0


class Security(Enum):
    """How a connection is protected."""

    TLS = "tls"  # implicit TLS from the first byte (IMAPS 993, SMTPS 465)
    STARTTLS = "starttls"  # plain greeting, then STARTTLS before anything else
    PLAIN = "plain"  # no TLS: loopback only

    @classmethod
    def parse(cls, value: object, what: str) -> Security:
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ConnectorConfigError(
                f"{what} security must be tls, starttls or plain, not {value!r}; fix the account"
            ) from None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One server: where it is, how it is protected and whose CA to trust."""

    host: str
    port: int
    security: Security
    ca_file: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.host:
            raise ConnectorConfigError("the server host is empty; fill it in the account")
        if not 0 < self.port < 65536:
            raise ConnectorConfigError(f"port {self.port} is not a TCP port; fix the account")
        if self.security is Security.PLAIN and not is_loopback(self.host):
            raise ConnectorConfigError(
                f"{self.host} would be reached without TLS; plain is allowed only on "
                "loopback: choose tls or starttls"
            )
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ConnectorConfigError(f"the CA file {self.ca_file} does not exist; fix ca_file")

    def describe(self) -> str:
        return f"{self.host}:{self.port} ({self.security.value})"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (no DNS lookup)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context: system CAs, plus ``ca_file`` when given."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def map_connect_error(exc: BaseException, endpoint: Endpoint, what: str) -> ConnectorError:
    """A connector error for a failure while connecting (before any command)."""
    where = endpoint.describe()
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or "verification failed"
        return CertificateError(
            f"the {what} server {where} sent a certificate that does not verify ({reason}); "
            "nothing was sent. Check the host name, or set ca_file to the server's CA"
        )
    if isinstance(exc, ssl.SSLError):
        return ConnectorUnreachableError(
            f"TLS with the {what} server {where} failed ({exc.reason}); check the port and "
            "security setting"
        )
    if isinstance(exc, socket.timeout | TimeoutError):
        return ConnectorUnreachableError(
            f"the {what} server {where} did not answer in time; check the host and port"
        )
    if isinstance(exc, socket.gaierror):
        return ConnectorUnreachableError(f"the {what} host {endpoint.host} is unknown; check it")
    return ConnectorUnreachableError(
        f"could not connect to the {what} server {where} ({type(exc).__name__}); "
        "check the host, port and network"
    )


def connection_lost(what: str, endpoint: Endpoint, doing: str) -> ConnectionLostError:
    return ConnectionLostError(
        f"the {what} server {endpoint.describe()} closed the connection during {doing}; "
        "what was saved before is kept, try again"
    )
