"""The panels of one agent in the Agents section: its settings, autonomy and metrics.

Split from ``agents.py`` so the section module keeps only the list, the
commands and the wiring. Each panel is fed an :class:`AgentRow` and emits
what the owner asked for; none of them reaches the office.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from app.agents.autonomy import Autonomy
from app.agents.metrics import AgentMetrics
from app.ui.charts import BarChart, LineChart
from app.ui.sections.agents_ops import AgentRow, ToolAutonomy
from app.ui.sections.run_text import schedule_words
from app.ui.sections.trace_view import format_duration, local_time

__all__ = ["LEVEL_NAMES", "AgentInfo", "AutonomyEditor", "MetricsPanel", "metrics_summary"]

LEVEL_NAMES = {
    Autonomy.SUGGEST: "Suggest only",
    Autonomy.ASK: "Ask every time",
    Autonomy.NOTIFY: "Act, then tell me",
    Autonomy.SILENT: "Act silently",
}


def _when(moment: datetime | None) -> str:
    return local_time(moment) if moment is not None else "not scheduled"


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.0f} %"


def metrics_summary(metrics: AgentMetrics | None) -> str:
    """The agent's numbers in one readable paragraph (see ``app.agents.metrics``)."""
    if metrics is None or metrics.runs == 0:
        return "No finished runs yet."
    per_task = "no task completed yet"
    if metrics.tokens_per_task is not None:
        per_task = f"{metrics.tokens_per_task:,.0f} tokens"
        if metrics.device_s_per_task:
            per_task += f", {format_duration(metrics.device_s_per_task)} of device time"
        if metrics.cost_per_task:
            per_task += f", {metrics.cost_per_task:.4f} in money"
    asked = f" of {metrics.asked} asked" if metrics.asked else ""
    return (
        f"{metrics.runs} runs, {metrics.succeeded} succeeded, failure rate "
        f"{_percent(metrics.failure_rate)}. Latency p50 {format_duration(metrics.p50_s)}, "
        f"p95 {format_duration(metrics.p95_s)}. Owner overrides "
        f"{_percent(metrics.override_rate)}{asked}. Cost per task: {per_task}."
    )


class AgentInfo(QWidget):
    """What the definition says, and when the agent runs next."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        self.fields: dict[str, QLabel] = {}
        for name in ("State", "Priority", "Model", "Triggers", "Schedule", "Next run", "Budgets",
                     "Defined in"):  # fmt: skip
            label = QLabel(self)
            label.setWordWrap(True)
            label.setAccessibleName(name)
            form.addRow(f"{name}:", label)
            self.fields[name] = label

    def show_agent(self, agent: AgentRow) -> None:
        budgets = agent.budgets
        values = {
            "State": agent.state.value.replace("_", " "),
            "Priority": agent.priority.name.lower(),
            "Model": agent.model_class,
            "Triggers": ", ".join(agent.triggers) or "none",
            "Schedule": "; ".join(schedule_words(line) for line in agent.schedules) or "none",
            "Next run": _when(agent.next_run),
            "Budgets": (
                f"{budgets.tokens_per_day:,} tokens a day, {budgets.runs_per_hour} runs an hour, "
                f"{budgets.max_steps} steps and {format_duration(budgets.max_seconds)} a run"
            ),
            "Defined in": agent.source,
        }
        for name, text in values.items():
            self.fields[name].setText(text)
        self.fields["Schedule"].setToolTip("\n".join(f"cron {line}" for line in agent.schedules))


class AutonomyEditor(QGroupBox):
    """A level per granted tool; ``level_chosen(agent_id, tool, level)`` on a change."""

    level_chosen = Signal(str, str, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Autonomy per tool", parent)
        self._form = QFormLayout(self)
        self._agent = ""
        self._tools: tuple[str, ...] = ()
        self.combos: dict[str, QComboBox] = {}
        self.notes: dict[str, QLabel] = {}

    def show_agent(self, agent: AgentRow) -> None:
        tools = tuple(t.tool for t in agent.tools)
        if (agent.id, tools) != (self._agent, self._tools):
            self._rebuild(agent.id, tools)
        for grant in agent.tools:
            self._show_level(grant)

    def _rebuild(self, agent_id: str, tools: tuple[str, ...]) -> None:
        while self._form.rowCount():
            self._form.removeRow(0)
        self._agent, self._tools = agent_id, tools
        self.combos, self.notes = {}, {}
        if not tools:
            self._form.addRow(QLabel("This agent may call no tools.", self))
        for tool in tools:
            combo = QComboBox(self)
            combo.setAccessibleName(f"Autonomy for {tool}")
            for level, name in LEVEL_NAMES.items():
                combo.addItem(name, int(level))
            combo.activated.connect(lambda _i, t=tool: self._chosen(t))
            note = QLabel(self)
            row = QWidget(self)
            line = QHBoxLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            line.addWidget(combo)
            line.addWidget(note, 1)
            self._form.addRow(f"{tool}:", row)
            self.combos[tool], self.notes[tool] = combo, note

    def _show_level(self, grant: ToolAutonomy) -> None:
        combo = self.combos[grant.tool]
        combo.blockSignals(True)
        combo.setCurrentIndex(combo.findData(int(grant.level)))
        combo.blockSignals(False)
        default = LEVEL_NAMES[grant.default].lower()
        note = f"your choice (default: {default})" if grant.owner_set else "the default"
        self.notes[grant.tool].setText(note)

    @Slot()
    def _chosen(self, tool: str) -> None:
        level = self.combos[tool].currentData()
        self.level_chosen.emit(self._agent, tool, int(level))


class MetricsPanel(QGroupBox):
    """The numbers, a bar chart of latency percentiles and runs per day."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Metrics", parent)
        column = QVBoxLayout(self)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setAccessibleName("Metrics summary")
        self.latency = BarChart(self)
        self.latency.setAccessibleName("Run latency percentiles")
        self.runs = LineChart(self)
        charts = QHBoxLayout()
        charts.addWidget(self.latency)
        charts.addWidget(self.runs)
        column.addWidget(self.summary)
        column.addLayout(charts)

    def show_agent(self, agent: AgentRow) -> None:
        metrics = agent.metrics
        self.summary.setText(metrics_summary(metrics))
        bars = []
        if metrics is not None and metrics.runs:
            bars = [
                (name, seconds * 1000)
                for name, seconds in (("p50", metrics.p50_s), ("p95", metrics.p95_s),
                                      ("p99", metrics.p99_s))
            ]  # fmt: skip
        self.latency.set_bars(bars, "ms")
        self.runs.set_series("Runs per day", agent.runs_per_day, "runs")
