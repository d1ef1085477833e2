"""The email actions: send a mail (``email.send``) and save a draft (``email.save_draft``).

Life cycle (see ``app.integrations.base``): ``prepare`` checks the fields
(no line breaks anywhere a header is built, every address parses), fixes
the Message-ID and Date, and writes the preview; the Message-ID is the
idempotency key. ``execute`` renders the same bytes from the payload every
time. ``reconcile`` looks for that Message-ID on the server (``UID SEARCH
HEADER Message-ID``) in Sent, or Drafts.

Sending is SMTP then an IMAP APPEND of the exact bytes to Sent with
``\\Seen``, skipped when a copy with that Message-ID is already there: a
second ``execute`` after a crash never makes a second copy. (SMTP itself has
no idempotency: a crash after the server accepted the mail and before the
copy was appended cannot be told apart from "never sent"; the outbox then
shows the owner the action as unknown rather than sending again.)

Actions use a short-lived IMAP connection of their own, so they never
change the folder a running sync has selected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from app.integrations.base import (
    Action,
    ActionOutcome,
    JsonObject,
    PreparedAction,
    Risk,
)
from app.integrations.email import compose, smtp
from app.integrations.email.imap import ImapClient, ImapLogin
from app.integrations.email.imap_parse import special_folder
from app.integrations.email.settings import EmailSettings
from app.integrations.errors import ActionError

log = logging.getLogger("soloist.integrations.email")

_MAIL_PARAMETERS: JsonObject = {
    "type": "object",
    "properties": {
        "to": {"type": "array", "items": {"type": "string"}},
        "cc": {"type": "array", "items": {"type": "string"}},
        "bcc": {"type": "array", "items": {"type": "string"}},
        "subject": {"type": "string"},
        "body": {"type": "string"},
        "in_reply_to": {"type": "string"},
        "references": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["to", "subject", "body"],
}


class MailActions:
    """Builds the two actions of one account."""

    def __init__(
        self,
        account_id: str,
        settings: EmailSettings,
        login: Callable[[], ImapLogin],
        connect_imap: Callable[[], ImapClient],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.account_id = account_id
        self.settings = settings
        self._login = login
        self._connect_imap = connect_imap
        self._now = now

    def actions(self) -> list[Action]:
        return [
            Action(
                "email.send",
                "Send an email from this account (a copy is kept in Sent).",
                _MAIL_PARAMETERS,
                Risk.MEDIUM,
                lambda args: self.prepare(args, "email.send", Risk.MEDIUM),
                self.execute_send,
                lambda prepared: self.reconcile(prepared, "\\Sent"),
            ),
            Action(
                "email.save_draft",
                "Save an email as a draft in the Drafts folder, without sending it.",
                _MAIL_PARAMETERS,
                Risk.LOW,
                lambda args: self.prepare(args, "email.save_draft", Risk.LOW),
                self.execute_draft,
                lambda prepared: self.reconcile(prepared, "\\Drafts"),
            ),
        ]

    # -- prepare ----------------------------------------------------------
    def prepare(self, args: JsonObject, action: str, risk: Risk) -> PreparedAction:
        payload = dict(args)
        payload.setdefault("message_id", compose.new_message_id(self.settings.from_address))
        payload.setdefault("date", compose.date_header(self._now()))
        draft = self._draft(payload)
        return PreparedAction(
            action=action,
            account_id=self.account_id,
            payload=compose.fixed_payload(draft),
            preview=compose.preview(draft),
            risk=risk,
            idempotency_key=draft.message_id,
        )

    def _draft(self, payload: JsonObject) -> compose.Draft:
        return compose.draft_from_payload(
            payload, self.settings.from_address, self.settings.from_name
        )

    # -- execute ------------------------------------------------------------
    def execute_send(self, prepared: PreparedAction) -> ActionOutcome:
        draft = self._draft(prepared.payload)
        raw = compose.render(draft)
        report = smtp.send(
            self.settings.smtp,
            self._login(),
            draft.from_address,
            draft.envelope_recipients,
            raw,
        )
        folder, copied = self._store_copy("\\Sent", draft.message_id, raw, "(\\Seen)")
        summary = f"sent to {report.accepted} recipient(s)"
        if report.refused:
            summary += f"; {report.refused} refused by the server"
        summary += f"; copy in {folder}" if folder else "; no Sent folder for a copy"
        return ActionOutcome(
            True,
            summary,
            external_id=draft.message_id,
            data={"accepted": report.accepted, "refused": report.refused, "copied": copied},
        )

    def execute_draft(self, prepared: PreparedAction) -> ActionOutcome:
        draft = self._draft(prepared.payload)
        folder, copied = self._store_copy(
            "\\Drafts", draft.message_id, compose.render(draft), "(\\Draft)"
        )
        if folder is None:
            raise ActionError("this account has no Drafts folder; create one on the server")
        return ActionOutcome(
            True, f"draft saved in {folder}", external_id=draft.message_id, data={"new": copied}
        )

    def _store_copy(
        self, use: str, message_id: str, raw: bytes, flags: str
    ) -> tuple[str | None, bool]:
        """APPEND ``raw`` to the special folder unless a copy is there; (folder, appended)."""
        with self._connect_imap() as client:
            folder = special_folder(client.list_folders(), use)
            if folder is None:
                return None, False
            client.select(folder)
            if _has_message(client, message_id):
                log.info("imap copy already present; not appended again")
                return folder, False
            client.append(folder, flags, raw)
        return folder, True

    # -- reconcile ----------------------------------------------------------
    def reconcile(self, prepared: PreparedAction, use: str) -> ActionOutcome | None:
        message_id = prepared.idempotency_key
        with self._connect_imap() as client:
            folder = special_folder(client.list_folders(), use)
            if folder is None:
                return None
            client.select(folder)
            if not _has_message(client, message_id):
                return None
        return ActionOutcome(True, f"found in {folder}", external_id=message_id)


def _has_message(client: ImapClient, message_id: str) -> bool:
    compose.check_line(message_id, "Message-ID")
    quoted = '"' + message_id.replace("\\", "").replace('"', "") + '"'
    return bool(client.uid_search("HEADER", "Message-ID", quoted))
