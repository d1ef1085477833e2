"""Finding people who are the same person, and folding one into another.

Finding is pure: people in, scored candidate pairs with reasons out. Keys
are deliberately conservative, because a wrong merge is worse than a missed
one:

- emails: lower-cased and stripped only. Gmail's dots and ``+tags`` are
  *not* removed: on other domains they mean different mailboxes.
- phones: digits only; ``00`` is read as ``+``; with a default country code
  a national ``0...`` number becomes international. Two numbers match when
  equal, or when one is international and the other national and their
  last digits (at least 7) agree.
- names: casefolded, accents stripped, punctuation dropped, tokens sorted
  ("Müller, Anna" = "anna muller"), and only compared within one company.

Candidates are found through blocking keys (an index per key), never by
comparing every pair, so ten thousand people cost milliseconds.
``merge`` is the one function with an effect: it asks the store to fold
one person into another in one transaction and records why.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from app.integrations.crm.models import ContactPoint, Person

if TYPE_CHECKING:
    from app.integrations.crm.store import CrmStore

__all__ = [
    "DuplicateCandidate",
    "find_duplicates",
    "merge",
    "merged_person",
    "name_key",
    "normalize_email",
    "normalize_phone",
    "phones_match",
]

_MIN_PHONE_DIGITS = 7
_NAME_SIMILARITY = 0.88
_MAX_GROUP = 500  # people per company compared pairwise for similar names
_SCORES = {"same email": 0.95, "same phone": 0.8, "same name": 0.7, "similar name": 0.55}
_NON_WORD = re.compile(r"[^\w\s]")


@dataclass(frozen=True, slots=True)
class DuplicateCandidate:
    """Two people who may be one; ``score`` in (0, 1], ``reasons`` say why."""

    first_id: str
    second_id: str
    score: float
    reasons: tuple[str, ...]


def normalize_email(email: str) -> str:
    return email.strip().lower()


def normalize_phone(phone: str, default_country_code: str | None = None) -> str:
    """``+<digits>`` for an international number, bare digits for a national one."""
    text = phone.strip()
    digits = "".join(c for c in text if c.isdigit() and c.isascii())
    if text.startswith("+"):
        return f"+{digits}" if digits else ""
    if digits.startswith("00") and len(digits) > 2:
        return f"+{digits[2:]}"
    if default_country_code and digits.startswith("0"):
        return f"+{default_country_code}{digits[1:]}"
    return digits


def phones_match(a: str, b: str) -> bool:
    """Two normalised numbers are the same line (see the module docstring)."""
    if not a or not b:
        return False
    if a == b:
        return len(a.lstrip("+")) >= _MIN_PHONE_DIGITS
    if a.startswith("+") == b.startswith("+"):
        return False
    national = (b if a.startswith("+") else a).lstrip("0")
    international = a if a.startswith("+") else b
    return len(national) >= _MIN_PHONE_DIGITS and international.endswith(national)


def name_key(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(sorted(_NON_WORD.sub(" ", bare).split()))


def _phone_block(normalized: str) -> str | None:
    digits = normalized.lstrip("+")
    return digits[-_MIN_PHONE_DIGITS:] if len(digits) >= _MIN_PHONE_DIGITS else None


def find_duplicates(
    people: Sequence[Person], default_country_code: str | None = None
) -> list[DuplicateCandidate]:
    """Candidate pairs, best first. Deleted and merged people are left out."""
    live = [p for p in people if p.deleted_at is None and p.merged_into is None]
    reasons: dict[tuple[str, str], set[str]] = defaultdict(set)
    for pair in _pairs_by_email(live):
        reasons[pair].add("same email")
    for pair in _pairs_by_phone(live, default_country_code):
        reasons[pair].add("same phone")
    for pair, reason in _pairs_by_name(live):
        reasons[pair].add(reason)
    found = [
        DuplicateCandidate(a, b, _score(why), tuple(sorted(why))) for (a, b), why in reasons.items()
    ]
    return sorted(found, key=lambda c: (-c.score, c.first_id, c.second_id))


def _score(reasons: Iterable[str]) -> float:
    miss = 1.0
    for reason in reasons:
        miss *= 1.0 - _SCORES[reason]
    return round(1.0 - miss, 4)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _pairs_within(groups: Iterable[list[str]]) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for ids in groups:
        unique = sorted(set(ids))
        for i, first in enumerate(unique[:_MAX_GROUP]):
            pairs.update(_pair(first, other) for other in unique[i + 1 : _MAX_GROUP])
    return pairs


def _pairs_by_email(people: Sequence[Person]) -> set[tuple[str, str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for person in people:
        for email in person.emails:
            if key := normalize_email(email.value):
                groups[key].append(person.id)
    return _pairs_within(groups.values())


def _pairs_by_phone(people: Sequence[Person], country: str | None) -> set[tuple[str, str]]:
    blocks: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for person in people:
        for phone in person.phones:
            number = normalize_phone(phone.value, country)
            if block := _phone_block(number):
                blocks[block].append((person.id, number))
    pairs: set[tuple[str, str]] = set()
    for entries in blocks.values():
        for i, (first, a) in enumerate(entries[:_MAX_GROUP]):
            for second, b in entries[i + 1 : _MAX_GROUP]:
                if first != second and phones_match(a, b):
                    pairs.add(_pair(first, second))
    return pairs


def _pairs_by_name(people: Sequence[Person]) -> list[tuple[tuple[str, str], str]]:
    by_company: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for person in people:
        key = name_key(_name_only(person))
        if key and person.company_id:
            by_company[person.company_id].append((person.id, key))
    found: list[tuple[tuple[str, str], str]] = []
    for members in by_company.values():
        capped = members[:_MAX_GROUP]
        for i, (first, key_a) in enumerate(capped):
            for second, key_b in capped[i + 1 :]:
                if key_a == key_b:
                    found.append((_pair(first, second), "same name"))
                elif _similar(key_a, key_b):
                    found.append((_pair(first, second), "similar name"))
    return found


def _name_only(person: Person) -> str:
    return person.full_name or f"{person.given_name} {person.family_name}"


def _similar(a: str, b: str) -> bool:
    matcher = difflib.SequenceMatcher(None, a, b)
    return matcher.real_quick_ratio() >= _NAME_SIMILARITY and matcher.ratio() >= _NAME_SIMILARITY


# -- merging -------------------------------------------------------------------------
def _union(
    first: tuple[ContactPoint, ...], second: tuple[ContactPoint, ...], key: str
) -> tuple[ContactPoint, ...]:
    seen: set[str] = set()
    out: list[ContactPoint] = []
    for point in (*first, *second):
        norm = normalize_email(point.value) if key == "email" else normalize_phone(point.value)
        if norm and norm not in seen:
            seen.add(norm)
            out.append(point)
    return tuple(out)


def merged_person(keep: Person, other: Person) -> Person:
    """``keep`` with ``other``'s emails and phones added and its empty fields filled."""
    texts = ("full_name", "given_name", "family_name", "title", "birthday", "company_name")
    filled = {name: getattr(keep, name) or getattr(other, name) for name in texts}
    background = keep.background
    if other.background and other.background not in background:
        background = f"{background}\n\n{other.background}" if background else other.background
    return replace(
        keep,
        **filled,
        company_id=keep.company_id or other.company_id,
        emails=_union(keep.emails, other.emails, "email"),
        phones=_union(keep.phones, other.phones, "phone"),
        addresses=keep.addresses or other.addresses,
        urls=tuple(dict.fromkeys((*keep.urls, *other.urls))),
        categories=tuple(dict.fromkeys((*keep.categories, *other.categories))),
        background=background,
    )


def merge(
    store: CrmStore, keep_id: str, other_id: str, reason: str = "by hand", score: float = 1.0
) -> Person:
    """Fold ``other_id`` into ``keep_id``: one transaction, recorded in ``crm_merges``."""
    if keep_id == other_id:
        raise ValueError("a person cannot be merged into itself")
    keep = store.require_person(keep_id)
    other = store.require_person(other_id)
    return store.apply_merge(merged_person(keep, other), other, reason, score)
