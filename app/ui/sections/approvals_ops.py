"""What the Approvals section asks of the office, and how it shows a payload: no Qt here.

The section's widgets only call these through ``bridge.call`` (on a worker
thread). Reads return plain records; every decision goes through the agent
runtime with ``Owner.at_ui()`` and the content hash the owner was shown, so
an action that changed since it was drawn is refused (``StaleApprovalError``)
instead of approved blind.

The pure helpers below turn an :class:`ActionRecord` into what the section
draws: one row per payload leaf with its origin (UNTRUSTED values name the
outside texts they matched), the before/after pairs a payload carries
(``from_stage``/``stage``, ``old_x``/``new_x``, ``before``/``after``...) or a
preview's "a → b" lines, and the per-field text an edit is made of.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.agents.autonomy import Owner
from app.agents.errors import ApprovalError
from app.agents.outbox_states import ActionRecord, ActionState
from app.agents.taint import Origin, leaves
from app.integrations.base import JsonObject, JsonValue, Risk
from app.memory.db import Database, utc_now
from app.memory.memory_rows import VERSION_SELECT, MemoryVersion, version_from
from app.office import Office
from app.ui.sections.run_text import one_line

if TYPE_CHECKING:  # the runtime (numpy, APScheduler) comes with the office, off the UI thread
    from app.agents.runtime import AgentRuntime

log = logging.getLogger("soloist.ui")

AGENTS_NOT_READY = "The agents are still starting; try again in a moment."
FAILURE_WINDOW = timedelta(days=1)  # failed actions newer than this are reported
QUOTE_CHARS = 48  # of a subject or a memory's text quoted in a source's words


# -- reads ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Queue:
    """What waits for the owner, and what failed lately (for notifications)."""

    pending: tuple[ActionRecord, ...] = ()  # PROPOSED, oldest first
    in_doubt: tuple[ActionRecord, ...] = ()
    failed: tuple[ActionRecord, ...] = ()  # FAILED within FAILURE_WINDOW
    now: datetime = field(default_factory=utc_now)
    ready: bool = True  # False: the agents have not started yet
    sources: Mapping[str, SourceWords] = field(default_factory=dict)  # untrusted label -> words


def runtime_of(office: Office) -> AgentRuntime:
    runtime = office.agents
    if runtime is None:
        raise ApprovalError(AGENTS_NOT_READY)
    return runtime


def load_queue(office: Office) -> Queue:
    """The queue as it is now (empty and not ready before the agents start)."""
    runtime = office.agents
    if runtime is None:
        return Queue(ready=False)
    outbox = runtime.outbox
    waiting = outbox.pending()
    now = utc_now()
    failed = [r for r in outbox.list(ActionState.FAILED) if now - r.updated_at <= FAILURE_WINDOW]
    return Queue(
        pending=tuple(r for r in waiting if r.state is ActionState.PROPOSED),
        in_doubt=tuple(r for r in waiting if r.state is ActionState.IN_DOUBT),
        failed=tuple(failed),
        now=now,
        sources=describe_sources(office.db, untrusted_labels(waiting)),
    )


# -- where untrusted text came from --------------------------------------------------
# The loop labels each outside text it read (``app.agents.taint.UntrustedSource``):
_EMAIL = re.compile(r"^email (?P<id>\S+)(?: body)?$")  # "email <message-id> body"
_MEMORY = re.compile(r"^memory (?P<id>\S+)$")  # a recalled memory
_TOOL = re.compile(r"^tool result (?P<tool>\S+)$")
_EARLIER = re.compile(r"^earlier runs of (?P<agent>\S+)$")  # the session tier
_MEMORY_KINDS = {
    "fact": "a fact",
    "note": "a note",
    "document_chunk": "a passage",
    "email_summary": "an email summary",
    "crm_fact": "a CRM fact",
}


@dataclass(frozen=True, slots=True)
class SourceWords:
    """One untrusted source in words, for the owner."""

    phrase: str  # on its own: "an email from anna@example.com, 'Invoice 42'"
    origin: str = ""  # who or what it came from, short: "you", "the desk agent", "notes.pdf"
    short: str = ""  # the phrase without its quote: "an email from anna@example.com"

    @property
    def brief(self) -> str:
        return self.short or self.phrase


def untrusted_labels(records: Iterable[ActionRecord]) -> list[str]:
    """Every untrusted source label the records name, once each, in order."""
    found: dict[str, None] = {}
    for record in records:
        found.update(dict.fromkeys(record.untrusted_labels))
        for origin in record.origins:
            found.update(dict.fromkeys(origin.sources))
    return list(found)


def label_words(label: str) -> SourceWords:
    """What a label alone tells (nothing looked up)."""
    if _EMAIL.match(label):
        return SourceWords("an email")
    if _MEMORY.match(label):
        return SourceWords("a memory")
    tool = _TOOL.match(label)
    if tool:
        return SourceWords(f"the result of {tool['tool']}", tool["tool"])
    earlier = _EARLIER.match(label)
    if earlier:
        agent = f"the {earlier['agent']} agent"
        return SourceWords(f"{agent}'s earlier runs", agent)
    return SourceWords(label, label)


def _quoted(text: str) -> str:
    return f"'{one_line(text, QUOTE_CHARS)}'"


def email_words(sender: str, subject: str) -> SourceWords:
    """``an email from anna@example.com, 'Invoice 42'``."""
    short = f"an email from {sender}" if sender else "an email"
    phrase = f"{short}, {_quoted(subject)}" if subject.strip() else short
    return SourceWords(phrase, sender, short)


def memory_words(version: MemoryVersion) -> SourceWords:
    """A memory by its kind and provenance: ``a fact you wrote, 'Invoices are due…'``."""
    kind = _MEMORY_KINDS.get(version.kind, "a memory")
    p = version.provenance
    if p.source_file:
        origin = PurePath(p.source_file).name or p.source_file
        phrase = f"{kind} from {origin}"
    elif p.source_url:
        origin = urlsplit(p.source_url).hostname or p.source_url
        phrase = f"{kind} from {origin}"
    elif p.agent_id:
        origin = f"the {p.agent_id} agent"
        phrase = f"{kind} by {origin}"
    elif p.message_id:
        origin = "a chat"
        phrase = f"{kind} from {origin}"
    elif p.tool and p.tool != "ui":
        origin = p.tool
        phrase = f"{kind} saved by {origin}"
    else:
        origin = "you"
        phrase = f"{kind} you wrote"
    quoted = f"{phrase}, {_quoted(version.text)}" if version.text.strip() else phrase
    return SourceWords(quoted, origin, phrase)


def describe_sources(db: Database, labels: Sequence[str]) -> dict[str, SourceWords]:
    """Each label in words, from the mail and the memories it names where they are stored."""
    words = {label: label_words(label) for label in labels}
    try:
        words.update(_emails(db, labels))
        words.update(_memories(db, labels))
    except Exception as exc:  # the words are a courtesy: the labels still say it all
        log.warning("untrusted sources not described: %s", exc)
    return words


def _emails(db: Database, labels: Sequence[str]) -> dict[str, SourceWords]:
    found = {}
    for label in labels:
        match = _EMAIL.match(label)
        if match is None:
            continue
        bare = match["id"].strip("<>")
        row = db.fetchone(
            "SELECT from_email, from_name, subject FROM mail_messages "
            "WHERE message_id IN (?, ?) OR id = ? ORDER BY received_at DESC NULLS LAST LIMIT 1",
            [bare, f"<{bare}>", match["id"]],
        )
        if row is not None:
            found[label] = email_words(str(row[0] or row[1] or ""), str(row[2] or ""))
    return found


def _memories(db: Database, labels: Sequence[str]) -> dict[str, SourceWords]:
    ids = {m["id"]: label for label in labels if (m := _MEMORY.match(label))}
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = db.fetchall(
        f"{VERSION_SELECT} WHERE v.memory_id IN ({marks}) AND v.valid_to IS NULL", list(ids)
    )
    versions = (version_from(tuple(row)) for row in rows)
    return {ids[v.memory_id]: memory_words(v) for v in versions if not v.tombstone}


def untrusted_text(
    labels: Sequence[str], words: Mapping[str, SourceWords], *, short: bool = False
) -> str:
    """The sources of ``labels`` in words, memories counted when there are several.

    ``an email from anna@example.com, 'Invoice 42'; 3 memories (from you and
    the desk agent); the desk agent's earlier runs``. ``short``: no quotes.
    """
    parts: list[str] = []
    memories: list[SourceWords] = []
    for label in dict.fromkeys(labels):
        said = words.get(label) or label_words(label)
        if _MEMORY.match(label):
            if not memories:
                parts.append("")  # the memories' place, filled below
            memories.append(said)
        else:
            parts.append(said.brief if short else said.phrase)
    if memories:
        parts[parts.index("")] = _memories_text(memories, short)
    return "; ".join(parts)


def _memories_text(memories: Sequence[SourceWords], short: bool) -> str:
    if len(memories) == 1:
        return memories[0].brief if short else memories[0].phrase
    origins = list(dict.fromkeys(m.origin for m in memories if m.origin))
    text = f"{len(memories)} memories"
    if origins:
        shown = origins[:3] if len(origins) <= 3 else [*origins[:2], "others"]
        named = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
        text += f" (from {named})"
    return text


def taint_banner(record: ActionRecord, words: Mapping[str, SourceWords]) -> str | None:
    """The approval view's warning, in words; None when the run read nothing untrusted."""
    if not record.untrusted_labels:
        return None
    sources = untrusted_text(record.untrusted_labels, words)
    return f"⚠ Written after reading untrusted text: {sources}."


