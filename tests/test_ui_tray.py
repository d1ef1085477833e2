"""The tray's quick actions, its approvals badge, and coalesced notifications."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPixmap
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.ui.notifications import Notice, Notifier, notifier_for, summary_of
from app.ui.tray import PAUSE_TOOLTIP, Tray, badge_pixmap, create_tray, waiting_text


def plain_icon() -> QIcon:
    pixmap = QPixmap(64, 64)
    pixmap.fill(QColor(40, 90, 160))
    return QIcon(pixmap)


@pytest.fixture
def tray(qapp: QApplication) -> Tray:
    return Tray(plain_icon())


def menu_texts(tray: Tray) -> list[str]:
    return [a.text() for a in tray.menu.actions() if not a.isSeparator()]


def test_no_tray_under_offscreen(qapp: QApplication) -> None:
    assert create_tray(plain_icon()) is None


def test_the_menu_offers_the_quick_actions(tray: Tray) -> None:
    assert menu_texts(tray) == [
        "New chat",
        "Ask about clipboard",
        "Draft reply to the email in the clipboard",
        "Today's briefing",
        "Approvals (0)",
        "Pause background work",
        "Open Soloist",
        "Quit",
    ]
    assert tray.pause_action.toolTip() == PAUSE_TOOLTIP


def test_clipboard_actions_carry_the_text_copied_at_click_time(qtbot: QtBot, tray: Tray) -> None:
    clipboard = QGuiApplication.clipboard()
    clipboard.setText("What is the VAT rate for books?")
    with qtbot.waitSignal(tray.ask_clipboard_requested, timeout=1000) as asked:
        tray.ask_clipboard_action.trigger()
    assert asked.args == ["What is the VAT rate for books?"]
    clipboard.setText("From: ada@example.org\nCan we move the call to Friday?")
    with qtbot.waitSignal(tray.draft_reply_requested, timeout=1000) as draft:
        tray.draft_reply_action.trigger()
    assert draft.args == ["From: ada@example.org\nCan we move the call to Friday?"]


def test_each_action_emits_its_signal(qtbot: QtBot, tray: Tray) -> None:
    pairs = [
        (tray.new_chat_action, tray.new_chat_requested),
        (tray.briefing_action, tray.briefing_requested),
        (tray.approvals_action, tray.approvals_requested),
        (tray.show_action, tray.show_requested),
        (tray.quit_action, tray.quit_requested),
    ]
    for action, signal in pairs:
        with qtbot.waitSignal(signal, timeout=1000):
            action.trigger()


def test_pause_toggles_between_pause_and_resume(qtbot: QtBot, tray: Tray) -> None:
    with qtbot.waitSignal(tray.pause_toggled, timeout=1000) as paused:
        tray.pause_action.trigger()
    assert paused.args == [True]
    assert tray.pause_action.text() == "Resume background work"
    with qtbot.waitSignal(tray.pause_toggled, timeout=1000) as resumed:
        tray.pause_action.trigger()
    assert resumed.args == [False]
    assert tray.pause_action.text() == "Pause background work"


def test_the_badge_is_drawn_on_the_icon(tray: Tray) -> None:
    base = plain_icon()
    assert badge_pixmap(base, 0).toImage() == base.pixmap(64, 64).toImage()
    assert badge_pixmap(base, 3).toImage() != badge_pixmap(base, 0).toImage()
    assert badge_pixmap(base, 3).toImage() != badge_pixmap(base, 4).toImage()
    tray.set_pending(0)
    without = tray.icon.icon().pixmap(64, 64).toImage()
    assert tray.icon.toolTip() == "Soloist"
    tray.set_pending(3)
    assert tray.icon.icon().pixmap(64, 64).toImage() != without
    assert tray.icon.toolTip() == "Soloist — 3 approvals waiting"
    assert tray.approvals_action.text() == "Approvals (3)"
    assert waiting_text(1) == "1 approval waiting"


def test_a_badge_on_an_empty_icon_still_shows_the_count(qapp: QApplication) -> None:
    empty = QIcon()
    assert badge_pixmap(empty, 2).toImage() != badge_pixmap(empty, 0).toImage()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_notices_within_the_window_are_coalesced(qtbot: QtBot, qapp: QApplication) -> None:
    shown: list[tuple[str, str]] = []
    clock = Clock()
    notifier = Notifier(lambda t, x: shown.append((t, x)), window_s=0.2, clock=clock)
    notifier.approvals([("a1", "inbox · crm.add_note · low risk · just now")])
    assert shown == [("Approval needed", "inbox · crm.add_note · low risk · just now")]
    notifier.approvals([("a2", "two"), ("a3", "three")])
    notifier.failures([("a4", "email.send failed: server said no")])
    assert len(shown) == 1
    assert notifier.held == 3
    clock.now += 0.2
    qtbot.waitUntil(lambda: len(shown) == 2, timeout=2000)
    assert shown[1] == ("Soloist", "2 new approvals waiting; 1 action failed.")
    assert notifier.held == 0
    clock.now += 10
    notifier.approvals([("a5", "five")])
    assert shown[-1] == ("Approval needed", "five")


def test_clicking_a_notice_opens_its_item_or_the_section(qtbot: QtBot, qapp: QApplication) -> None:
    clock = Clock()
    notifier = Notifier(lambda t, x: None, window_s=5, clock=clock)
    notifier.approvals([("a1", "one")])
    with qtbot.waitSignal(notifier.open_item_requested, timeout=1000) as opened:
        notifier.message_clicked()
    assert opened.args == ["approvals", "a1"]
    notifier.approvals([("a2", "two"), ("a3", "three")])
    notifier.flush()
    with qtbot.waitSignal(notifier.open_item_requested, timeout=1000) as summary:
        notifier.message_clicked()
    assert summary.args == ["approvals", ""]


def test_the_tray_bubble_click_reaches_the_notifier(qtbot: QtBot, tray: Tray) -> None:
    notifier = notifier_for(tray)
    notifier.on_screen = Notice("approvals", "a9", "Approval needed", "nine")
    with qtbot.waitSignal(notifier.open_item_requested, timeout=1000) as opened:
        tray.icon.messageClicked.emit()
    assert opened.args == ["approvals", "a9"]


def test_without_a_tray_notices_are_only_kept(qapp: QApplication) -> None:
    notifier = notifier_for(None)
    notifier.failures([("a1", "crm.add_note failed")])
    assert notifier.on_screen is not None
    assert notifier.on_screen.kind == "failure"
    one = Notice("agents", "x", "t", "one")
    assert summary_of([one]) is one
    assert summary_of([one, one]).section == "agents"
