"""Importing orders from CSV exports: WooCommerce, Etsy, Squarespace and generic files.

Small fixture files are written per test in the column layouts those
platforms export (WooCommerce order export columns, Etsy's
"EtsySoldOrderItems" sheet, Squarespace's orders CSV with one row per line
item and order fields on the first row only).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.integrations.errors import MalformedDataError
from app.integrations.store.orders_csv import import_orders, parse_date, parse_money
from app.memory.db import Database

WOO = (
    "Order Number,Order Date,Order Status,Billing Email Address,Order Currency,"
    "Order Shipping Amount,Order Total Amount,SKU,Item Name,Quantity,Item Cost\n"
    '1001,2025-03-01 10:20:00,completed,ada@x.io,EUR,5.00,"1,234.50",MUG,Mug,2,14.75\n'
    '1001,2025-03-01 10:20:00,completed,ada@x.io,EUR,5.00,"1,234.50",LAMP,Lamp,1,1200.00\n'
    "1002,2025-03-02 09:00:00,processing,bob@x.io,EUR,0,20.00,CUP,Cup,1,20.00\n"
)


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "o.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_woocommerce_orders_span_rows_and_keep_decimal_money(db: Database, tmp_path: Path) -> None:
    report = import_orders(db, write(tmp_path, WOO), "woocommerce")
    assert report.imported == ["1001", "1002"] and report.skipped == []
    row = db.fetchone(
        "SELECT total, shipping, currency, email, created_at FROM store_orders"
        " WHERE source = 'woocommerce' AND external_id = '1001'"
    )
    assert row == (Decimal("1234.5000"), Decimal("5.0000"), "EUR", "ada@x.io",
                   datetime(2025, 3, 1, 10, 20))  # fmt: skip
    lines = db.fetchall(
        "SELECT line_no, sku, quantity, unit_price, total FROM store_order_lines"
        " WHERE order_external_id = '1001' ORDER BY line_no"
    )
    assert lines == [
        (1, "MUG", 2, Decimal("14.7500"), Decimal("29.5000")),
        (2, "LAMP", 1, Decimal("1200.0000"), Decimal("1200.0000")),
    ]
    assert all(isinstance(v, Decimal) for v in lines[0][3:])


def test_reimport_is_idempotent_and_reports_updates(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, WOO)
    first = import_orders(db, path, "woocommerce")
    again = import_orders(db, path, "woocommerce")
    assert again.unchanged == ["1001", "1002"] and again.imported == again.updated == []
    assert db.fetchone("SELECT count(*) FROM store_order_lines") == (3,)
    changed = write(tmp_path, WOO.replace("processing", "completed"), name="o2.csv")
    third = import_orders(db, changed, "woocommerce")
    assert third.updated == ["1002"] and third.unchanged == ["1001"]
    batches = db.fetchall("SELECT external_id, import_batch FROM store_orders ORDER BY 1")
    assert batches == [("1001", first.batch), ("1002", third.batch)]


def test_etsy_cp1252_us_dates_and_symbol_currency(db: Database, tmp_path: Path) -> None:
    text = (
        "Sale Date,Item Name,Buyer,Quantity,Price,Order Shipping,Order Sales Tax,Item Total,"
        "Currency,Order ID,SKU\n"
        "03/15/25,Café mug,ann,1,€12.50,3.00,0.00,12.50,,5550001,CM-1\n"
    )
    report = import_orders(db, write(tmp_path, text, "cp1252"), "etsy")
    assert report.imported == ["5550001"], report.skipped
    row = db.fetchone("SELECT created_at, currency, total FROM store_orders")
    assert row == (datetime(2025, 3, 15), "EUR", Decimal("15.5000"))  # lines + shipping + tax
    assert db.fetchone("SELECT title FROM store_order_lines") == ("Café mug",)


def test_squarespace_bom_semicolons_and_first_row_order_fields(
    db: Database, tmp_path: Path
) -> None:
    text = (
        "Order ID;Email;Financial Status;Created at;Currency;Subtotal;Shipping;Taxes;Total;"
        "Lineitem quantity;Lineitem name;Lineitem price;Lineitem sku\n"
        "00042;c@x.io;paid;2025-01-05 10:20:30 -0500;EUR;24,00;4,90;0;28,90;2;Soap;12,00;S-1\n"
        "00042;;;;;;;;;1;Gift card;0,00;G-1\n"
    )
    report = import_orders(db, write(tmp_path, text, "utf-8-sig"), "squarespace")
    assert report.imported == ["00042"]
    row = db.fetchone("SELECT created_at, total, shipping, email FROM store_orders")
    assert row == (datetime(2025, 1, 5, 15, 20, 30), Decimal("28.9000"), Decimal("4.9000"),
                   "c@x.io")  # fmt: skip
    assert db.fetchone("SELECT count(*) FROM store_order_lines") == (2,)


def test_bad_rows_are_skipped_with_row_numbers_and_reasons(db: Database, tmp_path: Path) -> None:
    text = (
        "order id,date,total,currency,item,quantity\n"
        "A1,2025-02-01,10.00,USD,Pen,1\n"
        ",2025-02-01,3.00,USD,Orphan,1\n"
        "A2,yesterday,5.00,USD,Ink,1\n"
        "A3,2025-02-03,5.00,,Nib,1\n"
        "A4,2025-02-04,lots,USD,Pad,1\n"
    )
    report = import_orders(db, write(tmp_path, text), "generic")
    assert report.imported == ["A1"]
    reasons = dict(report.skipped)
    assert reasons[3] == "no order number"
    assert reasons[4].startswith("order A2: not a date")
    assert reasons[5].startswith("order A3: no currency")
    assert reasons[6].startswith("order A4: not an amount")
    assert report.summary() == "1 imported, 0 updated, 0 unchanged, 4 rows skipped"


def test_default_currency_fills_files_without_one(db: Database, tmp_path: Path) -> None:
    text = "order,date,total\nB1,2025-02-01,9.99\n"
    report = import_orders(db, write(tmp_path, text), "generic", currency="gbp")
    assert report.imported == ["B1"]
    assert db.fetchone("SELECT currency, total FROM store_orders") == ("GBP", Decimal("9.9900"))


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("1.234,56", Decimal("1234.56"), None),
        ("1,234.56", Decimal("1234.56"), None),
        ("€12,5", Decimal("12.5"), "EUR"),
        ("12.50 USD", Decimal("12.50"), "USD"),
        ("-3.00", Decimal("-3.00"), None),
        ("£1,000", Decimal("1000"), "GBP"),
        ("", None, None),
    ],
)
def test_parse_money(text: str, amount: Decimal | None, currency: str | None) -> None:
    assert parse_money(text) == (amount, currency)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T10:00:00Z", datetime(2025, 3, 1, 10, tzinfo=UTC)),
        ("2025-03-01 10:00", datetime(2025, 3, 1, 10, tzinfo=UTC)),
        ("03/15/2025", datetime(2025, 3, 15, tzinfo=UTC)),
        ("15.03.2025", datetime(2025, 3, 15, tzinfo=UTC)),
        ("Mar 15, 2025", datetime(2025, 3, 15, tzinfo=UTC)),
    ],
)
def test_parse_date(text: str, expected: datetime) -> None:
    assert parse_date(text) == expected


def test_unknown_source_and_missing_order_column_are_refused(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown CSV source"):
        import_orders(db, write(tmp_path, WOO), "amazon")
    with pytest.raises(MalformedDataError, match="no order number column"):
        import_orders(db, write(tmp_path, "date,total\n2025-01-01,3\n"), "generic")
