"""The Home section on a real office: counts from real stores, before and after agents start.

A proposal goes through a real ``Outbox``, an automation into the real
``AutomationStore``, a run into the real ``TraceStore`` and a briefing into
long-term memory (embedded by the fake engine's ``HashEmbedder``, see
``test_ui_memory``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from test_ui_memory import EmbeddingEngine
from ui_fakes import Windows

from app.agents.automations import AutomationStore, CronSchedule
from app.agents.autonomy import Autonomy, AutonomyStore
from app.agents.outbox import Outbox
from app.agents.runtime import MANAGED_BY
from app.agents.trace import RunState, TraceStore
from app.integrations.base import Action, PreparedAction, Risk
from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import registered
from app.ui.sections.connections import ConnectionsPage
from app.ui.sections.home import AGENTS_STARTING, NO_BRIEFING, HomePage
from app.ui.sections.home_ops import BRIEFING_AGENT, AgentsNotStartedError, run_briefing
from app.ui.sections.memory import MemoryPage


@pytest.fixture
def office(soloist_home: Path) -> Office:
    engine = EmbeddingEngine()
    return Office(soloist_home, engine_factory=lambda: engine)


@pytest.fixture
def bridge(office: Office) -> Iterator[OfficeBridge]:
    bridge = OfficeBridge(office)
    yield bridge
    bridge.shutdown()


def show_home(qtbot: QtBot, bridge: OfficeBridge) -> HomePage:
    page = HomePage(bridge)
    qtbot.addWidget(page)
    page.show()
    return page


def never_resolved(account_id: str, action: str) -> Action:
    raise AssertionError("a proposal is not executed")


def propose(office: Office, key: str) -> None:
    outbox = Outbox(office.db, never_resolved, AutonomyStore(office.db))
    prepared = PreparedAction("crm.add_note", "crm-1", {"text": "call Ann"}, "Note", Risk.LOW, key)
    outbox.propose("follow-up-keeper", "run-1", prepared, (), (), Autonomy.ASK)


def items(widget: object) -> list[str]:
    return [widget.item(row).text() for row in range(widget.count())]  # type: ignore[attr-defined]


def test_home_shows_real_counts_before_the_agents_start(
    qtbot: QtBot, office: Office, bridge: OfficeBridge
) -> None:
    propose(office, "key-1")
    propose(office, "key-2")
    store = AutomationStore(office.db)
    store.add("Morning mail", "agent:inbox-triage", CronSchedule("0 8 * * *"))
    line = "0 9 * * 1-5"  # an agent's schedule line, as the runtime stores it
    payload = {"managed_by": MANAGED_BY, "line": line}
    store.add(f"order-desk: {line}", "agent:order-desk", CronSchedule(line), payload=payload)
    trace = TraceStore(office.db)
    run = trace.start_run("order-desk", "manual")
    trace.finish_run(run.id, RunState.FAILED, error="no model was chosen")
    office.memory.remember("Two orders shipped; one refund waits.", scope="agent:daily-briefing")
    page = show_home(qtbot, bridge)
    qtbot.waitUntil(lambda: page.approvals.text().startswith("2 actions wait"))
    assert page.agents.text() == AGENTS_STARTING
    assert not page.run_briefing.isEnabled()
    upcoming = items(page.upcoming)
    assert any(text.endswith("  Morning mail") for text in upcoming)
    assert any(text.endswith("  Order desk — weekdays at 09:00") for text in upcoming)
    recent = items(page.recent)
    assert recent[0].endswith("  order-desk  failed: no model was chosen")
    assert "Two orders shipped" in page.briefing.text()
    with qtbot.waitSignal(page.section_requested) as requested:
        qtbot.mouseClick(page.approvals, Qt.MouseButton.LeftButton)
    assert requested.args == ["approvals"]
    with pytest.raises(AgentsNotStartedError, match="still starting"):
        run_briefing(office)


def test_an_empty_office_says_so_and_refreshes_only_while_shown(
    qtbot: QtBot, bridge: OfficeBridge
) -> None:
    page = show_home(qtbot, bridge)
    qtbot.waitUntil(lambda: items(page.recent) == ["No agent has run yet."])
    assert page.approvals.text() == "Nothing waits for your approval"
    assert not page.approvals.isEnabled()
    assert page.briefing.text() == NO_BRIEFING
    assert page.live
    page.hide()
    assert not page.live


def test_with_agents_running_the_briefing_can_be_run_now(
    qtbot: QtBot, office: Office, bridge: OfficeBridge
) -> None:
    office.set_model_path(str(office.home / "fake.gguf"))
    office.start_agents()
    page = show_home(qtbot, bridge)
    qtbot.waitUntil(lambda: page.agents.text().startswith("Running:"))
    assert page.run_briefing.isEnabled()
    assert any("Daily briefing — every day at 08:00" in text for text in items(page.upcoming))
    qtbot.mouseClick(page.run_briefing, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "on its way" in page.message.text())
    agents = office.agents
    assert agents is not None and agents.manager.wait_idle(30)
    page.refresh()
    qtbot.waitUntil(lambda: any(BRIEFING_AGENT in text for text in items(page.recent)))


def test_the_sections_register_in_order_and_open_in_the_window(
    qtbot: QtBot, soloist_home: Path
) -> None:
    orders = {spec.key: spec.order for spec in registered()}
    assert (orders["home"], orders["memory"], orders["connections"]) == (10, 60, 70)
    windows = Windows(qtbot, soloist_home)
    try:
        window, _ = windows.open(EmbeddingEngine)
        assert window.sidebar.keys()[0] == "home"
        window.show_section("memory")
        assert isinstance(window.pages.currentWidget(), MemoryPage)
        window.show_section("connections")
        page = window.pages.currentWidget()
        assert isinstance(page, ConnectionsPage)
        qtbot.waitUntil(lambda: page.title.text().startswith("No account"))
        window.show_section("home")
        home = window.pages.currentWidget()
        assert isinstance(home, HomePage) and window.current_section == "home"
        qtbot.waitUntil(lambda: home.approvals.text() == "Nothing waits for your approval")
    finally:
        windows.close_all()
