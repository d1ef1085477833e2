"""The agent runtime wired on a real DuckDB file, real ``Connections`` (the local CRM, no
network) and a scripted engine: start-up order and recovery, a scheduled run through the
scheduler, approvals executed once (live and through the CLI), secrets kept out of the
trace, and a clean close."""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from agent_fakes import T0, Clock, ScriptedEngine, call, definition
from keyring_service import MemoryKeyring

from app import cli_agents
from app.agents.automations import Automation
from app.agents.automations.scheduler import TARGET_RUNNERS
from app.agents.autonomy import Autonomy, AutonomyStore, Owner
from app.agents.definitions import AgentDefinition, ToolGrant
from app.agents.lifecycle import AgentState
from app.agents.loop import Trigger
from app.agents.outbox import ActionState, Outbox
from app.agents.runtime import (
    AgentRuntime,
    NoAgentModelError,
    ScheduleSpec,
    plan_schedule_sync,
    resolve_model,
    wanted_schedules,
)
from app.agents.trace import RunState
from app.integrations.base import ConnectorEvent, JsonValue
from app.integrations.service import Connections
from app.memory.db import Database, utc_now
from app.secrets import SecretStore

LOG_CALL = call("crm.log_activity", kind="call", subject="Called Ada about the invoice")
DESK = replace(
    definition("desk", tools=(ToolGrant("crm.log_activity", Autonomy.ASK),)),
    triggers=("manual", "schedule", "mail.received"),
    schedules=("* * * * *",),
)


def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


class Office:
    """The pieces an office hands the runtime, on one database."""

    def __init__(self, db: Database, keyring: MemoryKeyring, home: Path, clock: Clock) -> None:
        self.db = db
        self.secrets = SecretStore(backend=keyring)  # type: ignore[arg-type]
        self.connections = Connections(db, self.secrets)
        if self.connections.accounts.find("crm1") is None:
            self.connections.accounts.add("crm", "CRM", {}, account_id="crm1")
        self.home, self.clock = home, clock
        self.runtimes: list[AgentRuntime] = []

    def runtime(
        self, engine: ScriptedEngine, agents: tuple[AgentDefinition, ...] = (DESK,)
    ) -> AgentRuntime:
        made = AgentRuntime(
            self.db,
            lambda: engine,
            lambda: None,
            self.connections,
            self.secrets,
            self.home,
            lambda model_class: f"/models/{model_class}.gguf",
            clock=self.clock,
            builtins=agents,
            executor_interval_s=3600.0,  # only a wake-up executes during a test
            scheduler_max_sleep=timedelta(seconds=1),
        )
        self.runtimes.append(made)
        return made

    def close(self) -> None:
        for made in self.runtimes:
            made.close()
        self.connections.close()

    def activities(self) -> int:
        row = self.db.fetchone("SELECT count(*) FROM crm_activities")
        return int(row[0]) if row else 0


@pytest.fixture
def keyring() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
def office(db: Database, keyring: MemoryKeyring, soloist_home: Path) -> Iterator[Office]:
    made = Office(db, keyring, soloist_home, Clock())
    yield made
    made.close()


def waiting_action(runtime: AgentRuntime) -> str:
    result = runtime.manager.run("desk", Trigger("manual", request="log the call")).result(15)
    assert result.state is RunState.WAITING_FOR_APPROVAL
    assert len(result.action_ids) == 1
    return result.action_ids[0]


class Crash(BaseException):
    """A process killed at a checkpoint (not an Exception: nothing catches it)."""


def test_start_recovers_the_outbox_before_anything_else_and_executes_once(
    office: Office, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = office.runtime(ScriptedEngine(LOG_CALL))
    action = office.connections.connector("crm1").actions()
    log_activity = next(a for a in action if a.name == "crm.log_activity")
    prepared = log_activity.prepare({"kind": "call", "subject": "Called Ada"})
    record = runtime.outbox.propose("desk", "run-0", prepared, [], [], Autonomy.NOTIFY)
    assert record.state is ActionState.APPROVED

    def crash(point: str) -> None:
        if point == "before_call":
            raise Crash(point)

    autonomy = AutonomyStore(office.db)
    crashing = Outbox(office.db, lambda a, n: log_activity, autonomy, checkpoint=crash)
    with pytest.raises(Crash):
        crashing.execute_approved()
    assert runtime.outbox.get(record.id).state is ActionState.EXECUTING

    with caplog.at_level(logging.INFO, logger="soloist.agents"):
        runtime.start()
    assert runtime.outbox.get(record.id).state is ActionState.DONE
    assert office.activities() == 1
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("agents start")]
    assert [s.split(":")[1].split()[0] for s in steps] == ["outbox", "due", "manager", "scheduler,"]
    moves = [(old, new) for old, new, _ in runtime.outbox.transitions(record.id)]
    assert (ActionState.EXECUTING, ActionState.APPROVED) in moves
    assert moves[-1] == (ActionState.EXECUTING, ActionState.DONE)


