"""Desktop notifications for approvals and failures, through the tray, without a flood.

An agent that proposes ten actions in a minute must not pop ten bubbles:
the first notice shows at once, and what comes within ``window_s`` after it
is held and shown as one summary ("3 approvals waiting") when the window
ends. The notifier remembers what the bubble on screen is about, so a click
on it (``QSystemTrayIcon.messageClicked``) emits ``open_item_requested``
with the section and the item (the item is "" for a summary: open the
section). Without a tray the notices are only logged (ids, never text).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QSystemTrayIcon

from app.ui.tray import Tray

log = logging.getLogger("soloist.ui")

COALESCE_S = 5.0
SHOW_MS = 8000
APPROVALS = "approvals"
ShowMessage = Callable[[str, str], None]  # title, text


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to tell the owner, and where a click on it leads."""

    section: str  # the window's section key, e.g. "approvals"
    item_id: str  # "" when the notice is about the section as a whole
    title: str
    text: str
    kind: str = "approval"  # "approval" or "failure": how a summary counts it


def summary_of(notices: Sequence[Notice]) -> Notice:
    """One notice for several: counted by kind, opening their common section."""
    if len(notices) == 1:
        return notices[0]
    approvals = sum(1 for n in notices if n.kind == "approval")
    failures = len(notices) - approvals
    parts = []
    if approvals:
        parts.append(f"{approvals} new approval{'s' if approvals != 1 else ''} waiting")
    if failures:
        parts.append(f"{failures} action{'s' if failures != 1 else ''} failed")
    sections = {n.section for n in notices}
    section = notices[0].section if len(sections) == 1 else APPROVALS
    return Notice(section, "", "Soloist", "; ".join(parts) + ".", "summary")


class Notifier(QObject):
    """Shows notices through ``show`` (a tray's bubble), coalesced; see the module docstring."""

    open_item_requested = Signal(str, str)  # section key, item id ("" for the section)

    def __init__(
        self,
        show: ShowMessage | None,
        parent: QObject | None = None,
        *,
        window_s: float = COALESCE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(parent)
        self._show = show
        self._window_s = window_s
        self._clock = clock
        self._last_shown: float | None = None
        self._held: list[Notice] = []
        self.on_screen: Notice | None = None  # what a click on the bubble is about
        self._flush_timer = QTimer(self)  # single shot, only while notices are held
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self.flush)

    # -- what the section reports ----------------------------------------------------
    @Slot(list)
    def approvals(self, items: list[tuple[str, str]]) -> None:
        """New actions waiting: ``[(action id, one line)]``."""
        for action_id, line in items:
            self.post(Notice(APPROVALS, action_id, "Approval needed", line))

    @Slot(list)
    def failures(self, items: list[tuple[str, str]]) -> None:
        """Actions that failed: ``[(action id, one line)]``."""
        for action_id, line in items:
            self.post(Notice(APPROVALS, action_id, "An action failed", line, "failure"))

    def post(self, notice: Notice) -> None:
        """Show now, or hold it for the summary when a notice was shown lately."""
        now = self._clock()
        quiet = self._last_shown is None or now - self._last_shown >= self._window_s
        if quiet and not self._held:
            self._display(notice, now)
            return
        self._held.append(notice)
        if not self._flush_timer.isActive():
            wait = self._window_s - (now - (self._last_shown or now))
            self._flush_timer.start(max(0, int(wait * 1000)))

    @property
    def held(self) -> int:
        return len(self._held)

    @Slot()
    def flush(self) -> None:
        """Show what was held as one notice."""
        self._flush_timer.stop()
        if self._held:
            held, self._held = self._held, []
            self._display(summary_of(held), self._clock())

    # -- the bubble --------------------------------------------------------------------
    @Slot()
    def message_clicked(self) -> None:
        notice = self.on_screen
        if notice is not None:
            self.open_item_requested.emit(notice.section, notice.item_id)

    def _display(self, notice: Notice, now: float) -> None:
        self._last_shown = now
        self.on_screen = notice
        log.info("notification: %s %s", notice.section, notice.item_id or "(summary)")
        if self._show is not None:
            self._show(notice.title, notice.text)


def notifier_for(tray: Tray | None, parent: QObject | None = None) -> Notifier:
    """A notifier that shows bubbles on ``tray`` (only logs when there is none)."""
    if tray is None:
        return Notifier(None, parent)
    icon = tray.icon

    def show(title: str, text: str) -> None:
        icon.showMessage(title, text, QSystemTrayIcon.MessageIcon.Information, SHOW_MS)

    notifier = Notifier(show, parent)
    icon.messageClicked.connect(notifier.message_clicked)
    return notifier
