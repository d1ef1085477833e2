#!/usr/bin/env python3
"""Take docs/screenshots/<order>-<key>.png: every section of the real window, with demo data.

Run it under a real X server, for example Xvfb::

    xvfb-run -a -s "-screen 0 1280x800x24" \\
        .venv/bin/python scripts/screenshots.py --model /tmp/models/tiny.gguf

It seeds a throw-away data directory (``SOLOIST_HOME``) through the real
stores (see ``demo_office.py``), opens the real window on it with the real
engine, shows each section of the sidebar in turn, waits until the
section's reads through the bridge have come back, and saves
``window.grab()``. Home and Approvals are taken again in the dark theme.
Your own office and window settings are never touched. The PNGs are for the
README and for review; nothing compares them pixel by pixel.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QCoreApplication, QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import demo_office
from screenshot import wait_for

from app.engine.types import GenerateRequest, Message, SamplingParams
from app.office import Office
from app.ui import theme
from app.ui.app import app_icon
from app.ui.main_window import CHAT, CHAT_ORDER, WINDOW_SIZE, MainWindow
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import registered

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
DARK_SECTIONS = ("home", "approvals")
OPEN_TIMEOUT_MS = 60_000
WARM_TIMEOUT_S = 120.0
QUIET_MS = 400  # no bridge call in flight for this long: the section has loaded
SECTION_TIMEOUT_S = 30.0
MEMORY_QUERY = "invoice"


class CountingBridge(OfficeBridge):
    """The real bridge, counting the ``call``s still in flight (what sections read through)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0

    def call(
        self,
        op: Callable[[Office], T],
        on_success: Callable[[T], None],
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.in_flight += 1

        def succeeded(result: T) -> None:
            self.in_flight -= 1
            on_success(result)

        def failed(text: str) -> None:
            self.in_flight -= 1
            (on_failure or self.error.emit)(text)

        super().call(op, succeeded, failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a GGUF model file")
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--no-dark", action="store_true", help="skip the dark-theme shots")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soloist-screenshots-") as home:
        os.environ["SOLOIST_HOME"] = home
        demo_office.seed(Path(home), args.model.resolve())
        return take_all(Path(home), args.out_dir, dark=not args.no_dark)


def take_all(home: Path, out_dir: Path, *, dark: bool) -> int:
    qt_app = application(home)
    print(f"screenshots: Qt platform {qt_app.platformName()}")
    bridge = CountingBridge()
    window = MainWindow(bridge)
    window.resize(*WINDOW_SIZE)
    window.show()
    try:
        if not wait_for(bridge.opened, lambda: bridge.open(lambda: Office(home)), OPEN_TIMEOUT_MS):
            print("screenshots: the office did not open in time", file=sys.stderr)
            return 1
        warm_engine(bridge)
        out_dir.mkdir(parents=True, exist_ok=True)
        orders = {spec.key: spec.order for spec in registered()} | {CHAT: CHAT_ORDER}
        keys = window.sidebar.keys()
        saved = [shoot(window, bridge, key, out_dir / f"{orders[key]}-{key}.png") for key in keys]
        if dark:
            theme.apply(qt_app, theme.Scheme.DARK)
            saved += [shoot(window, bridge, key, out_dir / f"{orders[key]}-{key}-dark.png")
                      for key in DARK_SECTIONS if key in orders]  # fmt: skip
    finally:
        window.hide()
        bridge.shutdown()
    return 0 if all(saved) else 1


def application(home: Path) -> QApplication:
    """A QApplication in the light theme whose QSettings live under ``home``."""
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(home / "qt"))
    qt_app = QApplication(sys.argv[:1])
    qt_app.setApplicationName("Soloist")
    qt_app.setWindowIcon(app_icon())
    qt_app.setStyle(theme.STYLE)
    theme.apply(qt_app, theme.Scheme.LIGHT)
    return qt_app


def warm_engine(bridge: CountingBridge) -> None:
    """A short generation on the chosen model, so Models & devices has a model loaded."""
    done: list[bool] = []

    def generate(office: Office) -> bool:
        model = office.model_path()
        assert model is not None
        request = GenerateRequest(
            model, (Message("user", "Hello"),), SamplingParams(max_tokens=8), agent_id="demo"
        )
        return bool(list(office.engine.generate(request)))

    bridge.call(generate, done.append, lambda text: done.append(False))
    spin_until(lambda: bool(done), WARM_TIMEOUT_S)
    if done != [True]:
        print("screenshots: the model did not answer; Models shows no loaded model")


def shoot(window: MainWindow, bridge: CountingBridge, key: str, out: Path) -> bool:
    """Show section ``key``, let it load, prepare it, and save the window as ``out``."""
    window.show_section(key)
    settle(bridge)
    page = window.page(key)
    if page is not None:
        for _step in range(2):  # the second step picks a result the first one asked for
            prepare(key, page)
            settle(bridge)
    saved = window.grab().save(str(out))
    print(f"screenshots: wrote {out}" if saved else f"screenshots: could not write {out}")
    return saved


def prepare(key: str, page: Any) -> None:
    """Choose the first item of a section's list, so its detail side is not empty.

    ``page`` is duck-typed: importing the section classes here would register
    sections the window does not list.
    """
    if key == "approvals" and hasattr(page, "pending_ids") and page.pending_ids():
        page.select(page.pending_ids()[0])
    elif key == "memory" and hasattr(page, "query"):
        if page.query.text() != MEMORY_QUERY:
            page.query.setText(MEMORY_QUERY)
            page.search_button.click()
        elif page.results.count() and page.results.currentRow() < 0:
            page.results.setCurrentRow(0)
    elif key == "connections" and hasattr(page, "accounts") and page.accounts.count():
        page.accounts.setCurrentRow(0)
    elif key == "automations" and hasattr(page, "table") and page.table.rowCount():
        page.table.selectRow(0)
    elif key == "activity" and hasattr(page, "trace") and page.trace.runs.rowCount():
        page.trace.runs.selectRow(0)
    elif key == "agents" and hasattr(page, "select_agent"):
        page.select_agent(demo_office.DESK_AGENT)


def settle(bridge: CountingBridge) -> None:
    """Spin the event loop until no bridge call has been in flight for ``QUIET_MS``."""
    quiet_since: list[float] = [time.monotonic()]

    def quiet() -> bool:
        if bridge.in_flight:
            quiet_since[0] = time.monotonic()
        return time.monotonic() - quiet_since[0] >= QUIET_MS / 1000

    spin_until(quiet, SECTION_TIMEOUT_S)


def spin_until(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        loop = QEventLoop()
        QTimer.singleShot(20, loop.quit)
        loop.exec()
    QCoreApplication.processEvents()
    return True


if __name__ == "__main__":
    sys.exit(main())
