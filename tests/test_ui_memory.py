"""The Memory section on a real office: search, versions and rollback, ingestion and cancel.

The office's memory service embeds through its engine (``Office._embedder``
asks the engine for ``embedder()``), so the fake engine here hands out a
fast, deterministic ``HashEmbedder``: no model is loaded. Its ``hold``
makes ingestion's embedding wait, so Cancel is pressed while a run is
certainly under way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from test_search import HashEmbedder
from ui_fakes import FakeEngine

from app.engine.embeddings import DEFAULT_EMBEDDING_MODEL
from app.memory.ingest_types import IngestProgress, RunStatus
from app.memory.provenance import Provenance
from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections.memory import MemoryPage
from app.ui.sections.memory_ops import MemoryQuery, progress_percent, sources


class HeldEmbedder(HashEmbedder):
    """A HashEmbedder whose calls (off the background embedding thread) can be held."""

    def __init__(self) -> None:
        # The name the office's lazy embedder reports before it is made: one model throughout.
        super().__init__(model_name=DEFAULT_EMBEDDING_MODEL)
        self.hold: threading.Event | None = None
        self.entered = threading.Event()

    def embed(self, texts: list[str]) -> list[list[float]]:
        hold = self.hold
        if hold is not None and threading.current_thread().name != "soloist-memory-embed":
            self.entered.set()
            hold.wait(30)
        return super().embed(texts)


class EmbeddingEngine(FakeEngine):
    """The chat fake, plus the embedder the office's memory uses."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = HeldEmbedder()

    def embedder(self) -> HeldEmbedder:
        return self.embedding


@pytest.fixture
def engine() -> EmbeddingEngine:
    return EmbeddingEngine()


@pytest.fixture
def office(soloist_home: Path, engine: EmbeddingEngine) -> Office:
    opened = Office(soloist_home, engine_factory=lambda: engine)
    assert opened.memory.wait_ready(30)  # searches then use both sides
    return opened


@pytest.fixture
def bridge(office: Office) -> Iterator[OfficeBridge]:
    bridge = OfficeBridge(office)
    yield bridge
    bridge.shutdown()


@pytest.fixture
def page(qtbot: QtBot, bridge: OfficeBridge) -> MemoryPage:
    shown = MemoryPage(bridge)
    qtbot.addWidget(shown)
    shown.show()
    return shown


def result_texts(page: MemoryPage) -> list[str]:
    return [page.results.item(row).text() for row in range(page.results.count())]


def search_for(qtbot: QtBot, page: MemoryPage, text: str) -> None:
    page.results.clear()
    page.query.setText(text)
    qtbot.keyClick(page.query, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "found" in page.message.text(), timeout=20_000)


def test_search_finds_a_remembered_note_and_filters_apply(
    qtbot: QtBot, page: MemoryPage, office: Office
) -> None:
    office.memory.remember("The plum tart recipe needs three eggs", "note")
    office.memory.remember("Invoices are due on the first of the month", "fact")
    search_for(qtbot, page, "plum tart")
    texts = result_texts(page)
    assert texts and "plum tart" in texts[0] and "note · global" in texts[0]
    assert "1 memory found" in page.message.text() or "memories found" in page.message.text()
    qtbot.waitUntil(lambda: page.kind.findData("fact") > 0)
    page.kind.setCurrentIndex(page.kind.findData("fact"))
    search_for(qtbot, page, "plum tart")
    assert all("plum" not in text for text in result_texts(page))


def test_an_empty_query_reads_as_a_next_step(qtbot: QtBot, page: MemoryPage) -> None:
    page.query.setText("   ")
    page.run_search()
    qtbot.waitUntil(lambda: "Type something" in page.message.text())


