"""The main window's navigation, shortcuts, model choice, close behaviour and tray."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog
from pytestqt.qtbot import QtBot
from ui_fakes import FakeEngine, Windows

from app.memory.db import Database
from app.memory.settings import Settings
from app.office import MODEL_SETTING, Office
from app.ui.main_window import MainWindow
from app.ui.status_bar import NO_MODEL
from app.ui.tray import create_tray


@pytest.fixture
def windows(qtbot: QtBot, soloist_home: Path) -> Iterator[Windows]:
    opened = Windows(qtbot, soloist_home)
    yield opened
    opened.close_all()


def seed_conversations(home: Path) -> tuple[str, str]:
    """Two saved conversations: (older, newer) ids."""
    office = Office(home, engine_factory=FakeEngine)
    try:
        older = office.new_conversation("Older").id
        office.conversations.append(older, "user", "first question")
        newer = office.new_conversation("Newer").id
        office.conversations.append(newer, "user", "second question")
        office.conversations.append(newer, "assistant", "second answer")
    finally:
        office.close()
    return older, newer


def press_ctrl(qtbot: QtBot, window: MainWindow, key: Qt.Key) -> None:
    """Press Ctrl+key in the window, where its shortcuts listen."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.focusWidget() or window, key, Qt.KeyboardModifier.ControlModifier)


def test_opens_on_the_most_recent_conversation_and_switches(
    qtbot: QtBot, windows: Windows, soloist_home: Path
) -> None:
    older, newer = seed_conversations(soloist_home)
    window, _ = windows.open(FakeEngine)
    assert window.conversations.ids() == [newer, older]
    qtbot.waitUntil(lambda: len(window.chat.transcript()) == 2)
    assert window.chat.transcript() == [("user", "second question"), ("assistant", "second answer")]
    window.conversations.list.setCurrentRow(1)
    qtbot.waitUntil(lambda: window.chat.transcript() == [("user", "first question")])
    assert window.conversation_id == older


def test_ctrl_n_starts_a_new_chat_and_ctrl_l_focuses_the_input(
    qtbot: QtBot, windows: Windows, soloist_home: Path
) -> None:
    seed_conversations(soloist_home)
    window, _ = windows.open(FakeEngine)
    qtbot.waitUntil(lambda: len(window.chat.transcript()) == 2)
    press_ctrl(qtbot, window, Qt.Key.Key_N)
    assert window.conversation_id is None
    assert window.chat.transcript() == []
    assert window.conversations.list.currentItem() is None
    window.conversations.list.setFocus()
    assert QApplication.focusWidget() is window.conversations.list
    press_ctrl(qtbot, window, Qt.Key.Key_L)
    assert QApplication.focusWidget() is window.composer.edit


def test_ctrl_q_asks_to_quit(qtbot: QtBot, windows: Windows) -> None:
    window, _ = windows.open(FakeEngine)
    with qtbot.waitSignal(window.quit_requested, timeout=1000):
        press_ctrl(qtbot, window, Qt.Key.Key_Q)


def test_the_chosen_model_is_shown_and_remembered(
    qtbot: QtBot, windows: Windows, soloist_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = str(soloist_home / "models" / "tiny.gguf")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_args: (chosen, ""))
    window, bridge = windows.open(FakeEngine)
    assert window.status.model_label.text() == NO_MODEL
    with qtbot.waitSignal(bridge.model_changed):
        window.model_action.trigger()
    assert window.status.model_label.text() == "Model: tiny.gguf"
    windows.close_all()
    with Database.open(soloist_home / "office.duckdb") as db:
        assert Settings(db).get(MODEL_SETTING) == chosen


def test_a_cancelled_file_dialog_changes_nothing(
    qtbot: QtBot, windows: Windows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_args: ("", ""))
    window, bridge = windows.open(FakeEngine, model="kept.gguf")
    with qtbot.assertNotEmitted(bridge.model_changed, wait=100):
        window.model_action.trigger()
    assert window.status.model_label.text() == "Model: kept.gguf"


def test_closing_hides_the_window_only_when_there_is_a_tray(qtbot: QtBot, windows: Windows) -> None:
    window, _ = windows.open(FakeEngine)
    window.set_hide_on_close(True)
    window.close()
    assert window.isHidden()
    window.bring_to_front()
    assert window.isVisible()
    window.set_hide_on_close(False)
    assert window.close()


def test_no_tray_under_offscreen(qapp: QApplication) -> None:
    assert create_tray(qapp.windowIcon()) is None


def test_clicking_send_with_an_empty_input_sends_nothing(qtbot: QtBot, windows: Windows) -> None:
    window, _ = windows.open(FakeEngine, model="fake.gguf")
    with qtbot.assertNotEmitted(window.composer.send_requested, wait=50):
        qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)
        qtbot.keyClicks(window.composer.edit, "   ")
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
