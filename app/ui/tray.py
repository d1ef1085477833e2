"""The system tray icon and its menu.

There is no tray under the offscreen platform or on desktops without one:
:func:`create_tray` returns None there and the app quits when its window
closes instead of hiding in the tray.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal, SignalInstance, Slot
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

log = logging.getLogger("soloist.ui")

PAUSE_TOOLTIP = "No automations yet"


class Tray(QObject):
    """Emits ``show_requested``, ``new_chat_requested`` and ``quit_requested``."""

    show_requested = Signal()
    new_chat_requested = Signal()
    quit_requested = Signal()

    def __init__(self, icon: QIcon, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.menu = QMenu()
        self.menu.setToolTipsVisible(True)
        self.show_action = self._add("Show window", self.show_requested)
        self.new_chat_action = self._add("New chat", self.new_chat_requested)
        self.pause_action = QAction("Pause background work", self.menu)
        self.pause_action.setEnabled(False)
        self.pause_action.setToolTip(PAUSE_TOOLTIP)
        self.menu.addAction(self.pause_action)
        self.menu.addSeparator()
        self.quit_action = self._add("Quit", self.quit_requested)
        self.icon = QSystemTrayIcon(icon, self)
        self.icon.setToolTip("Soloist")
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._on_activated)

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def _add(self, text: str, signal: SignalInstance) -> QAction:
        action = QAction(text, self.menu)
        action.triggered.connect(signal)
        self.menu.addAction(action)
        return action

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