def test_a_scheduled_run_goes_through_the_scheduler_into_the_trace(office: Office) -> None:
    engine = ScriptedEngine(call("final", answer="nothing to do"))
    runtime = office.runtime(engine)
    runtime.start()
    automations = runtime.scheduler.store.list()
    assert [(a.target, a.payload["line"]) for a in automations] == [("agent:desk", "* * * * *")]
    assert runtime.trace.runs("desk") == []

    office.clock.advance(61)
    runtime.scheduler.wake()
    eventually(lambda: any(r.state is RunState.SUCCEEDED for r in runtime.trace.runs("desk")))
    run = runtime.trace.runs("desk")[0]
    assert run.trigger == "schedule"
    assert engine.requests[0].session_id == "agent-desk"

    def ledger_state() -> str | None:
        last = runtime.scheduler.ledger.last_run(automations[0].id)
        return None if last is None else last.state.value

    eventually(lambda: ledger_state() not in (None, "claimed", "running"))
    assert ledger_state() == "succeeded"


def test_a_live_approval_wakes_the_worker_and_the_action_runs_once(office: Office) -> None:
    runtime = office.runtime(ScriptedEngine(LOG_CALL))
    runtime.start()
    action_id = waiting_action(runtime)
    assert runtime.outbox.get(action_id).state is ActionState.PROPOSED
    assert runtime.manager.state("desk") is AgentState.WAITING_FOR_APPROVAL
    runtime.approve(action_id, Owner.at_cli("tester"))
    assert runtime.manager.state("desk") is AgentState.IDLE  # the owner answered
    eventually(lambda: runtime.outbox.get(action_id).state is ActionState.DONE)
    runtime._worker.wake()  # another pass finds nothing to do
    eventually(lambda: runtime._worker.passes >= 3)
    assert office.activities() == 1


def test_an_agent_waits_until_the_owner_answered_its_last_action(office: Office) -> None:
    runtime = office.runtime(ScriptedEngine(LOG_CALL, LOG_CALL))
    runtime.start()
    first, second = waiting_action(runtime), waiting_action(runtime)
    runtime.outbox.reject(first, Owner.at_cli("tester"), "not now")
    assert runtime.manager.state("desk") is AgentState.WAITING_FOR_APPROVAL  # one still waits
    runtime.outbox.reject(second, Owner.at_cli("tester"), "not now either")
    assert runtime.manager.state("desk") is AgentState.IDLE


def soloist(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="soloist")
    cli_agents.add_parser(parser.add_subparsers(dest="command"))
    return cli_agents.run(parser.parse_args(list(argv)))


def test_an_approval_through_the_cli_executes_once_when_soloist_starts(
    db_path: Path, keyring: MemoryKeyring, soloist_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_agents, "make_secrets", lambda: SecretStore(backend=keyring))  # type: ignore[arg-type]
    clock = Clock(utc_now())  # the CLI decides on the wall clock: proposals must be fresh
    with Database.open(db_path) as db:
        office = Office(db, keyring, soloist_home, clock)
        runtime = office.runtime(ScriptedEngine(LOG_CALL))
        runtime.start()
        action_id = waiting_action(runtime)
        office.close()

    assert soloist("approvals", "approve", action_id) == 0

    for _ in range(2):  # two starts: the second finds it done
        with Database.open(db_path) as db:
            office = Office(db, keyring, soloist_home, clock)
            runtime = office.runtime(ScriptedEngine(LOG_CALL))
            runtime.start()
            assert runtime.outbox.get(action_id).state is ActionState.DONE
            assert office.activities() == 1
            assert runtime.manager.state("desk") is AgentState.IDLE  # answered while closed
            office.close()


