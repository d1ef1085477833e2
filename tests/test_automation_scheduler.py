"""``AutomationScheduler`` with an injected clock and a real APScheduler ``BackgroundScheduler``.

The clock is fake, so what is due is decided by the test; the wake-ups are
real threads, so the tests poll with a deadline for runs to be recorded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.agents.automations import (
    Automation,
    AutomationScheduler,
    CronSchedule,
    MissedSlotPolicy,
    RunKind,
    RunState,
    SchedulerState,
)
from app.memory.db import Database

T0 = datetime(2024, 3, 5, 11, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
HOURLY = CronSchedule("0 * * * *")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Runs:
    """The run callback: records each (automation name, slot); fails for names in ``failing``."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, datetime]] = []
        self._failing = failing
        self._lock = threading.Lock()

    def __call__(self, automation: Automation, slot: datetime) -> None:
        with self._lock:
            self.calls.append((automation.name, slot))
        if automation.name in self._failing:
            raise RuntimeError("the target failed")

    def count(self) -> Counter[str]:
        with self._lock:
            return Counter(name for name, _ in self.calls)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the scheduler"
        time.sleep(0.01)


def settled(scheduler: AutomationScheduler, runs: Runs, expected: Counter[str]) -> None:
    """Wait for ``expected`` runs to be recorded as finished, then check nothing more is due."""

    def finished() -> bool:
        done = Counter[str]()
        for automation in scheduler.store.list():
            rows = scheduler.ledger.history(automation.id, limit=1000)
            done[automation.name] = sum(
                r.state in (RunState.SUCCEEDED, RunState.FAILED) for r in rows
            )
        return +done == +expected

    wait_until(finished)
    assert scheduler.tick() == 0  # nothing left to hand over
    assert runs.count() == expected


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def make(db: Database, clock: Clock) -> Iterator[Callable[..., AutomationScheduler]]:
    made: list[AutomationScheduler] = []

    def make_scheduler(runs: Runs, database: Database = db) -> AutomationScheduler:
        scheduler = AutomationScheduler(database, runs, clock=clock, workers=2)
        made.append(scheduler)
        return scheduler

    yield make_scheduler
    for scheduler in made:
        scheduler.shutdown(wait=True)


def test_each_slot_runs_exactly_once(
    make: Callable[..., AutomationScheduler], clock: Clock
) -> None:
    runs = Runs()
    scheduler = make(runs)
    automation = scheduler.store.add("hourly", "agent:a", HOURLY, payload={"note": "x"})
    scheduler.start()
    assert scheduler.next_run(automation.id) == T0 + HOUR / 2
    for step in range(3):
        clock.now = T0 + step * HOUR + HOUR  # 12:30, 13:30, 14:30: one new slot each
        scheduler.wake()
        scheduler.wake()  # a second wake-up finds the slot claimed or in flight
        settled(scheduler, runs, Counter(hourly=step + 1))
    assert [slot for _, slot in runs.calls] == [T0 + HOUR / 2 + i * HOUR for i in range(3)]
    assert scheduler.next_run(automation.id) == T0 + 3.5 * HOUR


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(MissedSlotPolicy.RUN_ONCE, 1), (MissedSlotPolicy.RUN_EACH, 48), (MissedSlotPolicy.SKIP, 0)],
)
def test_after_the_app_was_closed_the_policy_decides(
    db_path: Path, clock: Clock, policy: MissedSlotPolicy, expected: int
) -> None:
    runs = Runs()
    with Database.open(db_path) as db:
        scheduler = AutomationScheduler(db, runs, clock=clock)
        try:
            scheduler.store.add("job", "agent:a", HOURLY, policy=policy)
            scheduler.start()
            clock.now = T0 + HOUR / 2 + timedelta(seconds=10)  # the 12:00 slot runs, on time
            scheduler.wake()
            settled(scheduler, runs, Counter(job=1))
        finally:
            scheduler.shutdown(wait=True)

    clock.now = T0 + 49 * HOUR  # two days later: 48 hourly slots were missed
    with Database.open(db_path) as db:
        scheduler = AutomationScheduler(db, runs, clock=clock)
        try:
            scheduler.start()
            settled(scheduler, runs, Counter(job=1 + expected))
            history = scheduler.ledger.history(scheduler.store.list()[0].id, limit=200)
        finally:
            scheduler.shutdown(wait=True)
    assert sum(r.skipped_slots for r in history) == 48 - expected
    assert max(slot for _, slot in runs.calls) == (T0 + 48.5 * HOUR if expected else T0 + HOUR / 2)


def test_pause_stops_new_runs_and_resume_applies_the_policy(
    make: Callable[..., AutomationScheduler], clock: Clock
) -> None:
    runs = Runs()
    scheduler = make(runs)
    scheduler.store.add("each", "agent:a", HOURLY, policy=MissedSlotPolicy.RUN_EACH)
    scheduler.store.add("once", "agent:b", HOURLY, policy=MissedSlotPolicy.RUN_ONCE)
    scheduler.start()
    scheduler.pause()
    assert scheduler.state is SchedulerState.PAUSED
    clock.now = T0 + 3 * HOUR  # 12:00, 13:00 and 14:00 pass while paused
    scheduler.wake()
    assert scheduler.tick() == 0 and runs.count() == Counter()
    scheduler.resume()
    settled(scheduler, runs, Counter(each=3, once=1))


def test_a_failing_run_is_recorded_and_the_others_go_on(
    make: Callable[..., AutomationScheduler], clock: Clock
) -> None:
    runs = Runs(failing=("broken",))
    scheduler = make(runs)
    broken = scheduler.store.add("broken", "agent:a", HOURLY, policy=MissedSlotPolicy.RUN_EACH)
    scheduler.store.add("fine", "agent:b", HOURLY, policy=MissedSlotPolicy.RUN_EACH)
    scheduler.start()
    clock.now = T0 + 2 * HOUR
    scheduler.wake()
    settled(scheduler, runs, Counter(broken=2, fine=2))
    rows = scheduler.ledger.history(broken.id)
    assert [r.state for r in rows] == [RunState.FAILED, RunState.FAILED]
    assert rows[0].error == "RuntimeError: the target failed"
    assert scheduler.ledger.last_run(broken.id) is not None


def test_a_manual_run_is_a_manual_ledger_row(
    make: Callable[..., AutomationScheduler], clock: Clock
) -> None:
    runs = Runs()
    scheduler = make(runs)
    automation = scheduler.store.add("job", "agent:a", HOURLY)
    scheduler.start()
    record = scheduler.run_now(automation.id).result(timeout=30)
    assert record is not None and record.kind is RunKind.MANUAL
    assert record.state is RunState.SUCCEEDED and record.scheduled_for == T0
    assert scheduler.ledger.last_slot(automation.id) is None  # the schedule is untouched


def test_a_disabled_automation_does_not_run(
    make: Callable[..., AutomationScheduler], clock: Clock
) -> None:
    runs = Runs()
    scheduler = make(runs)
    automation = scheduler.store.add("job", "agent:a", HOURLY)
    scheduler.store.set_enabled(automation.id, False)
    scheduler.start()
    clock.now = T0 + 2 * HOUR
    assert scheduler.tick() == 0 and scheduler.next_run(automation.id) is None
    scheduler.store.set_enabled(automation.id, True)  # slots from before are not owed
    assert scheduler.tick() == 0
    assert scheduler.next_run(automation.id) == T0 + 2.5 * HOUR
