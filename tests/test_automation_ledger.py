"""The run ledger on a real DuckDB file: exactly-once claims, states, abandoned runs."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.agents.automations.ledger import Claim, Ledger, RunKind, RunState, TransitionError
from app.agents.automations.slots import SkipReason
from app.memory.db import Database

SLOT = datetime(2024, 3, 5, 12, tzinfo=UTC)
NOW = datetime(2024, 3, 5, 12, 0, 1, tzinfo=UTC)


def ledger_on(db: Database) -> Ledger:
    return Ledger(db, clock=lambda: NOW)


def test_claim_is_exactly_once_under_8_racing_threads(db: Database) -> None:
    slots = [SLOT + timedelta(minutes=5 * i) for i in range(20)]
    won: list[Claim] = []
    lock, start = threading.Lock(), threading.Barrier(8)

    def claimer() -> None:
        ledger = ledger_on(db.cursor())  # its own connection, its own transactions
        start.wait()
        for slot in slots:
            claim = ledger.claim("a1", slot)
            if claim is not None:
                with lock:
                    won.append(claim)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert Counter(c.scheduled_for for c in won) == Counter(slots)  # each slot won once
    assert ledger_on(db).last_slot("a1") == slots[-1]


def test_a_second_claim_of_the_same_slot_gets_nothing(db: Database) -> None:
    ledger = ledger_on(db)
    assert ledger.claim("a1", SLOT) == Claim("a1", SLOT)
    assert ledger.claim("a1", SLOT) is None
    assert ledger.claim("a2", SLOT) is not None  # another automation's slot
    assert ledger.claim("a1", SLOT, RunKind.MANUAL) is not None  # a manual run at that instant


def test_states_move_only_along_the_life_cycle(db: Database) -> None:
    ledger = ledger_on(db)
    claim = ledger.claim("a1", SLOT)
    assert claim is not None
    with pytest.raises(TransitionError):
        ledger.finish(claim, RunState.SUCCEEDED)  # never started
    assert ledger.start(claim).started_at == NOW
    done = ledger.finish(claim, RunState.FAILED, "ValueError: boom")
    assert (done.state, done.error, done.finished_at) == (RunState.FAILED, "ValueError: boom", NOW)
    with pytest.raises(TransitionError):
        ledger.start(claim)


def test_skipped_slots_are_one_row_that_moves_the_last_slot(db: Database) -> None:
    ledger = ledger_on(db)
    last = SLOT + timedelta(hours=47)
    assert ledger.record_skipped("a1", SLOT, last, 48, SkipReason.COALESCED)
    assert not ledger.record_skipped("a1", SLOT, last, 48, SkipReason.COALESCED)
    assert ledger.last_slot("a1") == last
    [row] = ledger.history("a1")
    assert (row.state, row.skipped_slots, row.first_skipped) == (RunState.SKIPPED, 48, SLOT)
    assert row.skip_reason is SkipReason.COALESCED
    assert ledger.last_run("a1") is None  # a skip is not a run


def test_manual_runs_do_not_move_the_last_slot(db: Database) -> None:
    ledger = ledger_on(db)
    ledger.claim("a1", SLOT)
    ledger.claim("a1", SLOT + timedelta(days=1), RunKind.MANUAL)
    assert ledger.last_slot("a1") == SLOT
    assert [r.kind for r in ledger.history("a1")] == [RunKind.MANUAL, RunKind.SCHEDULED]


def test_runs_left_unfinished_are_abandoned_at_restart_not_rerun(db_path: Path) -> None:
    with Database.open(db_path) as db:  # the process that dies mid-run
        ledger = ledger_on(db)
        running = ledger.claim("a1", SLOT)
        assert running is not None
        ledger.start(running)
        ledger.claim("a1", SLOT + timedelta(hours=1))  # claimed, never started
        done = ledger.claim("a1", SLOT - timedelta(hours=1))
        assert done is not None
        ledger.start(done)
        ledger.finish(done, RunState.SUCCEEDED)

    with Database.open(db_path) as db:  # the app started again
        ledger = ledger_on(db)
        abandoned = ledger.abandon_unfinished()
        assert sorted(r.scheduled_for for r in abandoned) == [SLOT, SLOT + timedelta(hours=1)]
        assert all(r.state is RunState.ABANDONED and r.finished_at == NOW for r in abandoned)
        states = {r.scheduled_for: r.state for r in ledger.history("a1")}
        assert states[SLOT - timedelta(hours=1)] is RunState.SUCCEEDED
        assert ledger.claim("a1", SLOT) is None  # the slot stays taken: never re-run
        assert ledger.abandon_unfinished() == []
        assert ledger.last_run("a1") is not None


def test_every_change_is_heard(db: Database) -> None:
    heard: list[RunState] = []
    ledger = Ledger(db, clock=lambda: NOW, listener=lambda r: heard.append(r.state))
    claim = ledger.claim("a1", SLOT)
    assert claim is not None
    ledger.start(claim)
    ledger.finish(claim, RunState.SUCCEEDED)
    assert heard == [RunState.CLAIMED, RunState.RUNNING, RunState.SUCCEEDED]
