"""Agent runs and their steps as tables: shared by the Agents and Activity sections.

Shows only what the trace stores (``app.agents.trace``): per run its
trigger, state, timings, tokens and how it ended, in words
(``run_text.outcome_text``; the reason in full in the tooltip); per step its kind, timings,
tokens, the tool called with the hash of its arguments, a summary of the
result, the prompt's sha256 and size (the prompt itself is never stored),
and, for the chosen step, the traced model output and inputs. The widgets
emit ``run_chosen(run_id)``; whoever owns them loads the steps through the
bridge and hands them back with :meth:`TraceView.set_steps`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from app.agents.trace import RunRecord, StepRecord
from app.ui.sections.run_text import duration_text, outcome_text

__all__ = [
    "RUN_COLUMNS",
    "STEP_COLUMNS",
    "RunTable",
    "StepTable",
    "TraceView",
    "fill_row",
    "format_duration",
    "local_time",
    "setup_table",
    "short_hash",
    "summarise",
]

RUN_COLUMNS = ("Started", "Agent", "Trigger", "State", "Duration", "Steps", "Tokens", "Outcome")
STEP_COLUMNS = (
    "#", "Kind", "Started", "Elapsed", "Device", "Tokens in/out", "Tool", "Args sha256",
    "Result", "Prompt sha256", "Error",
)  # fmt: skip
SUMMARY_CHARS = 120
OUTCOME_COLUMN = RUN_COLUMNS.index("Outcome")
RESULT_COLUMN = STEP_COLUMNS.index("Result")
FULL_TEXT = 10_000  # a tooltip's reason is not cut
_ID_ROLE = Qt.ItemDataRole.UserRole

format_duration = duration_text  # ``0.0123`` -> ``12 ms``; None (still running) -> ``…``


def local_time(moment: datetime | None) -> str:
    """A stored UTC time in the machine's zone, to the second."""
    return "" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short_hash(digest: str | None) -> str:
    return "" if not digest else digest[:12]


def summarise(value: object, limit: int = SUMMARY_CHARS) -> str:
    """A one-line, bounded rendering of a stored JSON value."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def setup_table(
    table: QTableWidget, columns: Sequence[str], name: str, stretch: int | None = None
) -> None:
    """Read-only, whole-row single selection, columns sized to their contents.

    Column ``stretch`` (default: the last) takes the width left and elides
    its text; every cell's tooltip has its full text (:func:`fill_row`).
    """
    table.setColumnCount(len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setAccessibleName(name)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setTextElideMode(Qt.TextElideMode.ElideRight)
    table.setWordWrap(False)
    table.verticalHeader().setVisible(False)
    header = table.horizontalHeader()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    wide = len(columns) - 1 if stretch is None else stretch
    header.setSectionResizeMode(wide, QHeaderView.ResizeMode.Stretch)


def fill_row(
    table: QTableWidget,
    row: int,
    cells: Sequence[str],
    key: str,
    tooltips: Mapping[int, str] | None = None,
) -> None:
    """One row of text cells, each with its tooltip (its text unless given) and the row's key."""
    for column, text in enumerate(cells):
        item = QTableWidgetItem(text)
        item.setData(_ID_ROLE, key)
        item.setToolTip((tooltips or {}).get(column, text))
        table.setItem(row, column, item)


class RunTable(QTableWidget):
    """One row per run, newest first; ``run_chosen(run_id)`` when the owner picks one."""

    run_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, show_tools: bool = False) -> None:
        super().__init__(parent)
        self._show_tools = show_tools
        columns = (*RUN_COLUMNS, "Tools") if show_tools else RUN_COLUMNS
        setup_table(self, columns, "Runs", stretch=OUTCOME_COLUMN)
        self.itemSelectionChanged.connect(self._chosen)
        self._ids: list[str] = []

    def ids(self) -> list[str]:
        return list(self._ids)

    def current_run(self) -> str | None:
        row = self.currentRow()
        return self._ids[row] if 0 <= row < len(self._ids) else None

    def set_runs(self, runs: Sequence[RunRecord], tools: Mapping[str, str] | None = None) -> None:
        """Show ``runs``; the chosen run stays chosen when it is still there."""
        chosen = self.current_run()
        self.blockSignals(True)
        try:
            self.setRowCount(len(runs))
            self._ids = [run.id for run in runs]
            for row, run in enumerate(runs):
                cells = _run_cells(run)
                if self._show_tools:
                    cells.append((tools or {}).get(run.id, ""))
                fill_row(self, row, cells, run.id, {OUTCOME_COLUMN: _outcome_tooltip(run)})
            if chosen in self._ids:
                self.selectRow(self._ids.index(chosen))
        finally:
            self.blockSignals(False)

    def select_run(self, run_id: str) -> None:
        if run_id in self._ids:
            self.selectRow(self._ids.index(run_id))

    @Slot()
    def _chosen(self) -> None:
        run_id = self.current_run()
        if run_id is not None:
            self.run_chosen.emit(run_id)


