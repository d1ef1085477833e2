"""The transactional outbox: every side effect of an agent, approved, run exactly once.

An agent's tool call with a side effect arrives here as a connector's
:class:`~app.integrations.base.PreparedAction` (the exact payload, a preview
and an idempotency key) with the origin of each value
(:mod:`app.agents.taint`). What happens next depends on the owner's autonomy
level for that agent and tool (:mod:`app.agents.approvals` for the policy):
a suggestion is shown and never run; a proposal waits for the owner; with
autonomy 2 or 3 the level approves it at once (2 also notifies after).

Exactly-once protocol, and what a crash (power loss, SIGKILL) at each point
leaves behind. Each arrow is one DuckDB transaction, committed before the
next step; ``checkpoint(name)`` marks the crash points the fault tests kill
the process at (``tests/test_outbox_faults.py``).

1. ``propose``: the action row (payload, content hash = SHA-256 of action,
   account, payload and idempotency key) and, with autonomy 2/3, its
   approval row and state APPROVED, in one transaction.
   -> ``after_propose``. Crash before: nothing exists. After: the row is
   PROPOSED (waits for the owner) or APPROVED (runs after restart).
2. ``approve``: the owner's decision row (with the hash decided on) and
   state APPROVED (an edit also stores the re-prepared payload and hash), in
   one transaction. -> ``after_approve``. Crash before: still PROPOSED.
3. claim: one transaction re-reads the row, checks that the stored hash,
   the hash re-computed from the stored payload now, and the approval's hash
   agree (else FAILED "payload changed after approval", never executed),
   sets EXECUTING and attempts + 1. -> ``before_call``. A crash from here
   on leaves EXECUTING.
4. ``action.execute(prepared)`` with the same idempotency key on every
   attempt. -> ``after_call``. A crash here: the effect happened, the row
   still says EXECUTING.
5. commit DONE with the outcome. -> ``after_done``. A crash after: DONE.

``recover()`` runs at start-up before anything else executes: for every
EXECUTING row it asks the connector's ``reconcile``: an outcome -> DONE
("found after a restart"); None (the effect is not on the external system,
so it never got there) -> APPROVED and run again with the same key; an
exception (cannot tell) -> IN_DOUBT and an ``action.in_doubt`` event: the
owner decides (``settle_in_doubt``). Nothing is blindly repeated.

Errors during the call: transient ones (unreachable, rate limited, server
error) go back to APPROVED with a retry time from ``backoff`` and the same
idempotency key; when the error came in the middle of the exchange
(connection lost, server error) the effect may be there, so ``reconcile``
runs first. Permanent errors -> FAILED. A crash of the connector's own code
(not a ``ConnectorError``) is reconciled too, and never retried.

The executor only ever acts on APPROVED rows whose approval record allows
execution and whose hashes match. Events go out after each commit; logs
carry ids, states and timings, never the payload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from app.agents.approvals import (
    OwnerDesk,
    autonomy_decider,
    effective_level,
    initial_state,
)
from app.agents.autonomy import Autonomy, AutonomyStore, Owner
from app.agents.outbox_exec import MAX_ATTEMPTS, Backoff, Executor, Resolver, default_backoff
from app.agents.outbox_states import (
    ActionRecord,
    ActionState,
    ApprovalRecord,
    OutboxEvent,
    event_for,
    hash_of,
)
from app.agents.outbox_store import OutboxContext, OutboxStore
from app.agents.taint import FieldOrigin
from app.integrations.base import JsonObject, PreparedAction
from app.memory.db import Database, utc_now

__all__ = [
    "DEFAULT_EXPIRY",
    "ActionRecord",
    "ActionState",
    "ApprovalRecord",
    "Outbox",
    "OutboxEvent",
    "Resolver",
]

log = logging.getLogger("soloist.agents.outbox")

DEFAULT_EXPIRY = timedelta(days=7)  # a proposal nobody looked at for a week is stale


class Outbox:
    """The actions of every agent: propose, decide, execute, recover.

    ``resolve(account_id, action)`` finds the connector's action of a record;
    the account is part of the key because two email accounts both have an
    ``email.send``.
    """

    def __init__(
        self,
        db: Database,
        resolve: Resolver,
        autonomy: AutonomyStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        emit: Callable[[OutboxEvent], None] = lambda event: None,
        checkpoint: Callable[[str], None] = lambda point: None,
        backoff: Backoff = default_backoff,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._autonomy = autonomy
        self._ctx = OutboxContext(OutboxStore(db), clock, emit, checkpoint)
        self._desk = OwnerDesk(self._ctx, resolve)
        self._executor = Executor(self._ctx, resolve, backoff, max_attempts)

    # -- proposing ---------------------------------------------------------------
    def propose(  # noqa: PLR0917  (the interface other helpers call, positionally)
        self,
        agent_id: str,
        run_id: str,
        prepared: PreparedAction,
        origins: Sequence[FieldOrigin],
        untrusted_labels: Sequence[str],
        default_level: Autonomy,
        expires_in: timedelta | None = DEFAULT_EXPIRY,
    ) -> ActionRecord:
        """Add an action as the owner's autonomy level says (see the module docstring)."""
        chosen = self._autonomy.level(agent_id, prepared.action, default_level)
        level = effective_level(chosen, prepared.risk, origins)
        state = initial_state(level)
        now = self._ctx.clock()
        digest = hash_of(prepared)
        with self._ctx.db.transaction():
            action_id = self._ctx.store.insert(
                agent_id=agent_id, run_id=run_id, prepared=prepared, content_hash=digest,
                state=ActionState.PROPOSED if state is ActionState.APPROVED else state,
                autonomy=level, origins=origins, untrusted_labels=untrusted_labels, now=now,
                expires_at=None if expires_in is None else now + expires_in,
            )  # fmt: skip
            if state is ActionState.APPROVED:
                self._auto_approve(action_id, level, digest, now)
        record = self._ctx.store.get(action_id)
        if level != chosen:
            log.info("action %s: HIGH risk with untrusted values; asking the owner", action_id)
        self._ctx.publish([event_for(record, record.state, None)])
        self._ctx.checkpoint("after_propose")
        if state is ActionState.APPROVED:
            self._ctx.checkpoint("after_approve")
        return record

    def _auto_approve(self, action_id: str, level: Autonomy, digest: str, now: datetime) -> None:
        """Inside propose's transaction: the level's decision, PROPOSED -> APPROVED."""
        decision = self._ctx.store.decide(
            action_id, decided_by=autonomy_decider(level), decision="approved", reason=None,
            content_hash=digest, now=now,
        )  # fmt: skip
        proposed = self._ctx.store.get(action_id)
        self._ctx.store.move(
            proposed, ActionState.APPROVED, now, autonomy_decider(level), approval_id=decision
        )

    # -- the owner's decisions -------------------------------------------------------
    def approve(
        self,
        action_id: str,
        owner: Owner,
        edited_args: JsonObject | None = None,
        *,
        expected_hash: str | None = None,
    ) -> ActionRecord:
        """Approve (``edited_args``: prepared again, recorded as "edited").

        ``expected_hash`` is the content hash the owner was shown; when the
        action changed since, ``StaleApprovalError``.
        """
        return self._desk.approve(action_id, owner, edited_args, expected_hash)

    def reject(self, action_id: str, owner: Owner, reason: str) -> ActionRecord:
        """Reject; ``reason`` is kept on the decision for the agent to read."""
        return self._desk.reject(action_id, owner, reason)

    def settle_in_doubt(self, action_id: str, owner: Owner, *, happened: bool) -> ActionRecord:
        """The owner says whether an IN_DOUBT action happened (DONE) or not (FAILED)."""
        return self._desk.settle_in_doubt(action_id, owner, happened=happened)

    def expire_due(self) -> list[ActionRecord]:
        """Expire suggestions and proposals past their time; the expired records."""
        return self._desk.expire_due()

    # -- running -------------------------------------------------------------------
    def execute_approved(self, limit: int | None = None) -> list[ActionRecord]:
        """Run due approved actions, oldest first; their records afterwards."""
        return self._executor.run_due(limit)

    def recover(self) -> list[ActionRecord]:
        """At start-up, before anything runs: settle every action a crash left EXECUTING."""
        return self._executor.recover()

    def recheck_in_doubt(self) -> list[ActionRecord]:
        """Ask the external systems again about IN_DOUBT actions (after a network outage)."""
        return self._executor.recheck_in_doubt()

    # -- reading -------------------------------------------------------------------
    def get(self, action_id: str) -> ActionRecord:
        return self._ctx.store.get(action_id)

    def pending(self) -> list[ActionRecord]:
        """What waits for the owner: proposals, and actions whose outcome is in doubt."""
        return self._ctx.store.select(
            "a.state IN (?, ?)", (int(ActionState.PROPOSED), int(ActionState.IN_DOUBT))
        )

    def transitions(self, action_id: str) -> list[tuple[ActionState | None, ActionState, str]]:
        """The audit trail of one action: (from, to, note), in order."""
        return self._ctx.store.transitions(action_id)

    def list(
        self, state: ActionState | None = None, agent_id: str | None = None
    ) -> list[ActionRecord]:
        """Actions, oldest first, of one state and/or one agent."""
        conditions: list[str] = ["TRUE"]
        params: list[object] = []
        if state is not None:
            conditions.append("a.state = ?")
            params.append(int(state))
        if agent_id is not None:
            conditions.append("a.agent_id = ?")
            params.append(agent_id)
        return self._ctx.store.select(" AND ".join(conditions), params)
