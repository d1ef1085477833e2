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
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.agents.autonomy import Owner
from app.agents.errors import ApprovalError
from app.agents.outbox_states import ActionRecord, ActionState
from app.agents.runtime import AgentRuntime
from app.agents.taint import Origin, leaves
from app.integrations.base import JsonObject, JsonValue, Risk
from app.memory.db import utc_now
from app.office import Office

AGENTS_NOT_READY = "The agents are still starting; try again in a moment."
FAILURE_WINDOW = timedelta(days=1)  # failed actions newer than this are reported


# -- reads ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Queue:
    """What waits for the owner, and what failed lately (for notifications)."""

    pending: tuple[ActionRecord, ...] = ()  # PROPOSED, oldest first
    in_doubt: tuple[ActionRecord, ...] = ()
    failed: tuple[ActionRecord, ...] = ()  # FAILED within FAILURE_WINDOW
    now: datetime = field(default_factory=utc_now)
    ready: bool = True  # False: the agents have not started yet


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
    )


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
        """The origin in words (never colour alone)."""
        if self.untrusted:
            return "⚠ from untrusted: " + (", ".join(self.sources) or "outside text")
        return f"from {self.origin.value}"


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
