"""``soloist agents``, ``soloist approvals`` and ``soloist autonomy``: the owner's controls.

soloist agents list [--json]
soloist agents metrics [--json]
soloist agents run ID [--request TEXT] [--timeout S]
soloist agents pause|resume ID
soloist approvals list [--json]
soloist approvals show ID [--json]
soloist approvals approve ID [--edit FILE.json]
soloist approvals reject ID --reason TEXT
soloist approvals settle ID --done|--not-done
soloist autonomy set AGENT TOOL LEVEL
soloist autonomy list [--json]

These open the office database directly, so Soloist must be closed (DuckDB
lets one process hold the file). Decisions are the owner's (``Owner.at_cli``)
and are recorded with the login name. An approved action is executed by
Soloist when it next starts (its outbox worker), exactly once; a manual run
here proposes actions but executes none.

Exit status: 0 done, 1 failed or refused, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import paths

if TYPE_CHECKING:  # duckdb, the connectors and llama.cpp load only when a command runs
    from app.agents.metrics import AgentMetrics
    from app.agents.outbox import ActionRecord
    from app.agents.runtime import AgentRuntime
    from app.engine.interface import Engine
    from app.integrations.service import Connections
    from app.memory.db import Database
    from app.memory.service import MemoryService
    from app.secrets import SecretStore

EXIT_FAILED = 1
PRICE_SETTING = "agents.price_per_1k_tokens"  # a number (every agent) or {agent id: number}
_LEVELS = {"suggest": 0, "ask": 1, "notify": 2, "silent": 3}


# -- seams -------------------------------------------------------------------------------
def make_secrets() -> SecretStore:
    """The keyring (a seam for tests)."""
    from app.secrets import SecretStore

    return SecretStore()


def make_engine() -> Engine:
    """The engine of ``agents run`` (a seam for tests): llama.cpp in this process."""
    from app.engine.llamacpp import EngineConfig, LlamaCppEngine

    home = paths.data_dir()
    return LlamaCppEngine(EngineConfig(snapshot_dir=home / "kv", swap_dir=home / "kv-swap"))


def make_memory(db: Database) -> MemoryService | None:
    """Long-term memory for ``agents run`` (a seam for tests)."""
    from app.cli_memory import make_embedder
    from app.memory.service import MemoryService

    service = MemoryService(db, make_embedder)
    service.start()
    return service


# -- the parser --------------------------------------------------------------------------
def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``agents``, ``approvals`` and ``autonomy`` to the ``soloist`` parser."""
    closed = " Soloist must not be running."
    agents = subparsers.add_parser(
        "agents", help="agents: list, metrics, run, pause, resume", description="Agents." + closed
    )
    sub = agents.add_subparsers(dest="agents_command", required=True)
    _with_json(sub.add_parser("list", help="every agent, its state, triggers and schedules"))
    _with_json(sub.add_parser("metrics", help="runs, latency, cost and overrides per agent"))
    run_one = sub.add_parser("run", help="run an agent once now and print the outcome")
    run_one.add_argument("agent_id")
    run_one.add_argument("--request", default="", help="what to ask of the agent")
    run_one.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    for name in ("pause", "resume"):
        sub.add_parser(name, help=f"{name} an agent").add_argument("agent_id")

    approvals = subparsers.add_parser(
        "approvals", help="actions waiting for you", description="Approvals." + closed
    )
    sub = approvals.add_subparsers(dest="approvals_command", required=True)
    _with_json(sub.add_parser("list", help="pending actions with their exact payload"))
    _with_json(sub.add_parser("show", help="one action in full")).add_argument("action_id")
    approve = sub.add_parser("approve", help="approve an action (Soloist runs it once)")
    approve.add_argument("action_id")
    approve.add_argument("--edit", type=Path, default=None, help="a JSON file of new arguments")
    reject = sub.add_parser("reject", help="reject an action")
    reject.add_argument("action_id")
    reject.add_argument("--reason", required=True)
    settle = sub.add_parser("settle", help="say whether an in-doubt action happened")
    settle.add_argument("action_id")
    happened = settle.add_mutually_exclusive_group(required=True)
    happened.add_argument("--done", dest="happened", action="store_true")
    happened.add_argument("--not-done", dest="happened", action="store_false")

    autonomy = subparsers.add_parser(
        "autonomy", help="how far each agent may act alone", description="Autonomy." + closed
    )
    sub = autonomy.add_subparsers(dest="autonomy_command", required=True)
    level = sub.add_parser("set", help="set an agent's level for one tool")
    level.add_argument("agent_id")
    level.add_argument("tool")
    level.add_argument("level", type=_level, help="0-3 or suggest, ask, notify, silent")
    _with_json(sub.add_parser("list", help="every agent's level for each granted tool"))


