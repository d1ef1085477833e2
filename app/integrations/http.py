"""One HTTP client for the REST, GraphQL and WebDAV connectors.

:class:`HttpClient` wraps ``httpx.Client`` with what every hosted service
needs: TLS verification that is never turned off silently, a client-side
:class:`~app.integrations.ratelimit.TokenBucket`, retries with backoff on
429 / 5xx / dropped connections (honouring ``Retry-After``), and httpx's
errors mapped to :mod:`app.integrations.errors` at this boundary. Logs carry
the method, the path, the status and the time, never headers or bodies
(they hold tokens and customer data).

Tests pass ``transport=httpx.MockTransport(...)`` for logic, and a real
local server for the contract tests.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx

from app.integrations.errors import (
    CertificateError,
    ConnectionLostError,
    ConnectorAuthError,
    ConnectorError,
    ConnectorUnreachableError,
    RateLimitedError,
    RemoteConflictError,
    RemoteNotFoundError,
    RemoteRejectedError,
    RemoteServerError,
)
from app.integrations.ratelimit import (
    MAX_RETRY_AFTER_S,
    Backoff,
    Sleep,
    TokenBucket,
    parse_retry_after,
)

log = logging.getLogger("soloist.integrations.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Methods that are safe to send again after a dropped connection. A POST is
# only retried when the server said it did nothing (429/503 before reading).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PROPFIND", "REPORT"})


class HttpClient:
    """A base URL, default headers, a rate limit and a retry policy."""

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        bucket: TokenBucket | None = None,
        backoff: Backoff | None = None,
        timeout_s: float = 30.0,
        verify: ssl.SSLContext | str | bool = True,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.service = service  # "HubSpot", "Shopify": used in messages
        self._bucket = bucket
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url,
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout_s,
            verify=verify,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        cost: float = 1.0,
        ok_statuses: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with rate limit and retries; a 2xx (or one in ``ok_statuses``) comes back.

        Anything else raises a mapped :class:`ConnectorError`.
        """
        attempt = 0
        while True:
            if self._bucket is not None:
                self._bucket.take(cost)
            started = time.perf_counter()
            try:
                response = self._client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                mapped = self._transport_error(exc)
                if not self._may_retry_transport(method, exc, attempt):
                    raise mapped from exc
                self._wait(attempt, None, f"{type(exc).__name__}")
                attempt += 1
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            log.debug(
                "%s %s %s -> %d in %.0f ms",
                self.service,
                method,
                response.request.url.path,
                response.status_code,
                elapsed_ms,
            )
            if response.is_success or response.status_code in ok_statuses:
                return response
            if response.status_code in RETRY_STATUSES and attempt < self._backoff.max_retries:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is None or retry_after <= MAX_RETRY_AFTER_S:
                    self._wait(attempt, retry_after, f"HTTP {response.status_code}")
                    attempt += 1
                    continue
            raise self.status_error(response)

    def _may_retry_transport(self, method: str, exc: httpx.HTTPError, attempt: int) -> bool:
        if attempt >= self._backoff.max_retries or _is_certificate_error(exc):
            return False
        # A connect error means nothing reached the server: any method may be retried.
        return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or (
            method.upper() in IDEMPOTENT_METHODS
        )

    def _wait(self, attempt: int, retry_after: float | None, why: str) -> None:
        delay = self._backoff.delay(attempt, retry_after)
        log.info("%s: %s, retry %d in %.1f s", self.service, why, attempt + 1, delay)
        self._sleep(delay)

    def _transport_error(self, exc: httpx.HTTPError) -> ConnectorError:
        if _is_certificate_error(exc):
            return CertificateError(
                f"{self.service}: the server's TLS certificate could not be verified "
                "(nothing was sent); check the address, or the certificate it uses"
            )
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return ConnectionLostError(f"{self.service}: the connection was closed mid-request")
        if isinstance(exc, httpx.TimeoutException):
            return ConnectorUnreachableError(f"{self.service}: the server did not answer in time")
        return ConnectorUnreachableError(
            f"{self.service}: cannot reach the server ({type(exc).__name__}); "
            "check the address and your network"
        )

    def status_error(self, response: httpx.Response) -> ConnectorError:
        """The mapped error for a non-success response (exposed for GraphQL-level errors)."""
        status = response.status_code
        where = f"{self.service} answered HTTP {status}"
        if status in (401, 403):
            return ConnectorAuthError(
                f"{where}: the credentials were refused or lack a permission; "
                "check the token and its scopes in Connections"
            )
        if status in {404, 410}:
            return RemoteNotFoundError(f"{where}: not found")
        if status in (409, 412):
            return RemoteConflictError(f"{where}: it changed on the server; refresh and retry")
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return RateLimitedError(f"{where}: rate limit reached; try again later", retry_after)
        if status >= 500:
            return RemoteServerError(f"{where}: the service is failing; try again later")
        return RemoteRejectedError(f"{where}: the request was refused")


def _is_certificate_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
