"""The Connections section's questions and commands to the office, without Qt.

Accounts with their state and last sync, the kinds of account the form can
add (from the connector registry: ``settings_schema`` and
``secret_fields``), and the commands: test, sync, enable or disable, store
a secret, add, remove. A command that changes an account closes its live
connector (``Connections.forget``) so the next use reads the change, and
tells the agents' trace redactor about new secrets. Secret values pass
through here on their way to the keyring and are never logged or kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from app.integrations.base import Account, ConnectionReport, JsonValue, connector_class
from app.integrations.catalog import load_connectors
from app.integrations.errors import ConnectorConfigError
from app.integrations.service import Connections, Syncable, SyncStatus
from app.office import Office

__all__ = [
    "AccountRow",
    "KindSpec",
    "add_account",
    "check_account",
    "is_required",
    "kinds",
    "list_accounts",
    "remove_account",
    "report_text",
    "row_text",
    "set_enabled",
    "set_secret",
    "sync_account",
    "sync_text",
    "typed_value",
]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What the add form needs to know of one connector kind."""

    kind: str
    display_name: str
    settings: tuple[tuple[str, str], ...]  # (key, description)
    secret_fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One account as the section lists it."""

    account: Account
    enabled: bool
    syncable: bool
    missing_secrets: tuple[str, ...]
    secret_fields: tuple[str, ...]
    last_sync: SyncStatus | None

    @property
    def id(self) -> str:
        return self.account.id


def kinds() -> list[KindSpec]:
    """Every registered connector kind, by kind."""
    return [
        KindSpec(kind, cls.display_name, tuple(cls.settings_schema.items()), cls.secret_fields)
        for kind, cls in sorted(load_connectors().items())
    ]


def is_required(description: str) -> bool:
    """A setting is required unless its description starts with "Optional"."""
    return not description.strip().lower().startswith("optional")


def typed_value(text: str) -> JsonValue:
    """Numbers and true/false as JSON values; everything else stays a string (as the CLI)."""
    value = text.strip()
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        return value


def list_accounts(office: Office) -> list[AccountRow]:
    connections = office.connections
    statuses = connections.status()
    return [_row(connections, account, statuses.get(account.id)) for account in
            connections.accounts.list()]  # fmt: skip


def _row(connections: Connections, account: Account, status: SyncStatus | None) -> AccountRow:
    store = connections.accounts
    try:
        cls = connector_class(account.kind)
    except ConnectorConfigError:  # a kind no longer installed: listed, nothing to do with it
        return AccountRow(account, store.is_enabled(account.id), False, (), (), status)
    missing = tuple(f for f in cls.secret_fields if not _has_secret(connections, account, f))
    return AccountRow(
        account,
        store.is_enabled(account.id),
        issubclass(cls, Syncable),
        missing,
        cls.secret_fields,
        status,
    )


def _has_secret(connections: Connections, account: Account, field_name: str) -> bool:
    try:
        return connections.accounts.has_secret(account.id, field_name)
    except Exception:  # no keyring at all: the test of the account will say so
        return False


def check_account(office: Office, account_id: str) -> ConnectionReport:
    """Connect and log in, change nothing; a failure is a report, not an exception."""
    return office.connections.test(account_id)


def sync_account(office: Office, account_id: str) -> SyncStatus:
    return office.connections.sync(account_id)


def set_enabled(office: Office, account_id: str, enabled: bool) -> bool:
    connections = office.connections
    connections.accounts.set_enabled(account_id, enabled)
    connections.forget(account_id)
    return enabled


def set_secret(office: Office, account_id: str, field_name: str, value: str) -> str:
    """Store one secret in the keyring; returns the field's name (never the value)."""
    connections = office.connections
    connections.accounts.set_secret(account_id, field_name, value)
    connections.forget(account_id)
    _refresh_redactor(office)
    return field_name


def add_account(
    office: Office,
    kind: str,
    name: str,
    config: Mapping[str, JsonValue],
    secrets: Mapping[str, str],
) -> Account:
    """Add an account and store its secrets; if a secret cannot be stored, nothing is kept."""
    connections = office.connections
    account = connections.accounts.add(kind, name, config)
    try:
        for field_name, value in secrets.items():
            if value:
                connections.accounts.set_secret(account.id, field_name, value)
    except Exception:
        connections.accounts.remove(account.id)
        raise
    _refresh_redactor(office)
    return account


def remove_account(office: Office, account_id: str) -> str:
    """Forget the account and delete its secrets from the keyring."""
    connections = office.connections
    connections.forget(account_id)
    connections.accounts.remove(account_id)
    return account_id


# -- texts for the owner -------------------------------------------------------------
def sync_text(status: SyncStatus | None) -> str:
    if status is None:
        return "Not synced yet."
    when = datetime.fromtimestamp(status.finished_at).strftime("%H:%M")
    if status.ok:
        return f"Synced at {when} in {status.elapsed_s:.1f} s: {status.message}"
    again = f" ({status.failures_in_a_row} in a row)" if status.failures_in_a_row > 1 else ""
    return f"Sync failed at {when}{again}: {status.message}"


def report_text(report: ConnectionReport) -> str:
    head = "Works: " if report.ok else "Failed: "
    lines = [f"{head}{report.summary} ({report.elapsed_ms:.0f} ms)"]
    lines.extend(f"  · {line}" for line in report.details)
    if not report.ok:
        lines.append("Check the settings and the password, then test again.")
    return "\n".join(lines)


def row_text(row: AccountRow) -> str:
    state = "" if row.enabled else " (disabled)"
    warn = " ⚠" if row.missing_secrets or (row.last_sync and not row.last_sync.ok) else ""
    return f"{row.account.name}{state}{warn}\n{row.account.kind} · {row.id}"


def _refresh_redactor(office: Office) -> None:
    agents = office.agents
    if agents is not None:
        agents.refresh_secrets()
