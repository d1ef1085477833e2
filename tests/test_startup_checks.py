"""Bad input at start: one clear line, a sysexits code, never a traceback.

The decisions are table-tested as pure functions; the exit codes and
messages are checked on the real ``soloist`` in a subprocess (the suite runs
as root, so an unwritable data directory is a path under a regular file).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from keyring.backends.fail import Keyring as FailKeyring
from keyring_service import MemoryKeyring

from app import startup_checks
from app.secrets import SecretStore
from app.startup_checks import (
    EX_CANTCREAT,
    EX_UNAVAILABLE,
    check_data_dir,
    check_display,
    platform_candidates,
    platform_problem,
)

SOLOIST = Path(sys.executable).with_name("soloist")
REPO = Path(__file__).resolve().parents[1]


def _soloist(
    *args: str, env: Mapping[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    cmd = [str(SOLOIST)] if SOLOIST.exists() else [sys.executable, "-m", "app"]
    return subprocess.run(
        [*cmd, *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("soloist: ")
    return lines[0]


# -- the data directory ---------------------------------------------------------------
def test_a_writable_data_dir_passes_and_keeps_no_probe(tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    assert check_data_dir(home) is None
    assert home.is_dir() and list(home.iterdir()) == []


def test_a_data_dir_under_a_file_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    problem = check_data_dir(blocker / "home")
    assert problem is not None and problem.code == EX_CANTCREAT
    assert str(blocker / "home") in problem.message and "SOLOIST_HOME" in problem.message


@pytest.mark.parametrize("command", [(), ("memory", "search", "jam")])
def test_soloist_with_an_unwritable_home_exits_73(tmp_path: Path, command: tuple[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _soloist(*command, env={"SOLOIST_HOME": str(blocker / "home")})
    line = _one_line(result, EX_CANTCREAT)
    assert f"cannot write the data directory {blocker / 'home'}" in line
    assert "Set SOLOIST_HOME" in line


# -- the Qt platform ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "system", "expected"),
    [
        ({}, "linux", ["xcb"]),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", ["wayland", "xcb"]),
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux", ["offscreen"]),
        ({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux", ["wayland", "xcb"]),
        ({"QT_QPA_PLATFORM": "xcb:dpi=96"}, "linux", ["xcb"]),
        ({"QT_QPA_PLATFORM": " "}, "linux", ["xcb"]),
        ({}, "darwin", ["cocoa"]),
        ({}, "win32", ["windows"]),
    ],
)
def test_platform_candidates(env: dict[str, str], system: str, expected: list[str]) -> None:
    assert platform_candidates(env, system) == expected


def _found(*names: str) -> Callable[[str], Path | None]:
    return lambda name: Path(f"/plugins/libq{name}.so") if name in names else None


@pytest.mark.parametrize(
    ("name", "env", "installed", "load", "expected"),
    [
        ("xcb", {"DISPLAY": ":0"}, ("xcb",), None, None),
        ("xcb", {}, ("xcb",), None, "there is no display (DISPLAY is not set"),
        ("xcb", {"DISPLAY": ":0"}, (), None, "plugin 'xcb' is not installed"),
        ("xcb", {"DISPLAY": ":0"}, ("xcb",), "libxcb-cursor.so.0: cannot open", "libxcb-cursor0"),
        ("wayland", {}, ("wayland",), None, "WAYLAND_DISPLAY is not set"),
        ("wayland", {"WAYLAND_DISPLAY": "w-1"}, ("wayland",), None, None),
        ("offscreen", {}, ("offscreen",), None, None),
        ("nosuchplugin", {}, ("xcb",), None, "'nosuchplugin' is not installed"),
    ],
)
def test_platform_problem(
    name: str,
    env: dict[str, str],
    installed: tuple[str, ...],
    load: str | None,
    expected: str | None,
) -> None:
    problem = platform_problem(name, env, _found(*installed), lambda _p: load)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_check_display_takes_the_first_platform_that_works(tmp_path: Path) -> None:
    (tmp_path / "libqxcb.so").write_bytes(b"")
    (tmp_path / "libqwayland.so").write_bytes(b"")
    env = {"QT_QPA_PLATFORM": "nosuch;xcb", "DISPLAY": ":1"}
    assert check_display(env, "linux", [tmp_path], lambda _p: None) is None
    problem = check_display({"QT_QPA_PLATFORM": "nosuch"}, "linux", [tmp_path], lambda _p: None)
    assert problem is not None and problem.code == EX_UNAVAILABLE
    assert "Installed platform plugins: wayland, xcb" in problem.message
    assert "soloist --self-test" in problem.message


def test_soloist_with_a_missing_platform_plugin_exits_69(tmp_path: Path) -> None:
    result = _soloist(env={"SOLOIST_HOME": str(tmp_path), "QT_QPA_PLATFORM": "nosuchplugin"})
    line = _one_line(result, EX_UNAVAILABLE)
    assert "the Qt platform plugin 'nosuchplugin' is not installed" in line
    assert "offscreen" in line  # the installed ones are listed


def test_soloist_on_xcb_without_a_display_exits_69(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [str(SOLOIST)] if SOLOIST.exists() else [sys.executable, "-m", "app"],
        env={**env, "SOLOIST_HOME": str(tmp_path), "QT_QPA_PLATFORM": "xcb"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = _one_line(result, EX_UNAVAILABLE)
    assert "there is no display (DISPLAY is not set" in line
    assert "soloist --self-test" in line


# -- the keyring ----------------------------------------------------------------------
def test_no_keyring_gives_one_warning_line() -> None:
    line = startup_checks.keyring_warning(SecretStore(FailKeyring()).check)
    assert line is not None and line.startswith("soloist: warning: no usable system keyring")
    assert "\n" not in line
    assert startup_checks.keyring_warning(SecretStore(MemoryKeyring()).check) is None  # type: ignore[arg-type]


def test_the_keyring_warning_is_printed_from_its_thread() -> None:
    stream = io.StringIO()
    thread = startup_checks.warn_if_no_keyring(stream, SecretStore(FailKeyring()).check)
    thread.join(30)
    assert stream.getvalue().startswith("soloist: warning: no usable system keyring")


def test_connections_secret_without_a_keyring_fails_in_one_line(tmp_path: Path) -> None:
    env = {"SOLOIST_HOME": str(tmp_path), "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    add = ("connections", "add", "dav", "Cloud", "--id", "cloud", "--secret-stdin")
    settings = ("--set", "url=https://dav.example.com/", "--set", "username=me")
    line = _one_line(_soloist(*add, *settings, env=env, stdin="pw\n"), 2)
    assert "No usable keyring" in line
    again = _soloist("connections", "secret", "cloud", "--secret-stdin", env=env, stdin="pw\n")
    assert "No usable keyring" in _one_line(again, 2)


# -- a bug ------------------------------------------------------------------------------
_BUG = """
import sys
import app.cli as cli
def broken(args):
    raise ValueError("the frobnicator is\\nmisaligned")
cli._COMMANDS["doctor"] = broken
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_an_uncaught_exception_is_one_line_and_exit_70(tmp_path: Path, verbose: bool) -> None:
    args = ["--verbose", "doctor"] if verbose else ["doctor"]
    result = subprocess.run(
        [sys.executable, "-c", _BUG, *args],
        cwd=REPO,
        env={**os.environ, "SOLOIST_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 70
    log_file = tmp_path / "logs" / "cli.log"
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "soloist: internal error: ValueError: the frobnicator is misaligned "
        f"(details in {log_file})"
    )
    assert ("Traceback" in result.stderr) is verbose
    assert "Traceback" in log_file.read_text()
