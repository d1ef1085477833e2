"""scripts/screenshots.py under Xvfb: one readable PNG per section, and no Qt warning.

The pictures are for the README and for review; they are not compared pixel
by pixel. This checks that each registered section was shown and grabbed
at the window's size, that the grab is not blank, and that the run printed
no Qt or log warning.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from app.ui.main_window import CHAT, CHAT_ORDER, WINDOW_SIZE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "screenshots.py"
MAKE_MODEL = REPO / "scripts" / "make_test_model.py"
DARK = ("home", "approvals")
MIN_COLOURS = 16  # a blank or half-painted window has a handful
RUN_TIMEOUT_S = 420
# Lines of stderr that are not warnings: the embedding model's load progress bar.
HARMLESS = (re.compile(r"^Loading weights"),)
# What Qt's message handler and Python's logging print for a warning or worse.
WARNING = re.compile(
    r"(QtWarningMsg|QtCriticalMsg|QtFatalMsg|^qt\.|^QXcb|^QObject|^QWidget|^QPainter|"
    r"^Q\w+::|WARNING|ERROR|CRITICAL|Traceback|Warning:)"
)

needs_xvfb = pytest.mark.skipif(
    shutil.which("xvfb-run") is None or shutil.which("Xvfb") is None,
    reason="xvfb-run and Xvfb are needed (apt-get install xvfb) to run the window on real X11",
)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run the script once into a temporary folder; (folder, stderr)."""
    work = tmp_path_factory.mktemp("screenshots")
    model = work / "tiny.gguf"
    subprocess.run([sys.executable, str(MAKE_MODEL), "--out", str(model)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    env["QT_QPA_PLATFORM"] = "xcb"  # the test session itself runs offscreen
    env["XDG_CONFIG_HOME"] = str(work / "config")
    out = work / "png"
    command = [
        "xvfb-run", "-a", "-s", "-screen 0 1280x800x24",
        sys.executable, str(SCRIPT), "--model", str(model), "--out-dir", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        check=False,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Qt platform xcb" in done.stdout, done.stdout
    return out, done.stderr


# Asked in a fresh interpreter: this one may have imported more section modules
# (the section tests do) than the real app registers.
SECTIONS_OF_THE_APP = (
    "import app.ui.app\n"
    "from app.ui.sections import registered\n"
    "for spec in registered(): print(spec.order, spec.key)\n"
)


@functools.cache
def expected_names() -> list[str]:
    listed = subprocess.run(
        [sys.executable, "-c", SECTIONS_OF_THE_APP],
        check=True, cwd=REPO, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    orders = [(int(order), key) for order, key in zip(listed[::2], listed[1::2], strict=True)]
    orders.append((CHAT_ORDER, CHAT))
    names = [f"{order}-{key}.png" for order, key in sorted(orders)]
    return names + [f"{order}-{key}-dark.png" for order, key in sorted(orders) if key in DARK]


def distinct_colours(image: QImage, step: int = 4) -> int:
    """Colours on a grid of every ``step``-th pixel (enough to tell blank from painted)."""
    return len(
        {
            image.pixel(x, y)
            for y in range(0, image.height(), step)
            for x in range(0, image.width(), step)
        }
    )


def warning_lines(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not any(p.search(line) for p in HARMLESS)]
    return [line for line in lines if WARNING.search(line)]


@needs_xvfb
def test_one_png_per_section_at_the_window_size(shots: tuple[Path, str]) -> None:
    folder, _ = shots
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(expected_names())
    for name in expected_names():
        image = QImage(str(folder / name))
        assert (image.width(), image.height()) == WINDOW_SIZE, name


@needs_xvfb
def test_no_png_is_blank(shots: tuple[Path, str]) -> None:
    folder, _ = shots
    for name in expected_names():
        image = QImage(str(folder / name))
        assert distinct_colours(image) > MIN_COLOURS, f"{name} looks blank"


@needs_xvfb
def test_dark_shots_differ_from_light(shots: tuple[Path, str]) -> None:
    folder, _ = shots
    for name in expected_names():
        if name.endswith("-dark.png"):
            dark = QImage(str(folder / name))
            light = QImage(str(folder / name.replace("-dark", "")))
            corner = (light.pixel(600, 5), dark.pixel(600, 5))  # the menu bar's background
            assert corner[0] != corner[1], f"{name} is not darker than its light twin"


@needs_xvfb
def test_no_qt_or_log_warning(shots: tuple[Path, str]) -> None:
    _, stderr = shots
    assert warning_lines(stderr) == [], stderr


def test_warning_filter_knows_qt_and_log_lines() -> None:
    assert warning_lines("qt.qpa.xcb: could not connect to display\n") != []
    assert warning_lines("QPainter::begin: Paint device returned engine == 0\n") != []
    assert warning_lines("WARNING:soloist.ui:background jobs still running\n") != []
    assert warning_lines("Loading weights: 100%|##| 103/103\n") == []
