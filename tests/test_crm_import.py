"""CSV and vCard imports: header dialects, encodings, delimiters, matching, reports."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.integrations.crm.csv_headers import map_headers
from app.integrations.crm.importers import import_csv, import_vcards, sniff_delimiter
from app.integrations.crm.models import ContactPoint
from app.integrations.crm.store import CrmStore
from app.integrations.errors import MalformedDataError
from app.memory.db import Database

GOOGLE = (
    "First Name,Middle Name,Last Name,Organization Name,Organization Title,E-mail 1 - Label,"
    "E-mail 1 - Value,E-mail 2 - Label,E-mail 2 - Value,Phone 1 - Label,Phone 1 - Value,"
    "Address 1 - Label,Address 1 - City,Address 1 - Country,Labels,Notes\n"
    "Ana,,Lima,Acme,CEO,* Work,ana@acme.com ::: ana@old.com,Home,ana@home.pt,Mobile,"
    '+351 91 000 0000,Home,Lisboa,Portugal,* myContacts ::: Clients,"met at, the fair"\n'
    ",,,,,,,,,,,,,,,\n"
    "Bob,,,,,,,,,,,,,,,\n"
    ",,,,,,,,,,,,,,Friends,just a note\n"
)
OUTLOOK = (
    "Title;First Name;Middle Name;Last Name;Suffix;Company;Job Title;Business Street;"
    "Business City;Business Phone;Mobile Phone;Home Fax;E-mail Address;E-mail Type;"
    "E-mail 2 Address\n"
    "Dr.;José;;Pérez;;Café SA;Dueño;Calle 1;Málaga;+34 91 000;600 000 000;91 111;"
    "jose@cafe.es;SMTP;\n"
)


@pytest.fixture
def store(db: Database) -> CrmStore:
    return CrmStore(db)


def test_google_export(store: CrmStore) -> None:
    report = import_csv(store, GOOGLE.encode("utf-8-sig"))
    assert (report.imported, report.updated, report.rows) == (2, 0, 3)
    assert [(s.row, s.reason) for s in report.skipped] == [(3, "no name, email or phone")]
    assert report.encoding == "utf-8" and report.delimiter == ","
    ana = store.find_by_email("ANA@acme.com")[0]
    assert (ana.full_name, ana.company_name, ana.title) == ("Ana Lima", "Acme", "CEO")
    assert ana.emails == (
        ContactPoint("ana@acme.com", "work"),
        ContactPoint("ana@old.com", "work"),
        ContactPoint("ana@home.pt", "home"),
    )
    assert ana.phones == (ContactPoint("+351 91 000 0000", "cell"),)
    assert ana.addresses[0].locality == "Lisboa" and ana.addresses[0].label == "home"
    assert ana.categories == ("Clients",) and ana.background == "met at, the fair"


def test_outlook_export_in_cp1252_with_semicolons(store: CrmStore) -> None:
    report = import_csv(store, OUTLOOK.encode("cp1252"))
    assert (report.encoding, report.delimiter, report.imported) == ("cp1252", ";", 1)
    assert set(report.unmapped_columns) == {"Title", "Suffix"}  # Title is Mr./Dr. here
    [jose] = store.list_people()
    assert (jose.full_name, jose.company_name, jose.title) == ("José Pérez", "Café SA", "Dueño")
    assert jose.emails == (ContactPoint("jose@cafe.es", ""),)
    assert {(p.value, p.label) for p in jose.phones} == {
        ("+34 91 000", "work"), ("600 000 000", "cell"), ("91 111", "home,fax"),
    }  # fmt: skip
    assert jose.addresses[0].street == "Calle 1" and jose.addresses[0].label == "work"


def test_hubspot_and_tab_delimited(store: CrmStore) -> None:
    text = "Email\tFirst Name\tLast Name\tCompany Name\tPhone Number\tJob Title\n"
    text += "lee@x.io\tLee\tKim\tX\t+1 555 0100\tCTO\n"
    report = import_csv(store, text.encode())
    assert report.delimiter == "\t" and report.imported == 1
    [lee] = store.list_people()
    assert (lee.full_name, lee.title, lee.phones[0].value) == ("Lee Kim", "CTO", "+1 555 0100")


def test_reimport_updates_fills_and_reports_unchanged(store: CrmStore) -> None:
    import_csv(store, "Name,Email\nAna,ana@x.com\n")
    first = import_csv(store, "Name,Email,Phone\nAna,ANA@x.com,+1 555\n")
    assert (first.imported, first.updated) == (0, 1)
    again = import_csv(store, "Name,Email,Phone\nAna,ana@x.com,+1 555\n")
    assert (again.imported, again.updated, again.unchanged) == (0, 0, 1)
    [ana] = store.list_people()
    assert ana.phones == (ContactPoint("+1 555", ""),)


def test_same_email_twice_in_one_file_is_one_person(store: CrmStore) -> None:
    report = import_csv(store, "Name,Email,Phone\nAna,a@x.com,\nAna L,A@x.com,+1 5\n")
    assert report.imported == 1
    assert [s.reason for s in report.skipped] == ["same email as row 1; merged into it"]
    assert store.list_people()[0].phones == (ContactPoint("+1 5", ""),)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (b"foo,bar\n1,2\n", "no column")],
)
def test_unusable_files_raise(store: CrmStore, data: bytes, message: str) -> None:
    with pytest.raises(MalformedDataError, match=message):
        import_csv(store, data)


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [("a,b;c\n", ","), ('"x;y";"z"\n', ";"), ("a\tb\n", "\t"), ("a|b|c\n", "|"), ("abc\n", ",")],
)
def test_sniff_delimiter(text: str, delimiter: str) -> None:
    assert sniff_delimiter(text) == delimiter


def test_header_mapping_table() -> None:
    mapping = map_headers(["Given Name", "Family Name", "Email", "Work Phone", "Website", "Zip"])
    assert set(mapping.fields) == {"given_name", "family_name", "url"}
    assert mapping.unmapped == ()
    assert [s.label for s in mapping.phones.values()] == ["work"]


def test_vcard_import_matches_by_uid(store: CrmStore, tmp_path: Path) -> None:
    path = tmp_path / "contacts.vcf"
    path.write_text(
        "BEGIN:VCARD\nVERSION:3.0\nUID:u1\nFN:Ana\nEMAIL:a@x.com\nEND:VCARD\n"
        "BEGIN:VCARD\nVERSION:3.0\nno colon\nEND:VCARD\n"
    )
    report = import_vcards(store, path)
    assert (report.imported, len(report.defects)) == (1, 1)
    path.write_text("BEGIN:VCARD\nVERSION:3.0\nUID:u1\nFN:Ana\nTITLE:CEO\nEND:VCARD\n")
    again = import_vcards(store, path)
    assert (again.imported, again.updated) == (0, 1)
    [ana] = store.list_people()
    assert (ana.uid, ana.title, ana.emails[0].value) == ("u1", "CEO", "a@x.com")


def test_ten_thousand_rows(store: CrmStore) -> None:
    rows = ["First Name,Last Name,E-mail Address,Company,Business Phone"]
    rows += [f"N{i},L{i},u{i}@ex.com,Co{i % 300},+1 555 {i:07d}" for i in range(10_000)]
    started = time.perf_counter()
    report = import_csv(store, "\n".join(rows).encode())
    elapsed = time.perf_counter() - started
    assert report.imported == 10_000
    assert len(store.list_companies()) == 300
    print(f"imported 10,000 CSV rows in {elapsed:.2f} s ({10_000 / elapsed:,.0f} rows/s)")
    assert elapsed < 60
