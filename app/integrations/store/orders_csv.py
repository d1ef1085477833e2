"""Import orders from the CSV exports of WooCommerce, Etsy, Squarespace or any shop.

An owner action (UI or CLI), not an agent tool. Why it is careful:

- Exports differ per platform, so each has a header table mapping its
  column names to ours (compared case- and punctuation-insensitively);
  ``generic`` accepts the common names of all of them.
- One order spans several rows (one per line item) and order-level columns
  may be filled on the first row only: rows are grouped by order number and
  each order field is taken from the first row that has it.
- Money is :class:`Decimal`, never float, with a currency (a column, or the
  symbol in the amount); "1.234,56" and "1,234.56" both read right.
- Dates come in many shapes; naive ones are taken as UTC. Slashed dates are
  month-first for Etsy and generic files (US exports), day-first never guessed.
- Files are utf-8 (with or without BOM) or cp1252; the delimiter is sniffed.
- Every row is accounted for: the report lists imported, updated, unchanged
  and skipped orders with row numbers (the header is row 1) and reasons.
  Importing the same file twice changes nothing (keys: source + order number).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from app.integrations.errors import MalformedDataError
from app.integrations.store.store_db import OrderLine, StoreOrder, Upsert, new_batch, upsert_order
from app.memory.db import Database

log = logging.getLogger("soloist.integrations.store")

# Our field -> the column names platforms use for it.
_COMMON: dict[str, tuple[str, ...]] = {
    "order_id": ("order id", "order number", "order no", "order", "order_id", "name"),
    "created_at": ("created at", "order date", "date", "created", "sale date", "paid at"),
    "email": ("email", "customer email", "billing email", "billing email address", "buyer email"),
    "currency": ("currency", "order currency", "currency code"),
    "subtotal": ("subtotal", "order subtotal", "order subtotal amount"),
    "shipping": ("shipping", "order shipping", "order shipping amount", "shipping total"),
    "tax": ("tax", "taxes", "order sales tax", "order total tax amount", "tax total"),
    "total": ("total", "order total", "order total amount", "order value"),
    "status": ("status", "order status", "financial status"),
    "sku": ("sku", "lineitem sku", "item sku", "product sku"),
    "item": ("item name", "lineitem name", "product name", "item", "product"),
    "quantity": ("quantity", "qty", "lineitem quantity", "item quantity"),
    "price": ("price", "item price", "lineitem price", "item cost", "unit price"),
    "item_total": ("item total", "line total", "lineitem total"),
}
PROFILES: dict[str, dict[str, tuple[str, ...]]] = {
    "generic": _COMMON,
    "woocommerce": {**_COMMON, "created_at": ("order date", "date created", "date")},
    "etsy": {**_COMMON, "email": ("buyer email", "email"), "shipping": ("order shipping",)},
    "squarespace": {**_COMMON, "created_at": ("created at", "paid at")},
}
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d",
    "%m/%d/%Y %H:%M", "%m/%d/%Y", "%m/%d/%y", "%d.%m.%Y %H:%M", "%d.%m.%Y",
    "%b %d, %Y", "%B %d, %Y", "%d %b %Y",
)  # fmt: skip
_SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP", "¥": "JPY", "CHF": "CHF"}
_CODE = re.compile(r"\b([A-Z]{3})\b")


@dataclass
class ImportReport:
    """What an import did; row numbers count the header as row 1."""

    source: str
    batch: str
    imported: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row, reason)

    def summary(self) -> str:
        return (
            f"{len(self.imported)} imported, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} rows skipped"
        )


class _RowError(ValueError):
    """A row cannot be used; the message is the reason shown to the owner."""


def read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def sniff_dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def map_headers(headers: Sequence[str], source: str) -> dict[str, int]:
    """Our field -> column index, from the platform's header table."""
    profile = PROFILES.get(source)
    if profile is None:
        raise ValueError(f"unknown CSV source {source!r}; one of {sorted(PROFILES)}")
    normalized = [_norm(h) for h in headers]
    mapping: dict[str, int] = {}
    for ours, aliases in profile.items():
        for alias in aliases:
            if _norm(alias) in normalized:
                mapping[ours] = normalized.index(_norm(alias))
                break
    if "order_id" not in mapping:
        raise MalformedDataError("the CSV has no order number column")
    return mapping


