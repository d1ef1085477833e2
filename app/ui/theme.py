"""Light and dark palettes that follow the system's colour scheme.

The app uses the Fusion style everywhere: it honours a palette on every
platform (the Windows and macOS native styles ignore parts of one), so the
same two palettes give the same look and contrast wherever Soloist runs.
Which one applies comes from ``QStyleHints.colorScheme()`` (Qt 6.5+); the
:class:`ThemeFollower` re-applies it when the system switches
(``colorSchemeChanged``), so a window follows the desktop's dark mode
without a restart. Widgets that paint themselves (the charts) read the
palette, so they follow too.
"""

from __future__ import annotations

import enum
import logging

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from app.ui import window_state

log = logging.getLogger("soloist.ui")

STYLE = "Fusion"


class Scheme(enum.StrEnum):
    LIGHT = "light"
    DARK = "dark"


# (role, light, dark). Contrast of text on base and window is above 7:1 in both.
_ROLES: tuple[tuple[QPalette.ColorRole, str, str], ...] = (
    (QPalette.ColorRole.Window, "#f5f5f7", "#1e1f22"),
    (QPalette.ColorRole.WindowText, "#1d1d1f", "#e8e8ea"),
    (QPalette.ColorRole.Base, "#ffffff", "#2a2b2f"),
    (QPalette.ColorRole.AlternateBase, "#eeeef1", "#303136"),
    (QPalette.ColorRole.ToolTipBase, "#ffffff", "#2a2b2f"),
    (QPalette.ColorRole.ToolTipText, "#1d1d1f", "#e8e8ea"),
    (QPalette.ColorRole.PlaceholderText, "#6e6e73", "#9a9aa0"),
    (QPalette.ColorRole.Text, "#1d1d1f", "#e8e8ea"),
    (QPalette.ColorRole.Button, "#e9e9ed", "#35363b"),
    (QPalette.ColorRole.ButtonText, "#1d1d1f", "#e8e8ea"),
    (QPalette.ColorRole.BrightText, "#c5221f", "#ff6b61"),
    (QPalette.ColorRole.Highlight, "#2f6fde", "#4c8df6"),
    (QPalette.ColorRole.HighlightedText, "#ffffff", "#ffffff"),
    (QPalette.ColorRole.Link, "#1f5fc4", "#7aaaff"),
    (QPalette.ColorRole.LinkVisited, "#6a3fb5", "#b794f6"),
    (QPalette.ColorRole.Light, "#ffffff", "#45464c"),
    (QPalette.ColorRole.Midlight, "#dcdce0", "#3a3b40"),
    (QPalette.ColorRole.Mid, "#b8b8be", "#55565c"),
    (QPalette.ColorRole.Dark, "#8e8e93", "#151618"),
    (QPalette.ColorRole.Shadow, "#5a5a5f", "#000000"),
)
# Disabled widgets: text dimmed, in both schemes.
_DISABLED: tuple[tuple[QPalette.ColorRole, str, str], ...] = (
    (QPalette.ColorRole.WindowText, "#9a9aa0", "#6e6e75"),
    (QPalette.ColorRole.Text, "#9a9aa0", "#6e6e75"),
    (QPalette.ColorRole.ButtonText, "#9a9aa0", "#6e6e75"),
    (QPalette.ColorRole.Highlight, "#b8b8be", "#45464c"),
)


def system_scheme(app: QGuiApplication | None = None) -> Scheme:
    """The desktop's scheme; light when the platform does not say."""
    app = app or QGuiApplication.instance()  # type: ignore[assignment]
    if not isinstance(app, QGuiApplication):
        return Scheme.LIGHT
    dark = app.styleHints().colorScheme() == Qt.ColorScheme.Dark
    return Scheme.DARK if dark else Scheme.LIGHT


def palette_for(scheme: Scheme) -> QPalette:
    """The whole palette of one scheme."""
    column = 1 if scheme == Scheme.LIGHT else 2
    palette = QPalette()
    for entry in _ROLES:
        palette.setColor(entry[0], QColor(entry[column]))
    for entry in _DISABLED:
        palette.setColor(QPalette.ColorGroup.Disabled, entry[0], QColor(entry[column]))
    return palette


def apply(app: QApplication, scheme: Scheme) -> None:
    """Use ``scheme``'s palette for every widget of ``app``."""
    app.setPalette(palette_for(scheme))
    app.setProperty("soloist_scheme", str(scheme))
    log.info("theme: %s", scheme)


def current_scheme(app: QApplication) -> Scheme | None:
    """The scheme :func:`apply` set last, None before."""
    value = app.property("soloist_scheme")
    try:
        return Scheme(value)
    except ValueError:
        return None


class ThemeFollower(QObject):
    """Applies the system's scheme now and again whenever the system changes it."""

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        self._app = app
        app.setStyle(STYLE)
        app.styleHints().colorSchemeChanged.connect(self._on_scheme_changed)
        apply(app, system_scheme(app))

    @Slot(Qt.ColorScheme)
    def _on_scheme_changed(self, scheme: Qt.ColorScheme) -> None:
        if self._app.property(THEME_PROPERTY) in (ThemeChoice.LIGHT, ThemeChoice.DARK):
            return  # the owner chose a fixed theme in Settings
        apply(self._app, Scheme.DARK if scheme == Qt.ColorScheme.Dark else Scheme.LIGHT)


def install(app: QApplication) -> ThemeFollower:
    """Use the owner's theme choice; with System, follow the system's scheme."""
    follower = ThemeFollower(app)
    choice = saved_theme()
    if choice != ThemeChoice.SYSTEM:
        apply_theme(app, choice)
    return follower


# -- the owner's choice (Settings) ---------------------------------------------
THEME_KEY = "ui/theme"
THEME_PROPERTY = "soloist_theme_choice"


class ThemeChoice(enum.StrEnum):
    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


def saved_theme() -> ThemeChoice:
    """The stored theme choice; System when none (or an unknown one) is stored."""
    value = window_state.settings().value(THEME_KEY)
    try:
        return ThemeChoice(value)
    except ValueError:
        return ThemeChoice.SYSTEM


def save_theme(choice: ThemeChoice) -> None:
    store = window_state.settings()
    store.setValue(THEME_KEY, str(choice))
    store.sync()


def apply_theme(app: QApplication, choice: ThemeChoice) -> None:
    """Use ``choice`` now: the system's scheme, or a fixed light or dark one."""
    app.setProperty(THEME_PROPERTY, str(choice))
    fixed = choice != ThemeChoice.SYSTEM
    apply(app, Scheme(str(choice)) if fixed else system_scheme(app))
