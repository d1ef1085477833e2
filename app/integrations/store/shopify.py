"""Shopify's GraphQL Admin API: one POST endpoint, cost-based throttling, typed errors.

Pinned to API version :data:`API_VERSION` (``2026-01``, the first with
``@idempotent`` on ``refundCreate``), following shopify.dev's "Shopify API
limits" and "GraphQL Admin API" reference for that version:

- ``POST https://{shop}/admin/api/{version}/graphql.json`` with the header
  ``X-Shopify-Access-Token``.
- Each response's ``extensions.cost`` says ``requestedQueryCost``,
  ``actualQueryCost`` and ``throttleStatus {maximumAvailable,
  currentlyAvailable, restoreRate}``; our :class:`TokenBucket` of cost points
  takes that as the truth after every response.
- A throttled request answers HTTP 200 with ``errors[].extensions.code ==
  "THROTTLED"``: we wait ``(requested - available) / restoreRate`` seconds and
  retry. A REST-style 429 (with ``Retry-After``) is handled by HttpClient.
- Mutations report validation problems in ``userErrors`` (field + message):
  raised as :class:`RemoteRejectedError`. 401 / 403 and ``ACCESS_DENIED``
  become :class:`ConnectorAuthError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from app.integrations.base import JsonObject, JsonValue
from app.integrations.errors import (
    ActionError,
    ConnectorAuthError,
    MalformedDataError,
    RateLimitedError,
    RemoteNotFoundError,
    RemoteRejectedError,
)
from app.integrations.http import HttpClient
from app.integrations.ratelimit import Backoff, Clock, Sleep, TokenBucket
from app.integrations.store.store_db import OrderLine, StoreOrder

log = logging.getLogger("soloist.integrations.shopify")

API_VERSION = "2026-01"
# Until the first response tells us better: the Standard plan's documented bucket.
DEFAULT_BUCKET = 1000.0
DEFAULT_RESTORE_PER_S = 100.0
MAX_THROTTLE_RETRIES = 5
PAGE_SIZE = 50


class ShopifyClient:
    """One shop, one access token, one bucket of query-cost points."""

    def __init__(
        self,
        shop_domain: str,
        token: str,
        *,
        api_version: str = API_VERSION,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        backoff: Backoff | None = None,
        verify: Any = True,
    ) -> None:
        self._sleep = sleep
        self.bucket = TokenBucket(DEFAULT_BUCKET, DEFAULT_RESTORE_PER_S, clock=clock, sleep=sleep)
        self.path = f"/admin/api/{api_version}/graphql.json"
        self._http = HttpClient(
            base_url or f"https://{shop_domain}",
            service="Shopify",
            headers={"X-Shopify-Access-Token": token, "Accept": "application/json"},
            backoff=backoff,
            transport=transport,
            sleep=sleep,
            verify=verify,
        )

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return "ShopifyClient(<token hidden>)"

    def query(
        self, document: str, variables: Mapping[str, Any] | None = None, *, cost: float = 10.0
    ) -> JsonObject:
        """Run a query or mutation; its ``data``, after waiting out any throttling."""
        need = min(cost, self.bucket.capacity)
        for attempt in range(MAX_THROTTLE_RETRIES + 1):
            self.bucket.take(need)
            body = self._post(document, variables or {})
            throttle = self._observe_cost(body)
            if not _is_throttled(body):
                return _data_of(body)
            wait_s, requested = _throttle_wait(throttle, need)
            if attempt == MAX_THROTTLE_RETRIES:
                raise RateLimitedError("Shopify kept throttling our queries; try later", wait_s)
            log.info("Shopify: throttled, retry %d in %.2f s", attempt + 1, wait_s)
            self._sleep(wait_s)
            need = min(requested, self.bucket.capacity)
            self.bucket.set_available(need)  # what the shop will have restored by now
        raise AssertionError("unreachable")

    def mutate(
        self, document: str, variables: Mapping[str, Any], field: str, *, cost: float = 10.0
    ) -> JsonObject:
        """Run a mutation; its payload object, or RemoteRejectedError from ``userErrors``."""
        payload = self.query(document, variables, cost=cost).get(field)
        if not isinstance(payload, dict):
            raise MalformedDataError(f"Shopify answered {field} without a payload")
        user_errors = payload.get("userErrors") or []
        if isinstance(user_errors, list) and user_errors:
            raise RemoteRejectedError(f"Shopify refused {field}: {_user_errors(user_errors)}")
        return payload

    def paginate(
        self, document: str, connection: str, variables: Mapping[str, Any] | None = None
    ) -> Iterator[JsonObject]:
        """Every node of a top-level connection, page after page (``endCursor``)."""
        after: str | None = None
        while True:
            page_vars = {**(variables or {}), "first": PAGE_SIZE, "after": after}
            data = self.query(document, page_vars, cost=PAGE_SIZE * 2)
            conn = data.get(connection)
            if not isinstance(conn, dict):
                raise MalformedDataError(f"Shopify answered without {connection}")
            nodes = conn.get("nodes")
            yield from (n for n in nodes if isinstance(n, dict)) if isinstance(nodes, list) else ()
            info = conn.get("pageInfo")
            if not (isinstance(info, dict) and info.get("hasNextPage")):
                return
            after = str(info.get("endCursor"))

    def _post(self, document: str, variables: Mapping[str, Any]) -> JsonObject:
        response = self._http.request(
            "POST", self.path, json={"query": document, "variables": dict(variables)}
        )
        try:
            body = response.json()
        except ValueError as exc:
            raise MalformedDataError("Shopify answered with something that is not JSON") from exc
        if not isinstance(body, dict):
            raise MalformedDataError("Shopify answered with JSON that is not an object")
        return body

    def _observe_cost(self, body: JsonObject) -> dict[str, float]:
        """Correct the bucket from ``extensions.cost``; the numbers, for the caller."""
        cost = _dig(body, "extensions", "cost")
        status = _dig(body, "extensions", "cost", "throttleStatus")
        out: dict[str, float] = {}
        for name in ("requestedQueryCost", "actualQueryCost"):
            if isinstance(cost, dict) and isinstance(cost.get(name), int | float):
                out[name] = float(cost[name])
        if isinstance(status, dict):
            for name in ("maximumAvailable", "currentlyAvailable", "restoreRate"):
                if isinstance(status.get(name), int | float):
                    out[name] = float(status[name])
        if out.get("maximumAvailable", 0) > 0 and out.get("restoreRate", 0) > 0:
            self.bucket.capacity = out["maximumAvailable"]
            self.bucket.rate_per_s = out["restoreRate"]
        if "currentlyAvailable" in out:
            self.bucket.set_available(out["currentlyAvailable"])
        log.debug("Shopify cost %s", out)
        return out


def _throttle_wait(throttle: Mapping[str, float], fallback_cost: float) -> tuple[float, float]:
    requested = throttle.get("requestedQueryCost", fallback_cost)
    available = throttle.get("currentlyAvailable", 0.0)
    rate = throttle.get("restoreRate", DEFAULT_RESTORE_PER_S) or DEFAULT_RESTORE_PER_S
    return max(0.0, (requested - available) / rate), requested


def _is_throttled(body: JsonObject) -> bool:
    return any(_error_code(e) == "THROTTLED" for e in _errors(body))


def _errors(body: JsonObject) -> list[JsonObject]:
    errors = body.get("errors")
    if isinstance(errors, str):  # e.g. {"errors": "[API] Invalid API key or access token"}
        return [{"message": errors}]
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_code(error: JsonObject) -> str:
    ext = error.get("extensions")
    return str(ext.get("code") or "") if isinstance(ext, dict) else ""


def _data_of(body: JsonObject) -> JsonObject:
    errors = _errors(body)
    if errors:
        codes = sorted({_error_code(e) or "ERROR" for e in errors})
        if "ACCESS_DENIED" in codes:
            raise ConnectorAuthError(
                "Shopify refused: the token lacks a scope for this; check the app's access scopes"
            )
        if "NOT_FOUND" in codes:
            raise RemoteNotFoundError("Shopify: not found")
        raise RemoteRejectedError(f"Shopify refused the query ({', '.join(codes)})")
    data = body.get("data")
    if not isinstance(data, dict):
        raise MalformedDataError("Shopify answered without data")
    return data


def _user_errors(errors: list[Any]) -> str:
    parts = []
    for error in errors[:3]:
        if isinstance(error, dict):
            field = error.get("field")
            where = ".".join(str(f) for f in field) if isinstance(field, list) else "input"
            parts.append(f"{where}: {error.get('message')}")
    return "; ".join(parts)


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def money(bag: Any) -> tuple[str, str] | None:
    """``(amount, currency)`` of a ``MoneyBag`` (its shop money) or a ``MoneyV2``."""
    inner = bag.get("shopMoney", bag) if isinstance(bag, dict) else None
    if not isinstance(inner, dict) or inner.get("amount") is None:
        return None
    return str(inner["amount"]), str(inner.get("currencyCode") or "")


# -- Shopify's shapes, turned into ours ------------------------------------
def _dec(bag: Any) -> Decimal | None:
    amount = money(bag)
    return Decimal(amount[0]) if amount else None


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def order_from_node(node: Mapping[str, Any], source: str) -> StoreOrder:
    """A synced ``Order`` node as a :class:`StoreOrder` (amounts in shop money)."""
    customer = node.get("customer")
    tags = node.get("tags")
    lines = []
    items = _dig(node, "lineItems", "nodes")
    for no, item in enumerate(items if isinstance(items, list) else [], start=1):
        unit = _dec(item.get("originalUnitPriceSet"))
        qty = int(item.get("quantity") or 0)
        lines.append(
            OrderLine(no, item.get("title"), qty, unit, unit * qty if unit is not None else None,
                      item.get("sku"), item.get("id"))
        )  # fmt: skip
    return StoreOrder(
        source=source,
        external_id=str(node["id"]),
        currency=str(node.get("currencyCode") or ""),
        total=_dec(node.get("totalPriceSet")),
        created_at=_when(node.get("createdAt")),
        name=node.get("name"),
        email=node.get("email"),
        customer_external_id=customer.get("id") if isinstance(customer, dict) else None,
        subtotal=_dec(node.get("subtotalPriceSet")),
        shipping=_dec(node.get("totalShippingPriceSet")),
        tax=_dec(node.get("totalTaxSet")),
        refunded=_dec(node.get("totalRefundedSet")),
        financial_status=node.get("displayFinancialStatus"),
        fulfillment_status=node.get("displayFulfillmentStatus"),
        note=node.get("note"),
        tags=", ".join(str(t) for t in tags) if isinstance(tags, list) else None,
        updated_at=_when(node.get("updatedAt")),
        lines=tuple(lines),
    )


def refund_row(refund: JsonObject, order_id: str) -> dict[str, Any]:
    amount = money(refund.get("totalRefundedSet"))
    return {
        "external_id": str(refund.get("id")),
        "order_external_id": order_id,
        "amount": Decimal(amount[0]) if amount else None,
        "currency": amount[1] if amount else None,
        "note": refund.get("note"),
        "created_at": _when(refund.get("createdAt")),
    }


def _refundable_transactions(order: JsonObject) -> list[tuple[dict[str, Any], Decimal, str]]:
    """SALE / CAPTURE transactions that succeeded, with what each can still refund."""
    out = []
    transactions: Any = order.get("transactions")
    for tx in transactions if isinstance(transactions, list) else []:
        left = money(tx.get("maximumRefundableV2"))
        usable = tx.get("kind") in ("SALE", "CAPTURE") and tx.get("status") == "SUCCESS"
        if usable and left and Decimal(left[0]) > 0:
            out.append((tx, Decimal(left[0]), left[1]))
    return out


def _refund_lines(order: JsonObject, wanted: Any) -> list[JsonObject]:
    items = _dig(order, "lineItems", "nodes")
    by_id = (
        {i.get("id"): i for i in items if isinstance(i, dict)} if isinstance(items, list) else {}
    )
    lines: list[JsonObject] = []
    for want in wanted if isinstance(wanted, list) else []:
        item = by_id.get(str(want.get("line_item_id")))
        quantity = int(want.get("quantity") or 0)
        if item is None:
            raise ActionError("a line item to refund is not on that order")
        if not 0 < quantity <= int(item.get("refundableQuantity") or 0):
            raise ActionError(
                f"only {item.get('refundableQuantity')} of a line item can be refunded"
            )
        lines.append({"lineItemId": item["id"], "quantity": quantity, "restockType": "NO_RESTOCK"})
    return lines


def plan_refund(
    order: JsonObject, amount: Decimal, args: Mapping[str, Any], key: str
) -> tuple[JsonObject, str]:
    """The exact ``RefundInput`` and its preview; ActionError when it cannot be refunded."""
    name = str(order.get("name") or order.get("id"))
    sources = _refundable_transactions(order)
    refundable = sum((left for _, left, _ in sources), Decimal(0))
    currency = sources[0][2] if sources else str(order.get("currencyCode") or "")
    if amount <= 0:
        raise ActionError("the refund amount must be more than zero")
    if amount > refundable:
        raise ActionError(
            f"{amount} {currency} is more than the {refundable} {currency} "
            f"still refundable on order {name}"
        )
    transactions: list[JsonValue] = []
    remaining = amount
    for tx, left, _ in sources:
        if remaining <= 0:
            break
        part = min(left, remaining)
        remaining -= part
        transactions.append({"orderId": order["id"], "parentId": tx["id"],
                             "gateway": tx.get("gateway"), "kind": "REFUND",
                             "amount": str(part)})  # fmt: skip
    note = str(args.get("note") or "Refund").strip()
    refund_input: JsonObject = {
        "orderId": order["id"],
        "note": f"{note} [soloist:{key}]",
        "notify": bool(args.get("notify", False)),
        "transactions": transactions,
    }
    lines = _refund_lines(order, args.get("line_items"))
    if lines:
        refund_input["refundLineItems"] = list[JsonValue](lines)
    if args.get("shipping_amount"):
        refund_input["shipping"] = {"amount": str(Decimal(str(args["shipping_amount"])))}
    preview = (
        f"Refund {amount} {currency} on Shopify order {name} "
        f"({len(transactions)} transaction(s); {refundable} {currency} refundable"
        + (f"; {sum(int(str(x['quantity'])) for x in lines)} item(s)" if lines else "")
        + (f"; shipping {refund_input['shipping']}" if "shipping" in refund_input else "")
        + ")"
    )
    return refund_input, preview
