"""``soloist desktop``: the applications menu entry and start at login.

soloist desktop install              add Soloist to the applications menu (Linux)
soloist desktop uninstall            take it out again
soloist desktop autostart on|off|status   start Soloist (in the tray) when you log in

``install`` writes ``soloist.desktop`` and the icons under ``$XDG_DATA_HOME``
with an ``Exec`` line pointing at this Soloist; running it again rewrites
them. Start at login is off until turned on; ``on`` runs Soloist with
``--minimized`` so it starts in the tray. Neither touches the office data.

Exit status: 0 done, 1 failed or not available here, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from app.desktop import (
    DesktopError,
    autostart_for,
    install_desktop_entry,
    start_minimized_command,
    uninstall_desktop_entry,
)

EXIT_FAILED = 1


def current_platform() -> str:
    """``sys.platform`` (a seam: tests ask for another platform's behaviour)."""
    return sys.platform


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``desktop`` and its subcommands to the ``soloist`` parser."""
    desktop = subparsers.add_parser(
        "desktop",
        help="applications menu entry and start at login",
        description="Add Soloist to the applications menu (Linux) and start it when you log in.",
    )
    sub = desktop.add_subparsers(dest="desktop_command", required=True)
    sub.add_parser("install", help="add Soloist and its icon to the applications menu (Linux)")
    sub.add_parser("uninstall", help="remove the menu entry and icons that install wrote")
    autostart = sub.add_parser("autostart", help="start Soloist in the tray when you log in")
    autostart.add_argument("state", choices=("on", "off", "status"))


def run(args: argparse.Namespace) -> int:
    """Run one ``soloist desktop`` subcommand; returns the exit status."""
    command = _SUBCOMMANDS[args.desktop_command]
    try:
        return command(args)
    except DesktopError as exc:
        return _fail(str(exc))


def _install(args: argparse.Namespace) -> int:
    if not current_platform().startswith("linux"):
        return _fail(_MENU_ELSEWHERE)
    installed = install_desktop_entry()
    print(f"Added Soloist to the applications menu: {installed.entry}")
    print(f"Icons: {len(installed.icons)} files under {installed.entry.parents[1] / 'icons'}")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    if not current_platform().startswith("linux"):
        return _fail(_MENU_ELSEWHERE)
    removed = uninstall_desktop_entry()
    if removed:
        print(f"Removed Soloist from the applications menu ({len(removed)} files).")
    else:
        print("Soloist was not in the applications menu; nothing to remove.")
    return 0


def _autostart(args: argparse.Namespace) -> int:
    autostart = autostart_for(current_platform())
    if args.state == "on":
        autostart.enable(start_minimized_command())
    elif args.state == "off":
        autostart.disable()
    enabled = autostart.is_enabled()
    print(f"Start at login: {'on' if enabled else 'off'}")
    if args.state != "status" and enabled != (args.state == "on"):
        return _fail(f"start at login is still {'on' if enabled else 'off'}; see the log.")
    return 0


def _fail(message: str) -> int:
    print(f"soloist: {message}", file=sys.stderr)
    return EXIT_FAILED


_MENU_ELSEWHERE = (
    "the applications menu entry is written on Linux only; "
    "on macOS and Windows the installer adds Soloist to the menu."
)
_SUBCOMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "install": _install,
    "uninstall": _uninstall,
    "autostart": _autostart,
}
