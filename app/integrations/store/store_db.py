"""The local store tables: orders, their lines, customers, products and refunds.

Both the Shopify sync and the CSV import write here, so the tools (orders,
sales per day) read one place whatever the platform. Rows are keyed by
``(source, external_id)`` and written with upserts; each write carries the
import batch that wrote it. An order's ``fingerprint`` (a hash of its
content) tells a re-import that changes nothing from one that updates.
Money stays :class:`~decimal.Decimal` from parsing to the DuckDB
``DECIMAL`` column and back.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from app.integrations.base import JsonObject, JsonValue
from app.memory.db import Database, from_db_time, to_db_time, utc_now


@dataclass(frozen=True, slots=True)
class OrderLine:
    line_no: int
    title: str | None
    quantity: int
    unit_price: Decimal | None
    total: Decimal | None
    sku: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class StoreOrder:
    source: str
    external_id: str
    currency: str
    total: Decimal | None
    created_at: datetime | None
    name: str | None = None
    email: str | None = None
    customer_external_id: str | None = None
    subtotal: Decimal | None = None
    shipping: Decimal | None = None
    tax: Decimal | None = None
    refunded: Decimal | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    note: str | None = None
    tags: str | None = None
    updated_at: datetime | None = None
    lines: tuple[OrderLine, ...] = field(default=())

    def fingerprint(self) -> str:
        content = json.dumps(asdict(self), default=str, sort_keys=True)
        return hashlib.sha256(content.encode()).hexdigest()


class Upsert(Enum):
    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


def new_batch(prefix: str) -> str:
    """An import batch id: the source and a random suffix."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _t(moment: datetime | None) -> datetime | None:
    return to_db_time(moment) if moment is not None else None


def upsert_order(db: Database, order: StoreOrder, batch: str) -> Upsert:
    """Write ``order`` and replace its lines, in one transaction."""
    fingerprint = order.fingerprint()
    with db.transaction():
        row = db.fetchone(
            "SELECT fingerprint FROM store_orders WHERE source = ? AND external_id = ?",
            (order.source, order.external_id),
        )
        if row is not None and row[0] == fingerprint:
            return Upsert.UNCHANGED
        db.execute(
            "INSERT OR REPLACE INTO store_orders (source, external_id, name, email,"
            " customer_external_id, currency, subtotal, shipping, tax, total, refunded,"
            " financial_status, fulfillment_status, note, tags, created_at, updated_at,"
            " import_batch, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?, ?, ?)",
            (
                order.source, order.external_id, order.name, order.email,
                order.customer_external_id, order.currency, order.subtotal, order.shipping,
                order.tax, order.total, order.refunded, order.financial_status,
                order.fulfillment_status, order.note, order.tags, _t(order.created_at),
                _t(order.updated_at), batch, fingerprint,
            ),
        )  # fmt: skip
        _replace_lines(db, order, batch)
    return Upsert.NEW if row is None else Upsert.UPDATED


def _replace_lines(db: Database, order: StoreOrder, batch: str) -> None:
    db.execute(
        "DELETE FROM store_order_lines WHERE source = ? AND order_external_id = ?",
        (order.source, order.external_id),
    )
    for line in order.lines:
        db.execute(
            "INSERT INTO store_order_lines (source, order_external_id, line_no, external_id,"
            " sku, title, quantity, unit_price, total, currency, import_batch)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.source, order.external_id, line.line_no, line.external_id, line.sku,
                line.title, line.quantity, line.unit_price, line.total, order.currency, batch,
            ),
        )  # fmt: skip


def upsert_customer(db: Database, source: str, row: dict[str, Any], batch: str) -> None:
    db.execute(
        "INSERT OR REPLACE INTO store_customers (source, external_id, email, first_name,"
        " last_name, orders_count, total_spent, currency, updated_at, import_batch)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            source, row["external_id"], row.get("email"), row.get("first_name"),
            row.get("last_name"), row.get("orders_count"), row.get("total_spent"),
            row.get("currency"), _t(row.get("updated_at")), batch,
        ),
    )  # fmt: skip


def upsert_product(db: Database, source: str, row: dict[str, Any], batch: str) -> None:
    db.execute(
        "INSERT OR REPLACE INTO store_products (source, external_id, title, status, vendor,"
        " product_type, updated_at, import_batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            source, row["external_id"], row.get("title"), row.get("status"), row.get("vendor"),
            row.get("product_type"), _t(row.get("updated_at")), batch,
        ),
    )  # fmt: skip


def upsert_refund(db: Database, source: str, row: dict[str, Any], batch: str) -> None:
    db.execute(
        "INSERT OR REPLACE INTO store_refunds (source, external_id, order_external_id, amount,"
        " currency, note, created_at, import_batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            source, row["external_id"], row["order_external_id"], row.get("amount"),
            row.get("currency"), row.get("note"), _t(row.get("created_at")), batch,
        ),
    )  # fmt: skip


