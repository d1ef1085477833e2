"""The sidebar and the section registry: pages, Ctrl+<n>, and bridge.call off the UI thread."""

from __future__ import annotations

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
from app.ui.main_window import CHAT
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import registered, section

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

    bridge.opened.connect(lambda: bridge.call(ask, show))
    return label


@pytest.fixture
def windows(qtbot: QtBot, soloist_home: Path) -> Iterator[Windows]:
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
