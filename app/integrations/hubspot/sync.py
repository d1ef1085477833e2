"""Pulling HubSpot contacts into ``hubspot_contacts``, from where the last sync stopped.

Each run searches contacts with ``lastmodifieddate >= <newest seen>``,
sorted ascending, and keeps the newest time in ``integration_sync_state``
after every window, so an interrupted sync resumes without starting over.
HubSpot's search returns at most 10,000 results per query: when a window
hits that cap, the next one starts from the newest time of the last, so a
large account is read in several searches rather than cut short. Contacts
modified at the boundary are read twice; ``INSERT OR REPLACE`` makes that
harmless.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.integrations.base import JsonObject
from app.integrations.hubspot.client import (
    SEARCH_MAX_RESULTS,
    HubSpotClient,
    next_after,
    properties_of,
    results_of,
)
from app.memory.db import to_db_time, utc_now

if TYPE_CHECKING:
    from app.memory.db import Database

__all__ = ["CONTACT_PROPS", "ContactSync"]

log = logging.getLogger("soloist.integrations.hubspot")

CONTACT_PROPS = ("email", "firstname", "lastname", "company", "phone", "lastmodifieddate")
_RESOURCE = "hubspot.contacts"
_ASCENDING: JsonObject = {"propertyName": "lastmodifieddate", "direction": "ASCENDING"}


class ContactSync:
    """Brings the local copy of one HubSpot account's contacts up to date."""

    def __init__(self, client: HubSpotClient, db: Database, account_id: str) -> None:
        self.client = client
        self.db = db
        self.account_id = account_id

    def run(self) -> int:
        """Pull contacts modified since the last sync; the number read."""
        started = time.perf_counter()
        since = self.last_synced()
        total = 0
        while True:
            count, newest, capped = self._sync_window(since)
            total += count
            if newest is not None:
                since = newest
                self._save_sync_state(newest)
            if not capped:
                break
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info("HubSpot sync of %s: %d contacts in %.0f ms", self.account_id, total, elapsed_ms)
        return total

    def _sync_window(self, since: datetime | None) -> tuple[int, datetime | None, bool]:
        """One search (at most 10,000 results); says whether it hit that cap."""
        filters = [] if since is None else [gte_ms("lastmodifieddate", since)]
        after: str | None = None
        count, newest = 0, None
        while True:
            page = self.client.search(
                "contacts",
                filters=filters,
                properties=CONTACT_PROPS,
                sorts=[_ASCENDING],
                after=after,
            )
            for record in results_of(page):
                modified = self._store_contact(record)
                newest = max(newest, modified) if newest and modified else modified or newest
                count += 1
            after = next_after(page)
            if after is None:
                return count, newest, False
            if int(after) >= SEARCH_MAX_RESULTS:
                return count, newest, True

    def _store_contact(self, record: JsonObject) -> datetime | None:
        props = properties_of(record)
        modified = parse_time(props.get("lastmodifieddate") or record.get("updatedAt"))
        self.db.execute(
            "INSERT OR REPLACE INTO hubspot_contacts (account_id, id, email, first_name,"
            " last_name, company, updated_at, properties, synced_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.account_id, str(record.get("id")), props.get("email"),
                props.get("firstname"), props.get("lastname"), props.get("company"),
                to_db_time(modified) if modified else None, json.dumps(props),
                to_db_time(utc_now()),
            ),
        )  # fmt: skip
        return modified

    def last_synced(self) -> datetime | None:
        """The newest modification time read so far (None before the first sync)."""
        row = self.db.fetchone(
            "SELECT last_modified FROM integration_sync_state"
            " WHERE account_id = ? AND resource = ?",
            (self.account_id, _RESOURCE),
        )
        return row[0].replace(tzinfo=UTC) if row and row[0] else None

    def _save_sync_state(self, newest: datetime) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO integration_sync_state"
            " (account_id, resource, last_modified, synced_at) VALUES (?, ?, ?, ?)",
            (self.account_id, _RESOURCE, to_db_time(newest), to_db_time(utc_now())),
        )


def gte_ms(name: str, moment: datetime) -> JsonObject:
    """A search filter ``name >= moment``: dates there are epoch milliseconds, as strings."""
    return {"propertyName": name, "operator": "GTE", "value": str(int(moment.timestamp() * 1000))}


def parse_time(value: object) -> datetime | None:
    """HubSpot's ISO time (naive read as UTC); None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
