"""The Approvals section: what the agents want to do, waiting for the owner.

Left, the queue of proposals (agent, action, risk, age; LOW risk ones can be
ticked and approved together, HIGH risk never) and, apart, the actions whose
outcome is in doubt; right, the chosen action in full
(:class:`~app.ui.sections.approval_view.ApprovalView`). Every decision goes
to the office through ``bridge.call`` with the content hash the owner was
shown (:mod:`app.ui.sections.approvals_ops`).

The section reloads when shown, every few seconds while visible (agents
propose in the background), after each decision, when the office opens,
and on the bridge's ``outbox_changed`` when it has one. It tells the tray
how many wait (``pending_count_changed``) and the notifier what is new
(``new_pending``, ``new_failures``: lists of ``(action id, one line)``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.agents.outbox_states import ActionRecord
from app.integrations.base import JsonObject
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import approvals_ops as ops
from app.ui.sections import section
from app.ui.sections.approval_view import ApprovalView
from app.ui.sections.refreshing import RefreshingSection

log = logging.getLogger("soloist.ui")

LIVE_INTERVAL_MS = 5000  # while visible
NOT_READY_RETRY_MS = 1000  # the agents start just after the office opens
NOT_READY_TRIES = 60
ID_ROLE = Qt.ItemDataRole.UserRole
COLUMNS = ["Action", "Agent", "Risk", "Age"]
QUEUE_WIDTH = 380


def _tree(parent: QWidget, name: str) -> QTreeWidget:
    """The action's name takes the width left (elided, in full in its tooltip); the rest fit."""
    tree = QTreeWidget(parent)
    tree.setHeaderLabels(COLUMNS)
    tree.setRootIsDecorated(False)
    tree.setAccessibleName(name)
    tree.setUniformRowHeights(True)
    tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # "crm.log_…ivity" keeps the verb
    header = tree.header()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    return tree


