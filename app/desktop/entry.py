"""Freedesktop pieces shared by the menu entry and XDG autostart: pure text, no I/O.

``desktop_entry`` renders a Desktop Entry (spec 1.4) for a command, quoting
its ``Exec`` line the way the spec asks (reserved characters in double
quotes, then string escaping, ``%`` doubled). The XDG base directories are
read from an environment mapping so tests pass their own.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

APP_ID = "soloist"  # the desktop file name, QGuiApplication.desktopFileName, the icon name
MINIMIZED_FLAG = "--minimized"  # start with the window hidden, in the tray only
NAME = "Soloist"
COMMENT = "Your AI office: email, calendar, contacts and agents on this computer"
CATEGORIES = "Office;"
KEYWORDS = "AI;assistant;email;calendar;contacts;CRM;"

_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
_ESCAPED_IN_QUOTES = '"`$\\'


def exec_argument(arg: str) -> str:
    """One argument of an ``Exec`` value, quoted when the spec requires it."""
    arg = arg.replace("%", "%%")
    if arg and not any(char in _RESERVED for char in arg):
        return arg
    quoted = "".join("\\" + char if char in _ESCAPED_IN_QUOTES else char for char in arg)
    # The value is also a desktop "string": its backslashes are escaped once more.
    return '"' + quoted.replace("\\", "\\\\") + '"'


def exec_line(command: Sequence[str]) -> str:
    """The ``Exec`` value that runs ``command`` (program first)."""
    if not command:
        raise ValueError("a command needs at least the program")
    return " ".join(exec_argument(arg) for arg in command)


def desktop_entry(command: Sequence[str], extra: Mapping[str, str] | None = None) -> str:
    """A Desktop Entry for Soloist that runs ``command``; ``extra`` keys are appended."""
    fields = {
        "Type": "Application",
        "Version": "1.4",
        "Name": NAME,
        "GenericName": "AI office",
        "Comment": COMMENT,
        "Exec": exec_line(command),
        "Icon": APP_ID,
        "Terminal": "false",
        "Categories": CATEGORIES,
        "Keywords": KEYWORDS,
        "StartupNotify": "true",
        "StartupWMClass": APP_ID,
    }
    fields.update(extra or {})
    lines = ["[Desktop Entry]", *(f"{key}={value}" for key, value in fields.items())]
    return "\n".join(lines) + "\n"


def read_entry(text: str) -> dict[str, str]:
    """The keys of the ``[Desktop Entry]`` group of a desktop file (values unescaped)."""
    fields: dict[str, str] = {}
    group = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
        elif group == "Desktop Entry" and "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
    return fields


def xdg_dir(variable: str, fallback: str, environ: Mapping[str, str], home: Path) -> Path:
    """``$variable`` when set to an absolute path (the spec ignores others), else home/fallback."""
    value = environ.get(variable, "")
    return Path(value) if value and os.path.isabs(value) else home / fallback


def running_command() -> list[str]:
    """How to start this Soloist again: the frozen binary, the ``soloist`` script, or python."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    scripts = Path(sys.executable).parent  # a venv's bin/ (Scripts\\ on Windows)
    for name in ("soloist", "soloist.exe"):
        if (scripts / name).is_file():
            return [str(scripts / name)]
    found = shutil.which("soloist")
    return [found] if found else [sys.executable, "-m", "app"]


def start_minimized_command() -> list[str]:
    """The command start-at-login runs: Soloist in the tray, window hidden."""
    return [*running_command(), MINIMIZED_FLAG]
