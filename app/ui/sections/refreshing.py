"""What every live section shares: reload when shown, on a timer while visible, never hidden.

A section subclasses :class:`RefreshingSection`, sets ``refresh_interval_ms``
(0: reload only when shown) and implements :meth:`~RefreshingSection.refresh`,
which asks the office through the bridge. The base class reloads when the
section is shown, every ``refresh_interval_ms`` while it stays visible, and
when the office opens if it is visible then; no timer runs while it is
hidden. A page built after the office opened (the window builds pages
after its first paint) has :meth:`~RefreshingSection.on_opened` called once,
just after it is constructed, unless it was shown (and so loaded) by then.
:meth:`~RefreshingSection.on_tick` and :meth:`~RefreshingSection.on_opened`
are the hooks for a section that does more or less at those moments.

:class:`StatusLabel` is a section's one-line status: hidden while empty, so
an empty message leaves no blank strip in the layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import QTimer, Slot
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QLabel, QWidget

if TYPE_CHECKING:
    from app.ui.office_bridge import OfficeBridge

__all__ = ["RefreshingSection", "StatusLabel"]

T = TypeVar("T")


class RefreshingSection(QWidget):
    """A section that reloads itself while, and only while, it is visible."""

    refresh_interval_ms = 0  # 0: reload when shown and when the office opens, no timer

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(self.refresh_interval_ms)
        self._refresh_timer.timeout.connect(self.on_tick)
        self._shown = False  # shown (and so loaded) at least once
        self._loading = False  # a read of load() is out
        self._again = False  # asked to reload while it was out: its answer may be stale
        bridge.opened.connect(self.on_opened)
        if getattr(bridge, "is_open", False):  # built late: the office opened already
            QTimer.singleShot(0, self, self._opened_before)  # once the subclass is built too

    def refresh(self) -> None:
        """Ask the office for what the section shows (the subclass's own work)."""
        raise NotImplementedError(f"{type(self).__name__} must implement refresh()")

    def load(self, op: Callable[[Any], T], show: Callable[[T], None]) -> None:
        """Read ``op(office)`` through the bridge, one read at a time.

        A reload asked for while a read is out runs when it is back, and that
        stale answer is dropped. Before the office opens nothing is read (the
        bridge would drop it and the section would wait forever): the section
        loads when the office opens.
        """
        if not getattr(self._bridge, "is_open", True):
            return
        if self._loading:
            self._again = True
            return
        self._loading = True
        self._bridge.call(op, lambda result: self._answered(show, result), self._read_failed)

    def load_failed(self, message: str) -> None:
        """A read failed (one line); the subclass shows it."""

    def _settled(self) -> bool:
        """A read is back; False (and the reload started) when its answer is stale."""
        self._loading = False
        if self._again:
            self._again = False
            self.refresh()
            return False
        return True

    def _answered(self, show: Callable[[T], None], result: T) -> None:
        if self._settled():
            show(result)

    def _read_failed(self, message: str) -> None:
        if self._settled():
            self.load_failed(message)

    @property
    def live(self) -> bool:
        """True while the refresh timer runs (only while the section is visible)."""
        return self._refresh_timer.isActive()

    @Slot()
    def on_tick(self) -> None:
        """The timer fired (the section is visible): reload."""
        self.refresh()

    @Slot()
    def on_opened(self) -> None:
        """The office opened: reload if the section is on screen."""
        self.refresh_if_visible()

    @Slot()
    def _opened_before(self) -> None:
        if not self._shown:
            self.on_opened()

    @Slot()
    def refresh_if_visible(self) -> None:
        if self.isVisible():
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self._shown = True
        self.refresh()
        if self.refresh_interval_ms > 0:
            self._refresh_timer.start()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 (Qt's name)
        self._refresh_timer.stop()
        super().hideEvent(event)


class StatusLabel(QLabel):
    """A word-wrapped, accessible status line, hidden while it says nothing."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setAccessibleName(name)
        self.hide()

    @Slot(str)
    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setText(text)
        self.setVisible(bool(text))

    @Slot()
    def clear(self) -> None:
        super().clear()
        self.hide()
