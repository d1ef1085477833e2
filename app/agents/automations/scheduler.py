"""The automation scheduler: wakes up, asks what is due, claims it, runs it, records it.

APScheduler 3.x's ``BackgroundScheduler`` is used only as an alarm clock:
one job, ``coalesce=True`` and ``misfire_grace_time=None``, so it never
decides anything about missed runs; all it does is set an event that the
scheduler's own tick thread waits on (a wake-up that arrives during a tick
is kept, not dropped as an overlapping job instance). Each tick reads every enabled
automation's last slot from the ledger, asks ``slots.plan_slots`` what is
due by the injected clock, records the skipped slots, and hands the slots
to run to a small bounded worker pool. A worker claims each slot in the
ledger just before running it (``run_slot``), so a slot runs once even if
two ticks saw it. After a tick the alarm is set for the soonest next slot,
at most ``max_sleep`` away, so a wall clock that jumps (a laptop waking up)
is noticed soon. Pausing stops new runs; slots that pass while paused are
treated like downtime by each automation's policy on resume.

It is plain threads: it keeps running with no window.

Targets (``agent:<id>``) are run by the ``run`` callable handed in; the
``register_target`` decorator is a registry for callers (the CLI) that need
to find a runner by the target's prefix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import (
    BackgroundScheduler,
)
from apscheduler.triggers.interval import IntervalTrigger

from app.agents.automations.ledger import Ledger, Listener, RunKind, RunRecord, RunState
from app.agents.automations.models import Automation, AutomationError
from app.agents.automations.slots import next_slot, plan_slots
from app.agents.automations.store import AutomationStore
from app.memory.db import Database, utc_now

__all__ = [
    "TARGET_RUNNERS",
    "AutomationScheduler",
    "RunFn",
    "SchedulerState",
    "next_run",
    "register_target",
    "run_slot",
    "runner_for",
]

log = logging.getLogger("soloist.automations")

RunFn = Callable[[Automation, datetime], object]
TARGET_RUNNERS: dict[str, RunFn] = {}
"""Runners by target prefix (``agent`` for ``agent:<id>``), filled by ``register_target``."""

_TICK_JOB = "soloist-automations-tick"
_WAKE_MARGIN = timedelta(milliseconds=20)  # wake just after the slot, not just before


def register_target(prefix: str) -> Callable[[RunFn], RunFn]:
    """Decorator: ``fn`` runs automations whose target is ``<prefix>:...``."""

    def register(fn: RunFn) -> RunFn:
        TARGET_RUNNERS[prefix] = fn
        return fn

    return register


def runner_for(target: str) -> RunFn | None:
    """The registered runner for ``target``'s prefix, or None."""
    return TARGET_RUNNERS.get(target.partition(":")[0])


class SchedulerState(StrEnum):
    NEW = "new"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


_TRANSITIONS: dict[SchedulerState, frozenset[SchedulerState]] = {
    SchedulerState.NEW: frozenset({SchedulerState.RUNNING, SchedulerState.STOPPED}),
    SchedulerState.RUNNING: frozenset({SchedulerState.PAUSED, SchedulerState.STOPPED}),
    SchedulerState.PAUSED: frozenset({SchedulerState.RUNNING, SchedulerState.STOPPED}),
    SchedulerState.STOPPED: frozenset(),
}


def next_run(automation: Automation, last_slot: datetime | None, now: datetime) -> datetime | None:
    """The first slot after now that this automation will run (None: disabled or ended)."""
    if not automation.enabled:
        return None
    after = max(now, automation.active_since, last_slot or automation.active_since)
    return next_slot(automation.schedule, after)


def run_slot(
    ledger: Ledger, run: RunFn, automation: Automation, slot: datetime, kind: RunKind
) -> RunRecord | None:
    """Claim one slot, run it and record the outcome; None when it was already claimed."""
    claim = ledger.claim(automation.id, slot, kind)
    if claim is None:
        return None
    ledger.start(claim)
    started = time.monotonic()
    try:
        run(automation, slot)
    except Exception as exc:  # the run's failure is recorded; the scheduler goes on
        log.warning(
            "automation %s %s run for %s failed after %.2f s (%s)",
            automation.id, kind.value, slot.isoformat(), time.monotonic() - started,
            type(exc).__name__,
        )  # fmt: skip
        return ledger.finish(claim, RunState.FAILED, f"{type(exc).__name__}: {exc}")
    log.info(
        "automation %s %s run for %s succeeded in %.2f s",
        automation.id, kind.value, slot.isoformat(), time.monotonic() - started,
    )  # fmt: skip
    return ledger.finish(claim, RunState.SUCCEEDED)


