"""Running approved actions once, and finding out after a crash what happened.

See :mod:`app.agents.outbox` for the protocol and its crash points. This
module is the mechanism: claim (APPROVED -> EXECUTING, committed before the
call), call, commit the outcome; on errors, retry, reconcile or give up; at
start-up, reconcile every action left EXECUTING.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from app.agents.autonomy import Autonomy
from app.agents.outbox_states import (
    NOTIFY_EVENT,
    ActionRecord,
    ActionState,
    OutboxEvent,
    event_for,
    hash_of,
)
from app.agents.outbox_store import OutboxContext, dump_json
from app.integrations.base import Action, ActionOutcome
from app.integrations.errors import (
    ConnectionLostError,
    ConnectorError,
    ConnectorUnreachableError,
    RateLimitedError,
    RemoteServerError,
)
from app.memory.db import to_db_time

log = logging.getLogger("soloist.agents.outbox")

TRANSIENT = (ConnectorUnreachableError, RateLimitedError, RemoteServerError)
# Raised in the middle of the exchange: the effect may be on the server already.
MAY_HAVE_HAPPENED = (ConnectionLostError, RemoteServerError)
MAX_ATTEMPTS = 5

Backoff = Callable[[int], timedelta]
# The connector's action for (account id, action name): two email accounts both
# have an ``email.send``, so the name alone is ambiguous.
Resolver = Callable[[str, str], Action]
# What reconcile said: an outcome (it happened), None (it did not), or why it cannot tell.
Verdict = ActionOutcome | None | Exception


def default_backoff(attempt: int) -> timedelta:
    """30 s after the first failed attempt, doubling, at most an hour."""
    delay: timedelta = timedelta(seconds=30) * 2 ** min(max(attempt - 1, 0), 10)
    return min(delay, timedelta(hours=1))


def error_line(exc: BaseException) -> str:
    """One line for the record: connector errors are readable and hold no secrets."""
    if isinstance(exc, ConnectorError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (a bug in the connector; see the log)"


class Executor:
    """Claims and runs approved actions; reconciles the ones a crash interrupted."""

    def __init__(
        self,
        ctx: OutboxContext,
        resolve: Resolver,
        backoff: Backoff = default_backoff,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._ctx = ctx
        self._resolve = resolve
        self._backoff = backoff
        self._max_attempts = max_attempts

    # -- executing ---------------------------------------------------------------
    def run_due(self, limit: int | None = None) -> list[ActionRecord]:
        """Run every approved action that is due (oldest first); their records after."""
        due = self._ctx.store.select(
            "a.state = ? AND (a.next_attempt_at IS NULL OR a.next_attempt_at <= ?)",
            (int(ActionState.APPROVED), to_db_time(self._ctx.clock())),
        )
        return [self.run_one(record.id) for record in due[:limit]]

    def run_one(self, action_id: str) -> ActionRecord:
        action = self._action_or_fail(action_id)
        claimed = None if action is None else self._claim(action_id)
        if action is None or claimed is None:
            return self._ctx.store.get(action_id)
        self._ctx.checkpoint("before_call")
        started = time.perf_counter()
        try:
            outcome = action.execute(claimed.prepared())
        except Exception as exc:  # every failure is recorded on the action
            log.info(
                "action %s call failed after %.0f ms: %s",
                action_id,
                _ms(started),
                type(exc).__name__,
            )
            self._after_error(claimed, action, exc)
            return self._ctx.store.get(action_id)
        self._ctx.checkpoint("after_call")
        log.info("action %s call returned in %.0f ms", action_id, _ms(started))
        self._finish(claimed, outcome, "")
        self._ctx.checkpoint("after_done")
        return self._ctx.store.get(action_id)

    def _action_or_fail(self, action_id: str) -> Action | None:
        """The connector's action, or None after failing the record (account removed)."""
        record = self._ctx.store.get(action_id)
        try:
            return self._resolve(record.account_id, record.action)
        except Exception as exc:  # a missing connector fails only this action
            if record.state is ActionState.APPROVED:
                self._move(
                    record,
                    ActionState.FAILED,
                    "no connector",
                    error=f"{record.action} of account {record.account_id} is not available "
                    f"({type(exc).__name__})",
                )
            return None

    def _claim(self, action_id: str) -> ActionRecord | None:
        """APPROVED -> EXECUTING with attempts + 1, if what was approved is what would run."""
        events: list[OutboxEvent] = []
        now = self._ctx.clock()
        with self._ctx.db.transaction():
            record = self._ctx.store.get(action_id)
            if record.state is not ActionState.APPROVED:
                return None
            problem = _approval_problem(record)
            if problem is not None:
                events.append(
                    self._ctx.store.move(record, ActionState.FAILED, now, problem, error=problem)
                )
            else:
                events.append(
                    self._ctx.store.move(
                        record,
                        ActionState.EXECUTING,
                        now,
                        f"attempt {record.attempts + 1}",
                        attempts=record.attempts + 1,
                    )
                )
        self._ctx.publish(events)
        if problem is not None:
            log.warning("action %s not executed: %s", action_id, problem)
            return None
        return self._ctx.store.get(action_id)

    def _finish(self, record: ActionRecord, outcome: ActionOutcome, how: str) -> None:
        if not outcome.done:
            self._move(record, ActionState.FAILED, "not done", error=outcome.summary)
            return
        self._move(
            record,
            ActionState.DONE,
            how or "executed",
            outcome_summary=outcome.summary + (f" ({how})" if how else ""),
            external_id=outcome.external_id,
            outcome_data=dump_json(outcome.data),
            error=None,
        )
        if record.autonomy is Autonomy.NOTIFY:
            done = self._ctx.store.get(record.id)
            self._ctx.publish([event_for(done, ActionState.DONE, ActionState.DONE, NOTIFY_EVENT)])

    def _after_error(self, record: ActionRecord, action: Action, exc: Exception) -> None:
        if isinstance(exc, MAY_HAVE_HAPPENED) or not isinstance(exc, ConnectorError):
            verdict = _reconcile(action, record)
            if isinstance(verdict, ActionOutcome | Exception):
                self._settle(record, verdict, "found after the call failed")
                return
        if not isinstance(exc, TRANSIENT):
            self._move(record, ActionState.FAILED, "permanent error", error=error_line(exc))
        elif record.attempts >= self._max_attempts:
            self._move(
                record,
                ActionState.FAILED,
                "gave up",
                error=f"gave up after {record.attempts} tries: {error_line(exc)}",
            )
        else:
            self._retry_later(record, exc)

    def _retry_later(self, record: ActionRecord, exc: Exception) -> None:
        delay = self._backoff(record.attempts)
        if isinstance(exc, RateLimitedError) and exc.retry_after_s is not None:
            delay = max(delay, timedelta(seconds=exc.retry_after_s))
        retry_at = self._ctx.clock() + delay
        self._move(
            record,
            ActionState.APPROVED,
            f"retry in {delay.total_seconds():.0f} s",
            error=error_line(exc),
            next_attempt_at=to_db_time(retry_at),
        )

    # -- reconciling ------------------------------------------------------------
    def recover(self) -> list[ActionRecord]:
        """Settle every action a crash left EXECUTING: DONE, APPROVED (safe) or IN_DOUBT."""
        stuck = self._ctx.store.select("a.state = ?", (int(ActionState.EXECUTING),))
        for record in stuck:
            self._settle(record, self._verdict(record), "found after a restart")
        if stuck:
            log.info("recovered %d interrupted action(s)", len(stuck))
        return [self._ctx.store.get(record.id) for record in stuck]

    def recheck_in_doubt(self) -> list[ActionRecord]:
        """Ask the external systems again about IN_DOUBT actions; unknown ones stay."""
        doubtful = self._ctx.store.select("a.state = ?", (int(ActionState.IN_DOUBT),))
        for record in doubtful:
            verdict = self._verdict(record)
            if not isinstance(verdict, Exception):
                self._settle(record, verdict, "found on a later check")
        return [self._ctx.store.get(record.id) for record in doubtful]

    def _verdict(self, record: ActionRecord) -> Verdict:
        try:
            action = self._resolve(record.account_id, record.action)
        except Exception as exc:  # no connector: nobody can tell
            return exc
        return _reconcile(action, record)

    def _settle(self, record: ActionRecord, verdict: Verdict, how: str) -> None:
        if isinstance(verdict, Exception):
            self._move(
                record,
                ActionState.IN_DOUBT,
                "cannot tell",
                error=f"cannot tell whether it happened: {error_line(verdict)}",
            )
        elif verdict is None:
            self._move(
                record, ActionState.APPROVED, "not on the external system", next_attempt_at=None
            )
        else:
            self._finish(record, verdict, how)

    def _move(self, record: ActionRecord, new: ActionState, note: str, **columns: object) -> None:
        event = self._ctx.store.move(record, new, self._ctx.clock(), note, **columns)
        self._ctx.publish([event])


def _reconcile(action: Action, record: ActionRecord) -> Verdict:
    """Ask the external system; an outcome that is not ``done`` counts as cannot tell."""
    try:
        outcome = action.reconcile(record.prepared())
    except Exception as exc:  # cannot tell: the owner will be asked
        log.info("action %s reconcile failed: %s", record.id, type(exc).__name__)
        return exc
    if outcome is not None and not outcome.done:
        return ValueError("reconcile returned an outcome that is not done")
    return outcome


def _approval_problem(record: ActionRecord) -> str | None:
    """Why ``record`` must not run, or None: the approved hash, stored and re-computed, agree."""
    approval = record.approval
    if approval is None or not approval.allows_execution:
        return "no approval on record; not executed"
    if (
        approval.content_hash != record.content_hash
        or hash_of(record.prepared()) != approval.content_hash
    ):
        return "payload changed after approval; not executed"
    return None


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
