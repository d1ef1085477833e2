"""The chat in the main window: typing, streaming, stopping, and what is saved."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot
from ui_fakes import PIECES, EmbeddingEngine, FakeEngine, Windows

from app import paths
from app.agents.loop_steps import DATA_START
from app.engine.interface import Engine
from app.memory.conversations import ConversationStore
from app.memory.db import Database
from app.memory.provenance import Provenance
from app.office import SYSTEM_PROMPT
from app.ui.chat_view import ChatView
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


# -- citations, regenerate, copy, agents ---------------------------------------------
MAIL_URL = "imap://owner@example.com/INBOX;UIDVALIDITY=1/;UID=7"
VAT_REPLY = ("Acme's VAT number is DE123456789", " [1].")


def send_and_wait(qtbot: QtBot, window: MainWindow, bridge: OfficeBridge, text: str) -> None:
    with qtbot.waitSignal(bridge.finished, timeout=REPLY_TIMEOUT_MS):
        type_and_send(qtbot, window, text)
    qtbot.waitUntil(lambda: not bridge.busy)


def click_text(qtbot: QtBot, view: ChatView, text: str) -> None:
    """Click the middle of ``text`` where the view shows it."""
    found = view.document().find(text)
    assert not found.isNull(), f"{text!r} is not shown"
    found.setPosition((found.selectionStart() + found.selectionEnd()) // 2)
    view.setTextCursor(found)
    view.ensureCursorVisible()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.cursorRect().center())


def test_a_reply_cites_a_matching_memory_and_a_click_shows_its_provenance(
    qtbot: QtBot, windows: Windows
) -> None:
    engine = EmbeddingEngine(VAT_REPLY)
    window, bridge = windows.open(lambda: engine, model="fake.gguf")
    memory = windows.offices[-1].memory
    assert memory.wait_ready(30)
    cited = memory.remember(
        "Acme Ltd: VAT number DE123456789, invoices to accounts@acme.example",
        "email_summary",
        provenance=Provenance(tool="email.sync", source_url=MAIL_URL),
    )
    memory.remember("The plum tart recipe needs three eggs", "note")
    send_and_wait(qtbot, window, bridge, "What is the VAT number of Acme?")

    system = engine.requests[-1].messages[0].content
    assert "[1]" in system and "DE123456789" in system and "plum" not in system
    assert DATA_START in system  # an email's text is fenced as data
    assert [c.memory_id for c in window.chat.citations()] == [cited.memory_id]
    assert "Sources: [1] Acme Ltd: VAT number DE123456789" in window.chat.toPlainText()
    click_text(qtbot, window.chat, "[1] Acme Ltd")
    qtbot.waitUntil(lambda: window.chat_page.panel is not None)
    panel = window.chat_page.panel
    assert panel is not None
    qtbot.waitUntil(panel.isVisible)
    assert not panel.isModal()
    assert panel.detail.memory_id == cited.memory_id
    assert f"URL: {MAIL_URL}" in panel.detail.provenance.text()
    assert "Tool: email.sync" in panel.detail.provenance.text()
    assert not panel.detail.rollback.isVisible()  # read-only here

    window.chat_page.bar.copy.click()
    assert QGuiApplication.clipboard().text() == "".join(VAT_REPLY)  # "[1]" kept, no links
    windows.close_all()
    again, _ = windows.open(lambda: engine)
    qtbot.waitUntil(lambda: len(again.chat.transcript()) == 2)
    assert [c.memory_id for c in again.chat.citations()] == [cited.memory_id]


def test_no_memory_no_citations_and_the_plain_system_prompt(qtbot: QtBot, windows: Windows) -> None:
    engine = EmbeddingEngine()
    window, bridge = windows.open(lambda: engine, model="fake.gguf")
    assert windows.offices[-1].memory.wait_ready(30)
    send_and_wait(qtbot, window, bridge, PROMPT)
    assert engine.requests[-1].messages[0].content == SYSTEM_PROMPT
    assert window.chat.citations() == ()
    assert "Sources:" not in window.chat.toPlainText()


def test_regenerate_replaces_the_last_reply_and_keeps_one_question(
    qtbot: QtBot, windows: Windows
) -> None:
    engine = FakeEngine([f" w{i}" for i in range(20)], delay_s=0.01)
    window, bridge = windows.open(lambda: engine, model="fake.gguf")
    bar = window.chat_page.bar
    while_streaming: list[bool] = []
    bridge.chunk.connect(lambda _: while_streaming.append(bar.regenerate.isEnabled()))
    send_and_wait(qtbot, window, bridge, PROMPT)
    assert while_streaming and not any(while_streaming)
    assert bar.regenerate.isEnabled()

    engine.pieces = ("Another", " answer.")
    with qtbot.waitSignal(bridge.finished, timeout=REPLY_TIMEOUT_MS):
        qtbot.mouseClick(bar.regenerate, Qt.MouseButton.LeftButton)
    assert not any(while_streaming)
    assert window.chat.transcript() == [("user", PROMPT), ("assistant", "Another answer.")]
    sent = [(m.role, m.content) for m in engine.requests[-1].messages[1:]]
    assert sent == [("user", PROMPT)]  # the old reply is not in the prompt, the question once
    windows.close_all()
    assert saved_messages(windows.home) == [[("user", PROMPT), ("assistant", "Another answer.")]]


def test_copy_from_a_messages_context_menu(qtbot: QtBot, windows: Windows) -> None:
    window, bridge = windows.open(FakeEngine, model="fake.gguf")
    send_and_wait(qtbot, window, bridge, PROMPT)
    view = window.chat
    for text, label, copied in ((PROMPT, "Copy message", PROMPT), ("fake", "Copy reply", None)):
        found = view.document().find(text)
        view.setTextCursor(found)
        menu = view.context_menu(view.cursorRect().center())
        [action] = [a for a in menu.actions() if a.text() == label]
        assert menu.actions()[0] is action
        action.trigger()
        assert QGuiApplication.clipboard().text() == (copied or "".join(PIECES))
        menu.deleteLater()


def choose_agent(qtbot: QtBot, window: MainWindow, name: str) -> str:
    combo = window.chat_page.bar.agent
    qtbot.waitUntil(lambda: combo.findText(name) > 0)
    index = combo.findText(name)
    combo.setCurrentIndex(index)
    combo.activated.emit(index)  # what a choice in the list emits
    return str(combo.itemData(index))


def test_talking_to_an_agent_uses_its_instructions_and_is_remembered(
    qtbot: QtBot, windows: Windows
) -> None:
    engine = FakeEngine()
    window, bridge = windows.open(lambda: engine, model="fake.gguf")
    assert "no tools" in window.chat_page.bar.agent.toolTip()
    send_and_wait(qtbot, window, bridge, PROMPT)
    assert engine.requests[-1].messages[0].content == SYSTEM_PROMPT
    agent_id = choose_agent(qtbot, window, "Order desk")
    send_and_wait(qtbot, window, bridge, "Any open orders?")
    system = engine.requests[-1].messages[0].content
    assert system.startswith("You are Order desk") and "cannot call tools" in system
    windows.close_all()

    again, bridge = windows.open(lambda: engine, model="fake.gguf")
    qtbot.waitUntil(lambda: len(again.chat.transcript()) == 4)
    qtbot.waitUntil(lambda: again.chat_page.bar.agent_id == agent_id)
    send_and_wait(qtbot, again, bridge, "And now?")
    assert engine.requests[-1].messages[0].content == system


@pytest.mark.slow
def test_real_engine_regenerates_the_last_reply(
    qtbot: QtBot, windows: Windows, tiny_model: Path
) -> None:
    window, bridge = windows.open(None, model=str(tiny_model))
    send_and_wait(qtbot, window, bridge, PROMPT)
    assert window.chat.last_is_reply() and window.chat.reply_text()
    with qtbot.waitSignal(bridge.finished, timeout=REPLY_TIMEOUT_MS):
        window.chat_page.bar.regenerate.click()
    [(role, question), (reply_role, reply)] = window.chat.transcript()
    assert (role, question, reply_role) == ("user", PROMPT, "assistant") and reply
    windows.close_all()
    assert saved_messages(windows.home) == [[("user", PROMPT), ("assistant", reply)]]
