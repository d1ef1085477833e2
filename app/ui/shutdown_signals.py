"""Quit the Qt app in order on SIGINT and SIGTERM.

Python runs signal handlers only between bytecodes, and while Qt's event
loop waits in C++ no bytecode runs. A timer that wakes the interpreter a
few times a second lets the handler run; it then asks Qt to quit, so the
normal shutdown (cancel the reply, close the office) follows.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType

from PySide6.QtCore import QCoreApplication, QTimer

log = logging.getLogger("soloist.ui")

WAKE_INTERVAL_MS = 200
QUIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install_quit_on_signals(qt_app: QCoreApplication) -> Callable[[], None]:
    """Install the handlers; return a function that puts the old ones back."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; quitting", signal.Signals(signum).name)
        qt_app.quit()

    previous = {sig: signal.signal(sig, on_signal) for sig in QUIT_SIGNALS}
    waker = QTimer(qt_app)
    waker.timeout.connect(lambda: None)
    waker.start(WAKE_INTERVAL_MS)

    def restore() -> None:
        waker.stop()
        waker.deleteLater()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
