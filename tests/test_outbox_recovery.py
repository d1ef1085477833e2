"""Restart after a crash mid-execution: actions left EXECUTING are reconciled, never repeated.

A checkpoint that raises a ``BaseException`` stands in for the crash (the
claim is committed, the rest never runs); the database is then closed and
reopened as a fresh start would, and a new ``Outbox`` runs ``recover()``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from outbox_child import RecordingSystem
from test_outbox import OWNER, Clock

from app.agents.autonomy import Autonomy, AutonomyStore
from app.agents.outbox import Outbox, OutboxEvent
from app.agents.outbox_states import ActionState
from app.integrations.base import Action
from app.integrations.errors import ConnectorUnreachableError
from app.memory.db import Database

S = ActionState


class Crash(BaseException):
    """The process dies here."""


def crash_at(point: str) -> object:
    def checkpoint(name: str) -> None:
        if name == point:
            raise Crash(name)

    return checkpoint


def outbox_for(
    db: Database, system: RecordingSystem, events: list[OutboxEvent], **kw: object
) -> Outbox:
    actions = {"crm.add_note": system.action()}

    def resolve(account_id: str, name: str) -> Action:
        return actions[name]

    return Outbox(db, resolve, AutonomyStore(db), clock=Clock(), emit=events.append, **kw)  # type: ignore[arg-type]


def leave_executing(db_path: Path, system: RecordingSystem, point: str) -> str:
    """Propose, approve and crash at ``point``; the database is closed afterwards."""
    db = Database.open(db_path)
    try:
        outbox = outbox_for(db, system, [], checkpoint=crash_at(point))
        record = outbox.propose(
            "agent-1", "run-1", system.action().prepare({"text": "x"}), (), (), Autonomy.ASK
        )
        outbox.approve(record.id, OWNER)
        with pytest.raises(Crash):
            outbox.execute_approved()
        assert outbox.get(record.id).state is S.EXECUTING
        return record.id
    finally:
        db.close()


def restart(db_path: Path, system: RecordingSystem) -> tuple[Database, Outbox, list[OutboxEvent]]:
    db = Database.open(db_path)
    events: list[OutboxEvent] = []
    return db, outbox_for(db, system, events), events


def test_an_effect_that_happened_is_found_and_not_repeated(db_path: Path) -> None:
    system = RecordingSystem()
    action_id = leave_executing(db_path, system, "after_call")
    db, outbox, events = restart(db_path, system)
    with db:
        [recovered] = outbox.recover()
        assert recovered.id == action_id and recovered.state is S.DONE
        assert recovered.outcome_summary == "note is there (found after a restart)"
        assert outbox.execute_approved() == []
        assert system.calls == 1 and list(system.deliveries.values()) == [1]
        assert [e.kind for e in events] == ["action.done"]


def test_an_effect_that_never_happened_runs_once_after_restart(db_path: Path) -> None:
    system = RecordingSystem()
    action_id = leave_executing(db_path, system, "before_call")
    assert system.calls == 0
    db, outbox, _ = restart(db_path, system)
    with db:
        [recovered] = outbox.recover()
        assert recovered.state is S.APPROVED
        [done] = outbox.execute_approved()
        assert done.id == action_id and done.state is S.DONE and done.attempts == 2
        assert system.calls == 1 and list(system.deliveries.values()) == [1]


def test_when_nobody_can_tell_the_owner_is_shown(db_path: Path) -> None:
    system = RecordingSystem()
    action_id = leave_executing(db_path, system, "after_call")
    system.reconcile_errors.append(ConnectorUnreachableError("server down"))
    db, outbox, events = restart(db_path, system)
    with db:
        [recovered] = outbox.recover()
        assert recovered.state is S.IN_DOUBT
        assert recovered.error is not None and "cannot tell" in recovered.error
        assert [e.kind for e in events] == ["action.in_doubt"]
        assert [r.id for r in outbox.pending()] == [action_id]
        assert outbox.execute_approved() == [] and system.calls == 1
        [later] = outbox.recheck_in_doubt()  # the server is back and has it
        assert later.state is S.DONE and system.calls == 1


def test_the_owner_settles_what_stays_in_doubt(db_path: Path) -> None:
    system = RecordingSystem()
    leave_executing(db_path, system, "before_call")
    system.reconcile_errors.extend([ConnectorUnreachableError("down")] * 2)
    db, outbox, _ = restart(db_path, system)
    with db:
        [doubt] = outbox.recover()
        [still] = outbox.recheck_in_doubt()
        assert still.state is S.IN_DOUBT
        settled = outbox.settle_in_doubt(doubt.id, OWNER, happened=False)
        assert settled.state is S.FAILED and system.calls == 0


def test_an_unknown_connector_at_restart_is_in_doubt(db_path: Path) -> None:
    system = RecordingSystem()
    leave_executing(db_path, system, "after_call")
    db = Database.open(db_path)
    with db:

        def resolve(account_id: str, name: str) -> Action:
            raise KeyError(name)

        outbox = Outbox(db, resolve, AutonomyStore(db))
        [recovered] = outbox.recover()
        assert recovered.state is S.IN_DOUBT


def test_recover_leaves_other_states_alone(db_path: Path) -> None:
    system = RecordingSystem()
    db, outbox, _ = restart(db_path, system)
    with db:
        waiting = outbox.propose(
            "a", "r", system.action().prepare({"text": "y"}), (), (), Autonomy.ASK
        )
        assert outbox.recover() == []
        assert outbox.get(waiting.id).state is S.PROPOSED
