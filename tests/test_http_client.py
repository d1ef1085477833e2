"""HttpClient: retries, Retry-After, error mapping (MockTransport), and real TLS checks.

The TLS tests run a real HTTPS server on loopback with a certificate from a
private CA (trustme): trusted, the request goes through; untrusted, the
client raises CertificateError and sends nothing in the clear.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import ClassVar

import httpx
import pytest
import trustme

from app.integrations.errors import (
    CertificateError,
    ConnectionLostError,
    ConnectorAuthError,
    ConnectorUnreachableError,
    RateLimitedError,
    RemoteConflictError,
    RemoteNotFoundError,
    RemoteRejectedError,
    RemoteServerError,
)
from app.integrations.http import HttpClient
from app.integrations.ratelimit import Backoff

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, slept: list[float], retries: int = 3) -> HttpClient:
    return HttpClient(
        "https://api.example.test",
        service="Example",
        transport=httpx.MockTransport(handler),
        backoff=Backoff(base_s=1.0, cap_s=4.0, max_retries=retries),
        sleep=slept.append,
    )


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handle, seen


def test_429_waits_the_retry_after_then_succeeds() -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json={"ok": 1})
    )
    slept: list[float] = []
    with client(handler, slept) as http:
        response = http.request("GET", "/v1/things")
    assert response.json() == {"ok": 1}
    assert slept == [7.0]
    assert len(seen) == 2


def test_429_until_retries_run_out_is_rate_limited_with_the_delay() -> None:
    handler, _ = scripted(*[httpx.Response(429, headers={"Retry-After": "3"})] * 3)
    slept: list[float] = []
    with client(handler, slept, retries=2) as http, pytest.raises(RateLimitedError) as err:
        http.request("GET", "/v1/things")
    assert err.value.retry_after_s == 3.0
    assert slept == [3.0, 3.0]


def test_a_retry_after_of_an_hour_is_not_waited_out() -> None:
    handler, seen = scripted(httpx.Response(503, headers={"Retry-After": "3600"}))
    slept: list[float] = []
    with client(handler, slept) as http, pytest.raises(RemoteServerError):
        http.request("GET", "/v1/things")
    assert slept == [] and len(seen) == 1


def test_5xx_is_retried_with_growing_backoff() -> None:
    handler, seen = scripted(httpx.Response(502), httpx.Response(500), httpx.Response(204))
    slept: list[float] = []
    with client(handler, slept) as http:
        assert http.request("DELETE", "/v1/things/1").status_code == 204
    assert len(seen) == 3
    assert 0.5 <= slept[0] <= 1.0 and 1.0 <= slept[1] <= 2.0


def test_a_post_is_not_sent_again_after_the_connection_dropped_mid_request() -> None:
    handler, seen = scripted(httpx.ReadError("connection reset"))
    with client(handler, []) as http, pytest.raises(ConnectionLostError):
        http.request("POST", "/v1/refunds", json={"amount": "10.00"})
    assert len(seen) == 1  # the server may have applied it: the outbox reconciles


def test_a_post_is_retried_when_nothing_reached_the_server() -> None:
    handler, seen = scripted(httpx.ConnectError("refused"), httpx.Response(201))
    with client(handler, [0.0]) as http:
        assert http.request("POST", "/v1/notes").status_code == 201
    assert len(seen) == 2


@pytest.mark.parametrize(
    "status,error",
    [
        (401, ConnectorAuthError),
        (403, ConnectorAuthError),
        (404, RemoteNotFoundError),
        (412, RemoteConflictError),
        (409, RemoteConflictError),
        (400, RemoteRejectedError),
        (422, RemoteRejectedError),
    ],
)
def test_statuses_map_to_known_errors(status: int, error: type[Exception]) -> None:
    handler, _ = scripted(httpx.Response(status, text="secret-customer-data"))
    with client(handler, []) as http, pytest.raises(error) as err:
        http.request("GET", "/v1/x")
    assert "secret-customer-data" not in str(err.value)
    assert str(status) in str(err.value)


def test_ok_statuses_come_back_without_raising() -> None:
    handler, _ = scripted(httpx.Response(412))
    with client(handler, []) as http:
        assert http.request("PUT", "/a.ics", ok_statuses=frozenset({412})).status_code == 412


def test_an_unreachable_server_is_a_readable_error() -> None:
    with (
        HttpClient("http://127.0.0.1:9", service="Nowhere", backoff=Backoff(max_retries=0)) as http,
        pytest.raises(ConnectorUnreachableError, match="Nowhere: cannot reach"),
    ):
        http.request("GET", "/")


# ------------------------------------------------------------------ real TLS


class _Hello(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        body = b'{"hello": "tls"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hello.requests = []
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_certificate_from_an_unknown_ca_is_refused(https_server: str) -> None:
    with (
        HttpClient(https_server, service="Shop") as http,
        pytest.raises(CertificateError, match="certificate could not be verified"),
    ):
        http.request("GET", "/secret-path")
    assert _Hello.requests == []  # the request never reached the handler


def test_a_certificate_from_a_trusted_ca_works(https_server: str, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with HttpClient(https_server, service="Shop", verify=context) as http:
        assert http.request("GET", "/hello").json() == {"hello": "tls"}
    assert _Hello.requests == ["/hello"]