def labels_tooltip(labels: Sequence[str]) -> str:
    """The labels as the trace records them, one a line (memory ids included)."""
    return "Untrusted sources, as recorded:\n" + "\n".join(dict.fromkeys(labels))


# -- decisions -----------------------------------------------------------------------
def approve(
    office: Office, action_id: str, shown_hash: str, edited_args: JsonObject | None = None
) -> ActionRecord:
    """Approve what the owner saw (or their edit of it); refused if it changed since."""
    return runtime_of(office).approve(
        action_id, Owner.at_ui(), edited_args, expected_hash=shown_hash
    )


def reject(office: Office, action_id: str, reason: str) -> ActionRecord:
    """Reject with the owner's reason (the agent reads it on its next run)."""
    reason = reason.strip() or "rejected by the owner"
    return runtime_of(office).outbox.reject(action_id, Owner.at_ui(), reason)


def settle(office: Office, action_id: str, happened: bool) -> ActionRecord:
    """The owner looked: an IN_DOUBT action did or did not happen."""
    return runtime_of(office).outbox.settle_in_doubt(action_id, Owner.at_ui(), happened=happened)


@dataclass(frozen=True, slots=True)
class BatchResult:
    approved: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]  # (action id, why)


def approve_batch(office: Office, shown: Mapping[str, str]) -> BatchResult:
    """Approve each ticked action (id -> shown hash) that is LOW risk; refuse the others."""
    runtime = runtime_of(office)
    approved: list[str] = []
    refused: list[tuple[str, str]] = []
    for action_id, shown_hash in shown.items():
        record = runtime.outbox.get(action_id)
        if not is_batchable(record):
            refused.append((action_id, f"{risk_label(record.risk)} risk: approve it on its own"))
            continue
        try:
            runtime.approve(action_id, Owner.at_ui(), expected_hash=shown_hash)
        except ApprovalError as exc:
            refused.append((action_id, str(exc)))
        else:
            approved.append(action_id)
    return BatchResult(tuple(approved), tuple(refused))


