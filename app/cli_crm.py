"""``soloist crm`` and ``soloist orders``: the owner's imports, and duplicates to look at.

soloist crm import FILE [--format csv|vcard] [--json]
soloist crm duplicates [--json]
soloist orders import FILE --source woocommerce|etsy|squarespace|generic
                           [--currency EUR] [--json]

The format of ``crm import`` is told by the file's extension (.csv, .tsv,
.txt: CSV; .vcf, .vcard: vCard) unless ``--format`` says it. Reports name
rows by number and say why a row was skipped, never what it held;
``duplicates`` shows people by id and name only.

These open the office database directly. While Soloist runs it holds the
file, and DuckDB lets no other process even read it: they then refuse and
change nothing.

Exit status: 0 done, 1 failed or refused, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import paths

if TYPE_CHECKING:  # duckdb loads only when a command runs
    from app.integrations.crm.dedupe import DuplicateCandidate
    from app.integrations.crm.importers import ImportReport
    from app.integrations.store.orders_csv import ImportReport as OrdersReport
    from app.memory.db import Database

EXIT_FAILED = 1
EXIT_USAGE = 2
ORDER_SOURCES = ("woocommerce", "etsy", "squarespace", "generic")
_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".vcf": "vcard", ".vcard": "vcard"}

Command = Callable[["Database", argparse.Namespace], int]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``crm`` and ``orders`` and their subcommands to the ``soloist`` parser."""
    _add_crm_parser(subparsers)
    _add_orders_parser(subparsers)


def _add_crm_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    crm = subparsers.add_parser(
        "crm",
        help="import contacts into the CRM, list possible duplicates (with Soloist closed)",
        description="The CRM in the office database. Soloist must not be running.",
    )
    sub = crm.add_subparsers(dest="crm_command", required=True)
    do_import = sub.add_parser("import", help="import contacts from a CSV or vCard file")
    do_import.add_argument("file", help="a .csv export or a .vcf file")
    do_import.add_argument(
        "--format", choices=("csv", "vcard"), default=None, help="default: by the extension"
    )
    do_import.add_argument("--json", action="store_true", help="print one JSON document")
    do_import.set_defaults(crm_run=_crm_import)
    duplicates = sub.add_parser("duplicates", help="pairs of people who may be one person")
    duplicates.add_argument("--json", action="store_true", help="print one JSON document")
    duplicates.set_defaults(crm_run=_crm_duplicates)


def _add_orders_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    orders = subparsers.add_parser(
        "orders",
        help="import orders from a shop's CSV export (with Soloist closed)",
        description="Orders in the office database. Soloist must not be running.",
    )
    sub = orders.add_subparsers(dest="orders_command", required=True)
    do_import = sub.add_parser("import", help="import the orders of one CSV export")
    do_import.add_argument("file", help="the shop's CSV export")
    do_import.add_argument("--source", required=True, choices=ORDER_SOURCES)
    do_import.add_argument(
        "--currency", type=_currency, default=None, help="when the file names none, e.g. EUR"
    )
    do_import.add_argument("--json", action="store_true", help="print one JSON document")
    do_import.set_defaults(crm_run=_orders_import)


def run(args: argparse.Namespace) -> int:
    """Run one ``soloist crm`` or ``soloist orders`` subcommand; returns the exit status."""
    from app.integrations.errors import ConnectorError
    from app.memory.db import Database
    from app.memory.errors import StoreError

    command: Command = args.crm_run
    try:
        db = Database.open(paths.db_path())
    except StoreError as exc:  # in use by a running Soloist, damaged, too new
        return _fail(str(exc))
    try:
        return command(db, args)
    except (StoreError, ConnectorError) as exc:  # ConnectorError: a file that cannot be read
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror or exc}")
    finally:
        db.close()


# -- subcommands ------------------------------------------------------------------
def _crm_import(db: Database, args: argparse.Namespace) -> int:
    from app.integrations.crm.importers import import_csv, import_vcards
    from app.integrations.crm.store import CrmStore

    path = Path(args.file).expanduser()
    kind = args.format or _FORMATS.get(path.suffix.lower())
    if kind is None:
        print(
            f"soloist: cannot tell the format of {path.name} from its name; "
            "add --format csv or --format vcard",
            file=sys.stderr,
        )
        return EXIT_USAGE
    store = CrmStore(db)
    report = import_vcards(store, path) if kind == "vcard" else import_csv(store, path)
    if args.json:
        _print_json(_import_doc(path, kind, report))
    else:
        _print_import(path, kind, report)
    return 0