class ApprovalsSection(RefreshingSection):
    """The queue and the chosen action; see the module docstring.

    Unlike the other sections it also loads when the office opens while
    hidden: the tray and the notifications need the count from the start.
    """

    pending_count_changed = Signal(int)
    new_pending = Signal(list)  # [(action id, one line)] not seen before
    new_failures = Signal(list)  # [(action id, one line)] failed since last seen
    refresh_interval_ms = LIVE_INTERVAL_MS

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self._records: dict[str, ActionRecord] = {}
        self._seen_pending: set[str] | None = None  # None until the first load
        self._seen_failed: set[str] | None = None
        self._count = -1
        self._not_ready_tries = 0
        self._loading = False
        self._reload = False
        self._wanted: str | None = None  # asked for before it was listed
        self.view = ApprovalView(self)
        self._build()
        self._connect_signals()

    def _build(self) -> None:
        left = QWidget(self)
        column = QVBoxLayout(left)
        column.addWidget(QLabel("<b>Waiting for you</b>", left))
        self.queue = _tree(left, "Actions waiting for approval")
        column.addWidget(self.queue, 2)
        self.batch_button = QPushButton("Approve ticked (0)", left)
        self.batch_button.setAccessibleName("Approve the ticked low-risk actions")
        self.batch_button.setToolTip("Only low-risk actions can be ticked")
        self.batch_button.setEnabled(False)
        column.addWidget(self.batch_button)
        column.addWidget(QLabel("<b>Did these happen?</b>", left))
        self.in_doubt = _tree(left, "Actions whose outcome is unknown")
        column.addWidget(self.in_doubt, 1)
        self.status = QLabel(left)
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Approvals status")
        column.addWidget(self.status)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(left)
        splitter.addWidget(self.view)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([QUEUE_WIDTH, 2 * QUEUE_WIDTH])
        splitter.setChildrenCollapsible(False)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(splitter)

    def _connect_signals(self) -> None:
        self.queue.currentItemChanged.connect(self._on_current)
        self.in_doubt.currentItemChanged.connect(self._on_current)
        self.queue.itemChanged.connect(self._update_batch_button)
        self.batch_button.clicked.connect(self.approve_ticked)
        self.view.approve_requested.connect(self._approve)
        self.view.edit_approved.connect(self._approve_edited)
        self.view.reject_requested.connect(self._reject)
        self.view.settle_requested.connect(self._settle)
        outbox_changed = getattr(self._bridge, "outbox_changed", None)
        if outbox_changed is not None:  # the office's outbox events, when it reports them
            outbox_changed.connect(self.refresh)

    # -- loading -------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        if self._loading:  # load again when this one is back: it may predate a change
            self._reload = True
            return
        self._loading = True
        self._reload = False
        self._bridge.call(ops.load_queue, self._show_queue, self._load_failed)

    @property
    def pending_count(self) -> int:
        return max(self._count, 0)

    @property
    def loaded(self) -> bool:
        """True once a queue from running agents was shown."""
        return self._count >= 0

    def pending_ids(self) -> list[str]:
        return [self._id(self.queue.topLevelItem(i)) for i in range(self.queue.topLevelItemCount())]

    def in_doubt_ids(self) -> list[str]:
        tree = self.in_doubt
        return [self._id(tree.topLevelItem(i)) for i in range(tree.topLevelItemCount())]

    def _loaded(self) -> None:
        self._loading = False
        if self._reload:
            self.refresh()

    def _load_failed(self, text: str) -> None:
        self._loaded()
        self.status.setText(text)

    def _show_queue(self, queue: ops.Queue) -> None:
        self._loaded()
        if not queue.ready:
            self.status.setText(ops.AGENTS_NOT_READY)
            self._retry_when_ready()
            return
        if self.status.text() == ops.AGENTS_NOT_READY:
            self.status.clear()
        ticked = set(self.ticked())
        self._records = {r.id: r for r in (*queue.pending, *queue.in_doubt)}
        self.view.set_sources(queue.sources)
        self._fill(self.queue, queue.pending, queue, ticked)
        self._fill(self.in_doubt, queue.in_doubt, queue, set())
        self._update_batch_button()
        self._sync_view()
        if self._wanted is not None and self._wanted in self._records:
            self.select(self._wanted)
        self._announce(queue)

    def _retry_when_ready(self) -> None:
        if self._not_ready_tries < NOT_READY_TRIES:
            self._not_ready_tries += 1
            QTimer.singleShot(NOT_READY_RETRY_MS, self, self.refresh)

    def _fill(
        self,
        tree: QTreeWidget,
        records: tuple[ActionRecord, ...],
        queue: ops.Queue,
        ticked: set[str],
    ) -> None:
        current = self.view.action_id
        tree.blockSignals(True)
        tree.clear()
        for record in records:
            item = QTreeWidgetItem(
                [record.action, record.agent_id, ops.risk_label(record.risk),
                 ops.age_text(record.created_at, queue.now)]
            )  # fmt: skip
            item.setData(0, ID_ROLE, record.id)
            item.setToolTip(0, f"{record.action}: {record.preview}")
            item.setToolTip(1, record.agent_id)
            self._set_tickable(item, tree is self.queue and ops.is_batchable(record), ticked)
            tree.addTopLevelItem(item)
            if record.id == current:
                tree.setCurrentItem(item)
        tree.blockSignals(False)

    @staticmethod
    def _set_tickable(item: QTreeWidgetItem, tickable: bool, ticked: set[str]) -> None:
        """Only LOW risk proposals get a check box (items are checkable by default)."""
        checkable = Qt.ItemFlag.ItemIsUserCheckable
        if not tickable:
            item.setFlags(item.flags() & ~checkable)
            return
        item.setFlags(item.flags() | checkable)
        checked = str(item.data(0, ID_ROLE)) in ticked
        item.setCheckState(0, Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def _sync_view(self) -> None:
        """Keep the shown action unless it left the queue or changed under the owner."""
        shown = self.view.record
        if shown is None:
            return
        now = self._records.get(shown.id)
        if now is None:
            self.view.show_record(None, "That action is no longer waiting.")
        elif now.content_hash != shown.content_hash or now.state != shown.state:
            self.view.show_record(now, "This action changed; look at it again.")

    def _announce(self, queue: ops.Queue) -> None:
        pending = {r.id: ops.summary(r, queue.now) for r in (*queue.pending, *queue.in_doubt)}
        failed = {r.id: f"{r.action} failed: {r.error or 'no reason given'}" for r in queue.failed}
        fresh = self._fresh(pending, self._seen_pending)
        broken = self._fresh(failed, self._seen_failed) if self._seen_failed is not None else []
        self._seen_pending = set(pending)
        self._seen_failed = set(failed)
        if len(pending) != self._count:
            self._count = len(pending)
            self.pending_count_changed.emit(self._count)
        if fresh:
            self.new_pending.emit(fresh)
        if broken:
            self.new_failures.emit(broken)

    @staticmethod
    def _fresh(items: Mapping[str, str], seen: set[str] | None) -> list[tuple[str, str]]:
        return [(key, text) for key, text in items.items() if seen is None or key not in seen]

    @staticmethod
    def _id(item: QTreeWidgetItem | None) -> str:
        return str(item.data(0, ID_ROLE)) if item is not None else ""

    # -- choosing ------------------------------------------------------------------
    def select(self, action_id: str) -> bool:
        """Show ``action_id`` (a notification was clicked); False when it is not listed yet.

        An id not listed yet is chosen when the next load lists it.
        """
        self._wanted = action_id
        for tree in (self.queue, self.in_doubt):
            for index in range(tree.topLevelItemCount()):
                item = tree.topLevelItem(index)
                if item is not None and self._id(item) == action_id:
                    self._wanted = None
                    tree.setCurrentItem(item)
                    return True
        return False

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _on_current(self, item: QTreeWidgetItem | None, _previous: object = None) -> None:
        if item is None:
            return
        other = self.in_doubt if item.treeWidget() is self.queue else self.queue
        other.blockSignals(True)
        other.clearSelection()
        other.setCurrentIndex(other.rootIndex())
        other.blockSignals(False)
        self.view.show_record(self._records.get(self._id(item)))

    # -- batch ---------------------------------------------------------------------
    def ticked(self) -> list[str]:
        found = []
        for index in range(self.queue.topLevelItemCount()):
            item = self.queue.topLevelItem(index)
            if item is not None and item.checkState(0) == Qt.CheckState.Checked:
                found.append(self._id(item))
        return found

    def tick(self, action_id: str, ticked: bool = True) -> bool:
        """Tick a LOW risk item; False when it cannot be ticked."""
        for index in range(self.queue.topLevelItemCount()):
            item = self.queue.topLevelItem(index)
            if item is None or self._id(item) != action_id:
                continue
            if item.data(0, Qt.ItemDataRole.CheckStateRole) is not None:
                item.setCheckState(0, Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
                return True
        return False

    @Slot()
    def _update_batch_button(self, *_: object) -> None:
        count = len(self.ticked())
        self.batch_button.setText(f"Approve ticked ({count})")
        self.batch_button.setEnabled(count > 0)

    @Slot()
    def approve_ticked(self) -> None:
        shown = {i: self._records[i].content_hash for i in self.ticked() if i in self._records}
        if not shown:
            return
        self.status.setText(f"Approving {len(shown)} action(s)…")
        self._bridge.call(
            lambda office: ops.approve_batch(office, shown), self._batch_done, self._failed
        )

    def _batch_done(self, result: ops.BatchResult) -> None:
        self.status.setText(ops.describe_batch(result))
        self.refresh()

    # -- decisions -----------------------------------------------------------------
    @Slot(str, str)
    def _approve(self, action_id: str, shown_hash: str) -> None:
        self._bridge.call(
            lambda office: ops.approve(office, action_id, shown_hash),
            lambda record: self._decided(record, "Approved; it runs now."),
            self._failed,
        )

    @Slot(str, str, object)
    def _approve_edited(self, action_id: str, shown_hash: str, args: JsonObject) -> None:
        self._bridge.call(
            lambda office: ops.approve(office, action_id, shown_hash, args),
            lambda record: self._decided(record, "Edited and approved; it runs now."),
            self._failed,
        )

    @Slot(str, str)
    def _reject(self, action_id: str, reason: str) -> None:
        self._bridge.call(
            lambda office: ops.reject(office, action_id, reason),
            lambda record: self._decided(record, "Rejected; the agent will see your reason."),
            self._failed,
        )

    @Slot(str, bool)
    def _settle(self, action_id: str, happened: bool) -> None:
        said = "it happened" if happened else "it did not happen"
        self._bridge.call(
            lambda office: ops.settle(office, action_id, happened),
            lambda record: self._decided(record, f"Noted: {said}."),
            self._failed,
        )

    def _decided(self, record: ActionRecord, text: str) -> None:
        log.info("action %s decided in the UI: %s", record.id, record.state.name)
        self.view.show_record(None, text)
        self.status.setText(text)
        self.refresh()

    def _failed(self, text: str) -> None:
        self.view.show_message(f"{text} (The list has been reloaded.)")
        self.refresh()

    # -- visibility ----------------------------------------------------------------
    @Slot()
    def on_opened(self) -> None:
        """Load even while hidden: the tray's count and the notifications need it."""
        self.refresh()


@section("approvals", "Approvals", order=30)
def make(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return ApprovalsSection(bridge, parent)
