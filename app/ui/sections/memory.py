"""Memory: search what the office remembers, see where it came from, roll it back, index folders.

The search box runs the office's hybrid search with the scope, kind and
source filters; choosing a hit shows its versions and provenance
(:class:`~app.ui.sections.memory_detail.MemoryDetail`), where the owner can
roll back to a version. The folders part lists the ingestion sources with
their counts and runs an ingestion with a progress bar and Cancel: the run
is on a worker thread, its progress events cross to this thread as queued
signals, and Cancel sets the run's event (it stops after the current file).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.memory.ingest_types import IngestProgress, IngestReport
from app.memory.memory_rows import MemoryVersion
from app.memory.provenance import GLOBAL_SCOPE
from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import section
from app.ui.sections.memory_detail import MemoryDetail
from app.ui.sections.memory_ops import (
    FilterChoices,
    MemoryQuery,
    SourceSummary,
    filter_choices,
    history,
    ingest,
    progress_percent,
    progress_text,
    report_text,
    rollback,
    search,
    sources,
)
from app.ui.sections.refreshing import RefreshingSection

if TYPE_CHECKING:  # numpy comes with search: loaded off this thread, by the office
    from app.memory.search import SearchHit, SearchResult

_ID_ROLE = Qt.ItemDataRole.UserRole
ANY = ""  # the combo boxes' "any" entry
SNIPPET_CHARS = 140


def hit_text(hit: SearchHit) -> str:
    snippet = " ".join(hit.text.split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1] + "…"
    return f"{hit.score:.3f}  {hit.kind} · {hit.scope}\n{snippet}"


def source_text(source: SourceSummary) -> str:
    last = f", last run {source.last_run}" if source.last_run else ""
    skipped = f", {source.skipped} skipped" if source.skipped else ""
    return f"{source.root}  ({source.files} files, {source.chunks} chunks{skipped}{last})"


class ProgressRelay(QObject):
    """Carries progress events from the ingestion thread to this one (queued)."""

    progressed = Signal(object)  # IngestProgress


class MemoryPage(RefreshingSection):
    """Reloads the filters and folders when shown (no timer: only the owner changes them)."""

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self._cancel: threading.Event | None = None
        self.relay = ProgressRelay(self)
        self._build()
        self._connect_signals()

    # -- construction --------------------------------------------------
    def _build(self) -> None:
        self.query = QLineEdit(self)
        self.query.setPlaceholderText("Search memory…")
        self.query.setAccessibleName("Search memory")
        self.scope = _combo(self, "Scope filter", "Any scope")
        self.kind = _combo(self, "Kind filter", "Any kind")
        self.source = QLineEdit(self)
        self.source.setPlaceholderText("Source folder or URL (optional)")
        self.source.setAccessibleName("Source filter")
        self.search_button = QPushButton("Search", self)
        self.search_button.setAccessibleName("Search")
        self.results = QListWidget(self)
        self.results.setAccessibleName("Search results")
        self.results.setWordWrap(True)
        self.detail = MemoryDetail(self)
        self.message = QLabel("", self)
        self.message.setAccessibleName("Memory status")
        self.message.setWordWrap(True)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        for widget, stretch in ((self.query, 3), (self.scope, 1), (self.kind, 1), (self.source, 2)):
            row.addWidget(widget, stretch)
        row.addWidget(self.search_button)
        layout.addLayout(row)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.results)
        splitter.addWidget(self.detail)
        splitter.setChildrenCollapsible(False)
        layout.addWidget(splitter, 1)
        layout.addWidget(self._build_folders())
        layout.addWidget(self.message)

    def _build_folders(self) -> QGroupBox:
        box = QGroupBox("Indexed folders", self)
        self.sources = QListWidget(box)
        self.sources.setAccessibleName("Indexed folders")
        self.add_folder = QPushButton("Add folder…", box)
        self.add_folder.setAccessibleName("Add a folder to index")
        self.reindex = QPushButton("Index again", box)
        self.reindex.setAccessibleName("Index the selected folder again")
        self.reindex.setEnabled(False)
        self.progress = QProgressBar(box)
        self.progress.setAccessibleName("Indexing progress")
        self.progress.setRange(0, 100)
        self.progress.hide()
        self.cancel = QPushButton("Cancel", box)
        self.cancel.setAccessibleName("Cancel indexing")
        self.cancel.hide()
        self.ingest_status = QLabel("", box)
        self.ingest_status.setAccessibleName("Indexing status")
        self.ingest_status.setWordWrap(True)
        buttons = QHBoxLayout()
        for widget in (self.add_folder, self.reindex, self.progress, self.cancel):
            buttons.addWidget(widget)
        column = QVBoxLayout(box)
        column.addWidget(self.sources)
        column.addLayout(buttons)
        column.addWidget(self.ingest_status)
        return box

    def _connect_signals(self) -> None:
        self.query.returnPressed.connect(self.run_search)
        self.search_button.clicked.connect(self.run_search)
        self.results.currentItemChanged.connect(self._hit_chosen)
        self.detail.rollback_requested.connect(self._roll_back)
        self.add_folder.clicked.connect(self.choose_folder)
        self.reindex.clicked.connect(self._reindex_selected)
        self.sources.currentItemChanged.connect(
            lambda current, _old: self.reindex.setEnabled(current is not None and not self.busy)
        )
        self.cancel.clicked.connect(self.cancel_ingest)
        self.relay.progressed.connect(self._on_progress)

    # -- reading -------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        """Reload the filters' choices and the folders."""
        self._bridge.call(filter_choices, self._show_choices, self._failed)
        self._bridge.call(sources, self._show_sources, self._failed)

    def _show_choices(self, choices: FilterChoices) -> None:
        _refill(self.scope, choices.scopes)
        _refill(self.kind, choices.kinds)

    def _show_sources(self, found: list[SourceSummary]) -> None:
        current = self.sources.currentItem()
        chosen = None if current is None else current.data(_ID_ROLE)
        self.sources.clear()
        for source in found:
            item = QListWidgetItem(source_text(source), self.sources)
            item.setData(_ID_ROLE, source.root)
            if source.root == chosen:
                self.sources.setCurrentItem(item)

    def current_query(self) -> MemoryQuery:
        return MemoryQuery(
            self.query.text(),
            scope=self.scope.currentData() or None,
            kind=self.kind.currentData() or None,
            source=self.source.text().strip() or None,
        )

    @Slot()
    def run_search(self) -> None:
        self._search()

    def _search(self, note: str = "") -> None:
        """Search with the box and filters; ``note`` stays in front of the count."""
        query = self.current_query()
        self.message.setText(note or "Searching…")
        self._bridge.call(
            lambda office: search(office, query),
            lambda result: self._show_results(result, note),
            self._failed,
        )

    def _show_results(self, result: SearchResult, note: str = "") -> None:
        chosen = self.detail.memory_id
        self.results.clear()
        for hit in result:
            item = QListWidgetItem(hit_text(hit), self.results)
            item.setData(_ID_ROLE, hit.memory_id)
            if hit.memory_id == chosen:
                self.results.setCurrentItem(item)
        sides = [s for s, used in (("meaning", result.vector_searched),
                                   ("keywords", result.keyword_searched)) if used]  # fmt: skip
        by = f" (by {' and '.join(sides)})" if sides else ""
        count = len(result)
        found = f"{count} memor{'y' if count == 1 else 'ies'} found{by}."
        self.message.setText(f"{note} {found}" if note else found)

    @Slot(QListWidgetItem, QListWidgetItem)
    def _hit_chosen(self, current: QListWidgetItem | None, _old: QListWidgetItem | None) -> None:
        if current is None:
            return
        memory_id = str(current.data(_ID_ROLE))
        if memory_id != self.detail.memory_id:
            self.load_history(memory_id)

    def load_history(self, memory_id: str, select: int | None = None) -> None:
        def show(versions: list[MemoryVersion]) -> None:
            item = self.results.currentItem()
            if item is not None and str(item.data(_ID_ROLE)) != memory_id:
                return  # the owner chose another memory meanwhile
            self.detail.show_history(versions)
            if select is not None:
                self.detail.select_version(select)

        self._bridge.call(lambda office: history(office, memory_id), show, self._failed)

    @Slot(str, int)
    def _roll_back(self, memory_id: str, version: int) -> None:
        def done(written: MemoryVersion) -> None:
            self.load_history(memory_id)
            self._search(
                f"Version {version} is current again (written as version {written.version})."
            )

        self._bridge.call(lambda office: rollback(office, memory_id, version), done, self._failed)

    def _failed(self, text: str) -> None:
        self.message.setText(text)

    # -- ingestion -----------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._cancel is not None

    @Slot()
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Choose a folder to index", str(Path.home())
        )
        if folder:
            self.start_ingest(folder)

    @Slot()
    def _reindex_selected(self) -> None:
        item = self.sources.currentItem()
        if item is not None:
            self.start_ingest(str(item.data(_ID_ROLE)))

    def start_ingest(self, folder: str, scope: str = GLOBAL_SCOPE) -> None:
        """Index ``folder`` on a worker thread, with progress and Cancel."""
        if self.busy:
            return
        cancel = threading.Event()
        self._cancel = cancel
        self._set_running(True)
        self.ingest_status.setText(f"Indexing {Path(folder).name or folder}…")
        emit = self.relay.progressed.emit

        def op(office: Office) -> IngestReport:
            return ingest(office, folder, scope, emit, cancel)

        self._bridge.call(op, lambda report: self._ingest_done(folder, report), self._ingest_failed)

    @Slot()
    def cancel_ingest(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.cancel.setEnabled(False)
            self.ingest_status.setText("Stopping after the current file…")

    @Slot(object)
    def _on_progress(self, event: IngestProgress) -> None:
        self.progress.setValue(progress_percent(event))
        if not (self._cancel is not None and self._cancel.is_set()):
            self.ingest_status.setText(progress_text(event))

    def _ingest_done(self, folder: str, report: IngestReport) -> None:
        self._end_ingest()
        self.ingest_status.setText(report_text(folder, report))
        self.refresh()

    def _ingest_failed(self, text: str) -> None:
        self._end_ingest()
        self.ingest_status.setText(text)
        self.refresh()

    def _end_ingest(self) -> None:
        self._cancel = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.progress.setVisible(running or self.progress.value() > 0)
        if running:
            self.progress.setValue(0)
        self.cancel.setVisible(running)
        self.cancel.setEnabled(running)
        self.add_folder.setEnabled(not running)
        self.reindex.setEnabled(not running and self.sources.currentItem() is not None)


def _combo(parent: QWidget, name: str, any_text: str) -> QComboBox:
    combo = QComboBox(parent)
    combo.setAccessibleName(name)
    combo.addItem(any_text, ANY)
    return combo


def _refill(combo: QComboBox, values: tuple[str, ...]) -> None:
    """Replace the choices after "any", keeping the chosen one when it is still there."""
    chosen = combo.currentData()
    while combo.count() > 1:
        combo.removeItem(1)
    for value in values:
        combo.addItem(value, value)
    index = combo.findData(chosen)
    combo.setCurrentIndex(max(index, 0))


@section("memory", "Memory", order=60)
def make(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return MemoryPage(bridge, parent)