def _run_cells(run: RunRecord) -> list[str]:
    return [
        local_time(run.started_at),
        run.agent_id,
        run.trigger,
        run.state.value.replace("_", " "),
        format_duration(run.duration_s),
        str(run.steps),
        f"{run.tokens:,}",
        outcome_text(run.state.value, run.outcome, run.error),
    ]


def _outcome_tooltip(run: RunRecord) -> str:
    """How the run ended with its reason in full, and the stored outcome as it is."""
    ended = outcome_text(run.state.value, run.outcome, run.error, limit=FULL_TEXT)
    return f"{ended}\n\nStored outcome: {run.outcome}" if run.outcome else ended


class StepTable(QTableWidget):
    """The steps of one run, in order; the chosen step's stored details below it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        setup_table(self, STEP_COLUMNS, "Steps of the chosen run", stretch=RESULT_COLUMN)
        self.steps: list[StepRecord] = []

    def set_steps(self, steps: Sequence[StepRecord]) -> None:
        self.steps = list(steps)
        self.setRowCount(len(steps))
        for row, record in enumerate(steps):
            fill_row(self, row, _step_cells(record), f"{record.run_id}:{record.seq}")

    def current_step(self) -> StepRecord | None:
        row = self.currentRow()
        return self.steps[row] if 0 <= row < len(self.steps) else None


def _step_cells(record: StepRecord) -> list[str]:
    step = record.step
    tokens = ""
    if step.prompt_tokens is not None or step.completion_tokens is not None:
        tokens = f"{step.prompt_tokens or 0:,} / {step.completion_tokens or 0:,}"
    prompt = short_hash(step.prompt_sha256)
    if prompt and step.prompt_chars is not None:
        prompt = f"{prompt} ({step.prompt_chars:,} chars)"
    return [
        str(record.seq),
        step.kind.value,
        local_time(step.started_at),
        format_duration(step.elapsed_s),
        format_duration(step.device_s) if step.device_s else "",
        tokens,
        step.tool or "",
        short_hash(step.tool_args_sha256),
        summarise(step.result),
        prompt,
        summarise(step.error),
    ]


def step_details(record: StepRecord) -> str:
    """Every stored field of one step, for the detail pane."""
    step = record.step
    lines = [
        f"Step {record.seq}: {step.kind.value}",
        f"inputs: {json.dumps(dict(step.inputs), sort_keys=True)}",
    ]
    if step.memory_ids:
        lines.append(f"memories recalled: {', '.join(step.memory_ids)}")
    if step.prompt_sha256:
        lines.append(f"prompt sha256: {step.prompt_sha256} ({step.prompt_chars or 0:,} chars)")
    if step.model_output is not None:
        lines.append(f"model output: {step.model_output}")
    if step.tool:
        lines.append(f"tool: {step.tool} (arguments sha256 {step.tool_args_sha256 or '-'})")
    if step.result is not None:
        lines.append(f"result: {json.dumps(dict(step.result), sort_keys=True)}")
    if step.error:
        lines.append(f"error: {step.error}")
    return "\n".join(lines)


class TraceView(QSplitter):
    """Runs above, the chosen run's steps and one step's details below."""

    run_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, show_tools: bool = False) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self.runs = RunTable(self, show_tools=show_tools)
        self.steps = StepTable(self)
        self.details = QPlainTextEdit(self)
        self.details.setReadOnly(True)
        self.details.setAccessibleName("Details of the chosen step")
        self.details.setPlaceholderText("Choose a step to see what the trace stored for it.")
        self.addWidget(self.runs)
        self.addWidget(self.steps)
        self.addWidget(self.details)
        self.setChildrenCollapsible(False)
        self.runs.run_chosen.connect(self._run_chosen)
        self.steps.itemSelectionChanged.connect(self._step_chosen)
        self._shown_run: str | None = None

    def set_runs(self, runs: Sequence[RunRecord], tools: Mapping[str, str] | None = None) -> None:
        self.runs.set_runs(runs, tools)
        if self._shown_run is not None and self._shown_run not in self.runs.ids():
            self._shown_run = None
            self.steps.set_steps([])
            self.details.clear()

    def set_steps(self, run_id: str, steps: Sequence[StepRecord]) -> None:
        """The steps of ``run_id``, if that is still the chosen run."""
        if run_id != self.runs.current_run():
            return
        self._shown_run = run_id
        self.steps.set_steps(steps)
        self.details.clear()

    @Slot(str)
    def _run_chosen(self, run_id: str) -> None:
        self.run_chosen.emit(run_id)

    @Slot()
    def _step_chosen(self) -> None:
        record = self.steps.current_step()
        self.details.setPlainText("" if record is None else step_details(record))
