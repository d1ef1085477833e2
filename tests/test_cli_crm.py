"""``soloist crm`` and ``soloist orders`` end to end on the test's data directory.

The commands run in this process through ``cli_crm.add_parser`` and
``run``, as ``app.cli`` calls them, against the real office database of the
test's SOLOIST_HOME.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from holders import database_held_by_another_process

from app import cli_crm, paths
from app.integrations.crm.store import CrmStore
from app.memory.db import Database

CONTACTS = (
    "Name,E-mail Address,Mobile Phone,Company\n"
    "Anna Müller,anna@example.com,+49 170 1234567,Bäckerei Müller\n"
    "Rui Costa,rui@example.com,,Costa Lda\n"
    ",,,\n"  # a blank row: not a row
    "Anna M.,ANNA@example.com,,\n"  # the same email as row 1
    ",,,Nobody Inc\n"  # a company alone names no one
)
CARDS = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-1\r\nFN:Lena Vogel\r\n"
    "EMAIL:lena@example.com\r\nTEL:+351 912 345 678\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:card-2\r\nFN:Lena Vogel\r\n"
    "TEL:+351912345678\r\nEND:VCARD\r\n"
)
WOO = (
    "Order Number,Order Date,Order Status,Billing Email Address,Order Currency,"
    "Order Total Amount,SKU,Item Name,Quantity,Item Cost\n"
    "1001,2025-03-01 10:20:00,completed,ada@x.io,EUR,29.50,MUG,Mug,2,14.75\n"
    "1002,2025-03-02 09:00:00,processing,bob@x.io,EUR,20.00,CUP,Cup,1,20.00\n"
    "1003,not a date,processing,cy@x.io,EUR,5.00,PEN,Pen,1,5.00\n"
)


def soloist(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="soloist")
    cli_crm.add_parser(parser.add_subparsers(dest="command"))
    return cli_crm.run(parser.parse_args(list(argv)))


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert soloist(*argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_import_reports_rows_and_reimport_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "contacts.csv", CONTACTS)
    first = as_json(capsys, "crm", "import", str(path))
    assert (first["format"], first["imported"], first["updated"]) == ("csv", 2, 0)
    assert sorted(first["skipped"], key=lambda s: s["row"]) == [
        {"row": 3, "reason": "same email as row 1; merged into it"},
        {"row": 4, "reason": "no name, email or phone"},
    ]
    assert len(first["person_ids"]) == 2

    assert soloist("crm", "import", str(path)) == 0
    shown = capsys.readouterr().out
    assert "0 imported, 0 updated, 3 unchanged, 1 skipped of 4 rows" in shown
    assert "  row 4 skipped: no name, email or phone" in shown
    assert "anna@example.com" not in shown  # rows by number, never by content
    with Database.open(paths.db_path()) as db:
        names = sorted(p.full_name for p in CrmStore(db).list_people())
    assert names == ["Anna Müller", "Rui Costa"]


def test_vcard_import_by_extension_then_update(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "phone.VCF", CARDS)
    first = as_json(capsys, "crm", "import", str(path))
    assert (first["format"], first["imported"], first["rows"]) == ("vcard", 2, 2)
    changed = write(
        tmp_path, "phone.VCF", CARDS.replace("TEL:+351912345678", "TEL:+351912345678\r\nTITLE:Chef")
    )
    again = as_json(capsys, "crm", "import", str(changed))
    assert (again["imported"], again["updated"], again["unchanged"]) == (0, 1, 1)


def test_format_from_the_option_when_the_extension_says_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "export.dat", CARDS)
    capsys.readouterr()
    assert soloist("crm", "import", str(path)) == cli_crm.EXIT_USAGE
    assert "--format" in capsys.readouterr().err
    assert as_json(capsys, "crm", "import", str(path), "--format", "vcard")["imported"] == 2


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.csv", None, "cannot read"),
        ("numbers.csv", "a,b\n1,2\n", "no column of the CSV file names a contact field"),
        ("empty.vcf", "just text", "the vCard data cannot be read"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str | None, message: str
) -> None:
    path = tmp_path / name if text is None else write(tmp_path, name, text)
    capsys.readouterr()
    assert soloist("crm", "import", str(path)) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_duplicates_by_id_and_name_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    soloist("crm", "import", str(write(tmp_path, "cards.vcf", CARDS)))
    soloist("crm", "import", str(write(tmp_path, "contacts.csv", CONTACTS)))
    with Database.open(paths.db_path()) as db:
        lenas = {p.id for p in CrmStore(db).list_people() if p.full_name == "Lena Vogel"}
    [pair] = as_json(capsys, "crm", "duplicates")
    assert len(lenas) == 2 and {pair["first_id"], pair["second_id"]} == lenas
    assert (pair["first_name"], pair["second_name"]) == ("Lena Vogel", "Lena Vogel")
    assert pair["reasons"] == ["same phone"]  # a name alone counts within a company

    assert soloist("crm", "duplicates") == 0
    shown = capsys.readouterr().out
    assert f"{pair['first_id']} (Lena Vogel)" in shown and "same phone" in shown
    assert "+351" not in shown and "@" not in shown


def test_no_duplicates_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert soloist("crm", "duplicates") == 0
    assert "No likely duplicates among 0 people." in capsys.readouterr().out


def test_orders_import_reports_orders_and_skipped_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "orders.csv", WOO)
    doc = as_json(capsys, "orders", "import", str(path), "--source", "woocommerce")
    assert (doc["source"], doc["imported"], doc["updated"]) == ("woocommerce", ["1001", "1002"], [])
    assert [row["row"] for row in doc["skipped"]] == [4]
    assert doc["skipped"][0]["reason"].startswith("order 1003:")

    assert soloist("orders", "import", str(path), "--source", "woocommerce") == 0
    shown = capsys.readouterr().out
    assert "0 imported, 0 updated, 2 unchanged, 1 rows skipped" in shown
    assert "  unchanged: 1001, 1002" in shown and "  row 4 skipped: order 1003:" in shown


def test_orders_currency_is_checked_and_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "o.csv", "Order Number,Total\nA-1,12.50\n")
    with pytest.raises(SystemExit) as usage:
        soloist("orders", "import", str(path), "--source", "generic", "--currency", "euro")
    assert usage.value.code == 2
    doc = as_json(capsys, "orders", "import", str(path), "--source", "generic", "--currency", "eur")
    assert doc["imported"] == ["A-1"]
    with Database.open(paths.db_path()) as db:
        row = db.fetchone("SELECT currency FROM store_orders WHERE external_id = 'A-1'")
    assert row == ("EUR",)


def test_refuses_while_the_office_holds_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "contacts.csv", CONTACTS)
    assert soloist("crm", "duplicates") == 0  # creates the database
    db_path = paths.db_path()
    with database_held_by_another_process(db_path):
        before = db_path.read_bytes()
        capsys.readouterr()
        assert soloist("crm", "import", str(path)) == 1
        assert soloist("orders", "import", str(path), "--source", "generic") == 1
        assert db_path.read_bytes() == before
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "in use by another Soloist process" in err