def _crm_duplicates(db: Database, args: argparse.Namespace) -> int:
    from app.integrations.crm.dedupe import find_duplicates
    from app.integrations.crm.store import CrmStore

    people = CrmStore(db).list_people()
    names = {p.id: p.full_name for p in people}
    found = find_duplicates(people, _default_country_code(db))
    if args.json:
        _print_json([_pair_doc(pair, names) for pair in found])
        return 0
    if not found:
        print(f"No likely duplicates among {len(people)} people.")
    for pair in found:
        print(
            f"{pair.score:.2f}  {pair.first_id} ({names.get(pair.first_id, '')})  ~  "
            f"{pair.second_id} ({names.get(pair.second_id, '')}): {', '.join(pair.reasons)}"
        )
    return 0


def _orders_import(db: Database, args: argparse.Namespace) -> int:
    from app.integrations.store.orders_csv import import_orders

    path = Path(args.file).expanduser()
    report = import_orders(db, path, args.source, currency=args.currency)
    if args.json:
        _print_json(_orders_doc(path, report))
        return 0
    print(f"Imported {path.name} ({report.source}, batch {report.batch}): {report.summary()}.")
    for label, ids in (
        ("imported", report.imported),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
    ):
        if ids:
            print(f"  {label}: {', '.join(ids)}")
    for row, reason in report.skipped:
        print(f"  row {row} skipped: {reason}")
    return 0


def _default_country_code(db: Database) -> str | None:
    """The first CRM account's ``default_country_code``, for reading national numbers."""
    row = db.fetchone(
        "SELECT config FROM connector_accounts WHERE kind = 'crm' ORDER BY created_at, id LIMIT 1"
    )
    settings = json.loads(str(row[0])) if row else {}
    value = settings.get("default_country_code") if isinstance(settings, dict) else None
    code = str(value).strip().lstrip("+") if value is not None else ""
    return code or None


# -- argument types ------------------------------------------------------------------
def _currency(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise argparse.ArgumentTypeError(f"expected a three-letter currency code, got {value!r}")
    return code


# -- output --------------------------------------------------------------------------------
def _fail(message: str) -> int:
    print(f"soloist: {message}", file=sys.stderr)
    return EXIT_FAILED


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False))


def _print_import(path: Path, kind: str, report: ImportReport) -> None:
    how = f"{kind}, {report.encoding}" if kind == "csv" else kind
    if report.delimiter:
        how += f", delimiter {report.delimiter!r}"
    print(f"Imported {path.name} ({how}): {report.summary} in {report.elapsed_s:.2f} s.")
    for skipped in report.skipped:
        print(f"  row {skipped.row} skipped: {skipped.reason}")
    if report.unmapped_columns:
        print(f"  columns not used: {', '.join(report.unmapped_columns)}")
    for defect in report.defects:
        print(f"  {defect}")


def _import_doc(path: Path, kind: str, report: ImportReport) -> dict[str, Any]:
    return {
        "file": str(path),
        "format": kind,
        "imported": report.imported,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "skipped": [{"row": s.row, "reason": s.reason} for s in report.skipped],
        "rows": report.rows,
        "encoding": report.encoding,
        "delimiter": report.delimiter,
        "unmapped_columns": list(report.unmapped_columns),
        "defects": list(report.defects),
        "person_ids": report.person_ids,
        "elapsed_s": round(report.elapsed_s, 3),
    }


def _pair_doc(pair: DuplicateCandidate, names: dict[str, str]) -> dict[str, Any]:
    return {
        "first_id": pair.first_id,
        "first_name": names.get(pair.first_id, ""),
        "second_id": pair.second_id,
        "second_name": names.get(pair.second_id, ""),
        "score": round(pair.score, 4),
        "reasons": list(pair.reasons),
    }


def _orders_doc(path: Path, report: OrdersReport) -> dict[str, Any]:
    return {
        "file": str(path),
        "source": report.source,
        "batch": report.batch,
        "imported": report.imported,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "skipped": [{"row": row, "reason": reason} for row, reason in report.skipped],
    }
