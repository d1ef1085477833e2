"""The Agents section on a real office: states, definitions, autonomy, commands, trace."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from ui_agent_rig import ask, open_office_window
from ui_fakes import Windows

from app.agents.autonomy import Autonomy
from app.agents.lifecycle import AgentState
from app.ui.main_window import MainWindow
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import agents_ops
from app.ui.sections.agent_detail import LEVEL_NAMES, metrics_summary
from app.ui.sections.agents import AgentsSection
from app.ui.sections.trace_view import format_duration, summarise


@pytest.fixture
def windows(qtbot: QtBot, soloist_home: Path) -> Iterator[Windows]:
    opened = Windows(qtbot, soloist_home)
    yield opened
    opened.close_all()


@pytest.fixture
def opened(
    qtbot: QtBot, windows: Windows, soloist_home: Path
) -> tuple[MainWindow, OfficeBridge, AgentsSection]:
    window, bridge = open_office_window(qtbot, windows, soloist_home)
    window.show_section("agents")
    page = window.pages.currentWidget()
    assert isinstance(page, AgentsSection)
    qtbot.waitUntil(lambda: page.current_agent() is not None, timeout=15_000)
    page.select_agent("desk")
    qtbot.waitUntil(lambda: page.current_agent() == "desk")
    return window, bridge, page


def test_lists_agents_with_their_definition_and_file_errors(
    opened: tuple[MainWindow, OfficeBridge, AgentsSection],
) -> None:
    _, _, page = opened
    ids = [page.list.item(row).data(Qt.ItemDataRole.UserRole) for row in range(page.list.count())]
    assert "desk" in ids and len(ids) > 1  # the built-ins too
    assert page.errors.isVisible()
    assert "agents/broken.toml: tools[0].autonomy" in page.errors.text()
    fields = page.info.fields
    assert fields["State"].text() == "idle"
    assert fields["Triggers"].text() == "manual, schedule"
    assert fields["Schedule"].text() == "every day at 09:00"
    assert fields["Schedule"].toolTip() == "cron 0 9 * * *"
    assert fields["Next run"].text() != "not scheduled"
    assert "50,000 tokens a day, 30 runs an hour" in fields["Budgets"].text()
    assert fields["Defined in"].text() == "desk.toml"
    combo = page.autonomy.combos["memory.search"]
    assert combo.currentText() == LEVEL_NAMES[Autonomy.ASK]
    assert page.autonomy.notes["memory.search"].text() == "the default"


def test_changing_autonomy_is_stored_and_audited_as_the_owner_at_the_ui(
    qtbot: QtBot, opened: tuple[MainWindow, OfficeBridge, AgentsSection]
) -> None:
    _, bridge, page = opened
    combo = page.autonomy.combos["memory.search"]
    index = combo.findData(int(Autonomy.SILENT))
    combo.setCurrentIndex(index)
    combo.activated.emit(index)
    qtbot.waitUntil(
        lambda: page.autonomy.notes["memory.search"].text().startswith("your choice"),
        timeout=15_000,
    )
    assert "default: ask every time" in page.autonomy.notes["memory.search"].text()
    changes = ask(qtbot, bridge, lambda office: office.agents.autonomy.changes("desk"))
    assert [(c.tool, c.old_level, c.new_level, c.changed_by) for c in changes] == [
        ("memory.search", None, Autonomy.SILENT, "owner:ui")
    ]
    assert combo.currentText() == LEVEL_NAMES[Autonomy.SILENT]


def test_a_tool_not_granted_is_refused_readably(
    qtbot: QtBot, opened: tuple[MainWindow, OfficeBridge, AgentsSection]
) -> None:
    _, _, page = opened
    page.set_level("desk", "email.send", int(Autonomy.SILENT))
    qtbot.waitUntil(lambda: "may not call email.send" in page.message.text(), timeout=15_000)


def test_run_now_shows_the_run_step_by_step_and_its_metrics(
    qtbot: QtBot, opened: tuple[MainWindow, OfficeBridge, AgentsSection]
) -> None:
    _, _, page = opened
    page.run_button.click()
    qtbot.waitUntil(lambda: len(page.trace.runs.ids()) == 1, timeout=15_000)
    runs = page.trace.runs
    qtbot.waitUntil(lambda: runs.item(0, 3).text() == "succeeded", timeout=15_000)
    runs.selectRow(0)
    qtbot.waitUntil(lambda: page.trace.steps.rowCount() > 0, timeout=15_000)
    kinds = [page.trace.steps.item(row, 1).text() for row in range(page.trace.steps.rowCount())]
    assert kinds[:3] == ["perceive", "recall", "reason"]
    reason = kinds.index("reason")
    assert page.trace.steps.item(reason, 9).text().endswith("chars)")  # the prompt's hash
    page.trace.steps.selectRow(reason)
    assert "prompt sha256:" in page.trace.details.toPlainText()
    assert '"tool": "final"' in page.trace.details.toPlainText()
    qtbot.waitUntil(lambda: page.metrics.summary.text().startswith("1 runs"), timeout=15_000)
    assert page.metrics.latency.accessibleDescription().startswith("p50: ")
    assert "highest 1 runs" in page.metrics.runs.accessibleDescription()


def test_pause_and_resume(
    qtbot: QtBot, opened: tuple[MainWindow, OfficeBridge, AgentsSection]
) -> None:
    _, bridge, page = opened
    page.pause_button.click()
    qtbot.waitUntil(lambda: page.info.fields["State"].text() == "paused", timeout=15_000)
    assert not page.run_button.isEnabled() and page.resume_button.isEnabled()
    state = ask(qtbot, bridge, lambda office: office.agents.manager.state("desk"))
    assert state is AgentState.PAUSED
    page.resume_button.click()
    qtbot.waitUntil(lambda: page.info.fields["State"].text() == "idle", timeout=15_000)
    assert page.run_button.isEnabled()


def test_hidden_section_stops_its_timer(
    qtbot: QtBot, opened: tuple[MainWindow, OfficeBridge, AgentsSection]
) -> None:
    window, _, page = opened
    assert page.live
    window.show_section("chat")
    qtbot.waitUntil(lambda: not page.live)


def test_runs_per_day_series_has_one_point_a_day() -> None:
    now = datetime(2025, 3, 10, 15, tzinfo=UTC)
    series = agents_ops.day_series({0: 2, 3: 1}, now)
    assert len(series) == agents_ops.CHART_DAYS
    assert series[-1] == (datetime(2025, 3, 10, tzinfo=UTC).timestamp(), 2.0)
    assert series[-4][1] == 1.0
    assert series[-2][0] - series[-3][0] == timedelta(days=1).total_seconds()


def test_metrics_summary_without_runs() -> None:
    assert metrics_summary(None) == "No finished runs yet."


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "…"), (0.0123, "12 ms"), (2.345, "2.3 s"), (75, "1 min 15 s"), (300, "5 min")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
    assert summarise({"b": 1, "a": "x  y"}) == '{"a": "x  y", "b": 1}'.replace("  ", " ")
    assert len(summarise("z" * 500)) == 120
