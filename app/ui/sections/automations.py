"""The Automations section: schedules, missed-slot policy, next and last runs, history.

One table lists every automation (from :func:`automations_ops.automations`);
the chosen one shows its ledger history (claimed, running, succeeded,
failed, skipped, abandoned), an on/off switch and "Run now". Commands go
through ``bridge.call`` and reload the section when done. Runs end on the
scheduler's threads and nobody is told, so while the section is visible a
timer reloads it every few seconds; hidden, nothing runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from app.ui.office_bridge import OfficeBridge
from app.ui.sections import automations_ops, section
from app.ui.sections.automations_ops import POLICY_NAMES, AutomationRow
from app.ui.sections.refreshing import RefreshingSection, StatusLabel
from app.ui.sections.trace_view import fill_row, local_time, setup_table

if TYPE_CHECKING:  # the automations package loads APScheduler: read off this thread
    from app.agents.automations import RunRecord

__all__ = ["AUTOMATION_COLUMNS", "HISTORY_COLUMNS", "AutomationsSection", "make_automations"]

REFRESH_MS = 3000
AUTOMATION_COLUMNS = ("Name", "Target", "Schedule", "Missed slots", "On", "Next run", "Last run")
HISTORY_COLUMNS = ("Slot", "Kind", "State", "Claimed", "Started", "Finished", "Skipped", "Error")
NAME_COLUMN, SCHEDULE_COLUMN = 0, 2
MANAGED_NOTE = (
    "Made from the agent's schedule line: switched off, it stays off until Soloist "
    "restarts; remove the line from the agent's definition to stop it for good."
)


def last_run_text(row: AutomationRow) -> str:
    run = row.last_run
    if run is None:
        return "never"
    return f"{local_time(run.finished_at or run.claimed_at)}: {run.state.value}"


def automation_cells(row: AutomationRow) -> list[str]:
    next_text = local_time(row.next_run) if row.next_run else ("off" if not row.enabled else "–")
    return [
        row.name,
        row.target,
        row.schedule,
        POLICY_NAMES[row.policy],
        "yes" if row.enabled else "no",
        next_text,
        last_run_text(row),
    ]


def automation_tooltips(row: AutomationRow) -> dict[int, str]:
    """The stored name and the cron text behind the words."""
    return {NAME_COLUMN: f"{row.name}\nStored as: {row.stored_name}", SCHEDULE_COLUMN: row.cron}


def history_cells(run: RunRecord) -> list[str]:
    skipped = ""
    if run.skipped_slots:
        skipped = f"{run.skipped_slots} from {local_time(run.first_skipped)}"
        if run.skip_reason is not None:
            skipped += f" ({run.skip_reason.value})"
    return [
        local_time(run.scheduled_for),
        run.kind.value,
        run.state.value,
        local_time(run.claimed_at),
        local_time(run.started_at),
        local_time(run.finished_at),
        skipped,
        run.error or "",
    ]


class AutomationsSection(RefreshingSection):
    """See the module docstring; talks to the office only through the bridge."""

    refresh_interval_ms = REFRESH_MS

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self.setObjectName("section-automations")
        self._rows: list[AutomationRow] = []
        self._build()
        self._connect_signals()

    def _build(self) -> None:
        self.message = StatusLabel("Automations status", self)
        self.table = QTableWidget(self)
        setup_table(self.table, AUTOMATION_COLUMNS, "Automations", stretch=NAME_COLUMN)
        self.enabled = QCheckBox("On", self)
        self.enabled.setAccessibleName("Automation switched on")
        self.enabled.setEnabled(False)
        self.run_button = QPushButton("Run now", self)
        self.run_button.setAccessibleName("Run this automation now")
        self.run_button.setEnabled(False)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.history = QTableWidget(self)
        setup_table(self.history, HISTORY_COLUMNS, "Run history")
        controls = QHBoxLayout()
        controls.addWidget(self.enabled)
        controls.addWidget(self.run_button)
        controls.addWidget(self.note, 1)
        lower = QWidget(self)
        column = QVBoxLayout(lower)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(controls)
        column.addWidget(self.history, 1)
        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.addWidget(self.table)
        splitter.addWidget(lower)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message)
        layout.addWidget(splitter, 1)

    def _connect_signals(self) -> None:
        self.table.itemSelectionChanged.connect(self._chosen)
        self.enabled.clicked.connect(self._toggle)
        self.run_button.clicked.connect(self._run_now)

    # -- showing -------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        self.load(automations_ops.automations, self._show_rows)

    def load_failed(self, message: str) -> None:
        self.message.setText(message)

    def current(self) -> AutomationRow | None:
        row = self.table.currentRow()
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def select(self, automation_id: str) -> None:
        ids = [row.id for row in self._rows]
        if automation_id in ids:
            self.table.selectRow(ids.index(automation_id))

    def _show_rows(self, rows: Sequence[AutomationRow]) -> None:
        chosen = self.current()
        self._rows = list(rows)
        self.message.setText("" if rows else "No automations yet.")
        self.table.blockSignals(True)
        try:
            self.table.setRowCount(len(rows))
            for index, row in enumerate(rows):
                fill_row(self.table, index, automation_cells(row), row.id, automation_tooltips(row))
            if chosen is not None:
                self.select(chosen.id)
        finally:
            self.table.blockSignals(False)
        self._chosen()

    @Slot()
    def _chosen(self) -> None:
        row = self.current()
        self.enabled.setEnabled(row is not None)
        self.run_button.setEnabled(row is not None)
        if row is None:
            self.enabled.setChecked(False)
            self.note.clear()
            self.history.setRowCount(0)
            return
        self.enabled.setChecked(row.enabled)
        self.note.setText(MANAGED_NOTE if row.managed else "")
        automation_id = row.id
        self._bridge.call(
            lambda office: automations_ops.history(office, automation_id),
            lambda runs: self._show_history(automation_id, runs),
            self.message.setText,
        )

    def _show_history(self, automation_id: str, runs: Sequence[RunRecord]) -> None:
        row = self.current()
        if row is None or row.id != automation_id:
            return
        self.history.setRowCount(len(runs))
        for index, run in enumerate(runs):
            fill_row(self.history, index, history_cells(run), automation_id)

    # -- the owner's commands ------------------------------------------------------------
    @Slot(bool)
    def _toggle(self, on: bool) -> None:
        row = self.current()
        if row is None:
            return
        automation_id = row.id
        self.message.clear()
        self._bridge.call(
            lambda office: automations_ops.set_enabled(office, automation_id, on),
            lambda _: self.refresh(),
            self._command_failed,
        )

    @Slot()
    def _run_now(self) -> None:
        row = self.current()
        if row is None:
            return
        automation_id = row.id
        self.message.clear()
        self._bridge.call(
            lambda office: automations_ops.run_now(office, automation_id),
            lambda _: self.refresh(),
            self._command_failed,
        )

    def _command_failed(self, message: str) -> None:
        self.message.setText(message)
        self.refresh()


@section("automations", "Automations", order=50)
def make_automations(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return AutomationsSection(bridge, parent)
