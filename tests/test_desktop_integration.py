"""Desktop integration end to end in a temporary home: menu entry, icons, start at login.

The XDG and LaunchAgent mechanisms write real files (the plist is read back
with plistlib); the Windows Run key is driven through a fake registry
(``winreg`` does not exist here). ``desktop-file-validate`` checks every
desktop file we write, when the tool is installed.
"""

from __future__ import annotations

import argparse
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from app import cli_desktop
from app.desktop import entry
from app.desktop.autostart import (
    BUNDLE_ID,
    RUN_VALUE,
    LaunchAgent,
    WindowsRunKey,
    XdgAutostart,
    autostart_for,
)
from app.desktop.entry import desktop_entry, exec_line, read_entry
from app.desktop.errors import DesktopWriteError
from app.desktop.install import HICOLOR_SIZES, install_desktop_entry, uninstall_desktop_entry

REPO = Path(__file__).resolve().parents[1]
COMMAND = ["/opt/Soloist apps/soloist", "--minimized"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake home; the XDG variables are unset so the defaults under it apply."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return home


def validate(path: Path) -> None:
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip("desktop-file-validate is not installed")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout


# -- Exec quoting (pure) -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "line"),
    [
        (["soloist"], "soloist"),
        (["soloist", "--minimized"], "soloist --minimized"),
        (["/opt/my apps/soloist"], '"/opt/my apps/soloist"'),
        (["a$b"], '"a\\\\$b"'),  # $ escaped in quotes, then the backslash as a string
        (["50%"], "50%%"),
        (['say "hi"'], '"say \\\\"hi\\\\""'),
    ],
)
def test_exec_line_quotes_as_the_spec_asks(command: list[str], line: str) -> None:
    assert exec_line(command) == line


def test_exec_line_needs_a_program() -> None:
    with pytest.raises(ValueError, match="program"):
        exec_line([])


def test_the_packaged_desktop_file_is_the_generated_one() -> None:
    packaged = REPO / "packaging" / "linux" / "soloist.desktop"
    assert packaged.read_text(encoding="utf-8") == desktop_entry(["soloist"])
    fields = read_entry(packaged.read_text(encoding="utf-8"))
    assert fields["Exec"] == "soloist" and fields["Icon"] == "soloist"
    assert fields["StartupWMClass"] == "soloist" and fields["Categories"] == "Office;"
    assert fields["Terminal"] == "false"
    validate(packaged)


# -- the applications menu ---------------------------------------------------------------
def test_install_writes_the_entry_and_hicolor_icons(home: Path) -> None:
    installed = install_desktop_entry(COMMAND)
    base = home / ".local" / "share"
    assert installed.entry == base / "applications" / "soloist.desktop"
    assert read_entry(installed.entry.read_text())["Exec"] == exec_line(COMMAND)
    for size in HICOLOR_SIZES:
        icon = base / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "soloist.png"
        assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", size
        assert icon in installed.icons
    assert (base / "icons" / "hicolor" / "scalable" / "apps" / "soloist.svg").is_file()
    validate(installed.entry)


def test_install_is_idempotent_and_uninstall_removes_what_it_wrote(home: Path) -> None:
    first = install_desktop_entry(["soloist"])
    second = install_desktop_entry(["soloist"])
    assert first == second
    leftovers = [p for p in (home / ".local").rglob("*") if p.name.endswith(".partial")]
    assert leftovers == []
    removed = uninstall_desktop_entry()
    assert sorted(removed) == sorted([first.entry, *first.icons])
    assert not first.entry.exists() and uninstall_desktop_entry() == []


def test_install_respects_xdg_data_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    installed = install_desktop_entry(["soloist"])
    assert installed.entry == tmp_path / "data" / "applications" / "soloist.desktop"
    assert not (home / ".local").exists()


