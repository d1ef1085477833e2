"""The agents' composition root: one runtime wires definitions, loops, outbox and schedules.

Built from what the office owns (the database, an engine and a memory
provider, the connections, the secret store, the data directory and a
model resolver), it makes:

- ``autonomy`` (the owner's levels), ``outbox`` (actions resolved by account
  and action name through the account's connector), ``trace`` (with a
  redactor of every secret the connections hold in the keyring; the values
  are never logged), ``sessions`` (each agent's context across restarts);
- ``definitions``: built-ins (``app.agents.builtin.BUILTINS`` when that
  package exists) overridden by ``<data dir>/agents/*.toml``; the files'
  errors are kept for ``soloist agents list`` and the UI;
- ``manager`` (the agents' states, queue and workers, each run an
  ``AgentLoop``) and ``scheduler`` (the automations; one automation per
  schedule line of a definition, made or updated at start).

Start-up order, and why: ``outbox.recover()`` first (settle what a crash
left EXECUTING before anything could execute), then expire and execute
what is due, then the manager (marks interrupted runs), the scheduler, the
connector events, and the outbox worker that executes approved actions
every ``executor_interval_s`` and at once when woken (after an approval).
``close()`` stops them in reverse, except that the manager cancels its runs
before the scheduler is waited for (a scheduled slot waits on its run).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from app.agents.automations import (
    Automation,
    AutomationScheduler,
    CronSchedule,
    ScheduleError,
    register_target,
)
from app.agents.automations.scheduler import TARGET_RUNNERS
from app.agents.autonomy import AutonomyStore, Owner
from app.agents.definitions import (
    MODEL_CLASSES,
    AgentDefinition,
    DefinitionError,
    DefinitionSet,
    load_definitions,
)
from app.agents.definitions_toml import parse_cron
from app.agents.errors import ActionNotFoundError, AgentError
from app.agents.lifecycle import AgentEvent, AgentState
from app.agents.loop import AgentLoop, LoopOptions, Trigger
from app.agents.loop_steps import Memory
from app.agents.manager import AgentManager
from app.agents.outbox import ActionRecord, ActionState, Outbox, OutboxEvent
from app.agents.sessions_link import AgentSessions
from app.agents.tools_registry import ToolBox, ToolContext, builtin_tools
from app.agents.trace import RunState, TraceStore, secret_redactor
from app.engine.interface import Engine
from app.integrations.base import Action, ConnectorEvent, JsonObject, JsonValue, connector_class
from app.integrations.errors import ConnectorError
from app.integrations.service import Connections
from app.memory.db import Database, utc_now
from app.secrets import SecretsError, SecretStore

__all__ = [
    "MODEL_SETTINGS",
    "AgentRuntime",
    "NoAgentModelError",
    "ScheduleSpec",
    "ScheduledRunFailedError",
    "load_builtins",
    "plan_schedule_sync",
    "resolve_model",
    "wanted_schedules",
]

log = logging.getLogger("soloist.agents")

MODEL_SETTINGS = {"fast": "models.fast", "smart": "models.smart"}
MANAGED_BY = "agent-definition"  # the payload mark of automations made from definitions
RETIRED = "retired"  # payload mark: disabled by the sync because its line went away
_FAILED_RUNS = frozenset({RunState.FAILED, RunState.STOPPED, RunState.INTERRUPTED})


class NoAgentModelError(AgentError):
    """No model is set for a model class and none is chosen for the office."""

    def __init__(self, model_class: str) -> None:
        super().__init__(model_class)
        self.model_class = model_class

    def __str__(self) -> str:
        return (
            f"No model for the {self.model_class!r} agents: nothing ran. Pick a model "
            f"(Model… in the window, or the setting {MODEL_SETTINGS[self.model_class]})."
        )


class ScheduledRunFailedError(AgentError):
    """A scheduled run ended failed or stopped (the automation ledger records it so)."""


# -- decisions ---------------------------------------------------------------------------
def resolve_model(model_class: str, setting: Callable[[str], JsonValue], chosen: str | None) -> str:
    """The model path for a class: its setting, else the office's chosen model.

    Anything not a model class is a model path already (see ``MODEL_CLASSES``).
    """
    if model_class not in MODEL_CLASSES:
        return model_class
    value = setting(MODEL_SETTINGS[model_class])
    if isinstance(value, str) and value:
        return value
    if chosen:
        return chosen
    raise NoAgentModelError(model_class)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """One schedule line of one agent, as an automation would run it."""

    agent_id: str
    line: str
    schedule: CronSchedule

    @property
    def target(self) -> str:
        return f"agent:{self.agent_id}"


@dataclass(frozen=True, slots=True)
class SchedulePlan:
    add: tuple[ScheduleSpec, ...] = ()
    enable: tuple[Automation, ...] = ()
    disable: tuple[Automation, ...] = ()


def wanted_schedules(
    definitions: Iterable[AgentDefinition], default_zone: str
) -> tuple[list[ScheduleSpec], list[DefinitionError]]:
    """Every schedule line as a spec; a line the scheduler refuses becomes an error."""
    specs, errors = [], []
    for definition in definitions:
        for line in definition.schedules:
            try:
                crontab, zone = parse_cron(line)
                specs.append(
                    ScheduleSpec(definition.id, line, CronSchedule(crontab, zone or default_zone))
                )
            except (ValueError, ScheduleError) as exc:
                label = definition.source.name if definition.source else definition.id
                errors.append(DefinitionError(label, "schedules", str(exc)))
    return specs, errors


def plan_schedule_sync(
    wanted: Sequence[ScheduleSpec], existing: Sequence[Automation]
) -> SchedulePlan:
    """Which automations to add, re-enable or retire so each wanted line has one.

    Only an automation this sync retired (its line had left the definition)
    is enabled again when the line comes back; one the owner disabled stays
    disabled across restarts.
    """
    managed = [a for a in existing if a.payload.get("managed_by") == MANAGED_BY]
    keys = {(s.target, s.line) for s in wanted}
    have = {(a.target, str(a.payload.get("line"))): a for a in managed}
    return SchedulePlan(
        add=tuple(s for s in wanted if (s.target, s.line) not in have),
        enable=tuple(a for k, a in have.items() if k in keys and _retired(a)),
        disable=tuple(a for k, a in have.items() if k not in keys and a.enabled),
    )


def _retired(automation: Automation) -> bool:
    return not automation.enabled and automation.payload.get(RETIRED) is True


def load_builtins() -> tuple[AgentDefinition, ...]:
    """``app.agents.builtin.BUILTINS`` when that package exists, else none."""
    try:
        module = importlib.import_module("app.agents.builtin")
    except ModuleNotFoundError as exc:
        if exc.name != "app.agents.builtin":
            raise
        return ()
    return tuple(getattr(module, "BUILTINS", ()))


def local_zone() -> str:
    """The machine's IANA time zone (schedules without ``TZ=`` are read in it)."""
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:  # tzlocal cannot tell (a bare container): UTC
        return "UTC"


