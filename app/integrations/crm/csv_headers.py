"""Which CSV column is which contact field: a pure decision on header names.

Headers are compared with case, spaces and punctuation removed, so
"E-mail 1 - Value" (Google), "E-mail 2 Address" (Outlook) and "Email"
(HubSpot) all read as emails. Numbered slots keep a value with its label
column ("Phone 1 - Value" with "Phone 1 - Type"); a prefix is the label
otherwise ("Business Phone" is a work phone). Outlook's "Title" is an
honorific (Mr., Dr.), so "Title" is the job title only in files without a
"Job Title" or Outlook's "Middle Name"/"Suffix" columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.integrations.crm.models import ContactPoint, PostalAddress

__all__ = ["HeaderMap", "RowValues", "map_headers"]

_SIMPLE = {
    "full_name": "name fullname displayname contactname",
    "given_name": "firstname givenname first forename",
    "middle_name": "middlename additionalname",
    "family_name": "lastname familyname surname last",
    "company": "company companyname organization organisation organizationname "
    "organization1name org accountname employer",
    "title": "jobtitle organization1title organizationtitle position role",
    "notes": "notes note description comments",
    "url": "webpage website url website1value personalwebpage homepage",
    "birthday": "birthday dateofbirth birthdate dob",
    "categories": "categories groupmembership labels tags groups",
}
_SIMPLE_BY_KEY = {key: name for name, keys in _SIMPLE.items() for key in keys.split()}

_KIND = r"(?P<kind>value|type|label)?"
_EMAIL = re.compile(
    r"(?P<label>work|home|personal|other|business|primary|private)?e?mail"
    r"(?:address)?(?P<n>\d*)(?:address)?" + _KIND
)
_PHONE = re.compile(
    r"(?P<label>[a-z]*?)(?P<base>telephone|phone|tel|fax|mobile|cell)"
    r"(?:number)?(?P<n>\d*)(?:number)?" + _KIND
)
_ADDRESS = re.compile(
    r"(?P<label>business|home|other|work|mailing|billing|shipping)?(?:address(?P<n>\d*))?"
    r"(?P<part>street|streetaddress|city|locality|state|region|stateregion|stateprovince"
    r"|province|postalcode|zip|zipcode|postcode|country|countryregion|pobox|extendedaddress"
    r"|type|label)"
)
_LABELS = {
    "business": "work", "work": "work", "company": "work", "home": "home", "personal": "home",
    "private": "home", "mobile": "cell", "cell": "cell", "other": "other", "car": "car",
    "pager": "pager", "main": "main", "primary": "pref", "mailing": "home", "billing": "work",
    "shipping": "work",
}  # fmt: skip
_PARTS = {
    "street": "street", "streetaddress": "street", "city": "locality", "locality": "locality",
    "state": "region", "region": "region", "stateregion": "region", "stateprovince": "region",
    "province": "region", "postalcode": "postal_code", "zip": "postal_code",
    "zipcode": "postal_code", "postcode": "postal_code", "country": "country",
    "countryregion": "country", "pobox": "po_box", "extendedaddress": "extended",
}  # fmt: skip
_IGNORED_LABELS = frozenset({"", "smtp", "ex", "internet"})
_MULTI = ":::"
_CellReader = Callable[[int | None], str]


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.casefold())


@dataclass
class _Slot:
    """One numbered value column and its label column (email, phone)."""

    value: int | None = None
    label_column: int | None = None
    label: str = ""


@dataclass
class HeaderMap:
    fields: dict[str, list[int]] = field(default_factory=dict)
    emails: dict[str, _Slot] = field(default_factory=dict)
    phones: dict[str, _Slot] = field(default_factory=dict)
    addresses: dict[str, dict[str, int]] = field(default_factory=dict)
    unmapped: tuple[str, ...] = ()

    def values(self, cells: Sequence[str]) -> RowValues:
        def cell(index: int | None) -> str:
            return cells[index].strip() if index is not None and index < len(cells) else ""

        texts = {name: [cell(i) for i in cols] for name, cols in self.fields.items()}
        return RowValues(
            texts,
            _points(self.emails, cell),
            _points(self.phones, cell),
            _addresses(self.addresses, cell),
        )


@dataclass(frozen=True, slots=True)
class RowValues:
    """One row's values by field."""

    by_field: dict[str, list[str]]
    emails: tuple[ContactPoint, ...]
    phones: tuple[ContactPoint, ...]
    addresses: tuple[PostalAddress, ...]

    def text(self, name: str) -> str:
        return next((v for v in self.by_field.get(name, ()) if v), "")

    def texts(self, name: str) -> list[str]:
        return [p.strip() for v in self.by_field.get(name, ()) for p in v.split(_MULTI)]

    @property
    def categories(self) -> tuple[str, ...]:
        found: list[str] = []
        for value in self.by_field.get("categories", ()):
            for part in re.split(r":::|;", value):
                name = part.strip().lstrip("*").strip()
                if name and name.casefold() not in ("mycontacts", "starred"):
                    found.append(name)
        return tuple(dict.fromkeys(found))


