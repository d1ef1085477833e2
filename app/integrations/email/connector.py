"""The email connector: one IMAP/SMTP account.

Settings are in :mod:`.settings` (hosts, ports, security, user name, from
address, an optional CA file); the password is only in the keyring and read
through :meth:`Connector.secret` when a connection opens.

- ``test_connection()``: IMAP login and SELECT INBOX, then SMTP EHLO, TLS and
  AUTH without sending anything.
- Tools (read-only, on the local store, so they work offline):
  ``email.search``, ``email.read``, ``email.thread``.
- Actions: ``email.send`` and ``email.save_draft`` (:mod:`.actions`).
- ``sync(folder)`` / ``sync_all(folders)`` bring the local store up to date
  and ``idle()`` waits for new mail (:mod:`.imap_sync`); the office calls
  them from a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

from app.integrations.base import (
    Account,
    Action,
    ConnectionReport,
    Connector,
    ConnectorContext,
    Tool,
    register,
)
from app.integrations.email import smtp
from app.integrations.email.actions import MailActions
from app.integrations.email.imap import ImapClient, ImapLogin
from app.integrations.email.imap_sync import MailSync, SyncResult
from app.integrations.email.mail_store import MailStore
from app.integrations.email.settings import SETTINGS_SCHEMA, EmailSettings
from app.integrations.email.tools import mail_tools
from app.integrations.errors import ConnectorError


@register
class EmailConnector(Connector):
    kind: ClassVar[str] = "email"
    display_name: ClassVar[str] = "Email (IMAP and SMTP)"
    settings_schema: ClassVar[Mapping[str, str]] = SETTINGS_SCHEMA
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    def __init__(
        self,
        account: Account,
        context: ConnectorContext,
        *,
        batch_size: int = 50,
        use_idle: bool = True,
    ) -> None:
        super().__init__(account, context)
        self.settings = EmailSettings.from_account(account)
        self.store = MailStore(context.db, account.id)
        self.mail_sync = MailSync(
            account.id,
            self.connect_imap,
            self.store,
            context.emit,
            context.memory,
            batch_size=batch_size,
            use_idle=use_idle,
        )
        self._actions = MailActions(account.id, self.settings, self._login, self.connect_imap)

    def _login(self) -> ImapLogin:
        return ImapLogin(self.settings.username, self.secret("password"))

    def connect_imap(self) -> ImapClient:
        """A new, logged-in IMAP connection (the caller closes it)."""
        return ImapClient(self.settings.imap, self._login()).connect()

    # -- Connector --------------------------------------------------------
    def test_connection(self) -> ConnectionReport:
        started = time.perf_counter()
        details: list[str] = []
        try:
            with self.connect_imap() as client:
                inbox = client.select("INBOX")
                details.append(f"IMAP {self.settings.imap.describe()}: {inbox.exists} in INBOX")
            smtp.check_login(self.settings.smtp, self._login())
            details.append(f"SMTP {self.settings.smtp.describe()}: login accepted")
        except ConnectorError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return ConnectionReport(False, str(exc), tuple(details), elapsed)
        elapsed = (time.perf_counter() - started) * 1000
        return ConnectionReport(True, "IMAP and SMTP work", tuple(details), elapsed)

    def tools(self) -> Sequence[Tool]:
        return mail_tools(self.store)

    def actions(self) -> Sequence[Action]:
        return self._actions.actions()

    def close(self) -> None:
        self.mail_sync.close()

    # -- sync -----------------------------------------------------------
    def sync(self, folder: str = "INBOX") -> SyncResult:
        """Bring one folder's local copy up to date."""
        special = {f.name: f.special_use for f in self.mail_sync.list_folders()}
        return self.mail_sync.sync_folder(folder, special.get(folder))

    def sync_all(self, folders: Sequence[str] | None = None) -> list[SyncResult]:
        """Sync ``folders``, or every folder of the account."""
        return self.mail_sync.sync_all(folders)
