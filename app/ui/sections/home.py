"""Home: today at a glance, and the way into what waits for the owner.

The page reads one :class:`~app.ui.sections.home_ops.HomeSnapshot` through
the bridge when it is shown, when the office opens, and every few seconds
while it stays visible (no timer runs while it is hidden). Clicking the
approvals line asks the window for the Approvals section through
``section_requested``; the page never switches pages itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import section

if TYPE_CHECKING:  # home_ops brings the agents' modules (APScheduler): loaded off this thread
    from app.ui.sections.home_ops import HomeSnapshot, RecentRun

REFRESH_MS = 5_000
AGENTS_STARTING = "Agents are starting…"
NO_BRIEFING = "No briefing yet. Run one now, or wait for the morning's."
APPROVALS = "approvals"


def _today(office: Office) -> HomeSnapshot:
    from app.ui.sections.home_ops import today

    return today(office)


def _run_briefing(office: Office) -> str:
    from app.ui.sections.home_ops import run_briefing

    return run_briefing(office)


def when_text(moment: datetime) -> str:
    """A moment in local time, short: ``Mon 03 Mar 08:00``."""
    return moment.astimezone().strftime("%a %d %b %H:%M")


def approvals_text(count: int) -> str:
    if count == 0:
        return "Nothing waits for your approval"
    noun = "action waits" if count == 1 else "actions wait"
    return f"{count} {noun} for your approval →"


def agents_text(snapshot: HomeSnapshot) -> str:
    if snapshot.running is None or snapshot.queued is None:
        return AGENTS_STARTING
    running = ", ".join(snapshot.running) or "none"
    queued = ", ".join(snapshot.queued) or "none"
    return f"Running: {running} · Queued: {queued}"


def run_text(run: RecentRun) -> str:
    tail = f": {run.outcome}" if run.outcome else ""
    return f"{when_text(run.started_at)}  {run.agent_id}  {run.state}{tail}"


class HomePage(QWidget):
    """Emits ``section_requested(key)`` to open another section."""

    section_requested = Signal(str)

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._loading = False
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._build()
        self._connect_signals()

    # -- construction --------------------------------------------------
    def _build(self) -> None:
        self.approvals = QPushButton(approvals_text(0), self)
        self.approvals.setAccessibleName("Pending approvals")
        self.approvals.setFlat(True)
        self.agents = QLabel(AGENTS_STARTING, self)
        self.agents.setAccessibleName("Agents running and queued")
        self.upcoming = QListWidget(self)
        self.upcoming.setAccessibleName("Next automations")
        self.recent = QListWidget(self)
        self.recent.setAccessibleName("Recent activity")
        self.briefing = QLabel(NO_BRIEFING, self)
        self.briefing.setAccessibleName("Latest daily briefing")
        self.briefing.setWordWrap(True)
        self.run_briefing = QPushButton("Run briefing now", self)
        self.run_briefing.setAccessibleName("Run briefing now")
        self.message = QLabel("", self)
        self.message.setAccessibleName("Home status")
        self.message.setWordWrap(True)
        layout = QVBoxLayout(self)
        title = QLabel("<h2>Today</h2>", self)
        layout.addWidget(title)
        layout.addWidget(self.approvals)
        layout.addWidget(self.agents)
        lists = QHBoxLayout()
        lists.addWidget(_boxed("Next automations", self, self.upcoming))
        lists.addWidget(_boxed("Recent activity", self, self.recent))
        layout.addLayout(lists, 1)
        layout.addWidget(_boxed("Daily briefing", self, self.briefing, self.run_briefing))
        layout.addWidget(self.message)

    def _connect_signals(self) -> None:
        self.approvals.clicked.connect(lambda: self.section_requested.emit(APPROVALS))
        self.run_briefing.clicked.connect(self._ask_briefing)
        self._timer.timeout.connect(self.refresh)
        self._bridge.opened.connect(self._on_opened)

    # -- refreshing ----------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        """Read the snapshot again (one read at a time)."""
        if self._loading:
            return
        self._loading = True
        self._bridge.call(_today, self._show, self._failed)

    def _show(self, snapshot: HomeSnapshot) -> None:
        self._loading = False
        self.approvals.setText(approvals_text(snapshot.pending_approvals))
        self.approvals.setEnabled(snapshot.pending_approvals > 0)
        self.agents.setText(agents_text(snapshot))
        self.run_briefing.setEnabled(snapshot.agents_started)
        self.upcoming.clear()
        for item in snapshot.upcoming:
            self.upcoming.addItem(f"{when_text(item.when)}  {item.name}")
        if not snapshot.upcoming:
            self.upcoming.addItem("No automation is scheduled.")
        self.recent.clear()
        for run in snapshot.recent:
            self.recent.addItem(run_text(run))
        if not snapshot.recent:
            self.recent.addItem("No agent has run yet.")
        if snapshot.briefing is None:
            self.briefing.setText(NO_BRIEFING)
        else:
            self.briefing.setText(
                f"{when_text(snapshot.briefing.written_at)}\n\n{snapshot.briefing.text}"
            )

    def _failed(self, text: str) -> None:
        self._loading = False
        self.message.setText(text)

    @Slot()
    def _on_opened(self) -> None:
        self._loading = False  # a read asked for before the office opened never ran
        if self.isVisible():
            self.refresh()

    @Slot()
    def _ask_briefing(self) -> None:
        self.run_briefing.setEnabled(False)
        self.message.setText("Briefing queued…")
        self._bridge.call(_run_briefing, self._briefing_queued, self._briefing_failed)

    def _briefing_queued(self, agent_id: str) -> None:
        self.run_briefing.setEnabled(True)
        self.message.setText(f"The {agent_id} agent is on its way; its briefing shows here.")
        self.refresh()

    def _briefing_failed(self, text: str) -> None:
        self.run_briefing.setEnabled(True)
        self.message.setText(text)

    # -- events --------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self.refresh()
        self._timer.start()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 (Qt's name)
        self._timer.stop()
        super().hideEvent(event)


def _boxed(title: str, parent: QWidget, *widgets: QWidget) -> QGroupBox:
    box = QGroupBox(title, parent)
    column = QVBoxLayout(box)
    for widget in widgets:
        column.addWidget(widget)
    return box


@section("home", "Home", order=10)
def make(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return HomePage(bridge, parent)
