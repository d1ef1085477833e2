"""An agent's context survives a restart: its steps go to the session tier under one stable
session, the engine request carries that session id, and the next run (after the database
file was closed and opened again) recalls them into its prompt, framed as data."""

from __future__ import annotations

from pathlib import Path

from agent_fakes import ASK, Clock, ScriptedEngine, call, definition, lookup_tool

from app.agents.autonomy import AutonomyStore
from app.agents.definitions import ToolGrant
from app.agents.loop import AgentLoop, Trigger
from app.agents.loop_steps import DATA_START
from app.agents.outbox import Outbox
from app.agents.sessions_link import AgentSessions, session_key, step_line
from app.agents.tools_registry import ToolBox, ToolContext
from app.agents.trace import RunState, TraceStore
from app.memory.db import Database

AGENT = definition("desk", tools=(ToolGrant("crm.lookup", ASK),))


def run_once(db: Database, engine: ScriptedEngine, request: str) -> RunState:
    clock = Clock()
    box = ToolBox(AGENT.tools, {}, [lookup_tool("Ada Lovelace, customer since 2021")], [],
                  context=ToolContext(AGENT.id, clock=clock))  # fmt: skip
    outbox = Outbox(db, lambda account, name: None, AutonomyStore(db))  # type: ignore[arg-type,return-value]
    loop = AgentLoop(
        AGENT, engine, None, box, outbox, TraceStore(db, clock=clock), "/m/{}.gguf".format,
        clock, context=AgentSessions(db, clock=clock),
    )  # fmt: skip
    return loop.run(Trigger("manual", request=request)).state


def test_the_next_run_after_a_restart_recalls_the_last_runs_steps(db_path: Path) -> None:
    first = ScriptedEngine(
        call("crm.lookup", name="Ada"), call("final", answer="Ada is a customer")
    )
    with Database.open(db_path) as db:
        assert run_once(db, first, "who is Ada?") is RunState.SUCCEEDED
    assert {r.session_id for r in first.requests} == {session_key("desk")}
    assert "crm.lookup" not in first.requests[0].messages[1].content

    second = ScriptedEngine(call("final", answer="done"))
    with Database.open(db_path) as db:  # a restart: a new process would open the file again
        assert run_once(db, second, "and now?") is RunState.SUCCEEDED
        sessions = db.fetchall("SELECT id FROM sessions WHERE title = 'agent-desk'")
    prompt = second.requests[0].messages[1].content
    assert second.requests[0].session_id == "agent-desk"
    assert 'called crm.lookup {"name": "Ada"}' in prompt
    assert "result began: Ada Lovelace, customer since 2021" in prompt
    assert "ended succeeded: final answer. Answer: Ada is a customer" in prompt
    earlier = prompt.index("earlier runs")
    assert prompt.index(DATA_START, earlier) > earlier  # framed as data, after its heading
    assert len(sessions) == 1  # one stable session, found again by its key


def test_recall_keeps_only_the_last_steps(db: Database) -> None:
    sessions = AgentSessions(db, recall_steps=2)
    for n in range(3):
        sessions.begin("agent-x", "x", f"run{n}")
        sessions.act(f"run{n}", {"tool": "crm.lookup", "arguments": {"n": n}, "result": {}})
        sessions.finish(f"run{n}", {"trigger": "manual", "state": "failed", "reason": "r"})
    lines = sessions.recall("agent-x")
    assert len(lines) == 2
    assert lines[0].startswith("run run2: called crm.lookup") and "ended failed" in lines[1]


def test_runs_a_crash_left_running_are_cancelled_at_start(db: Database) -> None:
    AgentSessions(db).begin("agent-x", "x", "run1")
    assert AgentSessions(db).interrupt_running() == 1
    row = db.fetchone("SELECT status FROM agent_runs")
    assert row is not None and row[0] == "cancelled"


def test_step_lines_are_made_of_known_kinds_only() -> None:
    assert step_line("act", {"run_id": "abcdefghij", "tool": "t", "arguments": {}}) == (
        "run abcdefgh: called t {} -> {}"
    )
    assert step_line("perceive", {"run_id": "r"}) is None
    assert step_line("act", "not an object") is None