def test_a_relative_xdg_variable_is_ignored(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    assert install_desktop_entry(["soloist"]).entry.is_relative_to(home / ".local" / "share")


def test_an_unwritable_folder_is_a_readable_error(home: Path) -> None:
    (home / ".local").write_text("a file where a folder should be")
    with pytest.raises(DesktopWriteError, match="Could not write the file") as caught:
        install_desktop_entry(["soloist"])
    assert "office data was not touched" in str(caught.value)


def test_the_exec_line_points_at_this_soloist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.frozen", True, raising=False)
    monkeypatch.setattr("sys.executable", "/opt/Soloist/soloist")
    assert entry.running_command() == ["/opt/Soloist/soloist"]
    assert entry.start_minimized_command() == ["/opt/Soloist/soloist", "--minimized"]


def test_from_source_the_command_is_a_real_program() -> None:
    command = entry.running_command()
    assert Path(command[0]).is_file()
    assert command[1:] in ([], ["-m", "app"])


# -- start at login ----------------------------------------------------------------------
def test_xdg_autostart_round_trip(home: Path) -> None:
    autostart = autostart_for("linux", home=home, environ={})
    assert isinstance(autostart, XdgAutostart)
    assert not autostart.is_enabled()  # off by default
    autostart.enable(COMMAND)
    path = home / ".config" / "autostart" / "soloist.desktop"
    fields = read_entry(path.read_text())
    assert fields["X-GNOME-Autostart-enabled"] == "true"
    assert fields["Exec"] == exec_line(COMMAND)
    assert autostart.is_enabled()
    validate(path)
    autostart.disable()
    assert not path.exists() and not autostart.is_enabled()
    autostart.disable()  # off again: nothing to do, no error


def test_xdg_autostart_respects_xdg_config_home(home: Path, tmp_path: Path) -> None:
    autostart = autostart_for("linux", home=home, environ={"XDG_CONFIG_HOME": str(tmp_path / "c")})
    autostart.enable(["soloist"])
    assert (tmp_path / "c" / "autostart" / "soloist.desktop").is_file()


@pytest.mark.parametrize(
    "line", ["Hidden=true", "X-GNOME-Autostart-enabled=false"], ids=["hidden", "gnome-off"]
)
def test_an_entry_switched_off_by_the_desktop_reads_as_off(home: Path, line: str) -> None:
    autostart = XdgAutostart(home / ".config")
    autostart.enable(["soloist"])
    autostart.path.write_text(autostart.path.read_text().replace(
        "X-GNOME-Autostart-enabled=true", line))  # fmt: skip
    assert not autostart.is_enabled()


def test_launch_agent_round_trip(home: Path) -> None:
    autostart = autostart_for("darwin", home=home)
    assert isinstance(autostart, LaunchAgent)
    assert not autostart.is_enabled()
    autostart.enable(COMMAND)
    path = home / "Library" / "LaunchAgents" / f"{BUNDLE_ID}.plist"
    with path.open("rb") as file:
        agent = plistlib.load(file)
    assert agent["Label"] == BUNDLE_ID
    assert agent["ProgramArguments"] == COMMAND
    assert agent["RunAtLoad"] is True
    assert autostart.is_enabled()
    autostart.disable()
    assert not path.exists() and not autostart.is_enabled()


def test_a_damaged_launch_agent_reads_as_off(home: Path) -> None:
    autostart = LaunchAgent(home)
    autostart.path.parent.mkdir(parents=True)
    autostart.path.write_bytes(b"not a plist")
    assert not autostart.is_enabled()


class FakeRunKey:
    """The string values of one registry key, in a dict."""

    def __init__(self, fail: bool = False) -> None:
        self.values: dict[str, str] = {}
        self.fail = fail

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        if self.fail:
            raise PermissionError(13, "Access is denied")
        self.values[name] = value

    def delete(self, name: str) -> None:
        self.values.pop(name, None)


def test_windows_run_key_round_trip() -> None:
    registry = FakeRunKey()
    autostart = autostart_for("win32", registry=registry)
    assert isinstance(autostart, WindowsRunKey)
    assert not autostart.is_enabled()
    autostart.enable([r"C:\Program Files\Soloist\Soloist.exe", "--minimized"])
    assert registry.values == {RUN_VALUE: r'"C:\Program Files\Soloist\Soloist.exe" --minimized'}
    assert autostart.is_enabled()
    autostart.disable()
    assert registry.values == {} and not autostart.is_enabled()


def test_a_refused_registry_write_is_a_readable_error() -> None:
    autostart = WindowsRunKey(FakeRunKey(fail=True))
    with pytest.raises(DesktopWriteError, match=r"write the registry value.*Access is denied"):
        autostart.enable(["soloist.exe"])
    assert not autostart.is_enabled()


# -- soloist desktop ---------------------------------------------------------------------
def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="soloist")
    cli_desktop.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["desktop", *argv])


def test_soloist_desktop_is_a_command_of_the_cli(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app import cli

    assert cli.main(["desktop", "autostart", "on"]) == 0
    assert capsys.readouterr().out == "Start at login: on\n"
    entry = home / ".config" / "autostart" / "soloist.desktop"
    assert read_entry(entry.read_text())["Exec"].endswith(" --minimized")
    assert cli.main(["desktop", "autostart", "off"]) == 0
    assert not entry.exists()


def test_cli_autostart_on_status_off(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / ".config" / "autostart" / "soloist.desktop"
    assert cli_desktop.run(parse("autostart", "status")) == 0
    assert capsys.readouterr().out == "Start at login: off\n"
    assert cli_desktop.run(parse("autostart", "on")) == 0
    assert capsys.readouterr().out == "Start at login: on\n"
    assert read_entry(path.read_text())["Exec"].endswith(" --minimized")
    assert cli_desktop.run(parse("autostart", "off")) == 0
    assert capsys.readouterr().out == "Start at login: off\n"
    assert not path.exists()


def test_cli_install_and_uninstall(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_desktop.run(parse("install")) == 0
    entry_file = home / ".local" / "share" / "applications" / "soloist.desktop"
    assert str(entry_file) in capsys.readouterr().out
    assert cli_desktop.run(parse("uninstall")) == 0
    assert "Removed Soloist" in capsys.readouterr().out and not entry_file.exists()
    assert cli_desktop.run(parse("uninstall")) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_cli_install_is_linux_only(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_desktop, "current_platform", lambda: "darwin")
    assert cli_desktop.run(parse("install")) == cli_desktop.EXIT_FAILED
    assert "Linux only" in capsys.readouterr().err
    assert not (home / ".local").exists()


def test_cli_reports_a_refused_write(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / ".config").write_text("a file where a folder should be")
    assert cli_desktop.run(parse("autostart", "on")) == cli_desktop.EXIT_FAILED
    assert "Could not write the file" in capsys.readouterr().err


def test_cli_usage_errors() -> None:
    with pytest.raises(SystemExit) as caught:
        parse("autostart", "maybe")
    assert caught.value.code == 2
