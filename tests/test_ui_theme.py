"""Light and dark palettes following the system, and the window's remembered geometry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QMainWindow
from pytestqt.qtbot import QtBot

from app.ui import theme, window_state


def luminance(palette: QPalette, role: QPalette.ColorRole) -> float:
    return palette.color(role).lightnessF()


@pytest.mark.parametrize("scheme", list(theme.Scheme))
def test_palettes_have_readable_text(scheme: theme.Scheme) -> None:
    palette = theme.palette_for(scheme)
    for text, back in (
        (QPalette.ColorRole.WindowText, QPalette.ColorRole.Window),
        (QPalette.ColorRole.Text, QPalette.ColorRole.Base),
        (QPalette.ColorRole.ButtonText, QPalette.ColorRole.Button),
    ):
        assert abs(luminance(palette, text) - luminance(palette, back)) > 0.6, (scheme, text)
    window = luminance(palette, QPalette.ColorRole.Window)
    assert window < 0.3 if scheme == theme.Scheme.DARK else window > 0.8


@pytest.fixture
def restore_theme(qapp: QApplication) -> Iterator[QApplication]:
    palette, style = qapp.palette(), qapp.style().name()
    yield qapp
    qapp.setPalette(palette)
    qapp.setStyle(style)
    qapp.styleHints().unsetColorScheme()


def test_follower_applies_the_system_scheme_and_follows_changes(
    qtbot: QtBot, restore_theme: QApplication
) -> None:
    app = restore_theme
    follower = theme.install(app)
    assert theme.current_scheme(app) == theme.system_scheme(app)
    assert app.style().name().lower() == theme.STYLE.lower()
    follower._on_scheme_changed(Qt.ColorScheme.Dark)  # what colorSchemeChanged delivers
    assert theme.current_scheme(app) == theme.Scheme.DARK
    assert app.palette().color(QPalette.ColorRole.Window) == theme.palette_for(
        theme.Scheme.DARK
    ).color(QPalette.ColorRole.Window)
    follower._on_scheme_changed(Qt.ColorScheme.Light)
    assert theme.current_scheme(app) == theme.Scheme.LIGHT


def test_follower_is_connected_to_the_style_hints(
    qtbot: QtBot, restore_theme: QApplication
) -> None:
    app = restore_theme
    theme.install(app)
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)  # as the platform would
    assert theme.current_scheme(app) == theme.Scheme.DARK
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert theme.current_scheme(app) == theme.Scheme.LIGHT


def test_a_fixed_choice_wins_over_the_system_until_set_back(
    qtbot: QtBot, restore_theme: QApplication
) -> None:
    app = restore_theme
    theme.save_theme(theme.ThemeChoice.DARK)
    try:
        theme.install(app)
        assert theme.current_scheme(app) == theme.Scheme.DARK
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
        assert theme.current_scheme(app) == theme.Scheme.DARK  # the owner's choice holds
        theme.apply_theme(app, theme.ThemeChoice.SYSTEM)
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
        assert theme.current_scheme(app) == theme.Scheme.LIGHT
    finally:
        theme.save_theme(theme.ThemeChoice.SYSTEM)
        app.setProperty(theme.THEME_PROPERTY, None)


@pytest.fixture
def settings_dir(tmp_path: Path) -> Iterator[Path]:
    """QSettings in INI files under tmp_path: the real home is never touched."""
    previous = QSettings.defaultFormat()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path))
    yield tmp_path
    QSettings.setDefaultFormat(previous)


def test_geometry_and_section_survive_a_restart(qtbot: QtBot, settings_dir: Path) -> None:
    first = QMainWindow()
    qtbot.addWidget(first)
    first.setGeometry(40, 30, 520, 410)  # inside the offscreen 800x600 screen
    first.show()
    window_state.save(first, "models")
    assert list(settings_dir.rglob("*.ini")), "settings were written under the test folder"
    second = QMainWindow()
    qtbot.addWidget(second)
    assert window_state.restore(second)
    assert (second.width(), second.height()) == (520, 410)
    assert window_state.last_section(["chat", "models"], "chat") == "models"
    assert window_state.last_section(["chat"], "chat") == "chat"  # a section that went away


def test_nothing_stored_keeps_the_defaults(qtbot: QtBot, settings_dir: Path) -> None:
    window = QMainWindow()
    qtbot.addWidget(window)
    assert not window_state.restore(window)
    assert window_state.last_section(["chat"], "chat") == "chat"