def _points(slots: dict[str, _Slot], cell: _CellReader) -> tuple[ContactPoint, ...]:
    out: list[ContactPoint] = []
    for slot in slots.values():
        raw_label = cell(slot.label_column).lstrip("*").strip().lower()
        label = slot.label or (
            "" if raw_label in _IGNORED_LABELS else _LABELS.get(raw_label, raw_label)
        )
        for value in cell(slot.value).split(_MULTI):
            if value.strip():
                out.append(ContactPoint(value.strip(), label))
    return tuple(out)


def _addresses(slots: dict[str, dict[str, int]], cell: _CellReader) -> tuple[PostalAddress, ...]:
    out: list[PostalAddress] = []
    for key, parts in slots.items():
        values = {part: cell(index) for part, index in parts.items() if part != "label"}
        raw_label = cell(parts.get("label")).lstrip("*").strip().lower()
        address = PostalAddress(**values, label=_LABELS.get(key, "") or raw_label)
        if not address.is_empty:
            out.append(address)
    return tuple(out)


def map_headers(headers: Sequence[str]) -> HeaderMap:
    """Which column holds what; columns no rule knows are listed in ``unmapped``."""
    keys = [_key(h) for h in headers]
    title_is_job = not ({"jobtitle", "middlename", "suffix"} & set(keys))
    result = HeaderMap()
    unmapped: list[str] = []
    for index, key in enumerate(keys):
        if key == "title" and title_is_job:
            result.fields.setdefault("title", []).append(index)
        elif key in _SIMPLE_BY_KEY:
            result.fields.setdefault(_SIMPLE_BY_KEY[key], []).append(index)
        elif not _map_slot(result, index, key):
            unmapped.append(headers[index])
    result.unmapped = tuple(unmapped)
    return result


def _map_slot(result: HeaderMap, index: int, key: str) -> bool:
    if match := _EMAIL.fullmatch(key):
        _fill(result.emails, match, index, _LABELS.get(match["label"] or "", ""))
        return True
    if match := _PHONE.fullmatch(key):
        base, prefix = match["base"], match["label"]
        label = _LABELS.get(prefix, "")
        if base in ("mobile", "cell"):
            label = label or "cell"
        elif base == "fax":
            label = ",".join(p for p in (label, "fax") if p)
        _fill(result.phones, match, index, label)
        return True
    if match := _ADDRESS.fullmatch(key):
        if match["label"] is None and match["n"] is None and match["part"] in ("type", "label"):
            return False
        slot = result.addresses.setdefault(f"{match['label'] or ''}{match['n'] or ''}", {})
        part = match["part"]
        slot.setdefault("label" if part in ("type", "label") else _PARTS[part], index)
        return True
    return False


def _fill(slots: dict[str, _Slot], match: re.Match[str], index: int, label: str) -> None:
    key = f"{match.groupdict().get('label') or ''}{match.groupdict().get('base') or ''}{match['n']}"
    slot = slots.setdefault(key, _Slot(label=label))
    if match["kind"] in ("type", "label"):
        slot.label_column = index
    elif slot.value is None:
        slot.value = index
