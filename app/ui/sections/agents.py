"""The Agents section: every agent's state, settings, autonomy, metrics and trace.

The list on the left comes from one :func:`agents_ops.overview` call; the
panels on the right show the chosen agent (``agent_detail``) and its runs
step by step (``trace_view``). The owner's commands (pause, resume, run
now, an autonomy level) go through ``bridge.call`` and refresh the section
when done. The manager tells no one of state changes, so while the section
is visible a timer reloads it every few seconds; hidden, nothing runs.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.agents.autonomy import Autonomy
from app.agents.lifecycle import AgentState
from app.agents.trace import RunRecord, StepRecord
from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import agents_ops, section
from app.ui.sections.agent_detail import AgentInfo, AutonomyEditor, MetricsPanel
from app.ui.sections.agents_ops import AgentRow, AgentsOverview
from app.ui.sections.refreshing import RefreshingSection, StatusLabel
from app.ui.sections.trace_view import TraceView

__all__ = ["AgentsSection", "make_agents"]

REFRESH_MS = 3000
_ID_ROLE = Qt.ItemDataRole.UserRole


class AgentsSection(RefreshingSection):
    """See the module docstring; talks to the office only through the bridge."""

    refresh_interval_ms = REFRESH_MS

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self.setObjectName("section-agents")
        self._agents: dict[str, AgentRow] = {}
        self._writes = 0  # autonomy changes under way: older reads would undo them on screen
        self._build()
        self._connect_signals()

    # -- construction --------------------------------------------------------------------
    def _build(self) -> None:
        self.errors = QLabel(self)
        self.errors.setWordWrap(True)
        self.errors.setAccessibleName("Agent definition errors")
        self.errors.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.errors.hide()
        self.message = StatusLabel("Agents status", self)  # hidden while empty: no blank strip
        self.list = QListWidget(self)
        self.list.setAccessibleName("Agents")
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.list)
        splitter.addWidget(self._build_detail())
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        column = QVBoxLayout(self)
        column.addWidget(self.errors)
        column.addWidget(self.message)
        column.addWidget(splitter, 1)

    def _build_detail(self) -> QWidget:
        self.title = QLabel("Choose an agent", self)
        self.title.setAccessibleName("Agent")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        self.title.setFont(font)
        self.pause_button = self._button("Pause", "Pause this agent")
        self.resume_button = self._button("Resume", "Resume this agent")
        self.run_button = self._button("Run now", "Run this agent now")
        buttons = QHBoxLayout()
        buttons.addWidget(self.title, 1)
        for button in (self.pause_button, self.resume_button, self.run_button):
            buttons.addWidget(button)
        self.info = AgentInfo(self)
        self.autonomy = AutonomyEditor(self)
        self.metrics = MetricsPanel(self)
        self.trace = TraceView(self)
        self.trace.setMinimumHeight(520)
        inner = QWidget(self)
        column = QVBoxLayout(inner)
        column.addLayout(buttons)
        for widget in (self.info, self.autonomy, self.metrics, self.trace):
            column.addWidget(widget)
        scroll = QScrollArea(self)
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        return scroll

    def _button(self, text: str, name: str) -> QPushButton:
        button = QPushButton(text, self)
        button.setAccessibleName(name)
        button.setEnabled(False)
        return button

    def _connect_signals(self) -> None:
        self.list.currentItemChanged.connect(self._agent_chosen)
        self.pause_button.clicked.connect(lambda: self._command(agents_ops.pause))
        self.resume_button.clicked.connect(lambda: self._command(agents_ops.resume))
        self.run_button.clicked.connect(lambda: self._command(agents_ops.run_now))
        self.autonomy.level_chosen.connect(self.set_level)
        self.trace.run_chosen.connect(self._load_steps)

    # -- showing -------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        """Reload every agent (skipped while a reload is under way)."""
        self.load(agents_ops.overview, self._show_overview)

    def current_agent(self) -> str | None:
        item = self.list.currentItem()
        return None if item is None else str(item.data(_ID_ROLE))

    def select_agent(self, agent_id: str) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(_ID_ROLE) == agent_id:
                self.list.setCurrentRow(row)

    def _show_overview(self, overview: AgentsOverview) -> None:
        self._agents = {agent.id: agent for agent in overview.agents}
        self._show_errors(overview)
        self.message.setText("" if overview.agents else "No agents are defined.")
        chosen = self.current_agent()
        if chosen not in self._agents and overview.agents:
            chosen = overview.agents[0].id
        self.list.blockSignals(True)
        try:
            self._fill_list(overview)
            if chosen is not None:
                self.select_agent(chosen)
        finally:
            self.list.blockSignals(False)
        if chosen is not None:
            self._show_agent(chosen)

    def _fill_list(self, overview: AgentsOverview) -> None:
        ids = [agent.id for agent in overview.agents]
        if ids != [self.list.item(row).data(_ID_ROLE) for row in range(self.list.count())]:
            self.list.clear()
            for agent_id in ids:
                item = QListWidgetItem()
                item.setData(_ID_ROLE, agent_id)
                self.list.addItem(item)
        for row, agent in enumerate(overview.agents):
            state = agent.state.value.replace("_", " ")
            item = self.list.item(row)
            item.setText(f"{agent.name}\n{state}")
            item.setToolTip(f"{agent.name} ({agent.id}): {state}")

    def _show_errors(self, overview: AgentsOverview) -> None:
        lines = [str(error) for error in overview.errors]
        self.errors.setText("Some agent files were skipped:\n" + "\n".join(lines))
        self.errors.setVisible(bool(lines))

    def load_failed(self, message: str) -> None:
        self.message.setText(message)

    @Slot(QListWidgetItem, QListWidgetItem)
    def _agent_chosen(self, current: QListWidgetItem | None, _old: QListWidgetItem | None) -> None:
        if current is not None:
            self._show_agent(str(current.data(_ID_ROLE)))

    def _show_agent(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        self.title.setText(f"{agent.name} — {agent.state.value.replace('_', ' ')}")
        paused = agent.state is AgentState.PAUSED
        self.pause_button.setEnabled(not paused)
        self.resume_button.setEnabled(paused)
        self.run_button.setEnabled(not paused)
        self.info.show_agent(agent)
        if not self._writes:
            self.autonomy.show_agent(agent)
        self.metrics.show_agent(agent)
        self._bridge.call(
            lambda office: agents_ops.runs_of(office, agent_id),
            lambda runs: self._show_runs(agent_id, runs),
            self.message.setText,
        )

    def _show_runs(self, agent_id: str, runs: list[RunRecord]) -> None:
        if agent_id != self.current_agent():
            return
        self.trace.set_runs(runs)
        run_id = self.trace.runs.current_run()
        if run_id is not None:
            self._load_steps(run_id)

    @Slot(str)
    def _load_steps(self, run_id: str) -> None:
        self._bridge.call(
            lambda office: agents_ops.run_steps(office, run_id),
            lambda steps: self._show_steps(run_id, steps),
            self.message.setText,
        )

    def _show_steps(self, run_id: str, steps: list[StepRecord]) -> None:
        self.trace.set_steps(run_id, steps)

    # -- the owner's commands ------------------------------------------------------------
    def _command(self, command: Callable[[Office, str], None]) -> None:
        agent_id = self.current_agent()
        if agent_id is None:
            return
        self.message.clear()
        self._bridge.call(
            lambda office: command(office, agent_id), lambda _: self.refresh(), self.message.setText
        )

    @Slot(str, str, int)
    def set_level(self, agent_id: str, tool: str, level: int) -> None:
        """Store the owner's autonomy level for one tool of one agent."""
        self._writes += 1
        self.message.clear()
        self._bridge.call(
            lambda office: agents_ops.set_autonomy(office, agent_id, tool, Autonomy(level)),
            lambda _: self._written(),
            self._write_failed,
        )

    def _written(self) -> None:
        self._writes -= 1
        self.refresh()

    def _write_failed(self, message: str) -> None:
        self._written()
        self.message.setText(message)


@section("agents", "Agents", order=40)
def make_agents(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return AgentsSection(bridge, parent)
