"""Send markers: how ``email.send`` tells "never sent" from "may have been sent" after a crash.

SMTP has no idempotency, and a copy in Sent can only be written after the
server accepted the mail. Without more, a crash between the two leaves
nothing on the server, ``reconcile`` answers "not there" and the outbox
sends the mail a second time. So the send leaves a trace *before* SMTP:

1. APPEND the exact bytes to the folder :data:`MARKER_FOLDER` (``Soloist
   Outbox``, created on demand), flagged ``\\Seen`` and, where the folder's
   PERMANENTFLAGS allow keywords, :data:`MARKER_KEYWORD`.
2. SMTP. A definite refusal (recipients or sender refused, the server
   unreachable, a failed login: nothing was sent) removes the marker again.
3. APPEND the same bytes to Sent (``\\Seen``), unless a copy is there.
4. Remove the marker: ``UID STORE +FLAGS.SILENT (\\Deleted)`` and ``UID
   EXPUNGE`` of that UID only (plain EXPUNGE without UIDPLUS; the folder
   holds nothing but markers).

``reconcile`` then reads the server: a copy in Sent -> it was sent (a
leftover marker is removed); a marker and no copy in Sent -> cannot tell,
:class:`SendInDoubtError` (the outbox marks the action IN_DOUBT and the
owner decides); neither -> it never reached SMTP, safe to send.

Crash windows (power loss, SIGKILL) and what ``reconcile`` says after:

=============================================  ==========================  ==========
crash                                          left on the server          verdict
=============================================  ==========================  ==========
before or during step 1                        nothing (or the marker)     safe / doubt
between 1 and 2, or inside SMTP                the marker                  in doubt
after SMTP accepted, before the Sent copy      the marker                  in doubt
between 3 and 4                                Sent copy and marker        sent
after 4                                        Sent copy                   sent
=============================================  ==========================  ==========

"In doubt" is the price of SMTP: the window from step 1 to step 3 cannot be
split by anything on the server; it is never resolved by sending again.

Why a folder of its own and not Drafts: a marker in Drafts shows up in
every mail client as a draft ready to send, so a person could send it by
hand (a duplicate), and ``email.save_draft`` would find it when looking for
its own draft with the same Message-ID. A marker is therefore identified by
the folder and the Message-ID, never by Drafts; the keyword only labels it
for people and other clients, and ``reconcile`` does not depend on it, so a
server that accepts but drops keywords cannot make a marker invisible.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from app.integrations.email.imap import ImapClient
from app.integrations.email.imap_parse import FolderInfo, uid_set
from app.integrations.errors import ActionError, RemoteRejectedError

log = logging.getLogger("soloist.integrations.email")

MARKER_FOLDER = "Soloist Outbox"
MARKER_KEYWORD = "$SoloistSending"
_PERMANENTFLAGS = re.compile(rb"\(([^)]*)\)")


class SendInDoubtError(ActionError):
    """A send started (its marker is on the server) and no copy reached Sent."""

    def __init__(self, message_id: str, folder: str) -> None:
        super().__init__(
            f"the mail {message_id} may or may not have gone out: Soloist stopped after it "
            "started sending and before the copy reached Sent. Nothing was sent again. Ask "
            "a recipient or look at the SMTP server's log, then mark it sent or not sent in "
            f"Soloist; after that, its copy in the folder {folder!r} can be deleted"
        )
        self.message_id = message_id


def search_key(message_id: str) -> str:
    """``message_id`` as an IMAP quoted string for ``HEADER Message-ID``."""
    if not message_id.isascii() or any(ch in message_id for ch in '"\\\r\n'):
        raise ActionError(f"the Message-ID {message_id!r} is not plain ASCII; prepare it again")
    return f'"{message_id}"'


def uids_of(client: ImapClient, message_id: str) -> list[int]:
    """UIDs of the messages with ``message_id`` in the selected folder."""
    return client.uid_search("HEADER", "Message-ID", search_key(message_id))


def in_folder(client: ImapClient, folder: str, message_id: str) -> bool:
    client.select(folder)
    return bool(uids_of(client, message_id))


def keywords_allowed(permanent_flags: bytes | None) -> bool:
    """Whether a PERMANENTFLAGS response code lets us store :data:`MARKER_KEYWORD`."""
    match = _PERMANENTFLAGS.search(permanent_flags or b"")
    flags = match.group(1).decode("ascii", "replace").lower().split() if match else []
    return "\\*" in flags or MARKER_KEYWORD.lower() in flags


def marker_flags(permanent_flags: bytes | None) -> str:
    """The APPEND flags of a marker: ``\\Seen``, plus the keyword where it is kept."""
    if keywords_allowed(permanent_flags):
        return f"(\\Seen {MARKER_KEYWORD})"
    return "(\\Seen)"


def marker_folder(folders: Iterable[FolderInfo]) -> str | None:
    """The marker folder among LIST results (top level, or under INBOX on some servers)."""
    for folder in folders:
        leaf = folder.name.rsplit(folder.delimiter, 1)[-1] if folder.delimiter else folder.name
        if leaf == MARKER_FOLDER and folder.selectable:
            return folder.name
    return None


def ensure_marker_folder(client: ImapClient, folders: list[FolderInfo]) -> str:
    """The marker folder, created when missing (under INBOX where the top level is refused)."""
    found = marker_folder(folders)
    if found is not None:
        return found
    delimiter = next((f.delimiter for f in folders if f.delimiter), "/")
    for name in (MARKER_FOLDER, f"INBOX{delimiter}{MARKER_FOLDER}"):
        try:
            client.create_folder(name)
        except RemoteRejectedError:  # exists already (a race), or not allowed here
            log.info("imap CREATE of the marker folder refused; looking again")
        found = marker_folder(client.list_folders())
        if found is not None:
            return found
    raise ActionError(
        f"the mail server refused to create the folder {MARKER_FOLDER!r}, which Soloist "
        "needs to send mail safely; nothing was sent. Create it on the server and try again"
    )


def put_marker(client: ImapClient, folder: str, raw: bytes) -> None:
    """APPEND the marker copy of ``raw`` to ``folder``."""
    client.select(folder, readonly=False)
    _, codes = client.raw.response("PERMANENTFLAGS")
    permanent = next((c for c in reversed(codes or []) if isinstance(c, bytes)), None)
    client.append(folder, marker_flags(permanent), raw)


def remove_marker(client: ImapClient, folder: str, message_id: str) -> int:
    """Delete the marker copies of ``message_id`` (and nothing else); how many there were."""
    client.select(folder, readonly=False)
    uids = uids_of(client, message_id)
    if not uids:
        return 0
    uid_text = uid_set(uids)
    _run(client, "STORE", "STORE", uid_text, "+FLAGS.SILENT", "(\\Deleted)")
    if "UIDPLUS" in client.capabilities:
        _run(client, "EXPUNGE", "EXPUNGE", uid_text)
    else:  # the folder holds only markers; the others flagged \Deleted are ours to drop too
        client._command("EXPUNGE", lambda imap: imap.expunge())
    log.info("imap removed %d send marker(s)", len(uids))
    return len(uids)


def _run(client: ImapClient, name: str, *args: str) -> None:
    # ImapClient has no STORE/EXPUNGE of its own; its _command maps the errors
    # at the same boundary as every other IMAP command.
    client._command(name, lambda imap: imap.uid(*args))
