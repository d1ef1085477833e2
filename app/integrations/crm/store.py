"""The CRM in the office DuckDB: people, companies, search and merges.

``CrmStore`` is the one object the importers, the CardDAV sync and the
connector use; deals, activities, follow-ups and notes come from its base,
``WorkStore``. People are never removed: deleting leaves a tombstone
(``deleted_at``) that the CardDAV sync turns into a server delete, and a
merged person keeps its row with ``merged_into`` so a merge can be
explained. Emails and phones live in child tables (see ``schema_crm``)
with a normalised column, the key for imports and dedupe.
"""

from __future__ import annotations

import json
import logging
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from app.integrations.crm.dedupe import normalize_email, normalize_phone
from app.integrations.crm.models import Company, ContactPoint, MergeRecord, Person, PostalAddress
from app.integrations.crm.store_work import (
    CrmNotFoundError,
    StageTransitionError,
    WorkStore,
    _ft,
    _t,
)
from app.memory.db import Database, Row, from_db_time

__all__ = ["CrmNotFoundError", "CrmStore", "SearchHit", "StageTransitionError", "person_as_dict"]

log = logging.getLogger("soloist.integrations.crm")

_PERSON_COLS = (
    "id, uid, full_name, given_name, family_name, company_id, title, addresses, urls, "
    "categories, birthday, background, source, created_at, updated_at, deleted_at, merged_into"
)
_P_COLS = ", ".join(f"p.{c.strip()}" for c in _PERSON_COLS.split(","))
_T, _TS, _INT = "VARCHAR", "TIMESTAMP", "INTEGER"
_PERSON_TYPES = tuple(
    zip(
        [c.strip() for c in _PERSON_COLS.split(",")],
        (*[_T] * 13, _TS, _TS, _TS, _T),
        strict=True,
    )
)
_POINT_TYPES = (
    ("person_id", _T), ("position", _INT), ("value", _T), ("label", _T), ("normalized", _T),
)  # fmt: skip
_COMPANY_TYPES = (
    ("id", _T), ("name", _T), ("name_key", _T), ("domain", _T),
    ("created_at", _TS), ("updated_at", _TS),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SearchHit:
    kind: str  # person, company, deal, note
    id: str
    label: str
    person_id: str | None = None


def person_as_dict(person: Person) -> dict[str, Any]:
    """A person as JSON values (times as ISO text): snapshots, tools, conflict notes."""
    data = asdict(person)
    for key in ("created_at", "updated_at", "deleted_at"):
        value = data[key]
        data[key] = value.isoformat() if isinstance(value, datetime) else None
    return data


def _name_key(name: str) -> str:
    return " ".join(name.casefold().split())


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class CrmStore(WorkStore):
    """People and companies, on top of the work records of ``WorkStore``."""

    # -- companies -------------------------------------------------------------------
    def company_for_name(self, name: str) -> Company:
        """The company called ``name`` (any case), created if there is none."""
        return self.get_company(self.company_ids_for([name])[_name_key(name)])

    def company_ids_for(self, names: Iterable[str]) -> dict[str, str]:
        """Company ids by name key, creating the companies that are missing."""
        wanted = {_name_key(n): n.strip() for n in names if n.strip()}
        if not wanted:
            return {}
        with self.db.transaction():
            rows = self.db.fetchall(
                "SELECT name_key, min(id) FROM crm_companies WHERE name_key IN "
                "(SELECT unnest(?::TEXT[])) GROUP BY name_key",
                (list(wanted),),
            )
            found = {r[0]: r[1] for r in rows}
            now = _t(self.now())
            missing = [(self.new_id(), wanted[k], k) for k in wanted if k not in found]
            _insert_json(
                self.db,
                "crm_companies",
                _COMPANY_TYPES,
                [(cid, name, key, "", now, now) for cid, name, key in missing],
            )
        found.update({key: cid for cid, _, key in missing})
        return found

    def get_company(self, company_id: str) -> Company:
        row = self.db.fetchone(
            "SELECT id, name, domain, created_at, updated_at FROM crm_companies WHERE id = ?",
            (company_id,),
        )
        if row is None:
            raise CrmNotFoundError(f"no company {company_id}")
        return Company(row[0], row[1], row[2], from_db_time(row[3]), from_db_time(row[4]))

    def list_companies(self) -> list[Company]:
        rows = self.db.fetchall("SELECT id FROM crm_companies ORDER BY name_key")
        return [self.get_company(r[0]) for r in rows]

    # -- people: reading ---------------------------------------------------------------
    def get_person(self, person_id: str, *, include_deleted: bool = False) -> Person | None:
        found = self._people("p.id = ?", (person_id,))
        if not found or (found[0].deleted_at is not None and not include_deleted):
            return None
        return found[0]

    def require_person(self, person_id: str) -> Person:
        person = self.get_person(person_id)
        if person is None:
            raise CrmNotFoundError(f"no person {person_id}")
        return person

    def list_people(self, *, include_deleted: bool = False) -> list[Person]:
        where = "1 = 1" if include_deleted else "p.deleted_at IS NULL"
        return self._people(where, ())

    def people_by_ids(self, ids: Sequence[str]) -> list[Person]:
        return self._people("p.id IN (SELECT unnest(?::TEXT[]))", (list(ids),))

    def find_by_email(self, email: str) -> list[Person]:
        return self._people(
            "p.deleted_at IS NULL AND p.id IN "
            "(SELECT person_id FROM crm_person_emails WHERE normalized = ?)",
            (normalize_email(email),),
        )

    def find_by_uid(self, uid: str) -> Person | None:
        found = self._people("p.uid = ?", (uid,))
        return found[0] if found else None

    def email_index(self) -> dict[str, str]:
        """Every live person's normalised email -> person id (for imports)."""
        rows = self.db.fetchall(
            "SELECT e.normalized, min(e.person_id) FROM crm_person_emails e "
            "JOIN crm_people p ON p.id = e.person_id WHERE p.deleted_at IS NULL "
            "GROUP BY e.normalized"
        )
        return {r[0]: r[1] for r in rows}

    def _people(self, where: str, params: Sequence[object]) -> list[Person]:
        rows = self.db.fetchall(
            f"SELECT {_P_COLS}, c.name FROM crm_people p "
            f"LEFT JOIN crm_companies c ON c.id = p.company_id WHERE {where} "
            "ORDER BY p.full_name, p.id",
            params,
        )
        if not rows:
            return []
        ids = [r[0] for r in rows]
        emails = self._points("crm_person_emails", ids)
        phones = self._points("crm_person_phones", ids)
        return [_person(r, emails.get(r[0], ()), phones.get(r[0], ())) for r in rows]

    def _points(self, table: str, ids: list[str]) -> dict[str, tuple[ContactPoint, ...]]:
        rows = self.db.fetchall(
            f"SELECT person_id, value, label FROM {table} "
            "WHERE person_id IN (SELECT unnest(?::TEXT[])) ORDER BY person_id, position",
            (ids,),
        )
        out: dict[str, list[ContactPoint]] = {}
        for person_id, value, label in rows:
            out.setdefault(person_id, []).append(ContactPoint(value, label))
        return {k: tuple(v) for k, v in out.items()}

    # -- people: writing ---------------------------------------------------------------
    def save_person(self, person: Person) -> Person:
        """Insert or update ``person`` (an empty id gets one); stamps ``updated_at``."""
        with self.db.transaction():
            person = self._prepared(person)
            exists = self.db.fetchone("SELECT 1 FROM crm_people WHERE id = ?", (person.id,))
            if exists is None:
                self._insert_people([person])
            else:
                self._update_person(person)
        log.info("person %s saved", person.id)
        return self.require_person_any(person.id)

    def require_person_any(self, person_id: str) -> Person:
        person = self.get_person(person_id, include_deleted=True)
        if person is None:
            raise CrmNotFoundError(f"no person {person_id}")
        return person

    def add_people(self, people: Sequence[Person]) -> list[str]:
        """Insert many new people in one transaction; their ids."""
        with self.db.transaction():
            names = {p.company_name for p in people if p.company_name and not p.company_id}
            companies = self.company_ids_for(names)
            ready = [self._prepared(p, companies) for p in people]
            self._insert_people(ready)
        log.info("added %d people", len(ready))
        return [p.id for p in ready]

    def delete_person(self, person_id: str) -> None:
        """Leave a tombstone (kept for sync); the person no longer shows."""
        now = _t(self.now())
        self.db.execute(
            "UPDATE crm_people SET deleted_at = ?, updated_at = ? WHERE id = ?",
            (now, now, person_id),
        )
        log.info("person %s deleted (tombstone)", person_id)

    def _prepared(self, person: Person, companies: dict[str, str] | None = None) -> Person:
        now = self.now()
        person_id = person.id or self.new_id()
        company_id = person.company_id
        if company_id is None and person.company_name.strip():
            key = _name_key(person.company_name)
            found = companies or self.company_ids_for([person.company_name])
            company_id = found[key]
        return replace(
            person,
            id=person_id,
            uid=person.uid or str(uuid.uuid4()),
            company_id=company_id,
            created_at=person.created_at or now,
            updated_at=now,
        )

    def _insert_people(self, people: Sequence[Person]) -> None:
        _insert_json(self.db, "crm_people", _PERSON_TYPES, [_person_row(p) for p in people])
        self._insert_points(people)

    def _update_person(self, person: Person) -> None:
        cols = [c.strip() for c in _PERSON_COLS.split(",")][1:]
        self.db.execute(
            f"UPDATE crm_people SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?",
            [*_person_row(person)[1:], person.id],
        )
        for table in ("crm_person_emails", "crm_person_phones"):
            self.db.execute(f"DELETE FROM {table} WHERE person_id = ?", (person.id,))
        self._insert_points([person])

    def _insert_points(self, people: Sequence[Person]) -> None:
        emails = [
            (p.id, i, e.value, e.label, normalize_email(e.value))
            for p in people
            for i, e in enumerate(p.emails)
        ]
        phones = [
            (p.id, i, t.value, t.label, normalize_phone(t.value))
            for p in people
            for i, t in enumerate(p.phones)
        ]
        _insert_json(self.db, "crm_person_emails", _POINT_TYPES, emails)
        _insert_json(self.db, "crm_person_phones", _POINT_TYPES, phones)

    # -- merges ------------------------------------------------------------------------
    def apply_merge(self, kept: Person, other: Person, reason: str, score: float) -> Person:
        """Save ``kept``, re-point ``other``'s records to it and tombstone ``other``."""
        now = self.now()
        with self.db.transaction():
            self.save_person(kept)
            for table in ("crm_activities", "crm_deals", "crm_notes", "crm_follow_ups"):
                self.db.execute(
                    f"UPDATE {table} SET person_id = ? WHERE person_id = ?", (kept.id, other.id)
                )
            self.db.execute(
                "UPDATE crm_people SET merged_into = ?, deleted_at = ?, updated_at = ? "
                "WHERE id = ?",
                (kept.id, _t(now), _t(now), other.id),
            )
            for table in ("crm_person_emails", "crm_person_phones"):
                self.db.execute(f"DELETE FROM {table} WHERE person_id = ?", (other.id,))
            self.db.execute(
                "INSERT INTO crm_merges VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.new_id(), kept.id, other.id, reason, score,
                 json.dumps(person_as_dict(other)), _t(now)),
            )  # fmt: skip
        log.info("person %s merged into %s (score %.2f)", other.id, kept.id, score)
        return self.require_person(kept.id)

    def merge_history(self, person_id: str) -> list[MergeRecord]:
        rows = self.db.fetchall(
            "SELECT id, kept_id, merged_id, reason, score, merged_at, snapshot FROM crm_merges "
            "WHERE kept_id = ? OR merged_id = ? ORDER BY merged_at",
            (person_id, person_id),
        )
        return [
            MergeRecord(r[0], r[1], r[2], r[3], r[4], from_db_time(r[5]), json.loads(r[6]))
            for r in rows
        ]

    # -- search ------------------------------------------------------------------------
    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """People, companies, deals and notes whose text holds every word of ``query``."""
        tokens = _fold(query).split()
        if not tokens:
            return []
        hits = self._search_people(tokens, limit)
        for kind, sql in _OTHER_SEARCHES:
            where = " AND ".join(["contains(strip_accents(lower(t.text)), ?)"] * len(tokens))
            rows = self.db.fetchall(f"{sql} WHERE {where} LIMIT ?", [*tokens, limit])
            hits += [SearchHit(kind, r[0], r[1], r[2]) for r in rows]
        return hits[:limit]

    def _search_people(self, tokens: list[str], limit: int) -> list[SearchHit]:
        where = " AND ".join(["contains(strip_accents(lower(h.text)), ?)"] * len(tokens))
        rows = self.db.fetchall(
            f"SELECT h.id, h.full_name FROM ({_PEOPLE_TEXT}) h WHERE {where} "
            "ORDER BY h.full_name LIMIT ?",
            [*tokens, limit],
        )
        return [SearchHit("person", r[0], r[1], r[0]) for r in rows]


