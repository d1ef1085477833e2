"""Composing an outgoing mail: checked fields, fixed identity, exact bytes.

A draft is checked when it is *prepared*, before anyone approves it: every
address must parse to exactly one ``local@domain`` and no field may hold a
CR or LF, so no header can be injected through a subject or an address.
The Message-ID and Date are fixed at that point too, and :func:`render`
turns the same payload into the same bytes every time, so the copy appended
to Sent is byte for byte the mail that was sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from app.integrations.base import JsonObject, JsonValue
from app.integrations.errors import ActionError

MAX_RECIPIENTS = 100
MAX_SUBJECT = 998
MAX_BODY = 1_000_000
_LOCAL_AT_DOMAIN = re.compile(r"[^@\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")
_BREAKS = ("\r", "\n", "\x00", "\u2028", "\u2029", "\x85")


@dataclass(frozen=True, slots=True)
class Draft:
    """An outgoing mail, checked; build with :func:`draft_from_payload`."""

    from_address: str
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    subject: str
    body: str
    message_id: str
    date: str  # RFC 5322 date, fixed at prepare time
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()

    @property
    def envelope_recipients(self) -> list[str]:
        return [*self.to, *self.cc, *self.bcc]

    def __repr__(self) -> str:  # never the text of the mail
        return f"Draft(message_id={self.message_id!r}, recipients={len(self.envelope_recipients)})"


def check_line(value: str, what: str) -> str:
    """``value`` when it is one line; ``ActionError`` when it could start a new header."""
    if any(mark in value for mark in _BREAKS):
        raise ActionError(f"the {what} contains a line break; remove it and prepare again")
    return value


def check_address(value: str, what: str) -> str:
    """One bare ``local@domain`` address, from ``"Name <a@b>"`` or ``a@b``."""
    check_line(value, what)
    _name, address = parseaddr(value)
    if not _LOCAL_AT_DOMAIN.fullmatch(address or ""):
        raise ActionError(f"the {what} {value!r} is not an email address; fix it")
    return address


def _addresses(value: JsonValue, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ActionError(f"{what} must be a list of email addresses")
    return tuple(check_address(str(item), f"{what} address") for item in items)


def new_message_id(from_address: str) -> str:
    domain = from_address.rsplit("@", 1)[-1]
    return make_msgid(domain=domain)


def draft_from_payload(payload: JsonObject, from_address: str, from_name: str) -> Draft:
    """Check a payload (from an agent or the owner's edit) into a :class:`Draft`."""
    to, cc, bcc = (_addresses(payload.get(k), k) for k in ("to", "cc", "bcc"))
    if not to and not cc and not bcc:
        raise ActionError("the mail has no recipient; add at least one in to")
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        raise ActionError(f"the mail has more than {MAX_RECIPIENTS} recipients; split it")
    subject = check_line(str(payload.get("subject") or ""), "subject")
    body = str(payload.get("body") or "")
    if len(subject) > MAX_SUBJECT or len(body) > MAX_BODY:
        raise ActionError("the subject or body is too long; shorten it")
    message_id = check_line(str(payload.get("message_id") or ""), "Message-ID")
    reply = payload.get("in_reply_to")
    refs = payload.get("references") or []
    return Draft(
        from_address=check_address(from_address, "from address"),
        from_name=check_line(from_name, "from name"),
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        body=body,
        message_id=message_id or new_message_id(from_address),
        date=check_line(str(payload.get("date") or date_header(datetime.now(UTC))), "date"),
        in_reply_to=check_line(str(reply), "In-Reply-To") if reply else None,
        references=tuple(check_line(str(r), "References") for r in _list(refs)),
    )


def fixed_payload(draft: Draft) -> JsonObject:
    """The payload that ``execute`` will send: every field, identity included."""
    return {
        "to": list(draft.to),
        "cc": list(draft.cc),
        "bcc": list(draft.bcc),
        "subject": draft.subject,
        "body": draft.body,
        "message_id": draft.message_id,
        "date": draft.date,
        "in_reply_to": draft.in_reply_to,
        "references": list(draft.references),
    }


def build(draft: Draft) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(draft.from_name, addr_spec=draft.from_address)
    if draft.to:
        message["To"] = ", ".join(draft.to)
    if draft.cc:
        message["Cc"] = ", ".join(draft.cc)
    message["Subject"] = draft.subject
    message["Date"] = draft.date
    message["Message-ID"] = draft.message_id
    if draft.in_reply_to:
        message["In-Reply-To"] = draft.in_reply_to
    if draft.references:
        message["References"] = " ".join(draft.references)
    message.set_content(draft.body)
    return message


def render(draft: Draft) -> bytes:
    """The exact bytes of the mail (CRLF line ends); the same draft gives the same bytes."""
    return build(draft).as_bytes(policy=policy.SMTP)


def preview(draft: Draft) -> str:
    """What the owner reads before approving: the headers that matter and the body."""
    sender = f"{draft.from_name} <{draft.from_address}>" if draft.from_name else draft.from_address
    lines = [f"From: {sender}", f"To: {', '.join(draft.to)}"]
    if draft.cc:
        lines.append(f"Cc: {', '.join(draft.cc)}")
    if draft.bcc:
        lines.append(f"Bcc: {', '.join(draft.bcc)}")
    lines += [f"Subject: {draft.subject}", f"Message-ID: {draft.message_id}", "", draft.body]
    return "\n".join(lines)


def date_header(moment: datetime) -> str:
    return format_datetime(moment)


def _list(value: JsonValue) -> Sequence[JsonValue]:
    return value if isinstance(value, list) else [value]
