"""The local CRM: people, companies, deals, activities, follow-ups and notes.

Kept in the office DuckDB (``app.memory.schema_crm``); filled from CSV and
vCard files (``importers``), kept free of duplicates (``dedupe``) and in
step with a CardDAV address book (``carddav_sync``; which book: ``dav_link``).
``connector`` makes it available to agents as tools and actions.
"""

from app.integrations.crm.carddav_sync import AddressBook, CardDavSync, SyncReport
from app.integrations.crm.dedupe import DuplicateCandidate, find_duplicates, merge
from app.integrations.crm.importers import ImportReport, import_csv, import_vcards
from app.integrations.crm.models import (
    Activity,
    ActivityKind,
    Company,
    ContactPoint,
    Deal,
    DealStage,
    FollowUp,
    Note,
    Person,
    PostalAddress,
)
from app.integrations.crm.store import CrmNotFoundError, CrmStore, StageTransitionError
from app.integrations.crm.vcard import VCard, parse_vcards, write_vcard

__all__ = [
    "Activity",
    "ActivityKind",
    "AddressBook",
    "CardDavSync",
    "Company",
    "ContactPoint",
    "CrmNotFoundError",
    "CrmStore",
    "Deal",
    "DealStage",
    "DuplicateCandidate",
    "FollowUp",
    "ImportReport",
    "Note",
    "Person",
    "PostalAddress",
    "StageTransitionError",
    "SyncReport",
    "VCard",
    "find_duplicates",
    "import_csv",
    "import_vcards",
    "merge",
    "parse_vcards",
    "write_vcard",
]
