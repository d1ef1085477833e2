"""The Activity section: every agent's runs and steps, newest first, a page at a time.

Filters (agent, state, text in the tools called) and paging ask the office
for one page through ``bridge.call`` (:func:`activity_ops.page`); choosing a
run loads its steps. "Export…" asks where to save (the file chooser is the
one dialog here) and writes every matching run, not only the page shown,
on a worker thread. While the section is visible and shows the newest page
a timer reloads it, so new runs appear; hidden, nothing runs.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer, Slot
from PySide6.QtGui import QHideEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.agents.trace import RunState, StepRecord
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import activity_ops, section
from app.ui.sections.activity_ops import ActivityFilter, ActivityPage
from app.ui.sections.agents_ops import run_steps
from app.ui.sections.refreshing import RefreshingSection, StatusLabel
from app.ui.sections.trace_view import TraceView

__all__ = ["EXPORT_FILTER", "ActivitySection", "make_activity"]

REFRESH_MS = 5000
TYPING_MS = 300
EXPORT_FILTER = "CSV (*.csv);;JSON with steps (*.json)"


class ActivitySection(RefreshingSection):
    """See the module docstring; talks to the office only through the bridge."""

    refresh_interval_ms = REFRESH_MS

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self.setObjectName("section-activity")
        self._page_number = 0
        self.page_size = activity_ops.PAGE_SIZE
        self.shown: ActivityPage | None = None
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(TYPING_MS)
        self._build()
        self._connect_signals()

    def _build(self) -> None:
        self.agent = QComboBox(self)
        self.agent.setAccessibleName("Filter by agent")
        self.agent.addItem("All agents", "")
        self.state = QComboBox(self)
        self.state.setAccessibleName("Filter by state")
        self.state.addItem("Any state", "")
        for state in RunState:
            self.state.addItem(state.value.replace("_", " "), state.value)
        self.tool_text = QLineEdit(self)
        self.tool_text.setAccessibleName("Filter by tool name")
        self.tool_text.setPlaceholderText("Tool name contains…")
        self.tool_text.setClearButtonEnabled(True)
        self.export_button = QPushButton("Export…", self)
        self.export_button.setAccessibleName("Export the filtered runs")
        filters = QHBoxLayout()
        for widget in (self.agent, self.state):
            filters.addWidget(widget)
        filters.addWidget(self.tool_text, 1)
        filters.addWidget(self.export_button)
        self.newer = QPushButton("Newer", self)
        self.newer.setAccessibleName("Newer runs")
        self.older = QPushButton("Older", self)
        self.older.setAccessibleName("Older runs")
        self.position = QLabel(self)
        self.position.setAccessibleName("Runs shown")
        paging = QHBoxLayout()
        paging.addWidget(self.position, 1)
        paging.addWidget(self.newer)
        paging.addWidget(self.older)
        self.message = StatusLabel("Activity status", self)
        self.trace = TraceView(self, show_tools=True)
        column = QVBoxLayout(self)
        column.addLayout(filters)
        column.addWidget(self.message)
        column.addWidget(self.trace, 1)
        column.addLayout(paging)

    def _connect_signals(self) -> None:
        self._typing.timeout.connect(self._filter_changed)
        self.agent.activated.connect(self._filter_changed)
        self.state.activated.connect(self._filter_changed)
        self.tool_text.textChanged.connect(self._typing.start)
        self.newer.clicked.connect(lambda: self.show_page(self._page_number - 1))
        self.older.clicked.connect(lambda: self.show_page(self._page_number + 1))
        self.export_button.clicked.connect(self._choose_export)
        self.trace.run_chosen.connect(self._load_steps)

    # -- showing -------------------------------------------------------------------------
    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 (Qt's name)
        self._typing.stop()
        super().hideEvent(event)

    @Slot()
    def on_tick(self) -> None:
        """Only the newest page changes as runs come: older pages stay put."""
        if self._page_number == 0:
            self.refresh()

    def current_filter(self) -> ActivityFilter:
        state = str(self.state.currentData() or "")
        return ActivityFilter(
            agent_id=str(self.agent.currentData() or ""),
            state=RunState(state) if state else None,
            tool_text=self.tool_text.text(),
        )

    @Slot()
    def _filter_changed(self) -> None:
        self.show_page(0)

    def show_page(self, number: int) -> None:
        self._page_number = max(0, number)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Reload the page shown with the filter as it is now."""
        chosen, number, size = self.current_filter(), self._page_number, self.page_size
        self.load(lambda office: activity_ops.page(office, chosen, number, size), self._show_page)

    def load_failed(self, message: str) -> None:
        self.message.setText(message)

    def _show_page(self, shown: ActivityPage) -> None:
        self.shown = shown
        self._page_number = shown.number
        self._show_agents(shown.agents)
        self.trace.set_runs(shown.runs, shown.tools)
        last = shown.first + len(shown.runs) - 1
        self.position.setText(
            f"Runs {shown.first}–{last} of {shown.total}" if shown.runs else "No runs match."
        )
        self.newer.setEnabled(shown.has_newer)
        self.older.setEnabled(shown.has_older)
        run_id = self.trace.runs.current_run()
        if run_id is not None:
            self._load_steps(run_id)

    def _show_agents(self, agents: tuple[str, ...]) -> None:
        known = [self.agent.itemData(i) for i in range(1, self.agent.count())]
        if list(agents) == known:
            return
        chosen = self.agent.currentData()
        self.agent.blockSignals(True)
        self.agent.clear()
        self.agent.addItem("All agents", "")
        for agent_id in agents:
            self.agent.addItem(agent_id, agent_id)
        self.agent.setCurrentIndex(max(0, self.agent.findData(chosen)))
        self.agent.blockSignals(False)

    @Slot(str)
    def _load_steps(self, run_id: str) -> None:
        self._bridge.call(
            lambda office: run_steps(office, run_id),
            lambda steps: self._show_steps(run_id, steps),
            self.message.setText,
        )

    def _show_steps(self, run_id: str, steps: list[StepRecord]) -> None:
        self.trace.set_steps(run_id, steps)

    # -- export --------------------------------------------------------------------------
    @Slot()
    def _choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export activity", "soloist-activity.csv", EXPORT_FILTER
        )
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        """Write the runs matching the filter to ``path`` off the UI thread."""
        chosen = self.current_filter()
        self.export_button.setEnabled(False)
        self.message.setText(f"Exporting to {path.name}…")
        self._bridge.call(
            lambda office: activity_ops.export(office, chosen, path),
            lambda count: self._exported(path, count),
            self._export_failed,
        )

    def _exported(self, path: Path, count: int) -> None:
        self.export_button.setEnabled(True)
        self.message.setText(f"Exported {count} runs to {path}.")

    def _export_failed(self, message: str) -> None:
        self.export_button.setEnabled(True)
        self.message.setText(message)


@section("activity", "Activity", order=90)
def make_activity(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return ActivitySection(bridge, parent)