def parse_money(text: str) -> tuple[Decimal | None, str | None]:
    """An amount and the currency it names (symbol or code), e.g. "€1.234,50"."""
    raw = text.strip()
    if not raw:
        return None, None
    currency = next((code for sym, code in _SYMBOLS.items() if sym in raw), None)
    match = _CODE.search(raw)
    currency = match.group(1) if match else currency
    number = re.sub(r"[^0-9,.\-]", "", raw)
    if "," in number and "." in number:
        decimal_sep = "," if number.rfind(",") > number.rfind(".") else "."
    elif "," in number:
        decimal_sep = "," if len(number) - number.rfind(",") - 1 in (1, 2) else ""
    else:
        decimal_sep = "."
    thousands = {",", "."} - {decimal_sep}
    cleaned = "".join(c for c in number if c not in thousands).replace(",", ".")
    try:
        return Decimal(cleaned), currency
    except InvalidOperation:
        raise _RowError(f"not an amount: {raw[:20]!r}") from None


def parse_date(text: str) -> datetime | None:
    raw = text.strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    for fmt in _DATE_FORMATS if moment is None else ():
        try:
            moment = datetime.strptime(raw, fmt)
            break
        except ValueError:
            continue
    if moment is None:
        raise _RowError(f"not a date: {raw[:30]!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class _Group:
    rows: list[int] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    lines: list[dict[str, str]] = field(default_factory=list)


def _group_rows(
    records: Sequence[Sequence[str]], mapping: Mapping[str, int], report: ImportReport
) -> dict[str, _Group]:
    groups: dict[str, _Group] = {}
    for index, record in enumerate(records):
        row_no = index + 2
        values = {k: record[i].strip() for k, i in mapping.items() if i < len(record)}
        if not any(record):
            continue
        order_id = values.get("order_id", "").lstrip("#")
        if not order_id:
            report.skipped.append((row_no, "no order number"))
            continue
        group = groups.setdefault(order_id, _Group())
        group.rows.append(row_no)
        for key, value in values.items():
            if value and key not in group.values:
                group.values[key] = value
        if values.get("item") or values.get("sku"):
            group.lines.append(values)
    return groups


def _build_order(source: str, order_id: str, group: _Group, currency: str | None) -> StoreOrder:
    amounts: dict[str, Decimal | None] = {}
    found_currency = None
    for key in ("subtotal", "shipping", "tax", "total"):
        amounts[key], code = parse_money(group.values.get(key, ""))
        found_currency = found_currency or code
    lines = tuple(_build_line(no, values) for no, values in enumerate(group.lines, start=1))
    for values in group.lines:  # a symbol on a line's price names the currency too
        found_currency = found_currency or parse_money(values.get("price", ""))[1]
    code = group.values.get("currency") or found_currency or currency
    if not code:
        raise _RowError("no currency (add a currency column or pass currency=)")
    total = amounts["total"]
    if total is None:
        parts = [ln.total for ln in lines if ln.total is not None]
        parts += [v for k in ("shipping", "tax") if (v := amounts[k]) is not None]
        total = sum(parts, Decimal(0)) if parts else None
    return StoreOrder(
        source=source,
        external_id=order_id,
        currency=code.upper(),
        total=total,
        created_at=parse_date(group.values.get("created_at", "")),
        name=f"#{order_id}",
        email=group.values.get("email") or None,
        subtotal=amounts["subtotal"],
        shipping=amounts["shipping"],
        tax=amounts["tax"],
        financial_status=group.values.get("status") or None,
        lines=lines,
    )


def _build_line(no: int, values: Mapping[str, str]) -> OrderLine:
    try:
        quantity = int(Decimal(values.get("quantity") or "1"))
    except InvalidOperation:
        raise _RowError(f"not a quantity: {values.get('quantity', '')[:10]!r}") from None
    price, _ = parse_money(values.get("price", ""))
    total, _ = parse_money(values.get("item_total", ""))
    if total is None and price is not None:
        total = price * quantity
    return OrderLine(no, values.get("item") or None, quantity, price, total, values.get("sku"))


def import_orders(
    db: Database, path: Path | str, source: str = "generic", *, currency: str | None = None
) -> ImportReport:
    """Import the orders of one CSV export; see the module docstring."""
    text = read_text(Path(path))
    reader = csv.reader(io.StringIO(text), sniff_dialect(text))
    headers = next(reader, None)
    if headers is None:
        raise MalformedDataError("the CSV file is empty")
    mapping = map_headers(headers, source)
    report = ImportReport(source, new_batch(f"csv-{source}"))
    groups = _group_rows(list(reader), mapping, report)
    for order_id, group in groups.items():
        try:
            order = _build_order(source, order_id, group, currency)
        except _RowError as exc:
            report.skipped.extend((row, f"order {order_id}: {exc}") for row in group.rows)
            continue
        outcome = upsert_order(db, order, report.batch)
        {Upsert.NEW: report.imported, Upsert.UPDATED: report.updated,
         Upsert.UNCHANGED: report.unchanged}[outcome].append(order_id)  # fmt: skip
    log.info("CSV import %s (%s): %s", report.batch, source, report.summary())
    return report
