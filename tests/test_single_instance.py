"""One Soloist per data directory: hand-over to the running one, stale locks, SIGTERM."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.ui.app import ACTIVATION, HANDED_OVER, READY
from app.ui.first_paint import FIRST_PAINT, process_age_s
from app.ui.single_instance import LOCK_NAME, SingleInstance, server_name

START_TIMEOUT_S = 60.0
REPO = Path(__file__).resolve().parents[1]


def app_env(home: Path) -> dict[str, str]:
    return {**os.environ, "SOLOIST_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}


class RunningApp:
    """``python -m app`` in a subprocess, its stderr collected line by line."""

    def __init__(self, home: Path, *args: str) -> None:
        env = app_env(home)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self._new.put(line.rstrip("\n"))

    def wait_for_line(self, wanted: str, timeout_s: float = START_TIMEOUT_S) -> str:
        """Wait for a line equal to ``wanted`` (or starting with it, if it ends in a space)."""
        deadline = time.monotonic() + timeout_s
        while not (found := self._find(wanted)):
            left = deadline - time.monotonic()
            if left <= 0 or (self.process.poll() is not None and self._new.empty()):
                raise AssertionError(f"no {wanted!r} on stderr; got {self.lines}")
            with contextlib.suppress(queue.Empty):
                self.lines.append(self._new.get(timeout=min(left, 0.5)))
        return found

    def _find(self, wanted: str) -> str:
        if wanted.endswith(" "):
            return next((line for line in self.lines if line.startswith(wanted)), "")
        return wanted if wanted in self.lines else ""

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.reap()

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, like a crash."""
        self.process.kill()
        self.reap()

    def reap(self) -> int:
        status = self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        return status


@pytest.fixture
def apps(soloist_home: Path) -> Iterator[list[RunningApp]]:
    started: list[RunningApp] = []
    yield started
    for app in started:
        app.kill()


def start(apps: list[RunningApp], home: Path) -> RunningApp:
    app = RunningApp(home)
    apps.append(app)
    app.wait_for_line(READY)
    return app


def start_again(home: Path) -> subprocess.CompletedProcess[str]:
    """A second start, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=REPO,
        env=app_env(home),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.slow
def test_second_start_shows_the_first_window_and_exits_0(
    apps: list[RunningApp], soloist_home: Path
) -> None:
    first = start(apps, soloist_home)
    began = time.monotonic()
    second = start_again(soloist_home)
    assert second.returncode == 0, second.stderr
    assert HANDED_OVER in second.stderr.splitlines()
    assert time.monotonic() - began < 15
    first.wait_for_line(ACTIVATION, timeout_s=10)
    assert first.stop() == 0  # SIGTERM quits in order
    log = (soloist_home / "logs" / "soloist.log").read_text()
    assert log.index("stop: office bridge") < log.index("office closed")
    assert log.index("office closed") < log.index("stop: single instance")
    assert not (soloist_home / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_cold_start_reports_its_first_paint(apps: list[RunningApp], soloist_home: Path) -> None:
    first = start(apps, soloist_home)
    line = first.wait_for_line(FIRST_PAINT + " ", timeout_s=10)
    millis = float(line.removeprefix(FIRST_PAINT).split()[0])
    assert 0 < millis < START_TIMEOUT_S * 1000


def test_minimized_without_a_tray_still_shows_the_window(
    apps: list[RunningApp], soloist_home: Path
) -> None:
    # offscreen has no system tray: hiding the window would leave no way to open it
    app = RunningApp(soloist_home, "--minimized")
    apps.append(app)
    app.wait_for_line(READY)
    assert any(line.startswith(FIRST_PAINT) for line in app.lines)
    assert app.stop() == 0


def test_process_age_is_measured_from_process_start() -> None:
    age = process_age_s()
    if sys.platform.startswith("linux"):
        assert age is not None
        assert 0 < age < 3600  # this test process started recently
    else:
        assert age is None


@pytest.mark.slow
def test_a_lock_left_by_a_killed_instance_does_not_block_the_next_start(
    apps: list[RunningApp], soloist_home: Path
) -> None:
    first = start(apps, soloist_home)
    first.kill()
    assert (soloist_home / LOCK_NAME).exists()
    again = start(apps, soloist_home)
    handed_over = start_again(soloist_home)
    assert handed_over.returncode == 0, handed_over.stderr  # the new server answers
    again.wait_for_line(ACTIVATION, timeout_s=10)
    assert again.stop() == 0


def test_server_names_differ_per_data_directory(tmp_path: Path) -> None:
    one, other = tmp_path / "one", tmp_path / "other"
    assert server_name(one) == server_name(one)
    assert server_name(one) != server_name(other)
    assert len(server_name(one)) < 40  # it becomes a socket path


def test_a_held_lock_refuses_a_second_owner_until_released(
    qtbot: QtBot, soloist_home: Path
) -> None:
    first, second = SingleInstance(soloist_home), SingleInstance(soloist_home)
    assert first.acquire()
    try:
        assert not second.acquire()
    finally:
        first.release()
    assert second.acquire()
    second.release()
