"""Desktop integration: the applications menu entry, icons and start at login.

No Qt here: the CLI (``soloist desktop``) and the Settings section both use
these functions; the section runs them off the main thread through the bridge.

- :mod:`app.desktop.entry`: Desktop Entry text and the command that starts Soloist.
- :mod:`app.desktop.install`: the Linux menu entry and hicolor icons.
- :mod:`app.desktop.autostart`: start at login (XDG autostart, LaunchAgent, Run key).
- :mod:`app.desktop.errors`: the exception tree.
"""

from __future__ import annotations

from app.desktop.autostart import Autostart, autostart_for
from app.desktop.entry import MINIMIZED_FLAG, running_command, start_minimized_command
from app.desktop.errors import DesktopError, DesktopWriteError, UnsupportedDesktopError
from app.desktop.install import install_desktop_entry, uninstall_desktop_entry

__all__ = [
    "MINIMIZED_FLAG",
    "Autostart",
    "DesktopError",
    "DesktopWriteError",
    "UnsupportedDesktopError",
    "autostart_for",
    "install_desktop_entry",
    "running_command",
    "start_minimized_command",
    "uninstall_desktop_entry",
]
