"""The life cycle of an outbox action, in one table, and the records the outbox hands out.

::

    (new) ──▶ SUGGESTED ──▶ REJECTED | EXPIRED           autonomy 0: shown, never run
    (new) ──▶ PROPOSED ──▶ APPROVED | REJECTED | EXPIRED  waiting for the owner
    (new) ──▶ APPROVED                                    autonomy 2/3: approved by the level
    APPROVED ──▶ EXECUTING ──▶ DONE | FAILED | IN_DOUBT
    APPROVED ──▶ FAILED                                   the payload changed after approval
    EXECUTING ──▶ APPROVED                                a retry, or recovery found no effect
    IN_DOUBT ──▶ DONE | APPROVED | FAILED                 a later check, or the owner, settles it

Every change goes through :func:`check_transition` and produces one
:class:`OutboxEvent`; the kind of the event is the target state's
(``EVENT_KINDS``), so a listener never has to know the table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from app.agents.autonomy import Autonomy
from app.agents.errors import IllegalTransitionError
from app.agents.taint import FieldOrigin, untrusted_notice
from app.integrations.base import JsonObject, JsonValue, PreparedAction, Risk


class ActionState(IntEnum):
    """Where an action is; DONE and after are final, except IN_DOUBT (the owner's to settle)."""

    SUGGESTED = 0  # autonomy 0: shown, never executed
    PROPOSED = 1  # waiting for the owner
    APPROVED = 2  # approved (by the owner or the autonomy level), to be executed
    EXECUTING = 3  # claimed by the executor: the call may be under way
    DONE = 4
    FAILED = 5
    IN_DOUBT = 6  # it may or may not have happened: the owner is shown it
    REJECTED = 7
    EXPIRED = 8


S = ActionState
TRANSITIONS: Mapping[ActionState | None, frozenset[ActionState]] = {
    None: frozenset({S.SUGGESTED, S.PROPOSED, S.APPROVED}),  # creation
    S.SUGGESTED: frozenset({S.REJECTED, S.EXPIRED}),
    S.PROPOSED: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED}),
    S.APPROVED: frozenset({S.EXECUTING, S.FAILED}),
    S.EXECUTING: frozenset({S.DONE, S.FAILED, S.IN_DOUBT, S.APPROVED}),
    S.IN_DOUBT: frozenset({S.DONE, S.APPROVED, S.FAILED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}

EVENT_KINDS: Mapping[ActionState, str] = {
    S.SUGGESTED: "action.suggested",
    S.PROPOSED: "approval.requested",
    S.APPROVED: "action.approved",
    S.EXECUTING: "action.executing",
    S.DONE: "action.done",
    S.FAILED: "action.failed",
    S.IN_DOUBT: "action.in_doubt",
    S.REJECTED: "action.rejected",
    S.EXPIRED: "action.expired",
}
NOTIFY_EVENT = "action.notify"  # after DONE, for an action run on autonomy NOTIFY


def check_transition(action_id: str, old: ActionState | None, new: ActionState) -> None:
    """Raise ``IllegalTransitionError`` unless the table allows ``old`` -> ``new``."""
    if new not in TRANSITIONS[old]:
        was = "new" if old is None else old.name
        raise IllegalTransitionError(f"action {action_id}: {was} -> {new.name} is not allowed")


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A change the UI and the agent runtime hear about: ids and states, never payloads."""

    kind: str
    action_id: str
    agent_id: str
    run_id: str
    action: str
    state: ActionState
    previous: ActionState | None
    data: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One decision on an action and the content hash it was made on."""

    id: str
    action_id: str
    decided_by: str  # owner:ui, owner:cli, autonomy:2, autonomy:3, clock
    decision: str  # approved, edited, rejected, expired
    reason: str | None
    content_hash: str
    decided_at: datetime

    @property
    def allows_execution(self) -> bool:
        return self.decision in ("approved", "edited")


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """An action in the outbox as stored; ``repr`` hides the payload and preview."""

    id: str
    agent_id: str
    run_id: str
    action: str
    account_id: str
    payload: JsonObject = field(repr=False)
    preview: str = field(repr=False)
    risk: Risk
    idempotency_key: str
    content_hash: str
    state: ActionState
    autonomy: Autonomy  # the level that decided, after the untrusted/HIGH policy
    origins: tuple[FieldOrigin, ...] = field(repr=False)
    untrusted_labels: tuple[str, ...]
    approval: ApprovalRecord | None
    outcome_summary: str | None
    external_id: str | None
    error: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    next_attempt_at: datetime | None

    def prepared(self) -> PreparedAction:
        """The stored action as the connector's ``execute`` and ``reconcile`` take it."""
        return PreparedAction(
            self.action, self.account_id, self.payload, self.preview, self.risk,
            self.idempotency_key,
        )  # fmt: skip

    @property
    def taint_notice(self) -> str | None:
        """ "written after reading untrusted text: ..." when the run read any."""
        return untrusted_notice(self.untrusted_labels)


def event_for(
    record: ActionRecord,
    state: ActionState,
    previous: ActionState | None,
    kind: str | None = None,
) -> OutboxEvent:
    """The event of ``record`` reaching ``state`` (``kind``: the state's unless given)."""
    return OutboxEvent(
        kind or EVENT_KINDS[state],
        record.id,
        record.agent_id,
        record.run_id,
        record.action,
        state,
        previous,
        {"autonomy": int(record.autonomy), "risk": int(record.risk)},
    )


def content_hash(action: str, account_id: str, payload: JsonObject, idempotency_key: str) -> str:
    """SHA-256 of what would be executed, in canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(
        {"action": action, "account_id": account_id, "payload": payload, "key": idempotency_key},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def hash_of(prepared: PreparedAction) -> str:
    return content_hash(
        prepared.action, prepared.account_id, prepared.payload, prepared.idempotency_key
    )