def test_secrets_of_the_accounts_never_reach_the_trace(office: Office) -> None:
    office.connections.accounts.add("email", "Work", {"host": "mail.invalid"}, account_id="work")
    office.connections.accounts.set_secret("work", "password", "hunter2-very-secret")
    office.connections.accounts.set_enabled("work", False)
    runtime = office.runtime(ScriptedEngine(call("final", answer="the key is hunter2-very-secret")))
    runtime.start()
    result = runtime.manager.run("desk", Trigger("manual")).result(15)
    assert result.state is RunState.SUCCEEDED
    outputs = [s.step.model_output or "" for s in runtime.trace.steps(result.run_id)]
    assert any("[redacted]" in text for text in outputs)
    assert not any("hunter2" in text for text in outputs)
    assert all("hunter2" not in line for line in runtime.sessions.recall("agent-desk"))


def test_close_stops_every_thread_and_no_event_runs_an_agent_after(office: Office) -> None:
    engine = ScriptedEngine(call("final", answer="ok"))
    runtime = office.runtime(engine)
    before = {t.name for t in threading.enumerate()}
    runtime.start()
    office.connections.emit(ConnectorEvent("mail.received", "crm1", {"message_id": "m1"}))
    eventually(lambda: len(runtime.trace.runs("desk")) == 1 and runtime.manager.wait_idle(1))
    assert TARGET_RUNNERS.get("agent") == runtime._run_automation
    runtime.close()
    after = {t.name for t in threading.enumerate() if t.is_alive()}
    ours = ("soloist-outbox", "soloist-agent-worker", "soloist-automation")
    assert not [n for n in after - before if n.startswith(ours)]
    assert "agent" not in TARGET_RUNNERS
    office.connections.emit(ConnectorEvent("mail.received", "crm1", {"message_id": "m2"}))
    assert len(runtime.trace.runs("desk")) == 1


@pytest.mark.parametrize(
    ("model_class", "settings", "chosen", "expected"),
    [
        ("fast", {"models.fast": "/m/fast.gguf"}, "/m/chosen.gguf", "/m/fast.gguf"),
        ("smart", {"models.fast": "/m/fast.gguf"}, "/m/chosen.gguf", "/m/chosen.gguf"),
        ("/m/own.gguf", {}, None, "/m/own.gguf"),
        ("smart", {}, None, None),
    ],
)
def test_model_classes_resolve_to_settings_then_the_chosen_model(
    model_class: str, settings: dict[str, JsonValue], chosen: str | None, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(NoAgentModelError, match=r"models\.smart"):
            resolve_model(model_class, settings.get, chosen)
    else:
        assert resolve_model(model_class, settings.get, chosen) == expected


def test_schedule_sync_adds_missing_lines_and_disables_dropped_ones() -> None:
    specs, errors = wanted_schedules([DESK], "UTC")
    assert errors == [] and [s.target for s in specs] == ["agent:desk"]
    plan = plan_schedule_sync(specs, [])
    assert plan.add == tuple(specs) and not plan.disable

    def made(spec: ScheduleSpec, enabled: bool) -> Automation:
        payload = {"managed_by": "agent-definition", "line": spec.line}
        return Automation("a1", "x", spec.target, spec.schedule, T0, payload, enabled=enabled)

    assert plan_schedule_sync(specs, [made(specs[0], True)]).add == ()
    assert plan_schedule_sync([], [made(specs[0], True)]).disable[0].id == "a1"
    owner_disabled = made(specs[0], False)
    assert plan_schedule_sync(specs, [owner_disabled]).enable == ()  # the owner's choice holds
    retired = replace(owner_disabled, payload={**owner_disabled.payload, "retired": True})
    assert plan_schedule_sync(specs, [retired]).enable[0].id == "a1"  # its line came back


def test_a_schedule_the_owner_disabled_stays_disabled_when_the_runtime_starts_again(
    office: Office,
) -> None:
    runtime = office.runtime(ScriptedEngine(call("final", answer="nothing to do")))
    store = runtime.scheduler.store
    runtime.sync_schedules()
    (automation,) = store.list()
    store.set_enabled(automation.id, False)  # what the Automations section does
    plan = runtime.sync_schedules()  # as at the next start
    assert plan.enable == () and not store.get(automation.id).enabled
    store.set_enabled(automation.id, True)
    wanted, runtime.schedules = runtime.schedules, []  # the line leaves the definition
    assert [a.id for a in runtime.sync_schedules().disable] == [automation.id]
    assert store.get(automation.id).payload.get("retired") is True
    runtime.schedules = wanted  # and comes back: enabled again, the mark gone
    assert [a.id for a in runtime.sync_schedules().enable] == [automation.id]
    back = store.get(automation.id)
    assert back.enabled and "retired" not in back.payload
