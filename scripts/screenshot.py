#!/usr/bin/env python3
"""Take docs/screenshot.png: the real window, a reply streamed from a real model.

Run it under a real X server, for example Xvfb::

    xvfb-run -a -s "-screen 0 1280x800x24" \\
        .venv/bin/python scripts/screenshot.py --model /tmp/tiny.gguf

It uses a throw-away data directory, so your own office is never touched.
A random-weight test model writes gibberish; that is expected.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer, SignalInstance
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.office import Office
from app.ui.app import app_icon
from app.ui.main_window import MainWindow
from app.ui.office_bridge import OfficeBridge

REPO = Path(__file__).resolve().parents[1]
PROMPT = "Write a short, friendly reminder to Dana that invoice #2041 is due on Friday."
EARLIER = (
    "Plan the week: three client calls and the VAT return",
    "Summarise the feedback from the spring workshop",
)
WINDOW_SIZE = (1100, 700)
REPLY_TIMEOUT_MS = 120_000
SETTLE_MS = 300


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a GGUF model file")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--prompt", default=PROMPT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soloist-screenshot-") as home:
        os.environ["SOLOIST_HOME"] = home
        return take(args.model.resolve(), args.out, args.prompt, Path(home))


def take(model: Path, out: Path, prompt: str, home: Path) -> int:
    qt_app = QApplication(sys.argv[:1])
    qt_app.setApplicationName("Soloist")
    qt_app.setWindowIcon(app_icon())
    office = Office(home)
    office.set_model_path(str(model))
    for title in EARLIER:  # so the list is not empty; their text never shows
        office.conversations.append(office.new_conversation(title).id, "user", title)
    bridge = OfficeBridge()
    window = MainWindow(bridge)
    window.resize(*WINDOW_SIZE)
    window.show()
    wait_for(bridge.conversations_loaded, lambda: bridge.attach(office))
    window.new_chat()
    window.composer.edit.setPlainText(prompt)
    if not wait_for(bridge.finished, window.composer.edit.submitted.emit, REPLY_TIMEOUT_MS):
        print("screenshot: the reply did not finish in time", file=sys.stderr)
        bridge.shutdown()
        return 1
    wait_for(bridge.conversations_loaded, lambda: None, SETTLE_MS)  # the list refresh
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = window.grab().save(str(out))
    bridge.shutdown()
    print(f"screenshot: wrote {out}" if saved else f"screenshot: could not write {out}")
    return 0 if saved else 1


def wait_for(
    signal: SignalInstance, action: Callable[[], object], timeout_ms: int = 10_000
) -> bool:
    """Run ``action`` and spin the event loop until ``signal`` fires; False on timeout."""
    loop = QEventLoop()
    fired: list[bool] = []

    def on_signal(*_: object) -> None:
        fired.append(True)
        loop.quit()

    signal.connect(on_signal)
    QTimer.singleShot(timeout_ms, loop.quit)
    action()
    if not fired:
        loop.exec()
    signal.disconnect(on_signal)
    return bool(fired)


if __name__ == "__main__":
    sys.exit(main())
