"""The Settings section: start at login, the applications menu, the theme, the data folder.

Start at login is off by default; the checkbox shows what
:meth:`Autostart.is_enabled` reports and is enabled only once that answer
came back. Switching it, and adding the menu entry (Linux), write files or
the registry, so they run through ``bridge.call`` off the main thread; the
ops return an :class:`Outcome` rather than raise, so a refused write is one
readable line here and the checkbox shows what really happened.

The theme choice (System, Light, Dark) is per-user desktop state, kept in
``QSettings`` beside the window geometry (see :mod:`app.ui.window_state`).
:func:`apply_theme` marks the choice on the application (``THEME_PROPERTY``)
so the system-following theme code can leave a fixed choice alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import paths
from app.desktop import (
    Autostart,
    DesktopError,
    autostart_for,
    install_desktop_entry,
    start_minimized_command,
)
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import section
from app.ui.sections.refreshing import RefreshingSection
from app.ui.theme import (
    THEME_KEY,
    THEME_PROPERTY,
    ThemeChoice,
    apply_theme,
    save_theme,
    saved_theme,
)

__all__ = [
    "THEME_KEY",
    "THEME_PROPERTY",
    "Outcome",
    "SettingsSection",
    "ThemeChoice",
    "apply_theme",
    "make_settings",
    "save_theme",
    "saved_theme",
]

OpenUrl = Callable[[QUrl], bool]
THEME_LABELS = {ThemeChoice.SYSTEM: "System", ThemeChoice.LIGHT: "Light", ThemeChoice.DARK: "Dark"}


# -- ops: run off the main thread, never touch widgets --------------------------------------
@dataclass(frozen=True, slots=True)
class Outcome:
    """What an op found or did; ``error`` is one readable line when it was refused."""

    enabled: bool
    error: str = ""


def read_autostart(autostart: Autostart) -> Outcome:
    return Outcome(autostart.is_enabled())


def switch_autostart(autostart: Autostart, on: bool) -> Outcome:
    try:
        if on:
            autostart.enable(start_minimized_command())
        else:
            autostart.disable()
    except DesktopError as exc:
        return Outcome(autostart.is_enabled(), str(exc))
    return Outcome(autostart.is_enabled())


def add_to_menu() -> Outcome:
    try:
        installed = install_desktop_entry()
    except DesktopError as exc:
        return Outcome(False, str(exc))
    return Outcome(installed.entry.is_file())


class SettingsSection(RefreshingSection):
    """See the module docstring; slow work goes through the bridge."""

    def __init__(
        self,
        bridge: OfficeBridge,
        parent: QWidget | None = None,
        *,
        autostart: Autostart | None = None,
        platform: str = sys.platform,
        open_url: OpenUrl = QDesktopServices.openUrl,
    ) -> None:
        super().__init__(bridge, parent)  # reloads when shown and when the office opens
        self.setObjectName("section-settings")
        self._autostart = autostart or autostart_for(platform)
        self._platform = platform
        self._open_url = open_url
        self._switching = False
        self._build()
        self._connect_signals()

    def _build(self) -> None:
        self.login = QCheckBox("Start Soloist when I log in", self)
        self.login.setAccessibleName("Start Soloist when I log in")
        self.login.setToolTip("Soloist starts in the tray, with its window hidden.")
        self.login.setEnabled(False)  # until is_enabled() has answered
        self.menu_button = QPushButton("Add Soloist to the applications menu", self)
        self.menu_button.setAccessibleName("Add Soloist to the applications menu")
        self.menu_button.setVisible(self._platform.startswith("linux"))
        self.theme = QComboBox(self)
        self.theme.setAccessibleName("Theme")
        for choice, label in THEME_LABELS.items():
            self.theme.addItem(label, str(choice))
        self.theme.setCurrentIndex(self.theme.findData(str(saved_theme())))
        self.data_dir = QLabel(str(paths.data_dir()), self)
        self.data_dir.setAccessibleName("Data folder")
        self.data_dir.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_folder = QPushButton("Open folder", self)
        self.open_folder.setAccessibleName("Open the data folder")
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Settings status")
        self._lay_out()

    def _lay_out(self) -> None:
        folder = QHBoxLayout()
        folder.addWidget(self.data_dir, 1)
        folder.addWidget(self.open_folder)
        form = QFormLayout()
        form.addRow(self.login)
        form.addRow(self.menu_button)
        form.addRow("Theme", self.theme)
        form.addRow("Data folder", folder)
        column = QVBoxLayout(self)
        column.addLayout(form)
        column.addWidget(self.message)
        column.addStretch(1)

    def _connect_signals(self) -> None:
        self.login.clicked.connect(self._login_clicked)
        self.menu_button.clicked.connect(self._add_to_menu)
        self.theme.activated.connect(self._theme_chosen)
        self.open_folder.clicked.connect(self._open_data_folder)

    # -- start at login ------------------------------------------------------------------
    def refresh(self) -> None:
        """Ask (off the main thread) whether Soloist starts at login."""
        if self._switching:
            return
        autostart = self._autostart
        self._bridge.call(lambda _office: read_autostart(autostart), self._show_login)

    @Slot(bool)
    def _login_clicked(self, on: bool) -> None:
        self._switching = True
        self.login.setEnabled(False)
        self.message.setText("Turning start at login on…" if on else "Turning start at login off…")
        autostart = self._autostart
        self._bridge.call(
            lambda _office: switch_autostart(autostart, on), self._switched, self._failed
        )

    def _switched(self, outcome: Outcome) -> None:
        self._switching = False
        self._show_login(outcome)
        state = "on" if outcome.enabled else "off"
        self.message.setText(outcome.error or f"Start at login is {state}.")

    def _failed(self, message: str) -> None:
        self._switching = False
        self.login.setEnabled(True)
        self.menu_button.setEnabled(True)
        self.message.setText(message)
        self.refresh()

    def _show_login(self, outcome: Outcome) -> None:
        self.login.setChecked(outcome.enabled)
        self.login.setEnabled(True)

    # -- applications menu ---------------------------------------------------------------
    @Slot()
    def _add_to_menu(self) -> None:
        self.menu_button.setEnabled(False)
        self._bridge.call(lambda _office: add_to_menu(), self._added_to_menu, self._failed)

    def _added_to_menu(self, outcome: Outcome) -> None:
        self.menu_button.setEnabled(True)
        done = "Soloist is in the applications menu."
        self.message.setText(outcome.error or done)

    # -- theme and data folder -----------------------------------------------------------
    @Slot(int)
    def _theme_chosen(self, index: int) -> None:
        choice = ThemeChoice(self.theme.itemData(index))
        save_theme(choice)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, choice)

    @Slot()
    def _open_data_folder(self) -> None:
        folder = Path(self.data_dir.text())
        if not self._open_url(QUrl.fromLocalFile(str(folder))):
            self.message.setText(f"Could not open {folder}; open it from your file manager.")


@section("settings", "Settings", order=100)
def make_settings(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return SettingsSection(bridge, parent)
