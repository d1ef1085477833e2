"""Who decides on an action: the autonomy policy and the owner's decisions.

Policy (pure, table-tested): the owner's autonomy level for the tool decides
(:func:`effective_level`, :func:`initial_state`), with one exception that is
stricter than issue 7 asks: an action of ``Risk.HIGH`` (money, deletion)
whose payload holds any UNTRUSTED value is never approved by the autonomy
level; it waits for the owner (ASK). A level is a grant for routine work
the owner pictured ("refund orders under my rules"), not for values chosen
by whoever wrote the email the agent just read: an injected "refund 900 EUR
to this IBAN" would otherwise run on its own. MEDIUM actions (a mail) keep
their level, with the untrusted values marked in the notification.

Decisions (:class:`OwnerDesk`): approve (optionally with edited arguments,
which are prepared again by the connector and recorded as "edited"),
reject (the reason is kept for the agent), expire what waited too long, and
settle an action whose outcome is in doubt. Each decision and its state
change commit in one transaction; events go out after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from app.agents.autonomy import Autonomy, Owner, require_owner
from app.agents.errors import ActionNotAllowedError, ApprovalError, StaleApprovalError
from app.agents.outbox_exec import Resolver
from app.agents.outbox_states import ActionRecord, ActionState, OutboxEvent, hash_of
from app.agents.outbox_store import OutboxContext, dump_json, dump_origins
from app.agents.taint import FieldOrigin, has_untrusted, origins_after_edit
from app.integrations.base import JsonObject, PreparedAction, Risk
from app.integrations.errors import ConnectorError
from app.memory.db import to_db_time

log = logging.getLogger("soloist.agents.outbox")

EXPIRY_DECIDER = "clock"


# -- policy ----------------------------------------------------------------------
def effective_level(level: Autonomy, risk: Risk, origins: Sequence[FieldOrigin]) -> Autonomy:
    """The level that decides: ``level``, but HIGH risk with untrusted values asks."""
    if level >= Autonomy.NOTIFY and risk >= Risk.HIGH and has_untrusted(origins):
        return Autonomy.ASK
    return level


def initial_state(level: Autonomy) -> ActionState:
    """Where a new action starts at the effective level."""
    if level is Autonomy.SUGGEST:
        return ActionState.SUGGESTED
    if level is Autonomy.ASK:
        return ActionState.PROPOSED
    return ActionState.APPROVED


def autonomy_decider(level: Autonomy) -> str:
    return f"autonomy:{int(level)}"


def is_due(record: ActionRecord, now: datetime) -> bool:
    return record.expires_at is not None and record.expires_at <= now


# -- the owner's decisions -----------------------------------------------------------
class OwnerDesk:
    """Approve, edit, reject, expire and settle; only ``Owner`` objects decide."""

    def __init__(self, ctx: OutboxContext, resolve: Resolver) -> None:
        self._ctx = ctx
        self._resolve = resolve

    def approve(
        self,
        action_id: str,
        owner: Owner,
        edited_args: JsonObject | None = None,
        expected_hash: str | None = None,
    ) -> ActionRecord:
        """Approve what the owner saw (``expected_hash``), or an edit of it."""
        owner = require_owner(owner)
        record = self._waiting(action_id, expected_hash)
        prepared = None if edited_args is None else self._prepare_edit(record, edited_args)
        events: list[OutboxEvent] = []
        with self._ctx.db.transaction():
            current = self._waiting(action_id, record.content_hash)
            events.append(self._approve_in_tx(current, owner, prepared))
        self._ctx.publish(events)
        self._ctx.checkpoint("after_approve")
        return self._ctx.store.get(action_id)

    def reject(self, action_id: str, owner: Owner, reason: str) -> ActionRecord:
        """Reject a proposal or dismiss a suggestion; the agent sees ``reason``."""
        owner = require_owner(owner)
        now = self._ctx.clock()
        with self._ctx.db.transaction():
            record = self._ctx.store.get(action_id)
            if record.state not in (ActionState.PROPOSED, ActionState.SUGGESTED):
                raise ApprovalError(
                    f"action {action_id} is {record.state.name}; too late to reject"
                )
            decision = self._ctx.store.decide(
                action_id, decided_by=owner.label, decision="rejected", reason=reason,
                content_hash=record.content_hash, now=now,
            )  # fmt: skip
            event = self._ctx.store.move(
                record, ActionState.REJECTED, now, f"by {owner.label}", approval_id=decision
            )
        self._ctx.publish([event])
        return self._ctx.store.get(action_id)

    def expire_due(self) -> list[ActionRecord]:
        """Expire every suggestion and proposal past its ``expires_at``."""
        now = self._ctx.clock()
        due = self._ctx.store.select(
            "a.state IN (?, ?) AND a.expires_at IS NOT NULL AND a.expires_at <= ?",
            (int(ActionState.SUGGESTED), int(ActionState.PROPOSED), to_db_time(now)),
        )
        events = []
        with self._ctx.db.transaction():
            for record in due:
                events.append(self._expire_in_tx(record, now))
        self._ctx.publish(events)
        return [self._ctx.store.get(record.id) for record in due]

    def settle_in_doubt(self, action_id: str, owner: Owner, *, happened: bool) -> ActionRecord:
        """The owner looked: the action did (DONE) or did not (FAILED) happen."""
        owner = require_owner(owner)
        now = self._ctx.clock()
        with self._ctx.db.transaction():
            record = self._ctx.store.get(action_id)
            if record.state is not ActionState.IN_DOUBT:
                raise ActionNotAllowedError(
                    f"action {action_id} is {record.state.name}, not IN_DOUBT"
                )
            if happened:
                event = self._ctx.store.move(
                    record, ActionState.DONE, now, f"settled by {owner.label}",
                    outcome_summary=f"confirmed by the owner ({owner.label})",
                )  # fmt: skip
            else:
                event = self._ctx.store.move(
                    record, ActionState.FAILED, now, f"settled by {owner.label}",
                    error=f"the owner said it did not happen ({owner.label})",
                )  # fmt: skip
        self._ctx.publish([event])
        return self._ctx.store.get(action_id)

    # -- steps -------------------------------------------------------------------
    def _waiting(self, action_id: str, expected_hash: str | None) -> ActionRecord:
        """The action, if it waits for the owner and still holds what they saw."""
        record = self._ctx.store.get(action_id)
        if record.state is ActionState.SUGGESTED:
            raise ActionNotAllowedError(
                f"action {action_id} is a suggestion (autonomy 0); it is never executed"
            )
        if record.state is not ActionState.PROPOSED:
            raise ApprovalError(f"action {action_id} is {record.state.name}, not waiting")
        if is_due(record, self._ctx.clock()):
            self._expire_now(record)
            raise ApprovalError(f"action {action_id} expired before it was approved")
        if expected_hash is not None and expected_hash != record.content_hash:
            raise StaleApprovalError(
                f"action {action_id} changed since it was shown; look at it again"
            )
        if hash_of(record.prepared()) != record.content_hash:
            raise StaleApprovalError(f"action {action_id}: its stored payload does not match")
        return record

    def _prepare_edit(self, record: ActionRecord, edited_args: JsonObject) -> PreparedAction:
        try:
            prepared = self._resolve(record.account_id, record.action).prepare(edited_args)
        except ConnectorError as exc:
            raise ApprovalError(f"the edited action {record.id} is not valid: {exc}") from exc
        if (prepared.action, prepared.account_id) != (record.action, record.account_id):
            raise ApprovalError(f"an edit may not change the action or account of {record.id}")
        return prepared

    def _approve_in_tx(
        self, record: ActionRecord, owner: Owner, prepared: PreparedAction | None
    ) -> OutboxEvent:
        now = self._ctx.clock()
        columns: dict[str, object] = {}
        digest = record.content_hash
        if prepared is not None:
            digest = hash_of(prepared)
            origins = origins_after_edit(record.payload, record.origins, prepared.payload)
            columns = {
                "payload": dump_json(prepared.payload),
                "preview": prepared.preview,
                "idempotency_key": prepared.idempotency_key,
                "content_hash": digest,
                "origins": dump_origins(origins),
            }
        decision = self._ctx.store.decide(
            record.id, decided_by=owner.label,
            decision="approved" if prepared is None else "edited",
            reason=None, content_hash=digest, now=now,
        )  # fmt: skip
        return self._ctx.store.move(
            record, ActionState.APPROVED, now, f"by {owner.label}", approval_id=decision, **columns
        )

    def _expire_in_tx(self, record: ActionRecord, now: datetime) -> OutboxEvent:
        decision = self._ctx.store.decide(
            record.id, decided_by=EXPIRY_DECIDER, decision="expired", reason=None,
            content_hash=record.content_hash, now=now,
        )  # fmt: skip
        return self._ctx.store.move(
            record, ActionState.EXPIRED, now, "past expires_at", approval_id=decision
        )

    def _expire_now(self, record: ActionRecord) -> None:
        with self._ctx.db.transaction():
            event = self._expire_in_tx(self._ctx.store.get(record.id), self._ctx.clock())
        self._ctx.publish([event])
