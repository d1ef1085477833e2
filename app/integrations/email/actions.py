"""The email actions: send a mail (``email.send``) and save a draft (``email.save_draft``).

Life cycle (see ``app.integrations.base``): ``prepare`` checks the fields
(no line breaks anywhere a header is built, every address parses), fixes
the Message-ID and Date, and writes the preview; the Message-ID is the
idempotency key. ``execute`` renders the same bytes from the payload every
time.

Sending follows the marker protocol of :mod:`.send_marker`: a marker copy in
``Soloist Outbox`` before SMTP, then SMTP, then the copy in Sent and the
marker removed. ``reconcile`` of a send: a copy in Sent -> sent; a marker
only -> :class:`~.send_marker.SendInDoubtError` (cannot tell; the owner
decides); neither -> never reached SMTP. ``execute`` checks the same before
SMTP, so calling it again after a crash never sends twice. Once SMTP has
accepted the mail, a failure to write the Sent copy does not fail the send
(the marker then stays and says so).

A draft is an APPEND to Drafts with ``\\Draft``, skipped when a copy with
that Message-ID is there; its ``reconcile`` looks in Drafts only, so a send
marker is never taken for a draft, nor a draft for a send marker.

Actions use short-lived IMAP connections of their own, so they never change
the folder a running sync has selected.
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
from app.integrations.email import compose, send_marker, smtp
from app.integrations.email.imap import ImapClient, ImapLogin
from app.integrations.email.imap_parse import FolderInfo, special_folder
from app.integrations.email.send_marker import SendInDoubtError, in_folder, marker_folder
from app.integrations.email.settings import EmailSettings
from app.integrations.errors import (
    ActionError,
    ConnectionLostError,
    ConnectorError,
    ConnectorUnreachableError,
    RemoteRejectedError,
)

__all__ = ["MailActions", "SendInDoubtError"]

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
    """Builds the two actions of one account.

    ``after_smtp`` is a seam for the fault tests: it runs after the SMTP
    server accepted a mail and before its copy goes to Sent.
    """

    def __init__(  # noqa: PLR0917  (the connector passes them positionally)
        self,
        account_id: str,
        settings: EmailSettings,
        login: Callable[[], ImapLogin],
        connect_imap: Callable[[], ImapClient],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_smtp: Callable[[], None] = lambda: None,
    ) -> None:
        self.account_id = account_id
        self.settings = settings
        self._login = login
        self._connect_imap = connect_imap
        self._now = now
        self._after_smtp = after_smtp

    def actions(self) -> list[Action]:
        return [
            Action(
                "email.send",
                "Send an email from this account (a copy is kept in Sent).",
                _MAIL_PARAMETERS,
                Risk.MEDIUM,
                lambda args: self.prepare(args, "email.send", Risk.MEDIUM),
                self.execute_send,
                self.reconcile_send,
            ),
            Action(
                "email.save_draft",
                "Save an email as a draft in the Drafts folder, without sending it.",
                _MAIL_PARAMETERS,
                Risk.LOW,
                lambda args: self.prepare(args, "email.save_draft", Risk.LOW),
                self.execute_draft,
                self.reconcile_draft,
            ),
        ]

    # -- prepare ----------------------------------------------------------
    def prepare(self, args: JsonObject, action: str, risk: Risk) -> PreparedAction:
        payload = dict(args)
        payload.setdefault("message_id", compose.new_message_id(self.settings.from_address))
        payload.setdefault("date", compose.date_header(self._now()))
        draft = self._draft(payload)
        send_marker.search_key(draft.message_id)  # one we can look for on the server later
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

    # -- send -----------------------------------------------------------------
    def execute_send(self, prepared: PreparedAction) -> ActionOutcome:
        """Marker, SMTP, Sent copy, marker removed (see :mod:`.send_marker`)."""
        draft = self._draft(prepared.payload)
        raw = compose.render(draft)
        already = self._mark_sending(draft.message_id, raw)
        if already is not None:
            return already
        report = self._smtp(draft, raw)
        self._after_smtp()
        return self._record_sent(draft.message_id, raw, report)

    def _mark_sending(self, message_id: str, raw: bytes) -> ActionOutcome | None:
        """Step 1: the marker on the server; or the outcome when Sent has the mail already."""
        appending = False
        try:
            with self._connect_imap() as client:
                folders = client.list_folders()
                sent = special_folder(folders, "\\Sent")
                if sent is not None and in_folder(client, sent, message_id):
                    _clean_marker(client, folders, message_id)
                    log.info("mail already in Sent; not sent again")
                    return ActionOutcome(
                        True, f"already sent; the copy is in {sent}", external_id=message_id,
                        data={"accepted": 0, "refused": 0, "copied": False},
                    )  # fmt: skip
                box = send_marker.ensure_marker_folder(client, folders)
                if in_folder(client, box, message_id):
                    raise SendInDoubtError(message_id, box)
                appending = True
                send_marker.put_marker(client, box, raw)
        except ConnectionLostError as exc:
            # Nothing was sent. Only a marker whose APPEND may have landed is a worry.
            if not appending or self._drop_marker(message_id):
                raise ConnectorUnreachableError(
                    "the IMAP connection broke before sending; nothing was sent. Try again"
                ) from exc
            raise
        return None

    def _smtp(self, draft: compose.Draft, raw: bytes) -> smtp.SendReport:
        try:
            return smtp.send(
                self.settings.smtp,
                self._login(),
                draft.from_address,
                draft.envelope_recipients,
                raw,
            )
        except ConnectionLostError:
            raise  # it may have been accepted: the marker stays, reconcile says "in doubt"
        except ConnectorError:
            self._drop_marker(draft.message_id)  # refused, or never connected: nothing sent
            raise

    def _record_sent(self, message_id: str, raw: bytes, report: smtp.SendReport) -> ActionOutcome:
        """Steps 3 and 4; the mail is sent whatever happens here."""
        summary = f"sent to {report.accepted} recipient(s)"
        if report.refused:
            summary += f"; {report.refused} refused by the server"
        try:
            folder, copied = self._copy_to_sent(message_id, raw)
        except ConnectorError as exc:
            log.warning("mail sent; its copy in Sent failed: %s", type(exc).__name__)
            folder, copied = None, False
            summary += f"; saving its copy in Sent failed ({exc})"
        if folder is not None:
            summary += f"; copy in {folder}"
        else:
            summary += f"; its copy stays in the folder {send_marker.MARKER_FOLDER!r}"
        return ActionOutcome(
            True,
            summary,
            external_id=message_id,
            data={"accepted": report.accepted, "refused": report.refused, "copied": copied},
        )

    def _copy_to_sent(self, message_id: str, raw: bytes) -> tuple[str | None, bool]:
        """APPEND to Sent unless a copy is there, then remove the marker; (folder, appended).

        Without a Sent folder (none could be created) the marker stays: it is
        then the only trace that the mail went out.
        """
        with self._connect_imap() as client:
            folders = client.list_folders()
            sent = special_folder(folders, "\\Sent") or _create_sent(client)
            if sent is None:
                return None, False
            copied = not in_folder(client, sent, message_id)
            if copied:
                client.append(sent, "(\\Seen)", raw)
            box = marker_folder(folders)
            if box is not None:
                send_marker.remove_marker(client, box, message_id)
        return sent, copied

    def _drop_marker(self, message_id: str) -> bool:
        """Remove the marker of a send that did not happen; False when that failed."""
        try:
            with self._connect_imap() as client:
                box = marker_folder(client.list_folders())
                if box is not None:
                    send_marker.remove_marker(client, box, message_id)
        except ConnectorError as exc:
            log.warning(
                "imap kept a send marker (%s): it will show as in doubt", type(exc).__name__
            )
            return False
        return True

    def reconcile_send(self, prepared: PreparedAction) -> ActionOutcome | None:
        """In Sent: sent. A marker only: ``SendInDoubtError``. Neither: never sent."""
        message_id = prepared.idempotency_key
        with self._connect_imap() as client:
            folders = client.list_folders()
            sent = special_folder(folders, "\\Sent")
            if sent is not None and in_folder(client, sent, message_id):
                _clean_marker(client, folders, message_id)
                return ActionOutcome(True, f"found in {sent}", external_id=message_id)
            box = marker_folder(folders)
            if box is not None and in_folder(client, box, message_id):
                raise SendInDoubtError(message_id, box)
        return None

    # -- draft -----------------------------------------------------------------
    def execute_draft(self, prepared: PreparedAction) -> ActionOutcome:
        draft = self._draft(prepared.payload)
        raw = compose.render(draft)
        with self._connect_imap() as client:
            folder = special_folder(client.list_folders(), "\\Drafts")
            if folder is None:
                raise ActionError("this account has no Drafts folder; create one on the server")
            copied = not in_folder(client, folder, draft.message_id)
            if copied:
                client.append(folder, "(\\Draft)", raw)
            else:
                log.info("imap draft already present; not appended again")
        return ActionOutcome(
            True, f"draft saved in {folder}", external_id=draft.message_id, data={"new": copied}
        )

    def reconcile_draft(self, prepared: PreparedAction) -> ActionOutcome | None:
        message_id = prepared.idempotency_key
        with self._connect_imap() as client:
            folder = special_folder(client.list_folders(), "\\Drafts")
            if folder is None or not in_folder(client, folder, message_id):
                return None
        return ActionOutcome(True, f"found in {folder}", external_id=message_id)


def _clean_marker(client: ImapClient, folders: list[FolderInfo], message_id: str) -> None:
    """Remove a leftover marker of a mail that is in Sent; a failure only leaves clutter."""
    box = marker_folder(folders)
    if box is None:
        return
    try:
        send_marker.remove_marker(client, box, message_id)
    except ConnectorError as exc:
        log.warning("imap could not remove a leftover send marker: %s", type(exc).__name__)


def _create_sent(client: ImapClient) -> str | None:
    """Create a Sent folder for an account that has none; its name, or None if refused."""
    try:
        client.create_folder("Sent")
    except RemoteRejectedError:
        log.warning("imap refused to create a Sent folder")
        return None
    return special_folder(client.list_folders(), "\\Sent")
