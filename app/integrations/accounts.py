"""Configured accounts: their non-secret settings in the database, secrets in the keyring.

An account row holds the kind (``email``, ``dav``...), a display name and a
JSON object of settings. Before a row is written, every value is checked not
to look like a secret the owner pasted into the wrong field: keys named
``password``, ``token``, ``secret``... are refused, so a secret can only
reach the keyring, through :meth:`AccountStore.set_secret`.

Removing an account removes its secrets from the keyring too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Mapping

from app.integrations.base import Account, JsonValue, connector_class
from app.integrations.errors import ConnectorConfigError
from app.memory.db import Database, to_db_time, utc_now
from app.secrets import SecretNotFoundError, SecretStore

log = logging.getLogger("soloist.integrations")

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential", re.IGNORECASE)


def check_config(config: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """``config`` as a plain dict, refusing anything that is named like a secret."""
    for key in config:
        if _SECRET_KEY.search(key):
            raise ConnectorConfigError(
                f"the setting {key!r} looks like a secret; secrets go to the keyring, "
                "not to the account's settings"
            )
    return dict(config)


class AccountStore:
    """CRUD of ``connector_accounts`` plus the account's secrets in the keyring."""

    def __init__(self, db: Database, secrets: SecretStore) -> None:
        self._db = db
        self._secrets = secrets

    def add(
        self,
        kind: str,
        name: str,
        config: Mapping[str, JsonValue],
        account_id: str | None = None,
    ) -> Account:
        connector_class(kind)  # an unknown kind is refused before anything is written
        new_id = account_id or f"{kind}-{uuid.uuid4().hex[:8]}"
        if not _ID.fullmatch(new_id):
            raise ConnectorConfigError(f"not a valid account id: {new_id!r}")
        if self.find(new_id) is not None:
            raise ConnectorConfigError(f"an account with the id {new_id!r} already exists")
        settings = check_config(config)
        now = to_db_time(utc_now())
        self._db.execute(
            "INSERT INTO connector_accounts VALUES (?, ?, ?, ?, TRUE, ?, ?)",
            (new_id, kind, name.strip() or kind, json.dumps(settings), now, now),
        )
        log.info("account %s (%s) added", new_id, kind)
        return Account(new_id, kind, name.strip() or kind, settings)

    def update(self, account_id: str, config: Mapping[str, JsonValue]) -> Account:
        account = self.get(account_id)
        settings = check_config(config)
        self._db.execute(
            "UPDATE connector_accounts SET config = ?, updated_at = ? WHERE id = ?",
            (json.dumps(settings), to_db_time(utc_now()), account_id),
        )
        return Account(account.id, account.kind, account.name, settings)

    def set_enabled(self, account_id: str, enabled: bool) -> None:
        self.get(account_id)
        self._db.execute(
            "UPDATE connector_accounts SET enabled = ?, updated_at = ? WHERE id = ?",
            (enabled, to_db_time(utc_now()), account_id),
        )

    def find(self, account_id: str) -> Account | None:
        row = self._db.fetchone(
            "SELECT id, kind, name, config FROM connector_accounts WHERE id = ?", (account_id,)
        )
        return None if row is None else _account(row)

    def get(self, account_id: str) -> Account:
        account = self.find(account_id)
        if account is None:
            raise ConnectorConfigError(f"no account {account_id!r}")
        return account

    def list(self, kind: str | None = None, *, enabled_only: bool = False) -> list[Account]:
        rows = self._db.fetchall(
            "SELECT id, kind, name, config FROM connector_accounts"
            " WHERE (? IS NULL OR kind = ?) AND (enabled OR NOT ?) ORDER BY created_at, id",
            (kind, kind, enabled_only),
        )
        return [_account(row) for row in rows]

    def is_enabled(self, account_id: str) -> bool:
        row = self._db.fetchone(
            "SELECT enabled FROM connector_accounts WHERE id = ?", (account_id,)
        )
        return bool(row and row[0])

    def set_secret(self, account_id: str, field_name: str, value: str) -> None:
        account = self.get(account_id)
        if field_name not in connector_class(account.kind).secret_fields:
            raise ConnectorConfigError(f"a {account.kind} account has no secret {field_name!r}")
        if not value:
            raise ConnectorConfigError(f"the {field_name} is empty")
        self._secrets.set(account.secret_ref(field_name), value)
        log.info("secret %s of account %s stored in the keyring", field_name, account_id)

    def has_secret(self, account_id: str, field_name: str) -> bool:
        account = self.get(account_id)
        return self._secrets.find(account.secret_ref(field_name)) is not None

    def remove(self, account_id: str) -> None:
        """Forget the account and delete its secrets from the keyring."""
        account = self.get(account_id)
        for field_name in connector_class(account.kind).secret_fields:
            with contextlib.suppress(SecretNotFoundError):
                self._secrets.delete(account.secret_ref(field_name))
        self._db.execute("DELETE FROM connector_accounts WHERE id = ?", (account_id,))
        log.info("account %s removed", account_id)


def _account(row: tuple[object, ...]) -> Account:
    account_id, kind, name, config = row
    settings = json.loads(str(config))
    if not isinstance(settings, dict):
        raise ConnectorConfigError(f"the settings of account {account_id!r} are damaged")
    return Account(str(account_id), str(kind), str(name), settings)
