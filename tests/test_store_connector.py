"""The Shopify connector against a loopback shop: sync, tools, refund and order update.

The fake shop answers the GraphQL Admin API 2026-01 shapes (see
``test_shopify_contract.py``) from a little state of its own, so a refund
really reduces what is refundable and a crash can be staged after the shop
applied a refund but before we heard back.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from contract_server import ContractServer, DictKeyring, FakeClock, Recorded, Reply

from app.integrations.base import Account, ConnectorContext, ConnectorEvent
from app.integrations.errors import ActionError, ConnectionLostError
from app.integrations.store import ShopifyConnector
from app.integrations.store.shopify import API_VERSION
from app.memory.db import Database
from app.secrets import SecretStore

PATH = f"/admin/api/{API_VERSION}/graphql.json"
ORDER = "gid://shopify/Order/1001"
EXT = {"cost": {"requestedQueryCost": 10, "actualQueryCost": 5,
                "throttleStatus": {"maximumAvailable": 1000, "currentlyAvailable": 995,
                                   "restoreRate": 50}}}  # fmt: skip


def _money(amount: str, currency: str = "EUR") -> dict[str, Any]:
    return {"shopMoney": {"amount": amount, "currencyCode": currency}}


def order_node(updated: str = "2025-05-02T09:00:00Z") -> dict[str, Any]:
    return {
        "id": ORDER, "name": "#1001", "email": "ada@x.io", "createdAt": "2025-05-01T08:00:00Z",
        "updatedAt": updated, "note": None, "tags": ["vip"], "currencyCode": "EUR",
        "displayFinancialStatus": "PAID", "displayFulfillmentStatus": "FULFILLED",
        "customer": {"id": "gid://shopify/Customer/5"},
        "subtotalPriceSet": _money("25.00"), "totalShippingPriceSet": _money("5.00"),
        "totalTaxSet": _money("0.00"), "totalPriceSet": _money("30.00"),
        "totalRefundedSet": _money("0.00"),
        "lineItems": {"nodes": [{"id": "gid://shopify/LineItem/1", "sku": "MUG", "title": "Mug",
                                 "quantity": 2, "originalUnitPriceSet": _money("12.50")}]},
    }  # fmt: skip


class FakeShop:
    """State behind the GraphQL endpoint, dispatched on the operation name."""

    def __init__(self) -> None:
        self.refundable = Decimal("30.00")
        self.refunds: list[dict[str, Any]] = []
        self.seen_keys: dict[str, dict[str, Any]] = {}
        self.order = {"id": ORDER, "name": "#1001", "note": None, "tags": ["vip"],
                      "email": "ada@x.io"}  # fmt: skip
        self.drop_next_refund = False

    def __call__(self, req: Recorded) -> Reply:
        query, variables = req.body["query"], req.body["variables"]
        name = query.split("(")[0].split("{")[0].split()[-1]
        data = getattr(self, f"op_{name}")(variables, query)
        if name == "RefundCreate" and self.drop_next_refund:
            self.drop_next_refund = False
            return Reply(drop=True)  # applied, but the answer never arrives
        return Reply(body={"data": data, "extensions": EXT})

    def op_Shop(self, _v: dict[str, Any], _q: str) -> dict[str, Any]:  # noqa: N802
        return {"shop": {"name": "Demo", "currencyCode": "EUR"}}

    def op_Orders(self, variables: dict[str, Any], _q: str) -> dict[str, Any]:  # noqa: N802
        nodes = [] if variables.get("query") else [order_node()]
        return {"orders": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": nodes}}

    def op_Customers(self, _v: dict[str, Any], _q: str) -> dict[str, Any]:  # noqa: N802
        node = {"id": "gid://shopify/Customer/5", "firstName": "Ada", "lastName": "L",
                "updatedAt": "2025-05-01T00:00:00Z", "numberOfOrders": "1",
                "defaultEmailAddress": {"emailAddress": "ada@x.io"},
                "amountSpent": {"amount": "30.0", "currencyCode": "EUR"}}  # fmt: skip
        return {"customers": {"pageInfo": {"hasNextPage": False}, "nodes": [node]}}

    def op_Products(self, _v: dict[str, Any], _q: str) -> dict[str, Any]:  # noqa: N802
        node = {"id": "gid://shopify/Product/9", "title": "Mug", "status": "ACTIVE",
                "vendor": "Us", "productType": "Kitchen",
                "updatedAt": "2025-04-01T00:00:00Z"}  # fmt: skip
        return {"products": {"pageInfo": {"hasNextPage": False}, "nodes": [node]}}

    def op_OrderForRefund(self, _v: dict[str, Any], _q: str) -> dict[str, Any]:  # noqa: N802
        tx = {"id": "gid://shopify/OrderTransaction/77", "kind": "SALE", "status": "SUCCESS",
              "gateway": "shopify_payments", "amountSet": _money("30.00"),
              "maximumRefundableV2": {"amount": str(self.refundable),
                                      "currencyCode": "EUR"}}  # fmt: skip
        items = [{"id": "gid://shopify/LineItem/1", "title": "Mug", "quantity": 2,
                  "refundableQuantity": 2, "originalUnitPriceSet": _money("12.50")}]  # fmt: skip
        return {"order": {**self.order, "currencyCode": "EUR", "transactions": [tx],
                          "refunds": self.refunds, "lineItems": {"nodes": items}}}  # fmt: skip

    def op_OrderRefunds(self, _v: dict[str, Any], _q: str) -> dict[str, Any]:  # noqa: N802
        return {"order": {"id": ORDER, "refunds": self.refunds}}

    def op_RefundCreate(self, variables: dict[str, Any], query: str) -> dict[str, Any]:  # noqa: N802
        key = query.split('@idempotent(key: "')[1].split('"', maxsplit=1)[0]
        if key not in self.seen_keys:  # Shopify answers a repeated key with the first result
            amount = sum(Decimal(t["amount"]) for t in variables["input"]["transactions"])
            self.refundable -= amount
            refund = {"id": f"gid://shopify/Refund/{len(self.refunds) + 1}",
                      "note": variables["input"]["note"], "createdAt": "2025-05-03T10:00:00Z",
                      "totalRefundedSet": _money(f"{amount:.2f}")}  # fmt: skip
            self.refunds.append(refund)
            self.seen_keys[key] = refund
        return {"refundCreate": {"refund": self.seen_keys[key], "userErrors": []}}

    def op_OrderFields(self, _v: dict[str, Any], _q: str) -> dict[str, Any]:  # noqa: N802
        return {"order": dict(self.order)}

    def op_OrderUpdate(self, variables: dict[str, Any], _q: str) -> dict[str, Any]:  # noqa: N802
        self.order.update({k: v for k, v in variables["input"].items() if k != "id"})
        return {"orderUpdate": {"order": dict(self.order), "userErrors": []}}


@pytest.fixture
def shop() -> Iterator[tuple[ContractServer, FakeShop]]:
    state = FakeShop()
    with ContractServer() as server:
        server.route("POST", PATH, state)
        yield server, state


@pytest.fixture
def events() -> list[ConnectorEvent]:
    return []


@pytest.fixture
def store(
    shop: tuple[ContractServer, FakeShop], db: Database, events: list[ConnectorEvent]
) -> Iterator[ShopifyConnector]:
    secrets = SecretStore(DictKeyring())  # type: ignore[arg-type]
    account = Account("shop1", "shopify", "Demo", {"shop": "demo.myshopify.com"})
    secrets.set(account.secret_ref("token"), "shpat_test")
    context = ConnectorContext(db=db, secrets=secrets, emit=events.append)
    clock = FakeClock()
    conn = ShopifyConnector(account, context, base_url=shop[0].url, sleep=clock.sleep, clock=clock)
    yield conn
    conn.close()


def refund_requests(server: ContractServer) -> list[Recorded]:
    return [r for r in server.matching("POST", PATH) if "refundCreate(" in r.body["query"]]


def test_sync_stores_orders_customers_products_then_asks_only_for_changes(
    store: ShopifyConnector, shop: tuple[ContractServer, FakeShop], db: Database,
    events: list[ConnectorEvent],
) -> None:  # fmt: skip
    assert store.sync() == {"orders": 1, "customers": 1, "products": 1}
    row = db.fetchone("SELECT name, currency, total, shipping, tags FROM store_orders")
    assert row == ("#1001", "EUR", Decimal("30.0000"), Decimal("5.0000"), "vip")
    lines = db.fetchall("SELECT sku, quantity, unit_price, total FROM store_order_lines")
    assert lines == [("MUG", 2, Decimal("12.5000"), Decimal("25.0000"))]
    assert store.sync()["orders"] == 0
    orders = [r for r in shop[0].requests if r.body["query"].lstrip().startswith("query Orders")]
    assert orders[0].body["variables"]["query"] is None
    assert orders[1].body["variables"]["query"] == "updated_at:>='2025-05-02T09:00:00Z'"
    assert events[0].kind == "store.synced" and events[0].data["orders"] == 1


def test_tools_read_the_local_tables(store: ShopifyConnector) -> None:
    store.sync()
    tools = {t.name: t for t in store.tools()}
    [listed] = tools["store.orders"].run({"limit": 5})  # type: ignore[misc]
    assert listed["name"] == "#1001" and listed["total"] == "30.00"
    one = tools["store.order"].run({"id": "#1001"})
    assert one["lines"][0]["sku"] == "MUG"  # type: ignore[index,call-overload]
    assert tools["store.customers"].run({})[0]["email"] == "ada@x.io"  # type: ignore[index]
    assert tools["store.products"].run({})[0]["title"] == "Mug"  # type: ignore[index]
    summary = tools["store.sales_summary"].run({"since": "2025-04-01", "until": "2025-05-31"})
    assert summary == [{"day": "2025-05-01", "currency": "EUR", "orders": 1, "gross": "30.00",
                        "refunded": "0.00", "net": "30.00"}]  # fmt: skip


def test_test_connection_reads_the_shop(store: ShopifyConnector) -> None:
    report = store.test_connection()
    assert report.ok and report.summary == "Connected to Demo"


def test_refund_prepare_rejects_more_than_refundable(store: ShopifyConnector) -> None:
    action = {a.name: a for a in store.actions()}["store.refund"]
    with pytest.raises(ActionError, match=r"30\.00 EUR still refundable"):
        action.prepare({"order_id": "1001", "amount": "30.01"})
    with pytest.raises(ActionError, match="more than zero"):
        action.prepare({"order_id": "1001", "amount": "0"})
    with pytest.raises(ActionError, match="can be refunded"):
        action.prepare({"order_id": "1001", "amount": "5",
                        "line_items": [{"line_item_id": "gid://shopify/LineItem/1",
                                        "quantity": 3}]})  # fmt: skip


def test_refund_prepare_builds_the_exact_input(store: ShopifyConnector) -> None:
    action = {a.name: a for a in store.actions()}["store.refund"]
    prepared = action.prepare({
        "order_id": ORDER, "amount": "12.50", "note": "Broken mug",
        "line_items": [{"line_item_id": "gid://shopify/LineItem/1", "quantity": 1}],
    })  # fmt: skip
    key = prepared.idempotency_key
    assert prepared.payload == {"input": {
        "orderId": ORDER, "note": f"Broken mug [soloist:{key}]", "notify": False,
        "transactions": [{"orderId": ORDER, "parentId": "gid://shopify/OrderTransaction/77",
                          "gateway": "shopify_payments", "kind": "REFUND", "amount": "12.50"}],
        "refundLineItems": [{"lineItemId": "gid://shopify/LineItem/1", "quantity": 1,
                             "restockType": "NO_RESTOCK"}],
    }}  # fmt: skip
    assert "Refund 12.50 EUR on Shopify order #1001" in prepared.preview
    assert "30.00 EUR refundable" in prepared.preview


def test_refund_crash_after_the_shop_applied_it_is_reconciled_not_resent(
    store: ShopifyConnector, shop: tuple[ContractServer, FakeShop], db: Database
) -> None:
    server, state = shop
    action = {a.name: a for a in store.actions()}["store.refund"]
    prepared = action.prepare({"order_id": ORDER, "amount": "10.00"})
    assert action.reconcile(prepared) is None  # not done yet: safe to execute
    state.drop_next_refund = True
    with pytest.raises(ConnectionLostError):
        action.execute(prepared)  # the shop refunded; we never heard back
    outcome = action.reconcile(prepared)  # what the outbox does after the crash
    assert outcome is not None and outcome.done
    assert outcome.external_id == "gid://shopify/Refund/1"
    assert outcome.data == {"amount": "10.00", "currency": "EUR"}
    assert len(refund_requests(server)) == 1
    assert state.refundable == Decimal("20.00")
    assert db.fetchone("SELECT amount, currency FROM store_refunds") == (Decimal("10.0000"), "EUR")


def test_refund_execute_sends_idempotency_key_and_records_refund(
    store: ShopifyConnector, shop: tuple[ContractServer, FakeShop]
) -> None:
    server, state = shop
    action = {a.name: a for a in store.actions()}["store.refund"]
    prepared = action.prepare({"order_id": ORDER, "amount": "7.25"})
    outcome = action.execute(prepared)
    assert outcome.done and outcome.external_id == "gid://shopify/Refund/1"
    [sent] = refund_requests(server)
    assert f'@idempotent(key: "{prepared.idempotency_key}")' in sent.body["query"]
    assert sent.body["variables"] == prepared.payload
    assert action.reconcile(prepared) is not None
    assert state.refundable == Decimal("22.75")


def test_update_order_sends_only_changes_and_reconciles(
    store: ShopifyConnector, shop: tuple[ContractServer, FakeShop]
) -> None:
    server, _state = shop
    action = {a.name: a for a in store.actions()}["store.update_order"]
    with pytest.raises(ActionError, match="nothing to change"):
        action.prepare({"order_id": "1001", "tags": ["vip"]})
    prepared = action.prepare({"order_id": "1001", "note": "Gift wrap", "tags": ["vip"]})
    assert prepared.payload == {"input": {"id": ORDER, "note": "Gift wrap"}}
    assert prepared.preview == "Update Shopify order #1001: note: None -> 'Gift wrap'"
    assert action.reconcile(prepared) is None
    assert action.execute(prepared).done
    assert action.reconcile(prepared) is not None
    updates = [r for r in server.requests if "orderUpdate(" in r.body["query"]]
    assert len(updates) == 1 and updates[0].body["variables"] == prepared.payload


def test_shop_domain_is_checked(db: Database) -> None:
    secrets = SecretStore(DictKeyring())  # type: ignore[arg-type]
    account = Account("s", "shopify", "Bad", {"shop": "evil.example.com"})
    secrets.set(account.secret_ref("token"), "t")
    conn = ShopifyConnector(account, ConnectorContext(db=db, secrets=secrets))
    report = conn.test_connection()
    assert not report.ok and "myshopify.com" in report.summary
