"""Checks before the desktop app starts, so bad input ends in a sentence, not a dump.

Each check returns ``None`` when all is well, or a :class:`StartupProblem`:
the message for the user and a ``sysexits.h`` exit code. The decisions are
pure functions over the environment (table-tested); the file system and the
dynamic loader are reached through small functions passed in.

- The data directory must be creatable and writable (else 73, EX_CANTCREAT).
- Qt must find a platform plugin it can load and, for xcb, a display (else
  69, EX_UNAVAILABLE): without this check Qt aborts with SIGABRT and a core
  dump. The command line and ``soloist --self-test`` need neither.
- A missing keyring does not stop the app: one warning line on stderr.

Nothing here imports Qt at module level; ``check_display`` imports QtCore
only to ask where the plugins are.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from app import paths

log = logging.getLogger("soloist.startup")

__all__ = [
    "EX_CANTCREAT",
    "EX_UNAVAILABLE",
    "StartupProblem",
    "check_data_dir",
    "check_display",
    "keyring_warning",
    "platform_candidates",
    "platform_problem",
    "report",
    "warn_if_no_keyring",
]

EX_UNAVAILABLE = 69
EX_CANTCREAT = 73

_NO_WINDOW_HINT = "The command line (soloist --help) and soloist --self-test work without a window."
_XCB_LIBS_HINT = "on Debian or Ubuntu: sudo apt install libxcb-cursor0"
# Platforms that draw on a display server, and the variable that names it.
_DISPLAY_VARIABLES = {"xcb": "DISPLAY", "wayland": "WAYLAND_DISPLAY"}
_PLUGIN_SUFFIXES = (".so", ".dylib", ".dll")


@dataclass(frozen=True, slots=True)
class StartupProblem:
    """Why Soloist cannot start, in words for the user, and the exit code."""

    code: int
    message: str


def report(problem: StartupProblem, stream: TextIO | None = None) -> int:
    """Print ``problem`` as one ``soloist: ...`` line; its exit code."""
    print(f"soloist: {problem.message}", file=stream or sys.stderr)
    return problem.code


# -- the data directory ---------------------------------------------------------------
def check_data_dir(home: Path | None = None) -> StartupProblem | None:
    """The data directory can be created and written to, or why not."""
    try:
        folder = home or paths.data_dir()
    except (OSError, RuntimeError) as exc:  # resolve() of an odd SOLOIST_HOME
        return _unwritable(Path(os.environ.get(paths.HOME_ENV, "?")), exc)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".soloist-write-check-"):
            pass
    except OSError as exc:
        return _unwritable(folder, exc)
    return None


def _unwritable(folder: Path, exc: BaseException) -> StartupProblem:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StartupProblem(
        EX_CANTCREAT,
        f"cannot write the data directory {folder} ({reason}). Set {paths.HOME_ENV} to a "
        "folder you can write to, or fix the permissions of that folder (or its parent).",
    )


# -- the Qt platform ----------------------------------------------------------------
def platform_candidates(env: Mapping[str, str], system: str) -> list[str]:
    """The platform plugins Qt will try, in order (``QT_QPA_PLATFORM`` or the OS default)."""
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:  # "wayland;xcb", each maybe with options after a colon
        names = [part.split(":", 1)[0].strip() for part in chosen.split(";")]
        return [name for name in names if name]
    if system == "darwin":
        return ["cocoa"]
    if system == "win32":
        return ["windows"]
    return ["wayland", "xcb"] if env.get("WAYLAND_DISPLAY") else ["xcb"]


def platform_problem(
    name: str,
    env: Mapping[str, str],
    find_plugin: Callable[[str], Path | None],
    load_error: Callable[[Path], str | None],
) -> str | None:
    """Why Qt's platform ``name`` cannot start here, or None when it can."""
    plugin = find_plugin(name)
    if plugin is None:
        return f"the Qt platform plugin '{name}' is not installed"
    error = load_error(plugin)
    if error is not None:
        hint = f" ({_XCB_LIBS_HINT})" if name == "xcb" else ""
        return f"the Qt platform plugin '{name}' cannot load: {error}{hint}"
    variable = _DISPLAY_VARIABLES.get(name)
    if variable and not env.get(variable) and not _default_wayland_socket(name, env):
        return (
            f"there is no display ({variable} is not set and Qt's platform is {name}); "
            "start Soloist inside a desktop session"
        )
    return None


