"""The main window's page stack, whose section pages are built after the first paint.

A cold start must paint the window within a second, and a section's module
can bring the agent runtime, numpy or APScheduler with it. So the stack starts
with an empty placeholder per section; :meth:`SectionPages.build_later` then
builds the pages one per turn of the event loop (the shown one first, then
those that feed the tray), and any page asked for earlier (a click, a
shortcut, the tray) is built on the spot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QStackedWidget, QWidget

from app.ui.office_bridge import OfficeBridge
from app.ui.sections import SectionInfo, load

log = logging.getLogger("soloist.ui")

PageFactory = Callable[[], QWidget]


class SectionPages(QStackedWidget):
    """Pages by section key; emits ``page_built(key, page)`` as each real page appears."""

    page_built = Signal(str, QWidget)
    all_built = Signal()

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._built: dict[str, QWidget] = {}
        self._waiting: dict[str, tuple[QWidget, PageFactory]] = {}
        self._queue: list[str] = []

    # -- adding ----------------------------------------------------------
    def add_built(self, key: str, page: QWidget) -> None:
        """A page that exists already (Chat)."""
        self._built[key] = page
        self.addWidget(page)

    def add_section(self, info: SectionInfo) -> None:
        """A placeholder now; the section's own page when it is built."""
        self.add_lazy(info.key, info.title, lambda: load(info).make(self._bridge, self))

    def add_lazy(self, key: str, title: str, make: PageFactory) -> None:
        placeholder = QWidget(self)
        placeholder.setAccessibleName(f"{title} (loading)")
        self._waiting[key] = (placeholder, make)
        self.addWidget(placeholder)

    # -- building --------------------------------------------------------
    def section_keys(self) -> list[str]:
        return [*self._built, *self._waiting]

    def show_unbuilt(self, key: str) -> None:
        """Show ``key``'s page if built, else its placeholder (nothing is built here)."""
        widget = self._built.get(key) or self._waiting[key][0]
        self.setCurrentWidget(widget)

    def is_built(self, key: str) -> bool:
        return key in self._built

    def page(self, key: str) -> QWidget | None:
        """The real page of ``key``, built now if it was not yet."""
        if key in self._waiting:
            self._build(key)
        return self._built.get(key)

    def build_later(self, first: Iterable[str] = ()) -> None:
        """Build every waiting page, one per event-loop turn, ``first`` ones first."""
        wanted = [key for key in first if key in self._waiting]
        self._queue = [*wanted, *(key for key in self._waiting if key not in wanted)]
        QTimer.singleShot(0, self._build_next)

    def _build_next(self) -> None:
        while self._queue and self._queue[0] not in self._waiting:
            self._queue.pop(0)  # built on demand meanwhile
        if not self._queue:
            self.all_built.emit()
            return
        self._build(self._queue.pop(0))
        QTimer.singleShot(0, self._build_next)

    def _build(self, key: str) -> None:
        placeholder, make = self._waiting.pop(key)
        started = time.perf_counter()
        page = make()
        index = self.indexOf(placeholder)
        shown = self.currentWidget() is placeholder
        self.insertWidget(index, page)
        if shown:
            self.setCurrentWidget(page)
        self.removeWidget(placeholder)
        placeholder.deleteLater()
        self._built[key] = page
        log.info("page %s built in %.0f ms", key, (time.perf_counter() - started) * 1000)
        self.page_built.emit(key, page)
