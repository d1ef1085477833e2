"""Person <-> vCard, in one place for the vCard import and the CardDAV sync.

The mapping is total on the fields the CRM models: a person written as a
vCard and read back is the same person (ids and times aside). Properties
the CRM does not model travel in ``VCard.extra`` and are merged back in
from the last card seen, so a sync never strips a photo or a nickname.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from app.integrations.crm.models import Person
from app.integrations.crm.vcard import VCard

__all__ = ["format_rev", "parse_rev", "person_from_vcard", "same_content", "vcard_from_person"]

_REV_FORMATS = ("%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S")


def person_from_vcard(card: VCard, base: Person | None = None, source: str = "vcard") -> Person:
    """The person a card describes; ``base`` supplies the id, company id and times."""
    company = card.org[0] if card.org else ""
    person = base or Person(id="", full_name="", source=source)
    keep_company = base is not None and base.company_name == company
    return replace(
        person,
        full_name=card.fn or _joined_name(card),
        given_name=card.given_name,
        family_name=card.family_name,
        company_name=company,
        company_id=person.company_id if keep_company else None,
        title=card.title,
        emails=card.emails,
        phones=card.phones,
        addresses=card.addresses,
        urls=card.urls,
        categories=card.categories,
        birthday=card.bday,
        background=card.note,
        uid=card.uid or person.uid,
    )


def _joined_name(card: VCard) -> str:
    parts = (card.prefixes, card.given_name, card.additional_names, card.family_name)
    name = " ".join(p for p in (*parts, card.suffixes) if p)
    if name:
        return name
    if card.org:
        return card.org[0]
    return card.emails[0].value if card.emails else ""


def vcard_from_person(person: Person, previous: VCard | None = None) -> VCard:
    """The card for ``person``; ``previous`` (the server's last card) gives the rest."""
    org: tuple[str, ...] = ()
    if person.company_name:
        kept_units = (
            previous.org[1:] if previous and previous.org[:1] == (person.company_name,) else ()
        )
        org = (person.company_name, *kept_units)
    return VCard(
        fn=person.full_name,
        family_name=person.family_name,
        given_name=person.given_name,
        additional_names=previous.additional_names if previous else "",
        prefixes=previous.prefixes if previous else "",
        suffixes=previous.suffixes if previous else "",
        org=org,
        title=person.title,
        emails=person.emails,
        phones=person.phones,
        addresses=person.addresses,
        urls=person.urls,
        categories=person.categories,
        bday=person.birthday,
        note=person.background,
        uid=person.uid,
        rev=format_rev(person.updated_at) if person.updated_at else "",
        extra=previous.extra if previous else (),
    )


def same_content(a: Person, b: Person) -> bool:
    """Whether two people say the same (ids, times and provenance aside)."""
    ignore = {"id": "", "company_id": None, "created_at": None, "updated_at": None, "source": ""}
    return replace(a, **ignore) == replace(b, **ignore)  # type: ignore[arg-type]


def format_rev(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_rev(text: str) -> datetime | None:
    """A REV value as an aware UTC time; None when absent or unreadable."""
    value = text.strip()
    for fmt in _REV_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
