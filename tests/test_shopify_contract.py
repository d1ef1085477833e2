"""Contract tests of the Shopify GraphQL client against a loopback server playing Shopify.

Shapes follow shopify.dev for GraphQL Admin API 2026-01: ``POST
/admin/api/2026-01/graphql.json`` with ``X-Shopify-Access-Token``;
``extensions.cost {requestedQueryCost, actualQueryCost, throttleStatus
{maximumAvailable, currentlyAvailable, restoreRate}}``; a throttled query is
HTTP 200 with ``errors[].extensions.code == "THROTTLED"`` and
``actualQueryCost: null``; mutations answer ``userErrors {field message}``;
a bad token is HTTP 401 with ``{"errors": "[API] Invalid API key ..."}``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from contract_server import ContractServer, FakeClock, Reply

from app.integrations.errors import (
    CertificateError,
    ConnectorAuthError,
    RateLimitedError,
    RemoteRejectedError,
)
from app.integrations.store import shopify_queries as q
from app.integrations.store.shopify import API_VERSION, ShopifyClient

TOKEN = "shpat_0123456789abcdef_contract_token"
PATH = f"/admin/api/{API_VERSION}/graphql.json"


def cost(requested: float, actual: float | None, available: float, maximum: float = 1000,
         rate: float = 50) -> dict[str, Any]:  # fmt: skip
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                     "throttleStatus": {"maximumAvailable": maximum,
                                        "currentlyAvailable": available,
                                        "restoreRate": rate}}}  # fmt: skip


THROTTLED = Reply(
    body={
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
        "extensions": cost(202, None, 2),
    }
)  # fmt: skip
SHOP = Reply(body={"data": {"shop": {"name": "Demo", "currencyCode": "EUR"}},
                   "extensions": cost(1, 1, 999)})  # fmt: skip


@pytest.fixture
def server() -> Iterator[ContractServer]:
    with ContractServer() as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(server: ContractServer, clock: FakeClock) -> Iterator[ShopifyClient]:
    c = ShopifyClient("demo.myshopify.com", TOKEN, base_url=server.url, sleep=clock.sleep,
                      clock=clock)  # fmt: skip
    yield c
    c.close()


def test_contract_request_shape_and_token_header(
    server: ContractServer, client: ShopifyClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.route("POST", PATH, SHOP)
    data = client.query(q.SHOP, cost=1)
    assert data["shop"] == {"name": "Demo", "currencyCode": "EUR"}
    [request] = server.requests
    assert request.path == "/admin/api/2026-01/graphql.json"
    assert request.headers["x-shopify-access-token"] == TOKEN
    assert request.body["query"] == q.SHOP and request.body["variables"] == {}
    assert TOKEN not in caplog.text and TOKEN not in repr(client)


def test_contract_cost_bucket_is_corrected_from_throttle_status(
    server: ContractServer, client: ShopifyClient
) -> None:
    body = {"data": {"shop": {"name": "D"}}, "extensions": cost(12, 3, 1500, 2000, 100)}
    server.route("POST", PATH, Reply(body=body))
    client.query(q.SHOP)
    assert client.bucket.capacity == 2000 and client.bucket.rate_per_s == 100
    assert client.bucket.available == pytest.approx(1500)


def test_contract_throttled_waits_from_throttle_status_then_succeeds(
    server: ContractServer, client: ShopifyClient, clock: FakeClock
) -> None:
    server.replies("POST", PATH, THROTTLED, SHOP)
    assert client.query(q.SHOP)["shop"]["name"] == "Demo"  # type: ignore[index]
    assert clock.sleeps == [4.0]  # (202 requested - 2 available) / 50 per second
    assert len(server.requests) == 2


def test_contract_throttled_every_time_raises_rate_limited(
    server: ContractServer, client: ShopifyClient, clock: FakeClock
) -> None:
    server.route("POST", PATH, THROTTLED)
    with pytest.raises(RateLimitedError) as caught:
        client.query(q.SHOP)
    assert caught.value.retry_after_s == pytest.approx(4.0)
    assert clock.sleeps == [4.0] * 5


def test_contract_rest_style_429_is_retried_then_mapped(
    server: ContractServer, client: ShopifyClient, clock: FakeClock
) -> None:
    server.route("POST", PATH, Reply(429, {"errors": "Exceeded 2 calls per second"},
                                     {"Retry-After": "2.0"}))  # fmt: skip
    with pytest.raises(RateLimitedError) as caught:
        client.query(q.SHOP)
    assert caught.value.retry_after_s == 2.0
    assert clock.sleeps == [2.0] * 4


def test_contract_401_is_an_auth_error(server: ContractServer, client: ShopifyClient) -> None:
    body = {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }
    server.route("POST", PATH, Reply(401, body))
    with pytest.raises(ConnectorAuthError):
        client.query(q.SHOP)


def test_contract_access_denied_graphql_error_is_an_auth_error(
    server: ContractServer, client: ShopifyClient
) -> None:
    body = {"errors": [{"message": "Access denied for orders field.",
                        "extensions": {"code": "ACCESS_DENIED"}}], "data": None}  # fmt: skip
    server.route("POST", PATH, Reply(body=body))
    with pytest.raises(ConnectorAuthError, match="scope"):
        client.query(q.ORDERS, {"first": 1})


def test_contract_user_errors_raise_rejected_with_field_and_message(
    server: ContractServer, client: ShopifyClient
) -> None:
    body = {"data": {"orderUpdate": {"order": None, "userErrors": [
        {"field": ["input", "email"], "message": "Email is invalid"}]}},
        "extensions": cost(10, 10, 990)}  # fmt: skip
    server.route("POST", PATH, Reply(body=body))
    with pytest.raises(RemoteRejectedError) as caught:
        client.mutate(q.ORDER_UPDATE, {"input": {"id": "gid://shopify/Order/1"}}, "orderUpdate")
    assert str(caught.value) == "Shopify refused orderUpdate: input.email: Email is invalid"


def test_contract_paginate_follows_end_cursor(
    server: ContractServer, client: ShopifyClient
) -> None:
    def page(nodes: list[str], more: bool) -> Reply:
        return Reply(body={"data": {"products": {
            "pageInfo": {"hasNextPage": more, "endCursor": "cur-1" if more else None},
            "nodes": [{"id": n} for n in nodes]}}, "extensions": cost(52, 4, 996)})  # fmt: skip

    server.replies("POST", PATH, page(["p1", "p2"], True), page(["p3"], False))
    nodes = list(client.paginate(q.PRODUCTS, "products", {"query": "updated_at:>='x'"}))
    assert [n["id"] for n in nodes] == ["p1", "p2", "p3"]
    first, second = (r.body["variables"] for r in server.requests)
    assert first == {"query": "updated_at:>='x'", "first": 50, "after": None}
    assert second["after"] == "cur-1"


def test_contract_refund_mutation_carries_the_idempotent_directive() -> None:
    key = "4f5b6ebf-143c-4da5-8d0f-fb8553bfd85d"
    document = q.refund_create(key)
    assert f'refundCreate(input: $input) @idempotent(key: "{key}")' in document
    with pytest.raises(ValueError):
        q.refund_create('x") { evil }')


def test_contract_untrusted_tls_certificate_is_a_certificate_error(clock: FakeClock) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with ContractServer(ssl_context=context) as tls:
        tls.route("POST", PATH, SHOP)
        c = ShopifyClient("demo.myshopify.com", TOKEN, base_url=tls.url, sleep=clock.sleep)
        try:
            with pytest.raises(CertificateError):
                c.query(q.SHOP)
        finally:
            c.close()
        assert tls.requests == []