def _default_wayland_socket(name: str, env: Mapping[str, str]) -> bool:
    """Qt's wayland plugin also finds ``$XDG_RUNTIME_DIR/wayland-0`` by itself."""
    runtime = env.get("XDG_RUNTIME_DIR")
    return name == "wayland" and bool(runtime) and Path(runtime or "", "wayland-0").exists()


def check_display(
    env: Mapping[str, str] | None = None,
    system: str = sys.platform,
    plugin_dirs: Sequence[Path] | None = None,
    load_error: Callable[[Path], str | None] | None = None,
) -> StartupProblem | None:
    """Qt can open a window here, or why not (call before creating the QApplication)."""
    env = os.environ if env is None else env
    dirs = list(plugin_dirs) if plugin_dirs is not None else platform_plugin_dirs(env)
    loader = load_error or (_dlopen_error if system.startswith("linux") else _loads)
    names = platform_candidates(env, system)
    problems = []
    for name in names:  # Qt takes the first that works
        problem = platform_problem(name, env, lambda n: find_plugin(n, dirs), loader)
        if problem is None:
            return None
        problems.append(problem)
    installed = ""
    if any(find_plugin(name, dirs) is None for name in names):
        listed = ", ".join(installed_platforms(dirs)) or "none"
        installed = f" Installed platform plugins: {listed} (QT_QPA_PLATFORM picks one)."
    return StartupProblem(
        EX_UNAVAILABLE,
        f"cannot open the window: {'; '.join(problems)}.{installed} {_NO_WINDOW_HINT}",
    )


def platform_plugin_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where Qt looks for platform plugins: its own env overrides, then PySide6's folder."""
    dirs = [Path(p) for p in env.get("QT_QPA_PLATFORM_PLUGIN_PATH", "").split(os.pathsep) if p]
    dirs += [Path(p, "platforms") for p in env.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    from PySide6.QtCore import QLibraryInfo

    dirs.append(Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath), "platforms"))
    return dirs


def find_plugin(name: str, dirs: Sequence[Path]) -> Path | None:
    """The plugin file of platform ``name`` (libqxcb.so, qwindows.dll, libqcocoa.dylib)."""
    stems = (f"libq{name}", f"q{name}", f"libq{name}-generic")
    for folder in dirs:
        for stem in stems:
            for suffix in _PLUGIN_SUFFIXES:
                if (folder / (stem + suffix)).is_file():
                    return folder / (stem + suffix)
    return None


def installed_platforms(dirs: Sequence[Path]) -> list[str]:
    """The platform names whose plugins are in ``dirs``."""
    found: set[str] = set()
    for folder in dirs:
        if folder.is_dir():
            for file in folder.iterdir():
                if file.suffix in _PLUGIN_SUFFIXES:
                    name = file.stem.removeprefix("lib").removeprefix("q")
                    found.add(name.removesuffix("-generic"))
    return sorted(found)


def _dlopen_error(plugin: Path) -> str | None:
    """Why the dynamic loader refuses ``plugin`` (a missing libxcb-cursor.so.0...), or None."""
    import ctypes

    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        return str(exc).replace(f"{plugin}: ", "")
    return None


def _loads(_plugin: Path) -> str | None:
    return None  # outside Linux the plugin's libraries ship with it


# -- the keyring ----------------------------------------------------------------------
def keyring_warning(check: Callable[[], object] | None = None) -> str | None:
    """One warning line when no usable keyring is there, else None."""
    from app.secrets import SecretStore, SecretsUnavailableError

    try:
        (check or SecretStore().check)()
    except SecretsUnavailableError:
        return (
            "soloist: warning: no usable system keyring; Soloist starts, but connections "
            "that need a password or an API key will say so until one is available "
            "(soloist doctor tells more)."
        )
    return None


def warn_if_no_keyring(
    stream: TextIO | None = None, check: Callable[[], object] | None = None
) -> threading.Thread:
    """Check the keyring on a thread (it takes ~0.4 s) and print the warning, if any."""

    def warn() -> None:
        try:
            line = keyring_warning(check)
        except Exception:  # a broken keyring package: the app starts; doctor tells more
            log.exception("the keyring check failed")
            return
        if line is not None:
            print(line, file=stream or sys.stderr, flush=True)

    thread = threading.Thread(target=warn, name="soloist-keyring-check", daemon=True)
    thread.start()
    return thread
