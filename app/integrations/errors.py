"""Errors raised by the connectors.

::

    ConnectorError                  anything a connector reports
    ├── ConnectorConfigError        the account's settings are incomplete or wrong
    ├── ConnectorAuthError          the server refused the credentials (or no secret stored)
    ├── ConnectorUnreachableError   no connection: refused, DNS, timeout, network down
    │   └── ConnectionLostError     the connection broke in the middle of a conversation
    ├── CertificateError            the server's TLS certificate failed verification
    ├── RateLimitedError            the service said "slow down" (429, throttled); has retry_after_s
    ├── RemoteNotFoundError         the thing asked for does not exist on the server
    ├── RemoteConflictError         the thing changed on the server (ETag / version mismatch)
    ├── RemoteRejectedError         the server refused the request as invalid (4xx, user errors)
    ├── RemoteServerError           the server failed (5xx) after our retries
    ├── MalformedDataError          what the server or a file sent cannot be parsed
    └── ActionError                 a side effect could not be prepared, run or reconciled

Every error is a *known* error: ``str(err)`` is one line a user can read that
says what happened and what to do, and never holds a password, token or the
text of a message. Library errors (imaplib, smtplib, ssl, httpx, duckdb) are
mapped at the boundary with ``raise Mapped(...) from exc``.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error a connector raises."""


class ConnectorConfigError(ConnectorError):
    """The account's settings are incomplete or inconsistent."""


class ConnectorAuthError(ConnectorError):
    """The server refused the credentials, or none are stored for the account."""


class ConnectorUnreachableError(ConnectorError):
    """The server could not be reached (refused, DNS, timeout)."""


class ConnectionLostError(ConnectorUnreachableError):
    """An established connection closed in the middle of an exchange."""


class CertificateError(ConnectorError):
    """The server's TLS certificate did not verify; nothing was sent in the clear."""


class RateLimitedError(ConnectorError):
    """The service asked us to slow down and our retries ran out."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RemoteNotFoundError(ConnectorError):
    """The object does not exist (any more) on the server."""


class RemoteConflictError(ConnectorError):
    """The object changed on the server since we read it (ETag or version mismatch)."""


class RemoteRejectedError(ConnectorError):
    """The server refused the request as invalid."""


class RemoteServerError(ConnectorError):
    """The server kept failing (5xx) after our retries."""


class MalformedDataError(ConnectorError):
    """Data from a server or a file cannot be parsed."""


class ActionError(ConnectorError):
    """A side effect could not be prepared, run or reconciled."""