# -- reading, for the tools -------------------------------------------------
_ORDER_COLUMNS = (
    "source", "external_id", "name", "email", "currency", "total", "refunded",
    "financial_status", "fulfillment_status", "created_at",
)  # fmt: skip


def _rows(columns: Sequence[str], rows: list[tuple[Any, ...]]) -> list[JsonObject]:
    return [{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows]


def _list(columns: Sequence[str], rows: list[tuple[Any, ...]]) -> JsonValue:
    return list[JsonValue](_rows(columns, rows))


def _json_value(value: Any) -> JsonValue:
    """Decimals as strings (exact), times as ISO text: JSON values for the tools."""
    if isinstance(value, Decimal):
        cents = value.quantize(Decimal("0.01"))
        return str(cents) if cents == value else str(value.normalize())
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def list_orders(db: Database, limit: int = 20, email: str | None = None) -> list[JsonObject]:
    where, params = ("WHERE lower(email) = lower(?)", [email]) if email else ("", [])
    rows = db.fetchall(
        f"SELECT {', '.join(_ORDER_COLUMNS)} FROM store_orders {where}"
        " ORDER BY created_at DESC NULLS LAST LIMIT ?",
        (*params, limit),
    )
    return _rows(_ORDER_COLUMNS, rows)


def get_order(db: Database, source: str | None, external_id: str) -> JsonObject | None:
    rows = db.fetchall(
        f"SELECT {', '.join(_ORDER_COLUMNS)}, note, tags FROM store_orders"
        " WHERE (? IS NULL OR source = ?) AND (external_id = ? OR name = ?)"
        " ORDER BY source LIMIT 1",
        (source, source, external_id, external_id),
    )
    if not rows:
        return None
    order = _rows((*_ORDER_COLUMNS, "note", "tags"), rows)[0]
    line_cols = ("line_no", "sku", "title", "quantity", "unit_price", "total")
    order["lines"] = _list(
        line_cols,
        db.fetchall(
            f"SELECT {', '.join(line_cols)} FROM store_order_lines"
            " WHERE source = ? AND order_external_id = ? ORDER BY line_no",
            (order["source"], order["external_id"]),
        ),
    )
    refund_cols = ("external_id", "amount", "currency", "created_at")
    order["refunds"] = _list(
        refund_cols,
        db.fetchall(
            f"SELECT {', '.join(refund_cols)} FROM store_refunds"
            " WHERE source = ? AND order_external_id = ? ORDER BY created_at",
            (order["source"], order["external_id"]),
        ),
    )
    return order


def list_customers(db: Database, limit: int = 20) -> list[JsonObject]:
    cols = ("source", "external_id", "email", "first_name", "last_name", "orders_count",
            "total_spent", "currency")  # fmt: skip
    sql = f"SELECT {', '.join(cols)} FROM store_customers ORDER BY updated_at DESC LIMIT ?"
    return _rows(cols, db.fetchall(sql, (limit,)))


def list_products(db: Database, limit: int = 20) -> list[JsonObject]:
    cols = ("source", "external_id", "title", "status", "vendor", "product_type")
    sql = f"SELECT {', '.join(cols)} FROM store_products ORDER BY updated_at DESC LIMIT ?"
    return _rows(cols, db.fetchall(sql, (limit,)))


def sales_summary(db: Database, since: datetime, until: datetime) -> list[JsonObject]:
    """Orders, gross and refunded per day and currency, from the local tables."""
    cols = ("day", "currency", "orders", "gross", "refunded", "net")
    rows = db.fetchall(
        "SELECT CAST(created_at AS DATE) AS day, currency, count(*),"
        " sum(coalesce(total, 0)), sum(coalesce(refunded, 0)),"
        " sum(coalesce(total, 0)) - sum(coalesce(refunded, 0))"
        " FROM store_orders WHERE created_at >= ? AND created_at < ?"
        " GROUP BY ALL ORDER BY day, currency",
        (to_db_time(since), to_db_time(until)),
    )
    return _rows(cols, rows)


def last_synced(db: Database, account_id: str, resource: str) -> datetime | None:
    row = db.fetchone(
        "SELECT last_modified FROM integration_sync_state WHERE account_id = ? AND resource = ?",
        (account_id, resource),
    )
    return from_db_time(row[0]) if row and row[0] else None


def save_synced(db: Database, account_id: str, resource: str, newest: datetime) -> None:
    db.execute(
        "INSERT OR REPLACE INTO integration_sync_state"
        " (account_id, resource, last_modified, synced_at) VALUES (?, ?, ?, ?)",
        (account_id, resource, to_db_time(newest), to_db_time(utc_now())),
    )
