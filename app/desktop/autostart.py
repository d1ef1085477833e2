"""Start Soloist when the user logs in: off until the user turns it on.

One small interface, three mechanisms, chosen by platform in
:func:`autostart_for`:

- :class:`XdgAutostart` (Linux and other freedesktop systems): a Desktop
  Entry in ``$XDG_CONFIG_HOME/autostart/soloist.desktop``.
- :class:`LaunchAgent` (macOS): ``~/Library/LaunchAgents/app.soloist.Soloist.plist``
  with ``RunAtLoad``; launchd reads it at the next login.
- :class:`WindowsRunKey` (Windows): a value named ``Soloist`` under
  ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``, reached through
  a :class:`RunKey` seam so the logic is tested without ``winreg``.

Each is found off when nothing was written, and ``disable`` removes exactly
what ``enable`` wrote. Paths come from a ``home`` (and an environment
mapping) so tests write into a temporary folder.
"""

from __future__ import annotations

import abc
import importlib
import logging
import os
import plistlib
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from app.desktop.entry import APP_ID, desktop_entry, read_entry, xdg_dir
from app.desktop.errors import DesktopWriteError
from app.desktop.files import remove_file, write_file

log = logging.getLogger("soloist.desktop")

BUNDLE_ID = "app.soloist.Soloist"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "Soloist"
T = TypeVar("T")


class Autostart(abc.ABC):
    """Whether Soloist starts at login, and the switch."""

    @abc.abstractmethod
    def is_enabled(self) -> bool:
        """True when Soloist will start at the next login."""

    @abc.abstractmethod
    def enable(self, command: Sequence[str]) -> None:
        """Start ``command`` (program first) at every login from now on."""

    @abc.abstractmethod
    def disable(self) -> None:
        """Stop starting at login; nothing happens when it was off."""


class XdgAutostart(Autostart):
    """``<config home>/autostart/soloist.desktop`` (XDG Autostart spec)."""

    def __init__(self, config_home: Path) -> None:
        self.path = config_home / "autostart" / f"{APP_ID}.desktop"

    def is_enabled(self) -> bool:
        try:
            fields = read_entry(self.path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return False
        return (
            fields.get("Hidden", "false") != "true"
            and fields.get("X-GNOME-Autostart-enabled", "true") != "false"
        )

    def enable(self, command: Sequence[str]) -> None:
        extra = {"X-GNOME-Autostart-enabled": "true", "NoDisplay": "true"}
        write_file(self.path, desktop_entry(command, extra).encode())
        log.info("autostart on: %s", self.path)

    def disable(self) -> None:
        if remove_file(self.path):
            log.info("autostart off: %s removed", self.path)

    def __repr__(self) -> str:
        return f"XdgAutostart({str(self.path)!r})"


class LaunchAgent(Autostart):
    """``~/Library/LaunchAgents/app.soloist.Soloist.plist`` with ``RunAtLoad``."""

    def __init__(self, home: Path) -> None:
        self.path = home / "Library" / "LaunchAgents" / f"{BUNDLE_ID}.plist"

    def is_enabled(self) -> bool:
        try:
            with self.path.open("rb") as file:
                agent = plistlib.load(file)
        except (OSError, plistlib.InvalidFileException, ValueError):
            return False
        return isinstance(agent, dict) and agent.get("RunAtLoad") is True

    def enable(self, command: Sequence[str]) -> None:
        agent = {
            "Label": BUNDLE_ID,
            "ProgramArguments": list(command),
            "RunAtLoad": True,
            "ProcessType": "Interactive",
        }
        write_file(self.path, plistlib.dumps(agent, fmt=plistlib.FMT_XML))
        log.info("autostart on: %s", self.path)

    def disable(self) -> None:
        if remove_file(self.path):
            log.info("autostart off: %s removed", self.path)

    def __repr__(self) -> str:
        return f"LaunchAgent({str(self.path)!r})"


class RunKey(Protocol):
    """The string values of one registry key (the seam tests replace)."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...


class WinregRunKey:
    """``HKEY_CURRENT_USER\\<RUN_KEY>`` through ``winreg`` (imported on first use)."""

    def __init__(self, key: str = RUN_KEY) -> None:
        self.key = key

    def _winreg(self) -> Any:
        return importlib.import_module("winreg")

    def get(self, name: str) -> str | None:
        winreg = self._winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.key) as key:
                value, kind = winreg.QueryValueEx(key, name)
        except FileNotFoundError:
            return None
        return value if kind in (winreg.REG_SZ, winreg.REG_EXPAND_SZ) else None

    def set(self, name: str, value: str) -> None:
        winreg = self._winreg()
        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, self.key) as key:
            winreg.SetValueEx(key, name, 0, winreg.REG_SZ, value)

    def delete(self, name: str) -> None:
        winreg = self._winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.key, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, name)
        except FileNotFoundError:
            return


class WindowsRunKey(Autostart):
    """A ``Soloist`` value in the current user's ``Run`` key."""

    def __init__(self, registry: RunKey | None = None) -> None:
        self.registry: RunKey = registry or WinregRunKey()

    def is_enabled(self) -> bool:
        return bool(self._call("read", lambda: self.registry.get(RUN_VALUE)))

    def enable(self, command: Sequence[str]) -> None:
        line = subprocess.list2cmdline(list(command))
        self._call("write", lambda: self.registry.set(RUN_VALUE, line))
        log.info("autostart on: Run value %s", RUN_VALUE)

    def disable(self) -> None:
        self._call("remove", lambda: self.registry.delete(RUN_VALUE))
        log.info("autostart off: Run value %s", RUN_VALUE)

    def _call(self, what: str, op: Callable[[], T]) -> T:
        try:
            return op()
        except OSError as exc:
            where = f"HKEY_CURRENT_USER\\{RUN_KEY}\\{RUN_VALUE}"
            reason = exc.strerror or type(exc).__name__
            raise DesktopWriteError(f"{what} the registry value", where, reason) from exc

    def __repr__(self) -> str:
        return f"WindowsRunKey({self.registry!r})"


def autostart_for(
    platform: str = sys.platform,
    home: Path | None = None,
    environ: Mapping[str, str] | None = None,
    registry: RunKey | None = None,
) -> Autostart:
    """The start-at-login mechanism of ``platform`` for the user whose home is ``home``."""
    if platform == "win32":
        return WindowsRunKey(registry)
    home = home or Path.home()
    if platform == "darwin":
        return LaunchAgent(home)
    env = os.environ if environ is None else environ
    return XdgAutostart(xdg_dir("XDG_CONFIG_HOME", ".config", env, home))