_PEOPLE_TEXT = """
SELECT p.id, p.full_name, concat_ws(' ', p.full_name, p.given_name, p.family_name, p.title,
       p.background, c.name, e.v, t.v) AS text
FROM crm_people p
LEFT JOIN crm_companies c ON c.id = p.company_id
LEFT JOIN (SELECT person_id, string_agg(value, ' ') AS v FROM crm_person_emails
           GROUP BY person_id) e ON e.person_id = p.id
LEFT JOIN (SELECT person_id, string_agg(value, ' ') AS v FROM crm_person_phones
           GROUP BY person_id) t ON t.person_id = p.id
WHERE p.deleted_at IS NULL
"""

_OTHER_SEARCHES = (
    ("company", "SELECT t.id, t.name, NULL FROM (SELECT *, name AS text FROM crm_companies) t"),
    ("deal", "SELECT t.id, t.title, t.person_id FROM (SELECT *, title AS text FROM crm_deals) t"),
    (
        "note",
        "SELECT t.id, left(t.body, 80), t.person_id FROM (SELECT *, body AS text FROM crm_notes) t",
    ),
)


def _insert_json(
    db: Database, table: str, types: Sequence[tuple[str, str]], rows: Sequence[Sequence[object]]
) -> None:
    """Insert many rows as one JSON parameter: DuckDB parses it ~50x faster than
    it binds one Python parameter per value."""
    if not rows:
        return
    names = [name for name, _ in types]
    spec = json.dumps([dict(types)]).replace("'", "''")
    payload = json.dumps([dict(zip(names, row, strict=True)) for row in rows], default=_json_value)
    db.execute(
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"SELECT {', '.join(f's.{n}' for n in names)} "
        f"FROM (SELECT unnest(from_json(?, '{spec}')) AS s)",
        (payload,),
    )


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store a {type(value).__name__} as JSON")


def _person_row(p: Person) -> tuple[object, ...]:
    return (
        p.id, p.uid, p.full_name, p.given_name, p.family_name, p.company_id, p.title,
        json.dumps([asdict(a) for a in p.addresses]), json.dumps(list(p.urls)),
        json.dumps(list(p.categories)), p.birthday, p.background, p.source,
        _t(p.created_at), _t(p.updated_at), _t(p.deleted_at), p.merged_into,
    )  # fmt: skip


def _person(row: Row, emails: tuple[ContactPoint, ...], phones: tuple[ContactPoint, ...]) -> Person:
    return Person(
        id=row[0], uid=row[1], full_name=row[2], given_name=row[3], family_name=row[4],
        company_id=row[5], company_name=row[17] or "", title=row[6], emails=emails,
        phones=phones, addresses=tuple(PostalAddress(**a) for a in json.loads(row[7])),
        urls=tuple(json.loads(row[8])), categories=tuple(json.loads(row[9])), birthday=row[10],
        background=row[11], source=row[12], created_at=from_db_time(row[13]),
        updated_at=from_db_time(row[14]), deleted_at=_ft(row[15]), merged_into=row[16],
    )  # fmt: skip
