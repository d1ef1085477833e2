"""The system tray icon: a badge for waiting approvals, and quick actions as signals.

There is no tray under the offscreen platform or on desktops without one:
:func:`create_tray` returns None there and the app quits when its window
closes instead of hiding in the tray. :class:`Tray` itself works without a
tray (tests build it directly and trigger its actions).

Every quick action only emits a signal; the app wires them to the window
(``app/ui/app.py``). The clipboard actions read the clipboard when clicked
and carry its text, so what is asked about is what the owner just copied.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QRect, Qt, Signal, SignalInstance, Slot
from PySide6.QtGui import QAction, QColor, QFont, QGuiApplication, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

log = logging.getLogger("soloist.ui")

PAUSE_TOOLTIP = "Stop the agents' scheduled and event-driven runs until you resume them"
BADGE_SIZE = 64  # the pixmap the badge is drawn on; the desktop scales it
BADGE_COLOUR = QColor(200, 30, 30)


def waiting_text(count: int) -> str:
    """ "1 approval waiting", "3 approvals waiting", or "" for none."""
    if count <= 0:
        return ""
    return f"{count} approval{'s' if count != 1 else ''} waiting"


def badge_pixmap(base: QIcon, count: int, size: int = BADGE_SIZE) -> QPixmap:
    """``base`` at ``size`` with ``count`` drawn in a red disc (none when 0)."""
    pixmap = base.pixmap(size, size)
    if pixmap.isNull():
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
    if count <= 0:
        return pixmap
    disc = QRect(size // 3, 0, size - size // 3, size - size // 3)
    painter = QPainter(pixmap)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(BADGE_COLOUR)
        painter.drawEllipse(disc)
        font = QFont()
        font.setBold(True)
        font.setPixelSize(int(disc.height() * 0.6))
        painter.setFont(font)
        painter.setPen(Qt.GlobalColor.white)
        painter.drawText(disc, Qt.AlignmentFlag.AlignCenter, "99+" if count > 99 else str(count))
    finally:
        painter.end()
    return pixmap


class Tray(QObject):
    """The icon, its badge and its menu; every action is a signal."""

    show_requested = Signal()
    new_chat_requested = Signal()
    ask_clipboard_requested = Signal(str)  # the clipboard's text at click time
    draft_reply_requested = Signal(str)  # the clipboard's text: an email to answer
    briefing_requested = Signal()
    approvals_requested = Signal()
    pause_toggled = Signal(bool)  # True: pause background work, False: resume
    quit_requested = Signal()

    def __init__(self, icon: QIcon, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._base = icon
        self._pending = 0
        self._paused = False
        self.menu = QMenu()
        self.menu.setToolTipsVisible(True)
        self._build_menu()
        self.icon = QSystemTrayIcon(icon, self)
        self.icon.setToolTip("Soloist")
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._on_activated)

    def _build_menu(self) -> None:
        self.new_chat_action = self._add("New chat", self.new_chat_requested)
        self.ask_clipboard_action = self._add("Ask about clipboard", None)
        self.ask_clipboard_action.triggered.connect(self._ask_clipboard)
        self.draft_reply_action = self._add("Draft reply to the email in the clipboard", None)
        self.draft_reply_action.triggered.connect(self._draft_reply)
        self.briefing_action = self._add("Today's briefing", self.briefing_requested)
        self.approvals_action = self._add("Approvals (0)", self.approvals_requested)
        self.pause_action = self._add("Pause background work", None)
        self.pause_action.setToolTip(PAUSE_TOOLTIP)
        self.pause_action.triggered.connect(self._toggle_pause)
        self.menu.addSeparator()
        self.show_action = self._add("Open Soloist", self.show_requested)
        self.quit_action = self._add("Quit", self.quit_requested)

    def _add(self, text: str, signal: SignalInstance | None) -> QAction:
        action = QAction(text, self.menu)
        if signal is not None:
            action.triggered.connect(signal)
        self.menu.addAction(action)
        return action

    # -- state ---------------------------------------------------------------------
    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def paused(self) -> bool:
        return self._paused

    @Slot(int)
    def set_pending(self, count: int) -> None:
        """Badge, tooltip and menu for ``count`` approvals waiting."""
        self._pending = max(0, count)
        self.icon.setIcon(QIcon(badge_pixmap(self._base, self._pending)))
        waiting = waiting_text(self._pending)
        self.icon.setToolTip(f"Soloist — {waiting}" if waiting else "Soloist")
        self.approvals_action.setText(f"Approvals ({self._pending})")

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        """Show the background work as paused (the menu then offers Resume)."""
        self._paused = paused
        verb = "Resume" if paused else "Pause"
        self.pause_action.setText(f"{verb} background work")

    # -- actions -------------------------------------------------------------------
    @staticmethod
    def clipboard_text() -> str:
        return QGuiApplication.clipboard().text()

    @Slot()
    def _ask_clipboard(self) -> None:
        self.ask_clipboard_requested.emit(self.clipboard_text())

    @Slot()
    def _draft_reply(self) -> None:
        self.draft_reply_requested.emit(self.clipboard_text())

    @Slot()
    def _toggle_pause(self) -> None:
        self.set_paused(not self._paused)
        self.pause_toggled.emit(self._paused)

    @Slot(QSystemTrayIcon.ActivationReason)
    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.show_requested.emit()


def create_tray(icon: QIcon, parent: QObject | None = None) -> Tray | None:
    """A shown tray icon, or None where the desktop has no system tray."""
    if not QSystemTrayIcon.isSystemTrayAvailable():
        log.info("no system tray available")
        return None
    tray = Tray(icon, parent)
    tray.show()
    return tray
