"""Conversations and messages in a real DuckDB file."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.memory.conversations import ConversationStore, StoredMessage
from app.memory.db import Database
from app.memory.errors import ConversationNotFoundError

SECRET = "the owner's private text, never to be logged"


class SteppingClock:
    """A clock that moves one second forward on every reading."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(db: Database) -> ConversationStore:
    return ConversationStore(db, clock=SteppingClock())


def test_create_and_get(store: ConversationStore) -> None:
    created = store.create("Quarterly invoices")
    assert len(created.id) == 32
    int(created.id, 16)  # uuid hex
    assert created.created_at.tzinfo is not None
    assert created.updated_at == created.created_at
    assert store.get(created.id) == created


def test_messages_come_back_in_seq_order(store: ConversationStore) -> None:
    chat = store.create("chat")
    texts = ["first", "second — ünïcode ✓", "", "fourth"]
    roles = ["user", "assistant", "user", "assistant"]
    saved = [store.append(chat.id, role, text) for role, text in zip(roles, texts, strict=True)]

    read = store.messages(chat.id)

    assert read == saved
    assert [m.seq for m in read] == [1, 2, 3, 4]
    assert [m.content for m in read] == texts
    assert [m.role for m in read] == roles


def test_seq_is_per_conversation(store: ConversationStore) -> None:
    first, second = store.create("a"), store.create("b")
    for _ in range(3):
        store.append(first.id, "user", "to a")
        store.append(second.id, "user", "to b")
    assert [m.seq for m in store.messages(first.id)] == [1, 2, 3]
    assert [m.seq for m in store.messages(second.id)] == [1, 2, 3]
    assert store.messages(store.create("empty").id) == []


def test_concurrent_appends_get_unique_gap_free_seqs(db: Database) -> None:
    store = ConversationStore(db)
    chat = store.create("busy")
    threads, per_thread = 8, 25
    start = threading.Barrier(threads)

    def worker(worker_id: int) -> list[int]:
        start.wait()
        return [store.append(chat.id, "user", f"{worker_id}:{i}").seq for i in range(per_thread)]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        returned = list(pool.map(worker, range(threads)))

    stored = store.messages(chat.id)
    assert [m.seq for m in stored] == list(range(1, threads * per_thread + 1))
    assert sorted(seq for seqs in returned for seq in seqs) == [m.seq for m in stored]
    for worker_id in range(threads):  # each thread's messages stay in its own order
        mine = [m.content for m in stored if m.content.startswith(f"{worker_id}:")]
        assert mine == [f"{worker_id}:{i}" for i in range(per_thread)]


def test_list_puts_the_most_recently_active_first(store: ConversationStore) -> None:
    a, b, c = store.create("a"), store.create("b"), store.create("c")
    assert [conv.id for conv in store.list()] == [c.id, b.id, a.id]

    message = store.append(a.id, "user", "hello")

    assert [conv.id for conv in store.list()] == [a.id, c.id, b.id]
    assert store.get(a.id).updated_at == message.created_at > c.updated_at


def test_rename_changes_the_title_but_not_the_order(store: ConversationStore) -> None:
    a, b = store.create("a"), store.create("b")
    renamed = store.rename(a.id, "Supplier contract")
    assert renamed.title == "Supplier contract"
    assert renamed.updated_at == a.updated_at
    assert [conv.id for conv in store.list()] == [b.id, a.id]
    assert store.get(a.id).title == "Supplier contract"


def test_unknown_conversation_is_reported(store: ConversationStore) -> None:
    missing = "0" * 32
    with pytest.raises(ConversationNotFoundError, match=missing):
        store.get(missing)
    with pytest.raises(ConversationNotFoundError):
        store.append(missing, "user", "hello")
    with pytest.raises(ConversationNotFoundError):
        store.messages(missing)
    with pytest.raises(ConversationNotFoundError):
        store.rename(missing, "title")


def test_unknown_role_is_refused_and_nothing_saved(store: ConversationStore) -> None:
    chat = store.create("chat")
    with pytest.raises(ValueError, match="role"):
        store.append(chat.id, "narrator", "text")
    assert store.messages(chat.id) == []


def test_times_are_utc_whatever_zone_the_clock_uses(db: Database) -> None:
    paris = timezone(timedelta(hours=1))
    store = ConversationStore(db, clock=lambda: datetime(2025, 6, 1, 12, 0, tzinfo=paris))
    chat = store.create("chat")
    message = store.append(chat.id, "user", "hi")
    expected = datetime(2025, 6, 1, 11, 0, tzinfo=UTC)
    assert store.get(chat.id).created_at == expected
    assert store.messages(chat.id)[0].created_at == message.created_at == expected
    assert message.created_at.tzinfo == UTC


def test_conversations_persist_across_reopen(db_path: Path) -> None:
    with Database.open(db_path) as first:
        store = ConversationStore(first)
        chat = store.create("kept")
        store.append(chat.id, "user", "question")
        store.append(chat.id, "assistant", "answer")
        conversations, messages = store.list(), store.messages(chat.id)

    with Database.open(db_path) as second:
        reopened = ConversationStore(second)
        assert reopened.list() == conversations
        assert reopened.messages(chat.id) == messages
        assert reopened.append(chat.id, "user", "again").seq == 3


def test_repr_and_logs_never_carry_message_text(
    store: ConversationStore, caplog: pytest.LogCaptureFixture
) -> None:
    chat = store.create("chat")
    with caplog.at_level(logging.DEBUG, logger="soloist.memory"):
        message = store.append(chat.id, "user", SECRET)
        read = store.messages(chat.id)

    assert SECRET not in repr(message)
    assert SECRET not in repr(read)
    assert f"chars={len(SECRET)}" in repr(message)
    assert chat.id in caplog.text  # the append was logged, by id
    assert SECRET not in caplog.text
    assert isinstance(message, StoredMessage)


def test_meta_is_kept_with_its_message_and_deleted_with_it(store: ConversationStore) -> None:
    chat = store.create("chat")
    store.append(chat.id, "user", "what did Anna say?")
    cites = {"citations": [{"number": 1, "memory_id": "m1", "title": "Anna's mail"}]}
    store.append(chat.id, "assistant", "She agreed [1].", meta=cites)
    store.append(chat.id, "user", "and then?")
    assert [m.meta for m in store.messages(chat.id)] == [{}, cites, {}]
    assert store.delete_after(chat.id, 1) == 2
    assert [m.content for m in store.messages(chat.id)] == ["what did Anna say?"]
    again = store.append(chat.id, "assistant", "new reply")  # seq 2 again: no stale meta
    assert again.seq == 2 and store.messages(chat.id)[1].meta == {}


def test_the_agent_of_a_conversation_is_stored_and_cleared(store: ConversationStore) -> None:
    chat, other = store.create("chat"), store.create("other")
    assert store.agent_of(chat.id) is None
    store.set_agent(chat.id, "order-desk")
    store.set_agent(chat.id, "daily-briefing")  # replaces, no second row
    assert store.agent_of(chat.id) == "daily-briefing"
    assert store.agent_of(other.id) is None
    store.set_agent(chat.id, None)
    assert store.agent_of(chat.id) is None
    with pytest.raises(ConversationNotFoundError):
        store.set_agent("0" * 32, "order-desk")