def test_versions_provenance_and_rollback_with_an_inline_confirm(
    qtbot: QtBot, page: MemoryPage, office: Office
) -> None:
    first = office.memory.remember("Meeting with Ann on Monday", "note")
    by_agent = Provenance(agent_id="inbox-triage", run_id="run-7", tool="memory.remember")
    office.memory.store.update(first.memory_id, "Meeting with Ann on Tuesday", by_agent)
    search_for(qtbot, page, "Meeting with Ann")
    page.results.setCurrentRow(0)
    detail = page.detail
    qtbot.waitUntil(lambda: detail.versions.count() == 2)
    assert "Tuesday" in detail.text.toPlainText()
    assert "Agent: inbox-triage" in detail.provenance.text()
    assert "Run: run-7" in detail.provenance.text()
    assert not detail.rollback.isEnabled()  # the current version
    detail.select_version(1)
    assert "Monday" in detail.text.toPlainText()
    assert "By: the owner" in detail.provenance.text()
    qtbot.mouseClick(detail.rollback, Qt.MouseButton.LeftButton)
    assert detail.confirm_bar.isVisible() and "version 1" in detail.question.text()
    qtbot.mouseClick(detail.keep, Qt.MouseButton.LeftButton)
    assert not detail.confirm_bar.isVisible()
    qtbot.mouseClick(detail.rollback, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(detail.confirm, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: detail.versions.count() == 3)
    current = office.memory.store.get(first.memory_id)
    assert current is not None and current.text == "Meeting with Ann on Monday"
    assert "Version 1 is current again" in page.message.text()
    assert "from v1 (current)" in detail.versions.item(0).text()


def write_notes(folder: Path, count: int) -> None:
    folder.mkdir()
    for number in range(count):
        (folder / f"note-{number:02}.txt").write_text(
            f"Note {number}: the quince delivery number {number} arrives on a weekday.\n"
        )


def test_ingesting_a_folder_shows_progress_to_the_end_and_lists_it(
    qtbot: QtBot, page: MemoryPage, tmp_path: Path, office: Office
) -> None:
    folder = tmp_path / "notes"
    write_notes(folder, 3)
    seen: list[IngestProgress] = []
    page.relay.progressed.connect(seen.append)
    page.start_ingest(str(folder))
    assert page.cancel.isVisible() and not page.add_folder.isEnabled()
    qtbot.waitUntil(lambda: page.ingest_status.text().startswith("Indexed"), timeout=20_000)
    assert page.progress.value() == 100
    assert seen and seen[-1].final and seen[-1].files_done == 3
    assert "3 files indexed" in page.ingest_status.text()
    assert not page.cancel.isVisible() and page.add_folder.isEnabled()
    qtbot.waitUntil(lambda: page.sources.count() == 1)
    assert "(3 files, 3 chunks, last run succeeded)" in page.sources.item(0).text()
    search_for(qtbot, page, "quince delivery")
    assert any("quince" in text for text in result_texts(page))


def test_add_folder_asks_for_a_folder_then_indexes_it(
    qtbot: QtBot, page: MemoryPage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "picked"
    write_notes(folder, 1)
    monkeypatch.setattr(
        "app.ui.sections.memory.QFileDialog.getExistingDirectory",
        lambda *args: str(folder),
    )
    qtbot.mouseClick(page.add_folder, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.sources.count() == 1, timeout=20_000)
    assert str(folder) in page.sources.item(0).text()


def test_cancel_stops_an_ingestion_between_files(
    qtbot: QtBot, page: MemoryPage, tmp_path: Path, office: Office, engine: EmbeddingEngine
) -> None:
    folder = tmp_path / "many"
    write_notes(folder, 40)  # one chunk each: the first batch of 32 is embedded mid-run
    hold = threading.Event()
    engine.embedding.hold = hold
    page.start_ingest(str(folder))
    assert engine.embedding.entered.wait(20)
    qtbot.mouseClick(page.cancel, Qt.MouseButton.LeftButton)
    assert page.ingest_status.text() == "Stopping after the current file…"
    assert not page.cancel.isEnabled()
    hold.set()
    qtbot.waitUntil(lambda: "cancelled" in page.ingest_status.text(), timeout=20_000)
    assert "Run it again to continue" in page.ingest_status.text()
    assert page.progress.value() < 100
    indexed = sources(office)
    assert len(indexed) == 1 and 0 < indexed[0].files < 40
    assert indexed[0].last_run == RunStatus.CANCELLED.value


def test_progress_percent_and_the_source_filter() -> None:
    event = IngestProgress("r", 4, 1, 0, 0, 0, 0.0, 0.0, None, "a.txt")
    assert progress_percent(event) == 25
    done = IngestProgress("r", 4, 4, 4, 0, 0, 1.0, 4.0, 0.0, "", final=True)
    assert progress_percent(done) == 100
    assert progress_percent(IngestProgress("r", 0, 0, 0, 0, 0, 0.0, 0.0, None, "")) == 0
    where = MemoryQuery("x", source="https://example.com/docs").where()
    assert where.source_url_prefix == "https://example.com/docs"
    assert where.source_file_prefix is None
    assert MemoryQuery("x", kind="fact").where().kinds == ("fact",)