class AutomationScheduler:
    """Runs due automation slots exactly once each; see the module docstring."""

    def __init__(
        self,
        db: Database,
        run: RunFn,
        *,
        clock: Callable[[], datetime] = utc_now,
        workers: int = 2,
        max_sleep: timedelta = timedelta(seconds=30),
        listener: Listener | None = None,
    ) -> None:
        self.store = AutomationStore(db, clock=clock)
        self.ledger = Ledger(db, clock=clock, listener=listener)
        self._run = run
        self._clock = clock
        self._max_sleep = max_sleep
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="soloist-automation")
        self._alarm = BackgroundScheduler(timezone=UTC)
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick_loop, name="soloist-automation-tick", daemon=True
        )
        self._busy: set[str] = set()
        self._state = SchedulerState.NEW

    @property
    def state(self) -> SchedulerState:
        return self._state

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> list[RunRecord]:
        """Mark runs a dead process left unfinished abandoned, then start ticking.

        Returns the abandoned runs, for the caller to show.
        """
        self._move(SchedulerState.RUNNING)
        abandoned = self.ledger.abandon_unfinished()
        self._alarm.add_job(
            self._wakeup.set,
            IntervalTrigger(seconds=self._max_sleep.total_seconds()),
            id=_TICK_JOB,
            next_run_time=datetime.now(UTC),
            misfire_grace_time=None,
            coalesce=True,
            max_instances=1,
        )
        self._alarm.start()
        self._ticker.start()
        log.info("automation scheduler started (%d abandoned runs found)", len(abandoned))
        return abandoned

    def pause(self) -> None:
        """Start no new runs (those under way finish) until ``resume``."""
        self._move(SchedulerState.PAUSED)

    def resume(self) -> None:
        """Run again; what passed while paused is handled by each automation's policy."""
        self._move(SchedulerState.RUNNING)
        self.wake()

    def shutdown(self, wait: bool = True) -> None:
        """Stop; with ``wait``, return when the runs under way have finished."""
        if self._state is SchedulerState.STOPPED:
            return
        started = self._state is not SchedulerState.NEW
        self._move(SchedulerState.STOPPED)
        if started:
            self._alarm.shutdown(wait=wait)
            self._wakeup.set()
            if wait:
                self._ticker.join()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        log.info("automation scheduler stopped")

    def _move(self, state: SchedulerState) -> None:
        with self._lock:
            if state not in _TRANSITIONS[self._state]:
                raise AutomationError(f"the scheduler cannot go from {self._state} to {state}")
            log.info("automation scheduler %s -> %s", self._state.value, state.value)
            self._state = state

    # -- asking and telling --------------------------------------------------------
    def wake(self) -> None:
        """Tick now (after a change of automations, or of the clock in tests)."""
        self._wakeup.set()

    def next_run(self, automation_id: str) -> datetime | None:
        automation = self.store.get(automation_id)
        return next_run(automation, self.ledger.last_slot(automation_id), self._clock())

    def run_now(self, automation_id: str) -> Future[RunRecord | None]:
        """A manual run, outside the schedule: a ledger row of kind ``manual``."""
        automation = self.store.get(automation_id)
        return self._pool.submit(
            run_slot, self.ledger, self._run, automation, self._clock(), RunKind.MANUAL
        )

    # -- ticking -------------------------------------------------------------------
    def _tick_loop(self) -> None:
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            if self._state is SchedulerState.STOPPED:
                return
            try:
                self.tick()
            except Exception:  # the ticks must go on; the error is logged with its trace
                log.exception("automation tick failed")

    def tick(self) -> int:
        """Plan and hand over every due slot now; returns how many slots were handed over."""
        with self._tick_lock:
            if self._state is not SchedulerState.RUNNING:
                return 0
            now = self._clock()
            automations = self.store.list(enabled_only=True)
            handed = sum(self._plan(automation, now) for automation in automations)
            self._set_alarm(self._sleep_until_next(automations, now))
            return handed

    def _plan(self, automation: Automation, now: datetime) -> int:
        with self._lock:
            if automation.id in self._busy:
                return 0
        last = self.ledger.last_slot(automation.id)
        since = max(last or automation.active_since, automation.active_since)
        plan = plan_slots(
            automation.schedule, since, now, automation.policy, automation.max_lateness
        )
        if plan.reason and plan.first_skipped and plan.last_skipped:
            self.ledger.record_skipped(
                automation.id, plan.first_skipped, plan.last_skipped, plan.skipped, plan.reason
            )
            log.info(
                "automation %s: %d slots skipped (%s%s)", automation.id, plan.skipped,
                plan.reason.value, ", run_each cap reached" if plan.capped else "",
            )  # fmt: skip
        if plan.run:
            with self._lock:
                self._busy.add(automation.id)
            self._pool.submit(self._run_batch, automation, plan.run)
        return len(plan.run)

    def _run_batch(self, automation: Automation, slots: Iterable[datetime]) -> None:
        try:
            for slot in slots:
                if self._state is not SchedulerState.RUNNING:
                    break  # paused or stopping: the rest are planned again on resume
                run_slot(self.ledger, self._run, automation, slot, RunKind.SCHEDULED)
        except Exception:  # the ledger itself failed; logged with its trace, others go on
            log.exception("automation %s: recording a run failed", automation.id)
        finally:
            with self._lock:
                self._busy.discard(automation.id)
        self.wake()

    def _sleep_until_next(self, automations: list[Automation], now: datetime) -> timedelta:
        upcoming = [next_slot(a.schedule, now) for a in automations]
        soonest = min((slot for slot in upcoming if slot is not None), default=None)
        if soonest is None:
            return self._max_sleep
        return min(max(soonest - now, timedelta(0)) + _WAKE_MARGIN, self._max_sleep)

    def _set_alarm(self, delay: timedelta) -> None:
        if self._state is not SchedulerState.RUNNING:
            return
        try:
            self._alarm.modify_job(_TICK_JOB, next_run_time=datetime.now(UTC) + delay)
        except (JobLookupError, SchedulerNotRunningError):
            log.debug("automation alarm not set: the scheduler is stopping")
