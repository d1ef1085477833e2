"""Notice the main window's first paint: the end of a cold start.

The time from process start to this moment is what a user waits for, so the
app announces it (``soloist: first paint after N ms``) for the start-up
benchmark and logs it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QWidget

log = logging.getLogger("soloist.ui")

FIRST_PAINT = "soloist: first paint after"


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return uptime - int(fields[19]) / ticks  # field 22 of stat: start time in ticks


class FirstPaintProbe(QObject):
    """Calls ``on_paint(age_ms)`` once, when ``widget`` is first painted."""

    def __init__(self, widget: QWidget, on_paint: Callable[[float], None]) -> None:
        super().__init__(widget)
        self._widget = widget
        self._on_paint = on_paint
        self._started = time.perf_counter() - (process_age_s() or 0.0)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if watched is self._widget and event.type() == QEvent.Type.Paint:
            self._widget.removeEventFilter(self)
            age_ms = (time.perf_counter() - self._started) * 1000
            log.info("first paint %.0f ms after process start", age_ms)
            self._on_paint(age_ms)
        return False