def is_batchable(record: ActionRecord) -> bool:
    """Only LOW risk proposals may be approved in a batch (never money or deletion)."""
    return record.risk is Risk.LOW and record.state is ActionState.PROPOSED


def describe_batch(result: BatchResult) -> str:
    text = f"Approved {len(result.approved)} action(s)."
    if result.refused:
        text += f" {len(result.refused)} not approved: " + "; ".join(
            f"{action_id}: {why}" for action_id, why in result.refused
        )
    return text


# -- presentation --------------------------------------------------------------------
def risk_label(risk: Risk) -> str:
    return risk.name.lower()


def age_text(created: datetime, now: datetime) -> str:
    """ "just now", "5 min", "3 h", "2 d"."""
    seconds = max(0, int((now - created).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def summary(record: ActionRecord, now: datetime) -> str:
    """One line of the queue: agent, action, risk, age."""
    return (
        f"{record.agent_id} · {record.action} · {risk_label(record.risk)} risk · "
        f"{age_text(record.created_at, now)}"
    )


@dataclass(frozen=True, slots=True)
class FieldRow:
    """One leaf of the payload as the field table shows it."""

    path: str
    value: str
    origin: Origin
    sources: tuple[str, ...] = ()

    @property
    def untrusted(self) -> bool:
        return self.origin is Origin.UNTRUSTED

    @property
    def mark(self) -> str:
        """The origin with the sources' labels as recorded (never colour alone)."""
        if self.untrusted:
            return "⚠ from untrusted: " + (", ".join(self.sources) or "outside text")
        return f"from {self.origin.value}"

    def origin_text(self, words: Mapping[str, SourceWords]) -> str:
        """The origin with the sources in words: ``⚠ from untrusted: an email from …``."""
        if self.untrusted:
            named = untrusted_text(self.sources, words, short=True)
            return "⚠ from untrusted: " + (named or "outside text")
        return self.mark


def value_text(value: JsonValue) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def field_rows(record: ActionRecord) -> list[FieldRow]:
    """Every leaf of the exact payload with its origin (AGENT when none is stored)."""
    origins = {o.path: o for o in record.origins}
    rows = []
    for path, leaf in leaves(record.payload):
        found = origins.get(path)
        origin = found.origin if found else Origin.AGENT
        rows.append(FieldRow(path, value_text(leaf), origin, found.sources if found else ()))
    return rows


@dataclass(frozen=True, slots=True)
class DiffRow:
    name: str
    before: str
    after: str


_PAIRS = (  # (before pattern, after template): "from_stage" pairs with "stage"
    (re.compile(r"^from_(\w+)$"), "{}"),
    (re.compile(r"^old_(\w+)$"), "new_{}"),
    (re.compile(r"^previous_(\w+)$"), "{}"),
    (re.compile(r"^(\w+)_before$"), "{}_after"),
    (re.compile(r"^(\w+)_old$"), "{}_new"),
)
_ARROW = re.compile(r"^(?P<name>[\w ]+?) (?P<before>.+?) (?:→|->) (?P<after>.+)$")


def diff_rows(record: ActionRecord) -> list[DiffRow]:
    """Before/after pairs from the payload's field names, else from the preview's arrows."""
    rows = list(_payload_pairs(record.payload))
    return rows or list(_preview_pairs(record.preview))


def _payload_pairs(payload: JsonObject) -> Iterable[DiffRow]:
    before, after = payload.get("before"), payload.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        for key in dict.fromkeys([*before, *after]):
            old, new = before.get(key), after.get(key)
            if old != new:
                yield DiffRow(key, _shown(old), _shown(new))
    for key, old in payload.items():
        for pattern, template in _PAIRS:
            match = pattern.match(key)
            partner = template.format(match.group(1)) if match else None
            if partner is not None and partner in payload and partner != key:
                yield DiffRow(
                    match.group(1) if match else key, _shown(old), _shown(payload[partner])
                )
                break


def _preview_pairs(preview: str) -> Iterable[DiffRow]:
    body = preview.split(": ", 1)[-1]
    for part in body.split("; "):
        match = _ARROW.match(part.strip())
        if match:
            yield DiffRow(match["name"], match["before"], match["after"])


def _shown(value: JsonValue | None) -> str:
    return "(none)" if value is None else value_text(value)


# -- editing -------------------------------------------------------------------------
def editable_fields(payload: JsonObject) -> list[tuple[str, str]]:
    """(name, text) of each top-level field; non-text values as JSON."""
    return [(key, "" if value is None else value_text(value)) for key, value in payload.items()]


def edited_args(payload: JsonObject, texts: Mapping[str, str]) -> JsonObject:
    """The payload with the owner's texts; raises ``ValueError`` naming a bad field."""
    result: JsonObject = dict(payload)
    for key, text in texts.items():
        original = payload.get(key)
        if isinstance(original, str):
            result[key] = text
        elif original is None and not text.strip():
            result[key] = None
        elif original is None:
            result[key] = text
        else:
            result[key] = _parsed(key, text)
    return result


def _parsed(key: str, text: str) -> JsonValue:
    try:
        value: JsonValue = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{key}: not valid JSON ({exc.msg}); fix it or cancel the edit") from None
    return value


def changed_fields(payload: JsonObject, edited: JsonObject) -> Sequence[str]:
    return [key for key in edited if payload.get(key) != edited[key]]
