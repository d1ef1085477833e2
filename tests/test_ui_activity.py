"""The Activity section on a real trace: newest first, filters, paging, steps and export."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agent_fakes import Clock
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot
from ui_agent_rig import MODEL, AgentEngine, ask
from ui_fakes import Windows

from app.agents.trace import RunState, StepKind, TraceStep, TraceStore
from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections.activity import ActivitySection
from app.ui.sections.activity_ops import ActivityFilter, safe_cell, where_clause

T0 = datetime(2025, 3, 10, 8, tzinfo=UTC)
TOOLS = 8  # the "Tools" column of the run table


@pytest.fixture
def windows(qtbot: QtBot, soloist_home: Path) -> Iterator[Windows]:
    opened = Windows(qtbot, soloist_home)
    yield opened
    opened.close_all()


def trace_runs(office: Office) -> list[str]:
    """12 runs through the real trace store: 7 of alpha (crm.search), 5 failed of beta."""
    clock = Clock(T0)
    trace = TraceStore(office.db, clock=clock)
    ids = []
    for number in range(12):
        agent, tool = ("alpha", "crm.search") if number % 2 == 0 or number > 9 else (
            "beta", "email.save_draft")  # fmt: skip
        run = trace.start_run(agent, "manual")
        trace.add_step(run.id, TraceStep(StepKind.PERCEIVE, clock(), 0.01, {"n": number}))
        step = TraceStep(
            StepKind.ACT, clock(), 0.2, tool=tool, tool_args_sha256="ab" * 32,
            result={"ok": True}, prompt_tokens=10, completion_tokens=5,
        )  # fmt: skip
        trace.add_step(run.id, step)
        clock.advance(60)
        if agent == "beta":
            trace.finish_run(run.id, RunState.FAILED, error=f'=HYPERLINK("x") {number}')
        else:
            trace.finish_run(run.id, RunState.SUCCEEDED, outcome=f"run {number} done")
        ids.append(run.id)
    return ids


@pytest.fixture
def opened(qtbot: QtBot, windows: Windows) -> tuple[OfficeBridge, ActivitySection, list[str]]:
    window, bridge = windows.open(AgentEngine, model=MODEL)  # memory embeds with a hash
    # Started agents mark runs found running interrupted: trace only after they start.
    ask(qtbot, bridge, lambda office: office.start_agents())
    ids = ask(qtbot, bridge, trace_runs)
    page = window.pages.page("activity")  # built now (the window builds pages after painting)
    assert isinstance(page, ActivitySection)
    page.page_size = 5
    window.show_section("activity")
    qtbot.waitUntil(lambda: page.shown is not None and page.shown.total == 12, timeout=15_000)
    return bridge, page, ids


def test_newest_first_a_page_at_a_time(
    qtbot: QtBot, opened: tuple[OfficeBridge, ActivitySection, list[str]]
) -> None:
    _, page, ids = opened
    assert page.trace.runs.ids() == ids[::-1][:5]
    assert page.position.text() == "Runs 1–5 of 12"
    assert not page.newer.isEnabled() and page.older.isEnabled()
    page.older.click()
    qtbot.waitUntil(lambda: page.position.text() == "Runs 6–10 of 12", timeout=15_000)
    assert page.trace.runs.ids() == ids[::-1][5:10]
    page.older.click()
    qtbot.waitUntil(lambda: page.position.text() == "Runs 11–12 of 12", timeout=15_000)
    assert not page.older.isEnabled() and page.newer.isEnabled()
    page.newer.click()
    qtbot.waitUntil(lambda: page.position.text() == "Runs 6–10 of 12", timeout=15_000)


def test_filters_by_agent_state_and_tool_text(
    qtbot: QtBot, opened: tuple[OfficeBridge, ActivitySection, list[str]]
) -> None:
    _, page, _ = opened
    assert [page.agent.itemData(i) for i in range(page.agent.count())] == ["", "alpha", "beta"]
    page.agent.setCurrentIndex(page.agent.findData("beta"))
    page.agent.activated.emit(page.agent.currentIndex())
    qtbot.waitUntil(lambda: page.position.text() == "Runs 1–5 of 5", timeout=15_000)
    runs = page.trace.runs
    assert {runs.item(row, 1).text() for row in range(runs.rowCount())} == {"beta"}
    page.agent.setCurrentIndex(0)
    page.state.setCurrentIndex(page.state.findData(RunState.SUCCEEDED.value))
    page.state.activated.emit(page.state.currentIndex())
    qtbot.waitUntil(lambda: page.position.text() == "Runs 1–5 of 7", timeout=15_000)
    page.state.setCurrentIndex(0)
    qtbot.keyClicks(page.tool_text, "SAVE_dr")
    qtbot.waitUntil(lambda: page.position.text() == "Runs 1–5 of 5", timeout=15_000)
    assert {runs.item(row, TOOLS).text() for row in range(runs.rowCount())} == {"email.save_draft"}
    page.tool_text.setText("no.such.tool")
    qtbot.waitUntil(lambda: page.position.text() == "No runs match.", timeout=15_000)
    assert runs.rowCount() == 0


def test_choosing_a_run_shows_its_steps(
    qtbot: QtBot, opened: tuple[OfficeBridge, ActivitySection, list[str]]
) -> None:
    _, page, ids = opened
    page.trace.runs.select_run(ids[-1])
    qtbot.waitUntil(lambda: page.trace.steps.rowCount() == 2, timeout=15_000)
    steps = page.trace.steps
    assert [steps.item(row, 1).text() for row in range(2)] == ["perceive", "act"]
    assert steps.item(1, 6).text() == "crm.search"
    assert steps.item(1, 7).text() == "ab" * 6
    assert steps.item(1, 5).text() == "10 / 5"
    assert steps.item(1, 8).text() == '{"ok": true}'


def test_exports_the_filtered_runs_to_csv_and_json(
    qtbot: QtBot,
    opened: tuple[OfficeBridge, ActivitySection, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, page, _ = opened
    page.state.setCurrentIndex(page.state.findData(RunState.FAILED.value))
    target = tmp_path / "failed.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: (str(target), "CSV (*.csv)"))
    page.export_button.click()
    qtbot.waitUntil(lambda: page.message.text().startswith("Exported 5 runs"), timeout=15_000)
    with target.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and {row["state"] for row in rows} == {"failed"}
    assert all(row["error"].startswith("'=HYPERLINK") for row in rows)
    assert {row["tools"] for row in rows} == {"email.save_draft"}
    assert not list(tmp_path.glob(".*.part"))
    page.state.setCurrentIndex(0)
    page.export_to(tmp_path / "all.json")
    qtbot.waitUntil(lambda: page.message.text().startswith("Exported 12 runs"), timeout=15_000)
    exported = json.loads((tmp_path / "all.json").read_text())["runs"]
    assert len(exported) == 12
    assert [step["kind"] for step in exported[0]["steps"]] == ["perceive", "act"]
    assert exported[0]["started_at"] > exported[-1]["started_at"]  # newest first


def test_an_export_that_cannot_be_written_says_so(
    qtbot: QtBot, opened: tuple[OfficeBridge, ActivitySection, list[str]], tmp_path: Path
) -> None:
    _, page, _ = opened
    page.export_to(tmp_path / "missing-folder" / "out.csv")
    qtbot.waitUntil(lambda: page.message.text().startswith("Could not write out.csv"),
                    timeout=15_000)  # fmt: skip
    assert page.export_button.isEnabled()


def test_where_clause_and_safe_cells() -> None:
    assert where_clause(ActivityFilter()) == ("", [])
    sql, params = where_clause(ActivityFilter("alpha", RunState.FAILED, " crm "))
    assert sql.count("?") == 3 and params == ["alpha", "failed", "crm"]
    assert safe_cell("=1+1") == "'=1+1" and safe_cell("-5") == "'-5"
    assert safe_cell("plain") == "plain" and safe_cell(3) == 3