def _with_json(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _level(text: str) -> int:
    value = _LEVELS.get(text.lower(), text)
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a level: {text!r}") from None
    if not 0 <= number <= 3:
        raise argparse.ArgumentTypeError(f"a level is 0-3, got {number}")
    return number


# -- running -----------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Run one subcommand of ``agents``, ``approvals`` or ``autonomy``; the exit status."""
    from app.agents.errors import AgentError
    from app.agents.runtime import NoAgentModelError
    from app.memory.db import Database
    from app.memory.errors import StoreError

    group = _GROUPS[args.command]
    command = group[getattr(args, f"{args.command}_command")]
    try:
        db = Database.open(paths.db_path())
    except StoreError as exc:  # in use by a running Soloist, damaged, too new
        return _fail(str(exc))
    office = _open(db)
    try:
        return command(office, args)
    except (StoreError, AgentError, NoAgentModelError, OSError, ValueError) as exc:
        return _fail(str(exc))
    finally:
        office.close()
        db.close()


@dataclass
class _Office:
    """What one command works with; ``made`` holds the engine and memory a run made."""

    db: Database
    runtime: AgentRuntime
    connections: Connections
    resolve: Callable[[str], str]
    made: list[Engine | MemoryService] = field(default_factory=list)

    def close(self) -> None:
        for thing in reversed(self.made):
            thing.close()
        self.connections.close()


def _open(db: Database) -> _Office:
    from app.agents.runtime import AgentRuntime, resolve_model
    from app.integrations.service import Connections
    from app.memory.settings import Settings

    settings = Settings(db)
    chosen = settings.get("engine.model_path")
    secrets = make_secrets()

    def resolver(model_class: str) -> str:
        return resolve_model(model_class, settings.get, chosen if isinstance(chosen, str) else None)

    made: list[Engine | MemoryService] = []
    engine: list[Engine] = []
    memory: list[MemoryService | None] = []

    def engine_once() -> Engine:
        if not engine:
            engine.append(make_engine())
            made.append(engine[0])
        return engine[0]

    def memory_once() -> MemoryService | None:
        if not memory:
            memory.append(make_memory(db))
            if memory[0] is not None:
                made.append(memory[0])
        return memory[0]

    connections = Connections(db, secrets)
    runtime = AgentRuntime(
        db, engine_once, memory_once, connections, secrets, paths.data_dir(), resolver
    )
    return _Office(db, runtime, connections, resolver, made)


def _fail(message: str) -> int:
    print(f"soloist: {message}", file=sys.stderr)
    return EXIT_FAILED


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# -- agents ------------------------------------------------------------------------------
def _agents_list(office: _Office, args: argparse.Namespace) -> int:
    from app.agents.automations import next_slot
    from app.memory.db import utc_now

    states, now = office.runtime.manager.states(), utc_now()
    upcoming: dict[str, list[str]] = {}
    for spec in office.runtime.schedules:
        when = next_slot(spec.schedule, now)
        if when is not None:
            upcoming.setdefault(spec.agent_id, []).append(when.isoformat())
    docs = [
        {
            "id": d.id,
            "name": d.name,
            "state": states[d.id].value,
            "builtin": d.builtin,
            "triggers": list(d.triggers),
            "schedules": list(d.schedules),
            "next_run": min(upcoming.get(d.id, []), default=None),
        }
        for d in office.runtime.definitions
    ]
    errors = [str(e) for e in office.runtime.definitions.errors]
    if args.json:
        _print_json({"agents": docs, "errors": errors})
        return 0
    for d in office.runtime.definitions:
        print(f"{d.id}  {d.name}  [{states[d.id].value}]")
        print(f"    triggers: {', '.join(d.triggers) or '-'}")
        soonest = min(upcoming.get(d.id, []), default="-")
        print(f"    schedules: {'; '.join(d.schedules) or '-'}; next run: {soonest}")
    for error in errors:
        print(f"error: {error}")
    return 0


def _agents_metrics(office: _Office, args: argparse.Namespace) -> int:
    from app.agents.metrics import query_metrics
    from app.memory.settings import Settings

    db = office.db
    prices = _prices(Settings(db).get(PRICE_SETTING), office.runtime.definitions.ids)
    rows = query_metrics(db, agent_ids=office.runtime.definitions.ids, price_per_1k_tokens=prices)
    if args.json:
        _print_json([m.to_json() for m in rows])
        return 0
    print(METRICS_HEADER)
    for metrics in rows:
        print(metrics_line(metrics))
    return 0


def _prices(value: Any, agent_ids: tuple[str, ...]) -> dict[str, float]:
    if isinstance(value, int | float):
        return dict.fromkeys(agent_ids, float(value))
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items() if isinstance(v, int | float)}
    return {}


