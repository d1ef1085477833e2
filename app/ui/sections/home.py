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

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import section
from app.ui.sections.refreshing import RefreshingSection, StatusLabel
from app.ui.sections.run_text import outcome_text

if TYPE_CHECKING:  # read through the bridge, off this thread
    from app.ui.sections.home_ops import HomeSnapshot, RecentRun, Upcoming

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
    """``Mon 03 Mar 08:00  desk  done · 4 steps · 182 ms``."""
    ended = outcome_text(
        run.state, run.outcome, run.error, steps=run.steps, duration_s=run.duration_s
    )
    return f"{when_text(run.started_at)}  {run.agent_id}  {ended}"


def run_tooltip(run: RecentRun) -> str:
    """The same run with its reason in full."""
    ended = outcome_text(run.state, run.outcome, run.error, limit=10_000)
    return f"{run.agent_id}, started {when_text(run.started_at)}: {ended}"


def upcoming_text(item: Upcoming) -> str:
    """``Sat 28 Nov 08:00  Daily briefing — every day at 08:00``."""
    return f"{when_text(item.when)}  {item.name}"


class HomePage(RefreshingSection):
    """Emits ``section_requested(key)`` to open another section."""

    section_requested = Signal(str)
    refresh_interval_ms = REFRESH_MS

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self._loading = False
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
        self.message = StatusLabel("Home status", self)
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
            line = QListWidgetItem(upcoming_text(item), self.upcoming)
            line.setToolTip(item.detail or upcoming_text(item))
        if not snapshot.upcoming:
            self.upcoming.addItem("No automation is scheduled.")
        self.recent.clear()
        for run in snapshot.recent:
            line = QListWidgetItem(run_text(run), self.recent)
            line.setToolTip(run_tooltip(run))
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
    def on_opened(self) -> None:
        self._loading = False  # a read asked for before the office opened never ran
        super().on_opened()

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


def _boxed(title: str, parent: QWidget, *widgets: QWidget) -> QGroupBox:
    box = QGroupBox(title, parent)
    column = QVBoxLayout(box)
    for widget in widgets:
        column.addWidget(widget)
    return box


@section("home", "Home", order=10)
def make(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return HomePage(bridge, parent)
