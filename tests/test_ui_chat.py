"""The chat in the main window: typing, streaming, stopping, and what is saved."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from pytestqt.qtbot import QtBot
from ui_fakes import PIECES, FakeEngine, Windows

from app import paths
from app.engine.interface import Engine
from app.memory.conversations import ConversationStore
from app.memory.db import Database
from app.ui.main_window import MainWindow
from app.ui.office_bridge import OfficeBridge

PROMPT = "Draft a two-line reply to a customer"
REPLY_TIMEOUT_MS = 60_000


@pytest.fixture
def windows(qtbot: QtBot, soloist_home: Path) -> Iterator[Windows]:
    opened = Windows(qtbot, soloist_home)
    yield opened
    opened.close_all()


@dataclass
class StreamWatch:
    """What happened while a reply streamed: timer ticks and the reply's length per chunk."""

    ticks: int = 0
    lengths: list[int] = field(default_factory=list)
    ticking: bool = False

    def tick(self) -> None:
        if self.ticking:
            self.ticks += 1


def type_and_send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    qtbot.keyClicks(window.composer.edit, text)
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)


def send_and_watch(qtbot: QtBot, window: MainWindow, bridge: OfficeBridge) -> StreamWatch:
    watch = StreamWatch()
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(watch.tick)
    bridge.turn_started.connect(lambda *_: setattr(watch, "ticking", True))
    bridge.chunk.connect(lambda _: watch.lengths.append(len(window.chat.reply_text())))
    timer.start()
    with qtbot.waitSignal(bridge.finished, timeout=REPLY_TIMEOUT_MS):
        type_and_send(qtbot, window, PROMPT)
    timer.stop()
    return watch


def saved_messages(home: Path) -> list[list[tuple[str, str]]]:
    """Every conversation's (role, text) pairs, read through a fresh database."""
    with Database.open(paths.db_path(home)) as db:
        store = ConversationStore(db)
        return [[(m.role, m.content) for m in store.messages(c.id)] for c in store.list()]


def check_streams_and_persists(
    qtbot: QtBot, windows: Windows, engine: Callable[[], Engine] | None, model: str
) -> None:
    window, bridge = windows.open(engine, model=model)
    watch = send_and_watch(qtbot, window, bridge)
    reply = window.chat.reply_text()
    assert reply, "the reply is empty"
    assert watch.ticks >= 5, f"the event loop stalled: {watch.ticks} ticks"
    assert len(watch.lengths) >= 3
    assert len(set(watch.lengths)) >= 3, "the reply did not grow chunk by chunk"
    assert watch.lengths == sorted(watch.lengths)
    assert window.chat.transcript() == [("user", PROMPT), ("assistant", reply)]
    assert "tokens/s" in window.status.stats_label.text()
    windows.close_all()

    assert saved_messages(windows.home) == [[("user", PROMPT), ("assistant", reply)]]
    again, _ = windows.open(engine)
    qtbot.waitUntil(lambda: again.chat.transcript() == [("user", PROMPT), ("assistant", reply)])
    assert again.conversations.ids() == [again.conversation_id]


def test_enter_streams_the_reply_while_the_event_loop_turns(qtbot: QtBot, windows: Windows) -> None:
    check_streams_and_persists(qtbot, windows, lambda: FakeEngine(delay_s=0.02), "fake.gguf")


@pytest.mark.slow
def test_real_engine_streams_the_reply_while_the_event_loop_turns(
    qtbot: QtBot, windows: Windows, tiny_model: Path
) -> None:
    check_streams_and_persists(qtbot, windows, None, str(tiny_model))


def test_stop_cancels_mid_stream_and_keeps_the_partial_reply(
    qtbot: QtBot, windows: Windows
) -> None:
    many = [f" w{i}" for i in range(500)]
    window, bridge = windows.open(lambda: FakeEngine(many, delay_s=0.01), model="fake.gguf")
    chunks: list[str] = []
    bridge.chunk.connect(chunks.append)
    type_and_send(qtbot, window, PROMPT)
    qtbot.waitUntil(lambda: len(chunks) >= 3)
    assert window.composer.button.text() == "Stop"
    with qtbot.waitSignal(bridge.finished) as finished:
        qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)
    assert finished.args is not None
    assert finished.args[0].finish_reason == "cancelled"
    partial = window.chat.reply_text()
    assert 3 <= len(partial.split()) < len(many)
    assert partial == "".join(chunks)
    qtbot.waitUntil(lambda: window.composer.button.text() == "Send")
    assert "Stopped" in window.status.currentMessage()
    windows.close_all()
    assert saved_messages(windows.home) == [[("user", PROMPT), ("assistant", partial)]]


def test_without_a_model_enter_shows_the_no_model_message(qtbot: QtBot, windows: Windows) -> None:
    window, bridge = windows.open(FakeEngine)
    with qtbot.waitSignal(bridge.failed) as failed:
        type_and_send(qtbot, window, PROMPT)
    assert failed.args == ["No model is chosen yet: pick a GGUF file with Model… first."]
    assert window.status.currentMessage() == failed.args[0]
    assert window.composer.edit.toPlainText() == PROMPT  # kept, to send again
    qtbot.waitUntil(lambda: window.composer.button.text() == "Send")
    assert window.chat.transcript() == []
    windows.close_all()
    assert saved_messages(windows.home) == []


def test_an_engine_error_is_one_readable_line(qtbot: QtBot, windows: Windows) -> None:
    from app.engine.errors import ModelNotFoundError

    error = ModelNotFoundError("There is no model file at /nowhere.gguf.")
    window, bridge = windows.open(lambda: FakeEngine(error=error), model="/nowhere.gguf")
    with qtbot.waitSignal(bridge.failed):
        type_and_send(qtbot, window, PROMPT)
    assert window.status.currentMessage() == str(error)
    qtbot.waitUntil(lambda: window.composer.button.text() == "Send")


def test_shift_enter_starts_a_new_line_and_does_not_send(qtbot: QtBot, windows: Windows) -> None:
    window, bridge = windows.open(FakeEngine, model="fake.gguf")
    sent: list[str] = []
    window.composer.send_requested.connect(sent.append)
    qtbot.keyClicks(window.composer.edit, "one")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.composer.edit, "two")
    assert window.composer.edit.toPlainText() == "one\ntwo"
    assert sent == []
    with qtbot.waitSignal(bridge.finished):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Enter)
    assert sent == ["one\ntwo"]
    assert window.chat.transcript() == [("user", "one\ntwo"), ("assistant", "".join(PIECES))]


def test_shutdown_mid_reply_cancels_it_and_closes_the_office(
    qtbot: QtBot, windows: Windows
) -> None:
    engine = FakeEngine([f" w{i}" for i in range(500)], delay_s=0.01)
    window, bridge = windows.open(lambda: engine, model="fake.gguf")
    chunks: list[str] = []
    bridge.chunk.connect(chunks.append)
    type_and_send(qtbot, window, PROMPT)
    qtbot.waitUntil(lambda: len(chunks) >= 2)
    bridge.shutdown(timeout_ms=5_000)
    assert engine.closed
    [[question, (role, partial)]] = saved_messages(windows.home)
    assert question == ("user", PROMPT)
    assert role == "assistant"
    assert 2 <= len(partial.split()) < 500
