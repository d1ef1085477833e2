"""Remember the main window's geometry and last section across restarts.

Kept in ``QSettings`` (organisation "Soloist", application "Soloist"): it is
per-user desktop state, not office data, so it stays out of the office's
database (a backup restored on another screen must not carry a window
position that is off that screen). Qt's ``saveGeometry`` blob already
handles a screen that went away: ``restoreGeometry`` moves the window back
onto a visible one.

Tests point QSettings at a temporary folder with ``QSettings.setPath`` and
the INI format, so nothing touches the real home.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow

log = logging.getLogger("soloist.ui")

ORGANISATION = "Soloist"
APPLICATION = "Soloist"
GEOMETRY_KEY = "window/geometry"
STATE_KEY = "window/state"
SECTION_KEY = "window/section"


def settings() -> QSettings:
    """The app's QSettings in the user scope, in ``QSettings.defaultFormat()``.

    The format is passed explicitly: the (scope, organisation, application)
    constructor would use the native format and ignore a test's INI folder.
    """
    return QSettings(
        QSettings.defaultFormat(), QSettings.Scope.UserScope, ORGANISATION, APPLICATION
    )


def save(window: QMainWindow, section: str | None) -> None:
    """Store the window's geometry, toolbars' state and the section shown."""
    store = settings()
    store.setValue(GEOMETRY_KEY, window.saveGeometry())
    store.setValue(STATE_KEY, window.saveState())
    if section:
        store.setValue(SECTION_KEY, section)
    store.sync()


def restore(window: QMainWindow) -> bool:
    """Put the window back where it was; False when nothing usable was stored."""
    store = settings()
    geometry = store.value(GEOMETRY_KEY)
    restored = isinstance(geometry, QByteArray) and window.restoreGeometry(geometry)
    state = store.value(STATE_KEY)
    if isinstance(state, QByteArray):
        window.restoreState(state)
    if not restored and geometry is not None:
        log.info("stored window geometry not usable; default size kept")
    return restored


def last_section(known: list[str], default: str) -> str:
    """The section shown when the app last closed, if it still exists; else ``default``."""
    value = settings().value(SECTION_KEY)
    return value if isinstance(value, str) and value in known else default
