"""The sidebar and the section registry: pages, Ctrl+<n>, and bridge.call off the UI thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget
from pytestqt.qtbot import QtBot
from test_ui_window import press_ctrl
from ui_fakes import FakeEngine, Windows

from app.office import Office
from app.ui import sections
from app.ui.main_window import CHAT
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import SectionInfo, registered, section

CALLS: list[tuple[str, bool]] = []


@section("probe-test", "Probe", order=15)
def make_probe(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    """A section that asks the office for its home on a worker thread."""
    label = QLabel("probe", parent)

    def ask(office: Office) -> str:
        CALLS.append(("op", threading.current_thread() is threading.main_thread()))
        return str(office.home)

    def show(home: str) -> None:
        CALLS.append(("done", threading.current_thread() is threading.main_thread()))
        label.setText(home)

    bridge.when_open(lambda: bridge.call(ask, show))
    return label


PROBE = SectionInfo(__name__, "probe-test", "Probe", 15)


@pytest.fixture
def windows(qtbot: QtBot, soloist_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Windows]:
    monkeypatch.setattr(sections, "SECTIONS", (*sections.SECTIONS, PROBE))
    opened = Windows(qtbot, soloist_home)
    yield opened
    opened.close_all()


def test_sections_are_ordered_and_chat_is_shown_first(windows: Windows) -> None:
    window, _ = windows.open(FakeEngine)
    keys = window.sidebar.keys()
    assert keys.index("probe-test") < keys.index(CHAT)
    orders = [spec.order for spec in registered()]
    assert orders == sorted(orders)
    assert window.current_section == CHAT
    chat = window.page(CHAT)
    assert chat is not None and chat.objectName() == "section-chat"


def test_sidebar_and_ctrl_number_switch_pages(qtbot: QtBot, windows: Windows) -> None:
    window, _ = windows.open(FakeEngine)
    window.sidebar.select("probe-test")
    assert window.pages.currentWidget().accessibleName() == "Probe"
    number = window.sidebar.keys().index(CHAT) + 1
    press_ctrl(qtbot, window, getattr(Qt.Key, f"Key_{number}"))
    qtbot.waitUntil(lambda: window.current_section == CHAT)
    window.show_section("no-such-section")
    assert window.current_section == CHAT


def test_bridge_call_runs_off_the_ui_thread_and_answers_on_it(
    qtbot: QtBot, windows: Windows, soloist_home: Path
) -> None:
    CALLS.clear()
    window, _ = windows.open(FakeEngine)
    window.show_section("probe-test")
    page = window.pages.currentWidget()
    assert isinstance(page, QLabel)
    qtbot.waitUntil(lambda: page.text() == str(soloist_home))
    assert CALLS == [("op", False), ("done", True)]


def test_the_window_paints_with_placeholders_and_builds_pages_after(
    qtbot: QtBot, windows: Windows
) -> None:
    window, _ = windows.open(FakeEngine)
    declared = [info.key for info in sections.declared()]
    assert set(declared) <= set(window.sidebar.keys())
    assert not any(window.pages.is_built(key) for key in declared)
    built: list[str] = []
    window.pages.page_built.connect(lambda key, _page: built.append(key))
    with qtbot.waitSignal(window.pages.all_built, timeout=30_000):
        window.build_sections()
    assert built[0] == "approvals"  # the shown one (Chat) exists; then the tray's
    assert sorted(k for k in built if k != "first-run") == sorted(declared)
    page = window.page("probe-test")
    assert page is not None and page.accessibleName() == "Probe"


def test_every_section_has_a_shortcut(qtbot: QtBot, soloist_home: Path) -> None:
    windows = Windows(qtbot, soloist_home)  # the real table, without the probe
    window, _ = windows.open(FakeEngine)
    tips = [window.sidebar.item(row).toolTip() for row in range(window.sidebar.count())]
    assert all("Ctrl+" in tip for tip in tips), tips
    try:
        press_ctrl(qtbot, window, Qt.Key.Key_Comma)
        qtbot.waitUntil(lambda: window.current_section == "settings")
    finally:
        windows.close_all()


def test_a_page_asked_for_early_is_built_on_the_spot(windows: Windows) -> None:
    window, _ = windows.open(FakeEngine)
    assert not window.pages.is_built("probe-test")
    window.show_section("probe-test")
    assert window.pages.is_built("probe-test")
    assert isinstance(window.pages.currentWidget(), QLabel)


def test_a_module_that_registers_something_else_is_refused() -> None:
    wrong = SectionInfo(__name__, "probe-test", "Probe", 99)  # the decorator says 15
    with pytest.raises(LookupError, match="does not register"):
        sections.load(wrong)


HEAVY = ("numpy", "duckdb", "httpx", "apscheduler", "torch", "sentence_transformers")
SHOW_WINDOW = """
import sys
from PySide6.QtWidgets import QApplication
import app.ui.app
from app.ui.main_window import MainWindow
from app.ui.office_bridge import OfficeBridge
qt = QApplication(sys.argv[:1])
window = MainWindow(OfficeBridge())
window.show()
qt.processEvents()
print(",".join(m for m in sys.argv[1:] if m in sys.modules) or "none")
"""


def test_the_start_path_imports_nothing_heavy(soloist_home: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SOLOIST_HOME": str(soloist_home)}
    done = subprocess.run(
        [sys.executable, "-c", SHOW_WINDOW, *HEAVY, "app.agents.runtime", "app.office"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "none"
