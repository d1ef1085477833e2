"""The CRM's records as plain frozen values, and the deal life cycle.

Stores read and write these; nothing here touches the database. Changing a
record is ``dataclasses.replace``; the store stamps times. The deal stages
are an ordered enum and every allowed move between them is in
``_TRANSITIONS`` below, the one place that says what a deal may become.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, IntEnum


class DealStage(IntEnum):
    """Where a deal stands. Order means progress; WON and LOST are closed."""

    LEAD = 1
    QUALIFIED = 2
    PROPOSAL = 3
    NEGOTIATION = 4
    WON = 5
    LOST = 6

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def is_closed(self) -> bool:
        return self >= DealStage.WON

    @classmethod
    def parse(cls, text: str) -> DealStage:
        """A stage from its name (any case); ``ValueError`` names the valid ones."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            valid = ", ".join(stage.label for stage in cls)
            raise ValueError(f"unknown deal stage {text!r}; expected one of {valid}") from None


_OPEN = frozenset({DealStage.LEAD, DealStage.QUALIFIED, DealStage.PROPOSAL, DealStage.NEGOTIATION})

# Open deals move freely among open stages and may close either way; a closed
# deal can only be reopened (a mistake undone), to its last open stage or a lead.
_TRANSITIONS: dict[DealStage, frozenset[DealStage]] = {
    DealStage.LEAD: _OPEN | {DealStage.WON, DealStage.LOST},
    DealStage.QUALIFIED: _OPEN | {DealStage.WON, DealStage.LOST},
    DealStage.PROPOSAL: _OPEN | {DealStage.WON, DealStage.LOST},
    DealStage.NEGOTIATION: _OPEN | {DealStage.WON, DealStage.LOST},
    DealStage.WON: frozenset({DealStage.NEGOTIATION}),
    DealStage.LOST: frozenset({DealStage.LEAD, DealStage.QUALIFIED}),
}


def allowed_stages(current: DealStage) -> frozenset[DealStage]:
    """The stages a deal at ``current`` may move to (never itself)."""
    return _TRANSITIONS[current] - {current}


def can_move(current: DealStage, target: DealStage) -> bool:
    return target in allowed_stages(current)


class ActivityKind(Enum):
    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class ContactPoint:
    """One email address or phone number with its label (work, home, cell...)."""

    value: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """A vCard ADR, component by component."""

    street: str = ""
    locality: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""
    po_box: str = ""
    extended: str = ""
    label: str = ""

    @property
    def is_empty(self) -> bool:
        parts = (self.street, self.locality, self.region, self.postal_code, self.country)
        return not any((*parts, self.po_box, self.extended))


@dataclass(frozen=True, slots=True)
class Person:
    """A contact. ``company_name`` is resolved to a company by the store on save."""

    id: str
    full_name: str
    given_name: str = ""
    family_name: str = ""
    company_id: str | None = None
    company_name: str = ""
    title: str = ""
    emails: tuple[ContactPoint, ...] = ()
    phones: tuple[ContactPoint, ...] = ()
    addresses: tuple[PostalAddress, ...] = ()
    urls: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    birthday: str = ""
    background: str = ""
    uid: str = ""
    source: str = "manual"
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    merged_into: str | None = None

    @property
    def display_name(self) -> str:
        joined = f"{self.given_name} {self.family_name}".strip()
        return self.full_name or joined or (self.emails[0].value if self.emails else "")

    def __repr__(self) -> str:  # no names or addresses in logs and tracebacks
        return f"Person(id={self.id!r}, emails={len(self.emails)}, phones={len(self.phones)})"


@dataclass(frozen=True, slots=True)
class Company:
    id: str
    name: str
    domain: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Deal:
    id: str
    title: str
    stage: DealStage = DealStage.LEAD
    person_id: str | None = None
    company_id: str | None = None
    value_cents: int | None = None
    currency: str = "EUR"
    created_at: datetime | None = None
    updated_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StageChange:
    deal_id: str
    seq: int
    from_stage: DealStage | None
    to_stage: DealStage
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class Activity:
    id: str
    kind: ActivityKind
    subject: str
    occurred_at: datetime
    body: str = ""
    person_id: str | None = None
    deal_id: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FollowUp:
    id: str
    title: str
    due_at: datetime
    done_at: datetime | None = None
    person_id: str | None = None
    deal_id: str | None = None
    created_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.done_at is not None


@dataclass(frozen=True, slots=True)
class Note:
    id: str
    body: str
    person_id: str | None = None
    deal_id: str | None = None
    company_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MergeRecord:
    """One merge: who was kept, who was folded in, why, and the folded one as it was."""

    id: str
    kept_id: str
    merged_id: str
    reason: str
    score: float
    merged_at: datetime
    snapshot: dict[str, object] = field(default_factory=dict)
