"""The Shopify connector: sync the store into local tables, read it, refund and edit orders.

Refunds (``store.refund``, Risk.HIGH) are prepared against the live order:
the amount is checked against what its SALE / CAPTURE transactions can
still refund (``maximumRefundableV2``), split over those transactions (each
a ``REFUND`` with its ``parentId`` and ``gateway``), and the exact
``refundCreate`` input is fixed with a UUID idempotency key. ``execute``
sends it with Shopify's ``@idempotent(key:)`` directive (API 2026-01), so a
retried request never refunds twice; the key also ends the refund's ``note``
as ``[soloist:<key>]``, and ``reconcile`` reads the order's refunds for that
marker after a crash. ``store.update_order`` (note, tags, email) is
idempotent by nature; ``reconcile`` compares the fields.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import httpx

from app.integrations.base import (
    Account,
    Action,
    ActionOutcome,
    ConnectionReport,
    Connector,
    ConnectorContext,
    ConnectorEvent,
    JsonObject,
    JsonValue,
    PreparedAction,
    Risk,
    Tool,
    register,
)
from app.integrations.errors import ActionError, ConnectorConfigError, ConnectorError
from app.integrations.ratelimit import Clock, Sleep
from app.integrations.store import shopify_queries as q
from app.integrations.store import store_db
from app.integrations.store.shopify import (
    API_VERSION,
    ShopifyClient,
    money,
    order_from_node,
    plan_refund,
    refund_row,
)

log = logging.getLogger("soloist.integrations.shopify")

SOURCE = "shopify"
_SHOP = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
_ORDER_FIELDS = ("note", "tags", "email")


def _obj(properties: dict[str, JsonValue], required: Sequence[str] = ()) -> JsonObject:
    return {"type": "object", "properties": properties, "required": list(required)}


def order_gid(value: object) -> str:
    text = str(value or "").strip()
    if text.isdigit():
        return f"gid://shopify/Order/{text}"
    if not text.startswith("gid://shopify/Order/"):
        raise ActionError("an order is named by its Shopify id (a number or gid://shopify/Order/…)")
    return text


@register
class ShopifyConnector(Connector):
    kind: ClassVar[str] = "shopify"
    display_name: ClassVar[str] = "Shopify"
    settings_schema: ClassVar[dict[str, str]] = {
        "shop": "the shop's domain: your-shop.myshopify.com",
        "api_version": f"Admin API version (default {API_VERSION})",
    }
    secret_fields: ClassVar[tuple[str, ...]] = ("token",)

    def __init__(
        self,
        account: Account,
        context: ConnectorContext,
        *,
        base_url: str | None = None,  # tests: a loopback server instead of https://{shop}
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        verify: Any = True,
    ) -> None:
        super().__init__(account, context)
        self._seams: dict[str, Any] = {
            "base_url": base_url,
            "transport": transport,
            "sleep": sleep,
            "clock": clock,
            "verify": verify,
        }
        self._client: ShopifyClient | None = None

    @property
    def client(self) -> ShopifyClient:
        if self._client is None:
            shop = str(self.account.setting("shop", "")).strip().lower()
            if not _SHOP.fullmatch(shop):
                raise ConnectorConfigError("the shop must be its domain: your-shop.myshopify.com")
            version = str(self.account.setting("api_version", API_VERSION))
            token = self.secret("token")
            self._client = ShopifyClient(shop, token, api_version=version, **self._seams)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def test_connection(self) -> ConnectionReport:
        started = time.perf_counter()
        try:
            shop = self.client.query(q.SHOP, cost=1).get("shop")
        except ConnectorError as exc:
            return ConnectionReport(False, str(exc), elapsed_ms=_ms(started))
        if not isinstance(shop, dict):
            return ConnectionReport(
                False, "Shopify answered without the shop", elapsed_ms=_ms(started)
            )
        details = (f"currency {shop.get('currencyCode')}", f"Admin API {self.client.path}")
        return ConnectionReport(True, f"Connected to {shop.get('name')}", details, _ms(started))

    # -- sync ---------------------------------------------------------------
    def sync(self) -> dict[str, int]:
        """Pull orders, customers and products updated since the last sync; counts."""
        started = time.perf_counter()
        counts = {
            "orders": self._sync_resource("orders", q.ORDERS, self._store_order),
            "customers": self._sync_resource("customers", q.CUSTOMERS, self._store_customer),
            "products": self._sync_resource("products", q.PRODUCTS, self._store_product),
        }
        log.info("Shopify sync of %s: %s in %.0f ms", self.account.id, counts, _ms(started))
        self.context.emit(ConnectorEvent("store.synced", self.account.id, dict(counts)))
        return counts

    def _sync_resource(
        self, resource: str, document: str, store: Callable[[JsonObject, str], None]
    ) -> int:
        state = f"shopify.{resource}"
        since = store_db.last_synced(self.context.db, self.account.id, state)
        search = f"updated_at:>='{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'" if since else None
        batch = store_db.new_batch(SOURCE)
        newest, count = since, 0
        for node in self.client.paginate(document, resource, {"query": search}):
            store(node, batch)
            updated = _time(node.get("updatedAt"))
            newest = updated if newest is None or (updated and updated > newest) else newest
            count += 1
        if newest is not None:
            store_db.save_synced(self.context.db, self.account.id, state, newest)
        return count

    def _store_order(self, node: JsonObject, batch: str) -> None:
        store_db.upsert_order(self.context.db, order_from_node(node, SOURCE), batch)

    def _store_customer(self, node: JsonObject, batch: str) -> None:
        spent = money(node.get("amountSpent"))
        email = node.get("defaultEmailAddress")
        row = {
            "external_id": node.get("id"),
            "email": email.get("emailAddress") if isinstance(email, dict) else None,
            "first_name": node.get("firstName"),
            "last_name": node.get("lastName"),
            "orders_count": int(str(node.get("numberOfOrders") or 0)),
            "total_spent": Decimal(spent[0]) if spent else None,
            "currency": spent[1] if spent else None,
            "updated_at": _time(node.get("updatedAt")),
        }
        store_db.upsert_customer(self.context.db, SOURCE, row, batch)

    def _store_product(self, node: JsonObject, batch: str) -> None:
        row = {
            "external_id": node.get("id"),
            "title": node.get("title"),
            "status": node.get("status"),
            "vendor": node.get("vendor"),
            "product_type": node.get("productType"),
            "updated_at": _time(node.get("updatedAt")),
        }
        store_db.upsert_product(self.context.db, SOURCE, row, batch)

    # -- tools (local tables) -------------------------------------------------
    def tools(self) -> Sequence[Tool]:
        limit: dict[str, JsonValue] = {"limit": {"type": "integer"}}
        db = self.context.db
        return (
            Tool("store.orders", "Recent store orders (all platforms), newest first.",
                 _obj({**limit, "email": {"type": "string"}}),
                 lambda a: list[JsonValue](
                     store_db.list_orders(db, _limit(a), _str(a.get("email"))))),
            Tool("store.order", "One store order with its lines and refunds.",
                 _obj({"id": {"type": "string"}, "source": {"type": "string"}}, ["id"]),
                 lambda a: store_db.get_order(db, _str(a.get("source")), str(a.get("id")))),
            Tool("store.customers", "Store customers, recently updated first.", _obj(limit),
                 lambda a: list[JsonValue](store_db.list_customers(db, _limit(a)))),
            Tool("store.products", "Store products, recently updated first.", _obj(limit),
                 lambda a: list[JsonValue](store_db.list_products(db, _limit(a)))),
            Tool("store.sales_summary", "Orders, gross, refunded and net per day and currency.",
                 _obj({"days": {"type": "integer"}, "since": {"type": "string", "format": "date"},
                       "until": {"type": "string", "format": "date"}}), self._sales_summary),
        )  # fmt: skip

    def _sales_summary(self, args: JsonObject) -> JsonValue:
        """Per day and currency: from ``since`` to ``until`` (dates), or the last ``days``."""
        days = _limit(args, key="days", default=30, cap=3660)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        since = _day(args.get("since")) or today - timedelta(days=days - 1)
        until = (_day(args.get("until")) or today) + timedelta(days=1)
        return list[JsonValue](store_db.sales_summary(self.context.db, since, until))

    # -- actions --------------------------------------------------------------
    def actions(self) -> Sequence[Action]:
        line_item: JsonValue = _obj(
            {"line_item_id": {"type": "string"}, "quantity": {"type": "integer"}},
            ["line_item_id", "quantity"],
        )
        refund_args: dict[str, JsonValue] = {
            "order_id": {"type": "string"},
            "amount": {"type": "string", "description": "decimal, in the order's currency"},
            "line_items": {"type": "array", "items": line_item},
            "shipping_amount": {"type": "string"},
            "note": {"type": "string"},
            "notify": {"type": "boolean"},
        }
        update_args: dict[str, JsonValue] = {
            "order_id": {"type": "string"},
            "note": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "email": {"type": "string"},
        }
        return (
            Action("store.refund", "Refund money (and optionally items) on a Shopify order.",
                   _obj(refund_args, ["order_id", "amount"]), Risk.HIGH,
                   self._prepare_refund, self._execute_refund, self._reconcile_refund),
            Action("store.update_order", "Change a Shopify order's note, tags or email.",
                   _obj(update_args, ["order_id"]), Risk.MEDIUM,
                   self._prepare_update, self._execute_update, self._reconcile_update),
        )  # fmt: skip

    def _prepare_refund(self, args: JsonObject) -> PreparedAction:
        order_id = order_gid(args.get("order_id"))
        try:
            amount = Decimal(str(args.get("amount")))
        except InvalidOperation:
            raise ActionError("the refund amount must be a decimal number") from None
        order = self.client.query(q.ORDER_FOR_REFUND, {"id": order_id}).get("order")
        if not isinstance(order, dict):
            raise ActionError("that Shopify order was not found")
        key = str(uuid.uuid4())
        refund_input, preview = plan_refund(order, amount, args, key)
        payload: JsonObject = {"input": refund_input}
        return PreparedAction("store.refund", self.account.id, payload, preview, Risk.HIGH, key)

    def _execute_refund(self, prepared: PreparedAction) -> ActionOutcome:
        document = q.refund_create(prepared.idempotency_key)
        result = self.client.mutate(document, prepared.payload, "refundCreate", cost=20)
        refund = result.get("refund")
        if not isinstance(refund, dict):
            raise ActionError("Shopify answered refundCreate without the refund")
        return self._refund_outcome(prepared, refund, "Refund created in Shopify")

    def _reconcile_refund(self, prepared: PreparedAction) -> ActionOutcome | None:
        refund_input = prepared.payload["input"]
        assert isinstance(refund_input, dict)
        order_id = str(refund_input["orderId"])
        order = self.client.query(q.ORDER_REFUNDS, {"id": order_id}).get("order")
        refunds = order.get("refunds") if isinstance(order, dict) else None
        marker = f"[soloist:{prepared.idempotency_key}]"
        for refund in refunds if isinstance(refunds, list) else []:
            if isinstance(refund, dict) and marker in str(refund.get("note") or ""):
                return self._refund_outcome(prepared, refund, "The refund is in Shopify")
        return None

    def _refund_outcome(
        self, prepared: PreparedAction, refund: JsonObject, summary: str
    ) -> ActionOutcome:
        refund_input = prepared.payload["input"]
        assert isinstance(refund_input, dict)
        row = refund_row(refund, str(refund_input["orderId"]))
        store_db.upsert_refund(self.context.db, SOURCE, row, f"action-{prepared.idempotency_key}")
        log.info("Shopify refund %s for key %s", row["external_id"], prepared.idempotency_key)
        data: JsonObject = {"amount": str(row["amount"]), "currency": row["currency"]}
        return ActionOutcome(True, summary, str(row["external_id"]), data)

    def _prepare_update(self, args: JsonObject) -> PreparedAction:
        order_id = order_gid(args.get("order_id"))
        current = self._order_fields(order_id)
        changes: JsonObject = {"id": order_id}
        lines = []
        for name in _ORDER_FIELDS:
            if name in args and args[name] is not None and args[name] != current.get(name):
                changes[name] = args[name]
                lines.append(f"{name}: {current.get(name)!r} -> {args[name]!r}")
        if len(changes) == 1:
            raise ActionError("nothing to change: the order already has these values")
        payload: JsonObject = {"input": changes}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
        preview = f"Update Shopify order {current.get('name')}: " + "; ".join(lines)
        return PreparedAction("store.update_order", self.account.id, payload, preview,
                              Risk.MEDIUM, key)  # fmt: skip

    def _order_fields(self, order_id: str) -> JsonObject:
        order = self.client.query(q.ORDER_FIELDS, {"id": order_id}, cost=1).get("order")
        if not isinstance(order, dict):
            raise ActionError("that Shopify order was not found")
        return order

    def _execute_update(self, prepared: PreparedAction) -> ActionOutcome:
        result = self.client.mutate(q.ORDER_UPDATE, prepared.payload, "orderUpdate")
        order = result.get("order")
        order_id = order.get("id") if isinstance(order, dict) else None
        return ActionOutcome(True, "Order updated in Shopify", str(order_id))

    def _reconcile_update(self, prepared: PreparedAction) -> ActionOutcome | None:
        changes = prepared.payload["input"]
        assert isinstance(changes, dict)
        current = self._order_fields(str(changes["id"]))
        for name in _ORDER_FIELDS:
            if name in changes and _norm(changes[name]) != _norm(current.get(name)):
                return None
        return ActionOutcome(True, "The order already has these values", str(changes["id"]))


def _norm(value: JsonValue) -> object:
    return sorted(str(v) for v in value) if isinstance(value, list) else value


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _day(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value[:10]).replace(tzinfo=UTC)
    except ValueError:
        raise ActionError(f"not a date (YYYY-MM-DD): {value[:20]!r}") from None


def _str(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _limit(args: JsonObject, key: str = "limit", default: int = 20, cap: int = 200) -> int:
    value = args.get(key)
    return min(value, cap) if isinstance(value, int) and value > 0 else default


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
