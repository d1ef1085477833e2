"""The sections' shared refresh rule (``RefreshingSection``) and status line (``StatusLabel``)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from app.ui.sections.refreshing import RefreshingSection, StatusLabel

INTERVAL_MS = 20


class Bridge(QObject):
    """The part of ``OfficeBridge`` the base class uses."""

    opened = Signal()

    def __init__(self, is_open: bool = False) -> None:
        super().__init__()
        self.is_open = is_open


class Counting(RefreshingSection):
    refresh_interval_ms = INTERVAL_MS

    def __init__(self, bridge: Bridge) -> None:
        super().__init__(bridge)  # type: ignore[arg-type]
        self.refreshes = 0  # set after the base class: a late page's first load waits for it

    def refresh(self) -> None:
        self.refreshes += 1


class ShownOnly(Counting):
    refresh_interval_ms = 0


def make(qtbot: QtBot, kind: type[Counting] = Counting, is_open: bool = False) -> Counting:
    page = kind(Bridge(is_open))
    qtbot.addWidget(page)
    return page


def test_reloads_when_shown_and_on_a_timer_only_while_visible(qtbot: QtBot) -> None:
    page = make(qtbot)
    qtbot.wait(3 * INTERVAL_MS)
    assert page.refreshes == 0 and not page.live  # hidden: nothing runs
    page.show()
    assert page.refreshes == 1 and page.live
    qtbot.waitUntil(lambda: page.refreshes >= 3)
    page.hide()
    assert not page.live
    stopped = page.refreshes
    qtbot.wait(3 * INTERVAL_MS)
    assert page.refreshes == stopped


def test_the_office_opening_reloads_a_visible_section_only(qtbot: QtBot) -> None:
    page = make(qtbot, ShownOnly)
    bridge = page._bridge
    bridge.opened.emit()  # type: ignore[attr-defined]
    assert page.refreshes == 0
    page.show()
    assert page.refreshes == 1 and not page.live  # no interval: no timer
    bridge.opened.emit()  # type: ignore[attr-defined]
    assert page.refreshes == 2


def test_a_page_built_after_the_office_opened_does_its_first_load(qtbot: QtBot) -> None:
    class Eager(ShownOnly):
        def on_opened(self) -> None:
            self.refresh()  # like Approvals: loads even while hidden

    page = make(qtbot, Eager, is_open=True)
    assert page.refreshes == 0  # not from inside the constructor
    qtbot.waitUntil(lambda: page.refreshes == 1)
    shown = make(qtbot, Eager, is_open=True)
    shown.show()  # loads as it is shown: the late first load is not needed
    qtbot.wait(3 * INTERVAL_MS)
    assert shown.refreshes == 1


def test_refresh_must_be_written_by_the_section(qtbot: QtBot) -> None:
    page = RefreshingSection(Bridge())  # type: ignore[arg-type]
    qtbot.addWidget(page)
    with pytest.raises(NotImplementedError, match="must implement refresh"):
        page.refresh()


def test_the_status_line_takes_no_room_while_empty(qtbot: QtBot) -> None:
    holder = QWidget()
    qtbot.addWidget(holder)
    status = StatusLabel("Status", holder)
    QVBoxLayout(holder).addWidget(status)
    holder.show()
    assert status.accessibleName() == "Status" and status.wordWrap()
    assert not status.isVisible()
    status.setText("Syncing…")
    assert status.isVisible() and status.text() == "Syncing…"
    status.clear()
    assert not status.isVisible() and status.text() == ""
    status.setText("")
    assert not status.isVisible()


class ReadingBridge(Bridge):
    """Keeps each call's callbacks, as the real bridge would run them later; drops them closed."""

    def __init__(self, is_open: bool = False) -> None:
        super().__init__(is_open)
        self.calls: list[tuple[object, object, object]] = []

    def call(self, op: object, on_success: object, on_failure: object) -> None:
        if self.is_open:  # the real bridge runs nothing before the office is open
            self.calls.append((op, on_success, on_failure))


class Reading(RefreshingSection):
    def __init__(self, bridge: ReadingBridge) -> None:
        super().__init__(bridge)  # type: ignore[arg-type]
        self.version = 0
        self.shown: list[int] = []
        self.failures: list[str] = []

    def refresh(self) -> None:
        version = self.version
        self.load(lambda office: version, self.shown.append)

    def load_failed(self, message: str) -> None:
        self.failures.append(message)


def answer(bridge: ReadingBridge, index: int = -1) -> None:
    op, on_success, _ = bridge.calls[index]
    on_success(op(None))  # type: ignore[operator]


def test_one_read_at_a_time_and_a_stale_answer_is_dropped(qtbot: QtBot) -> None:
    bridge = ReadingBridge(is_open=True)
    page = Reading(bridge)
    qtbot.addWidget(page)
    page.refresh()
    page.version = 1
    page.refresh()  # while the first read is out: no second read yet
    assert len(bridge.calls) == 1
    answer(bridge, 0)  # the first answer predates version 1: dropped, read again
    assert page.shown == [] and len(bridge.calls) == 2
    answer(bridge, 1)
    assert page.shown == [1]


def test_a_failed_read_is_shown_and_the_next_refresh_reads_again(qtbot: QtBot) -> None:
    bridge = ReadingBridge(is_open=True)
    page = Reading(bridge)
    qtbot.addWidget(page)
    page.refresh()
    bridge.calls[0][2]("the database is locked")  # type: ignore[operator]
    assert page.failures == ["the database is locked"]
    page.refresh()
    assert len(bridge.calls) == 2


def test_a_refresh_before_the_office_opened_does_not_wedge_the_section(qtbot: QtBot) -> None:
    bridge = ReadingBridge(is_open=False)
    page = Reading(bridge)
    qtbot.addWidget(page)
    page.show()  # shown while the office is still opening: the bridge would drop a read
    assert bridge.calls == []
    bridge.is_open = True
    bridge.opened.emit()
    assert len(bridge.calls) == 1
    answer(bridge)
    assert page.shown == [0]
