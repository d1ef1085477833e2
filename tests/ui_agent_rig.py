"""A real office for the Agents, Automations and Activity section tests.

Real DuckDB, real agent runtime (built-ins plus ``agents/*.toml`` written
here), a scripted engine that ends every run with a final answer, and a
hash embedder so memory recall needs no model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from agent_fakes import ScriptedEngine, call
from pytestqt.qtbot import QtBot
from test_search import HashEmbedder
from ui_fakes import Windows

from app.office import Office
from app.ui.main_window import MainWindow
from app.ui.office_bridge import OfficeBridge

T = TypeVar("T")
MODEL = "/models/scripted.gguf"  # never loaded: the scripted engine answers

DESK_TOML = """\
id = "desk"
name = "Desk"
instructions = "Answer the owner briefly."
model_class = "fast"
triggers = ["manual", "schedule"]
schedules = ["0 9 * * *"]

[[tools]]
tool = "memory.search"
autonomy = "ask"

[budgets]
tokens_per_day = 50000
runs_per_hour = 30
"""
BROKEN_TOML = """\
name = "Broken"
instructions = "x"

[[tools]]
tool = "memory.search"
autonomy = 7
"""


class AgentEngine(ScriptedEngine):
    """Ends each run at once with a final answer; embeds with a hash."""

    def __init__(self) -> None:
        super().__init__(call("final", answer="Done."))

    def embedder(self) -> HashEmbedder:
        return HashEmbedder()


def write_agents(home: Path) -> None:
    folder = home / "agents"
    folder.mkdir(exist_ok=True)
    (folder / "desk.toml").write_text(DESK_TOML)
    (folder / "broken.toml").write_text(BROKEN_TOML)


def open_office_window(
    qtbot: QtBot, windows: Windows, home: Path
) -> tuple[MainWindow, OfficeBridge]:
    """A shown window whose office has started its agents."""
    write_agents(home)
    window, bridge = windows.open(AgentEngine, model=MODEL)
    started: list[bool] = []
    bridge.call(lambda office: office.start_agents() is not None, started.append)
    qtbot.waitUntil(lambda: started == [True], timeout=15_000)
    return window, bridge


def ask(qtbot: QtBot, bridge: OfficeBridge, op: Callable[[Office], T]) -> T:
    """Run ``op(office)`` through the bridge and wait for its answer."""
    answers: list[T] = []
    bridge.call(op, answers.append)
    qtbot.waitUntil(lambda: len(answers) == 1, timeout=15_000)
    return answers[0]