METRICS_HEADER = (
    f"{'AGENT':<18}{'RUNS':>5}{'OK%':>6}{'FAIL%':>6}{'P50s':>7}{'P95s':>7}{'P99s':>7}"
    f"{'TOKENS':>8}{'DEV s':>7}{'TOK/TASK':>9}{'DEV/TASK':>9}{'$/TASK':>8}"
    f"{'ASKED':>6}{'OK':>4}{'EDIT':>5}{'REJ':>4}{'OVERRIDE':>9}"
)


def metrics_line(m: AgentMetrics) -> str:
    """One row of ``soloist agents metrics`` (``-`` where there is nothing to divide by)."""

    def num(value: float | None, spec: str, width: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"

    override = "-" if m.override_rate is None else f"{m.override_rate * 100:.0f}%"
    return (
        f"{m.agent_id[:17]:<18}{m.runs:>5}{m.success_rate * 100:>6.0f}{m.failure_rate * 100:>6.0f}"
        f"{m.p50_s:>7.1f}{m.p95_s:>7.1f}{m.p99_s:>7.1f}{m.tokens:>8}{m.device_s:>7.1f}"
        f"{num(m.tokens_per_task, '.0f', 9)}{num(m.device_s_per_task, '.1f', 9)}"
        f"{num(m.cost_per_task, '.3f', 8)}{m.asked:>6}{m.approved:>4}{m.edited:>5}"
        f"{m.rejected:>4}{override:>9}"
    )


def _agents_run(office: _Office, args: argparse.Namespace) -> int:
    from app.agents.loop import Trigger
    from app.agents.runtime_errors import UnknownAgentError

    definition = office.runtime.definitions.get(args.agent_id)
    if definition is None:
        raise UnknownAgentError(args.agent_id)
    office.resolve(definition.model_class)  # no model: say so before anything starts
    office.runtime.start(background=False)
    try:
        future = office.runtime.manager.run(args.agent_id, Trigger("manual", request=args.request))
        try:
            result = future.result(args.timeout)
        except FutureTimeout:
            office.runtime.manager.cancel(args.agent_id)
            return _fail(f"the run did not end within {args.timeout:.0f} s; it was cancelled")
    finally:
        office.runtime.close()
    print(f"Run {result.run_id} of {args.agent_id}: {result.state.value} ({result.reason})")
    print(f"    {result.steps} steps, {result.tokens} tokens")
    if result.answer:
        print(f"    answer: {result.answer}")
    for action_id in result.action_ids:
        print(f"    action {action_id}: see `soloist approvals show {action_id}`")
    return 0 if result.state.value in ("succeeded", "waiting_for_approval") else EXIT_FAILED


def _agents_pause(office: _Office, args: argparse.Namespace) -> int:
    office.runtime.manager.pause(args.agent_id)
    print(f"Agent {args.agent_id} is paused; `soloist agents resume {args.agent_id}` undoes it.")
    return 0


def _agents_resume(office: _Office, args: argparse.Namespace) -> int:
    office.runtime.manager.resume(args.agent_id)
    print(f"Agent {args.agent_id} is {office.runtime.manager.state(args.agent_id).value}.")
    return 0


# -- approvals ---------------------------------------------------------------------------
def action_doc(record: ActionRecord) -> dict[str, Any]:
    """An action as shown to the owner: the exact payload, and each field's origin."""
    from app.agents.taint import Origin, leaves

    origins = {o.path: o for o in record.origins}
    fields = []
    for path, value in leaves(record.payload):
        origin = origins.get(path)
        fields.append(
            {
                "path": path,
                "value": value,
                "origin": origin.origin.value if origin else Origin.AGENT.value,
                "untrusted": bool(origin and origin.origin is Origin.UNTRUSTED),
                "sources": list(origin.sources) if origin else [],
            }
        )
    return {
        "id": record.id,
        "agent_id": record.agent_id,
        "run_id": record.run_id,
        "action": record.action,
        "account_id": record.account_id,
        "state": record.state.name,
        "risk": record.risk.name,
        "preview": record.preview,
        "payload": record.payload,
        "content_hash": record.content_hash,
        "fields": fields,
        "taint_notice": record.taint_notice,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "error": record.error,
    }


def _print_action(doc: dict[str, Any]) -> None:
    print(f"{doc['id']}  {doc['action']} on {doc['account_id']}  [{doc['state']}, {doc['risk']}]")
    print(
        f"    by agent {doc['agent_id']}, run {doc['run_id']}; expires {doc['expires_at'] or '-'}"
    )
    print(f"    {doc['preview']}")
    if doc["taint_notice"]:
        print(f"    !!! {doc['taint_notice'].upper()} !!!")
    for leaf in doc["fields"]:
        value = json.dumps(leaf["value"], ensure_ascii=False)
        if leaf["untrusted"]:
            sources = ", ".join(leaf["sources"]) or "outside text"
            print(f"    {leaf['path']} = {value}   <<< UNTRUSTED (from {sources}) >>>")
        else:
            print(f"    {leaf['path']} = {value}   [{leaf['origin']}]")


def _approvals_list(office: _Office, args: argparse.Namespace) -> int:
    docs = [action_doc(r) for r in office.runtime.outbox.pending()]
    if args.json:
        _print_json(docs)
        return 0
    if not docs:
        print("Nothing waits for you.")
    for doc in docs:
        _print_action(doc)
    return 0


def _approvals_show(office: _Office, args: argparse.Namespace) -> int:
    doc = action_doc(office.runtime.outbox.get(args.action_id))
    if args.json:
        _print_json(doc)
    else:
        _print_action(doc)
    return 0


def _approvals_approve(office: _Office, args: argparse.Namespace) -> int:
    from app.agents.autonomy import Owner

    record = office.runtime.outbox.get(args.action_id)
    edited = None
    if args.edit is not None:
        edited = json.loads(args.edit.read_text(encoding="utf-8"))
        if not isinstance(edited, dict):
            return _fail(f"{args.edit} must hold a JSON object of the action's arguments")
    approved = office.runtime.outbox.approve(
        args.action_id, Owner.at_cli(), edited, expected_hash=record.content_hash
    )
    how = "Edited and approved" if edited is not None else "Approved"
    print(f"{how} {approved.id} ({approved.action}). Soloist runs it once when it next starts.")
    return 0


def _approvals_reject(office: _Office, args: argparse.Namespace) -> int:
    from app.agents.autonomy import Owner

    rejected = office.runtime.outbox.reject(args.action_id, Owner.at_cli(), args.reason)
    print(f"Rejected {rejected.id} ({rejected.action}); the agent will read your reason.")
    return 0


def _approvals_settle(office: _Office, args: argparse.Namespace) -> int:
    from app.agents.autonomy import Owner

    settled = office.runtime.outbox.settle_in_doubt(
        args.action_id, Owner.at_cli(), happened=args.happened
    )
    print(f"Action {settled.id} is now {settled.state.name}.")
    return 0


# -- autonomy ----------------------------------------------------------------------------
def _autonomy_set(office: _Office, args: argparse.Namespace) -> int:
    from app.agents.autonomy import Autonomy, Owner
    from app.agents.runtime_errors import UnknownAgentError

    definition = office.runtime.definitions.get(args.agent_id)
    if definition is None:
        raise UnknownAgentError(args.agent_id)
    if definition.grant(args.tool) is None:
        return _fail(f"agent {args.agent_id} is not granted {args.tool}; nothing was changed")
    office.runtime.autonomy.set_level(
        args.agent_id, args.tool, Autonomy(args.level), Owner.at_cli()
    )
    print(f"Agent {args.agent_id} may now {Autonomy(args.level).name} with {args.tool}.")
    return 0


def _autonomy_list(office: _Office, args: argparse.Namespace) -> int:
    docs = [
        {
            "agent_id": d.id,
            "tool": g.tool,
            "default": g.autonomy.name,
            "level": office.runtime.autonomy.level(d.id, g.tool, g.autonomy).name,
        }
        for d in office.runtime.definitions
        for g in d.tools
    ]
    if args.json:
        _print_json(docs)
        return 0
    for doc in docs:
        mark = "" if doc["level"] == doc["default"] else f" (default {doc['default']})"
        print(f"{doc['agent_id']:<20} {doc['tool']:<28} {doc['level']}{mark}")
    return 0


Command = Callable[[_Office, argparse.Namespace], int]
_GROUPS: dict[str, dict[str, Command]] = {
    "agents": {
        "list": _agents_list,
        "metrics": _agents_metrics,
        "run": _agents_run,
        "pause": _agents_pause,
        "resume": _agents_resume,
    },
    "approvals": {
        "list": _approvals_list,
        "show": _approvals_show,
        "approve": _approvals_approve,
        "reject": _approvals_reject,
        "settle": _approvals_settle,
    },
    "autonomy": {"set": _autonomy_set, "list": _autonomy_list},
}