# -- the runtime -------------------------------------------------------------------------
class AgentRuntime:
    """Every agent of the office, wired; see the module docstring."""

    def __init__(  # noqa: PLR0917  (the office hands over what it owns)
        self,
        db: Database,
        engine: Callable[[], Engine],
        memory: Callable[[], Memory | None],
        connections: Connections,
        secrets: SecretStore,
        data_dir: Path,
        model_resolver: Callable[[str], str],
        *,
        clock: Callable[[], datetime] = utc_now,
        builtins: Sequence[AgentDefinition] | None = None,
        options: LoopOptions | None = None,
        executor_interval_s: float = 30.0,
        scheduler_max_sleep: timedelta = timedelta(seconds=30),
        on_agent_event: Callable[[AgentEvent], None] | None = None,
        on_outbox_event: Callable[[OutboxEvent], None] | None = None,
    ) -> None:
        self._db, self._engine, self._memory = db, engine, memory
        self._connections, self._secrets = connections, secrets
        self._resolve_model, self._clock, self._options = model_resolver, clock, options
        self._on_outbox_event = on_outbox_event
        self._redact = secret_redactor(())
        self.refresh_secrets()
        self.autonomy = AutonomyStore(db, clock=clock)
        self.outbox = Outbox(
            db, self._resolve_action, self.autonomy, clock=clock, emit=self._outbox_event
        )
        self.trace = TraceStore(db, clock=clock, redactor=self._redacted)
        self.sessions = AgentSessions(db, clock=clock, redactor=self._redacted)
        found = load_definitions(
            data_dir / "agents", load_builtins() if builtins is None else builtins
        )
        self.schedules, schedule_errors = wanted_schedules(found, local_zone())
        self.definitions = DefinitionSet(found.definitions, (*found.errors, *schedule_errors))
        self.manager = AgentManager(
            self.definitions,
            self._make_loop,
            clock,
            trace=self.trace,
            on_event=on_agent_event,
            still_waiting=self._has_proposals,
        )
        self.scheduler = AutomationScheduler(
            db, self._run_automation, clock=clock, max_sleep=scheduler_max_sleep
        )
        self._worker = _OutboxWorker(self.outbox, executor_interval_s)
        self._unsubscribe: Callable[[], None] | None = None
        self._background = False

    # -- life cycle --------------------------------------------------------------------
    def start(self, *, background: bool = True) -> None:
        """Start in the documented order; ``background=False`` (the CLI) runs agents only.

        Without background, nothing is executed, scheduled or subscribed:
        approved actions wait for Soloist itself.
        """
        if background:
            settled = self.outbox.recover()
            log.info("agents start: outbox recovered (%d actions settled)", len(settled))
            self._worker.run_once()
            log.info("agents start: due actions expired and executed")
        interrupted = self.sessions.interrupt_running()
        self.manager.start()
        log.info("agents start: manager started (%d session runs interrupted)", interrupted)
        self._release_answered_agents()  # answered with Soloist closed (soloist approvals)
        if not background:
            return
        self._background = True
        self.sync_schedules()
        register_target("agent")(self._run_automation)
        self.scheduler.start()
        self._unsubscribe = self._connections.subscribe(self._on_connector_event)
        self._worker.start()
        log.info("agents start: scheduler, connector events and outbox worker running")

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop what ``start`` started, in reverse (see the module docstring)."""
        if self._background:
            self._worker.stop(timeout_s)
            if self._unsubscribe is not None:
                self._unsubscribe()
            self.scheduler.pause()
        self.manager.close(timeout_s)
        if self._background:
            self.scheduler.shutdown(wait=True)
            if TARGET_RUNNERS.get("agent") == self._run_automation:
                del TARGET_RUNNERS["agent"]
        self._background = False
        log.info("agents closed")

    # -- the owner's commands ----------------------------------------------------------
    def approve(
        self,
        action_id: str,
        owner: Owner,
        edited_args: JsonObject | None = None,
        *,
        expected_hash: str | None = None,
    ) -> ActionRecord:
        """Approve (or edit and approve) an action, and wake the worker to execute it."""
        record = self.outbox.approve(action_id, owner, edited_args, expected_hash=expected_hash)
        self._worker.wake()
        return record

    def run_now(self, agent_id: str, request: str = "") -> Trigger:
        """Queue a manual run; returns its trigger (the manager's future is in ``manager``)."""
        trigger = Trigger("manual", request=request)
        self.manager.run(agent_id, trigger)
        return trigger

    def refresh_secrets(self) -> None:
        """Read the accounts' secrets again for the redactor (after an account changed)."""
        self._redact = secret_redactor(account_secrets(self._connections, self._secrets))

    def sync_schedules(self) -> SchedulePlan:
        """Make the automations match the definitions' schedule lines."""
        store = self.scheduler.store
        plan = plan_schedule_sync(self.schedules, store.list())
        for spec in plan.add:
            payload = {"managed_by": MANAGED_BY, "line": spec.line}
            store.add(f"{spec.agent_id}: {spec.line}", spec.target, spec.schedule, payload=payload)
        for automation in plan.enable:
            kept = {k: v for k, v in automation.payload.items() if k != RETIRED}
            store.update(replace(automation, enabled=True, payload=kept))
        for automation in plan.disable:
            marked: dict[str, object] = {**automation.payload, RETIRED: True}
            store.update(replace(automation, enabled=False, payload=marked))
        log.info(
            "agent schedules: %d added, %d enabled, %d disabled",
            len(plan.add), len(plan.enable), len(plan.disable),
        )  # fmt: skip
        return plan

    # -- wiring ------------------------------------------------------------------------
    def _make_loop(self, definition: AgentDefinition) -> AgentLoop:
        memory = self._memory()
        context = ToolContext(
            definition.id,
            memory=memory,
            scopes=definition.memory_scopes,
            clock=self._clock,
            db=self._db,
        )
        toolbox = ToolBox(
            definition.tools,
            builtin_tools(),
            self._connections.tools(),
            self._connections.actions(),
            context=context,
        )
        return AgentLoop(
            definition, self._engine(), memory, toolbox, self.outbox, self.trace,
            self._resolve_model, self._clock, self._options, context=self.sessions,
        )  # fmt: skip

    def _resolve_action(self, account_id: str, action_name: str) -> Action:
        for action in self._connections.connector(account_id).actions():
            if action.name == action_name:
                return action
        raise ActionNotFoundError(f"account {account_id} has no action {action_name}")

    def _run_automation(self, automation: Automation, slot: datetime) -> object:
        agent_id = automation.target.partition(":")[2]
        definition = self.definitions.get(agent_id)
        timeout = 60.0 + (definition.budgets.max_seconds if definition else 300.0)
        data: JsonObject = {"automation_id": automation.id, "slot": slot.isoformat()}
        future = self.manager.run(agent_id, Trigger("schedule", data))
        try:
            result = future.result(timeout)
        except CancelledError:
            raise ScheduledRunFailedError(f"the run of {agent_id} was cancelled") from None
        if result.state in _FAILED_RUNS:
            raise ScheduledRunFailedError(f"run {result.run_id} {result.state.value}")
        return result

    def _on_connector_event(self, event: ConnectorEvent) -> None:
        self.manager.on_connector_event(event)

    def _redacted(self, text: str) -> str:
        return self._redact(text)

    def _has_proposals(self, agent_id: str) -> bool:
        return bool(self.outbox.list(ActionState.PROPOSED, agent_id))

    def _release_answered_agents(self) -> None:
        for agent_id, state in self.manager.states().items():
            if state is AgentState.WAITING_FOR_APPROVAL and not self._has_proposals(agent_id):
                self.manager.owner_answered(agent_id)

    def _outbox_event(self, event: OutboxEvent) -> None:
        if event.state is ActionState.APPROVED:
            self._worker.wake()
        answered = event.previous is ActionState.PROPOSED and event.state is not event.previous
        if answered and event.agent_id and not self._has_proposals(event.agent_id):
            self.manager.owner_answered(event.agent_id)
        if self._on_outbox_event is not None:
            self._on_outbox_event(event)

    def __repr__(self) -> str:
        return f"AgentRuntime(agents={len(self.definitions)}, background={self._background})"


def account_secrets(connections: Connections, secrets: SecretStore) -> list[str]:
    """Every secret value the accounts keep in the keyring (for the redactor only)."""
    values: list[str] = []
    for account in connections.accounts.list():
        try:
            fields = connector_class(account.kind).secret_fields
        except ConnectorError:  # a kind no longer installed
            continue
        for field_name in fields:
            try:
                value = secrets.find(account.secret_ref(field_name))
            except SecretsError:
                log.info("no keyring: the trace redacts no account secrets")
                return values
            if value:
                values.append(value)
    return values


class _OutboxWorker:
    """Executes approved actions and expires stale ones, periodically and when woken."""

    def __init__(self, outbox: Outbox, interval_s: float) -> None:
        self._outbox = outbox
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="soloist-outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def run_once(self) -> None:
        expired = self._outbox.expire_due()
        done = self._outbox.execute_approved()
        self.passes += 1
        if expired or done:
            log.info("outbox: %d expired, %d executed", len(expired), len(done))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except Exception:  # the worker must go on; the next pass tries again
                log.exception("outbox pass failed")
