"""The long-term tier in a real DuckDB file: versions that are never
overwritten, provenance, point-in-time reads, rollback, scopes and vectors."""

from __future__ import annotations

import logging
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.memory.db import Database
from app.memory.errors import (
    MemoryConflictError,
    MemoryDeletedError,
    MemoryNotFoundError,
    MemoryVersionNotFoundError,
    StoreError,
    VectorDimensionError,
)
from app.memory.longterm import ChangeOp, MemoryStore, MemoryVersion
from app.memory.provenance import (
    Provenance,
    agent_scope,
    check_scope,
    contact_scope,
    content_hash,
)
from app.memory.vectors import Embedding

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
MISSING = "0" * 32
SECRET = "the owner's private text, never to be logged"
BY_HAND = Provenance()
OWNER_UNDO = Provenance(agent_id="owner", tool="rollback")


class Clock:
    """A clock the test sets; it stands still between settings."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, minutes: float) -> datetime:
        """Set the clock to T0 + ``minutes`` and return that time."""
        self.now = T0 + timedelta(minutes=minutes)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db: Database, clock: Clock) -> MemoryStore:
    return MemoryStore(db, clock=clock)


def texts(versions: list[MemoryVersion]) -> list[str]:
    return [v.text for v in versions]


def count(db: Database, table: str) -> int:
    row = db.fetchone(f"SELECT count(*) FROM {table}")
    assert row is not None
    return int(row[0])


# -- versions ----------------------------------------------------------------
def test_add_stores_text_kind_scope_and_provenance(store: MemoryStore, clock: Clock) -> None:
    provenance = Provenance(
        agent_id="crm",
        run_id="r1",
        step_seq=4,
        tool="mail.read",
        message_id="c1/3",
        source_file="/inbox/a.eml",
        source_url="https://example.com/x?a=1&b=2",
    )
    added = store.add(
        "Ada prefers calls after 10:00.",
        "crm_fact",
        contact_scope("ada"),
        provenance,
        metadata={"confidence": 0.9, "tags": ["calls"]},
    )

    assert (added.version, added.op, added.tombstone) == (1, ChangeOp.ADD, False)
    assert (added.kind, added.scope) == ("crm_fact", "contact:ada")
    assert added.provenance == provenance
    assert added.metadata == {"confidence": 0.9, "tags": ["calls"]}
    assert added.content_hash == content_hash("Ada prefers calls after 10:00.")
    assert added.created_at == added.valid_from == T0
    assert added.valid_to is None and added.is_current
    assert store.get(added.memory_id) == added
    assert store.history(added.memory_id) == [added]


def test_update_writes_a_new_version_and_keeps_the_old(store: MemoryStore, clock: Clock) -> None:
    first = store.add("VAT rate 20%", "fact", "global", BY_HAND, metadata={"src": "law"})
    clock.at(5)
    second = store.update(first.memory_id, "VAT rate 21%", Provenance(agent_id="tax"))
    clock.at(6)
    third = store.update(first.memory_id, "VAT rate 22%", BY_HAND, metadata={})

    history = store.history(first.memory_id)
    assert [v.version for v in history] == [1, 2, 3]
    assert texts(history) == ["VAT rate 20%", "VAT rate 21%", "VAT rate 22%"]
    assert history[0].id == first.id and history[0].text == first.text  # never overwritten
    assert history[0].valid_to == second.valid_from == T0 + timedelta(minutes=5)
    assert history[1].valid_to == third.valid_from
    assert second.metadata == {"src": "law"}  # None keeps the metadata
    assert third.metadata == {}
    assert store.get(first.memory_id) == third
    assert texts(store.current()) == ["VAT rate 22%"]


def test_as_of_reads_the_version_held_at_each_moment(store: MemoryStore, clock: Clock) -> None:
    t_add = clock.at(10)
    memory = store.add("office in Lyon", "fact", "global", BY_HAND).memory_id
    t_update = clock.at(20)
    store.update(memory, "office in Paris", BY_HAND)
    t_delete = clock.at(30)
    store.delete(memory, BY_HAND)
    t_restore = clock.at(40)
    store.rollback_memory(memory, 1, OWNER_UNDO)
    other = store.add("phone +33 1", "fact", "global", BY_HAND)

    def text_at(moment: datetime) -> str | None:
        found = store.get(memory, as_of=moment)
        return None if found is None else found.text

    second = timedelta(seconds=1)
    assert text_at(t_add - second) is None
    assert text_at(t_add) == text_at(t_update - second) == "office in Lyon"
    assert text_at(t_update) == text_at(t_delete - second) == "office in Paris"
    assert text_at(t_delete) is None
    assert text_at(t_restore) == text_at(t_restore + timedelta(days=1)) == "office in Lyon"
    assert texts(store.current(as_of=t_update)) == ["office in Paris"]
    assert texts(store.current(as_of=t_delete)) == []
    assert sorted(texts(store.current(as_of=t_restore))) == ["office in Lyon", "phone +33 1"]
    assert store.current(as_of=t_add - second) == []
    assert other.memory_id != memory


def test_versions_never_go_back_in_time_when_the_clock_does(
    store: MemoryStore, clock: Clock
) -> None:
    clock.at(60)
    memory = store.add("first", "note", "global", BY_HAND).memory_id
    clock.at(30)  # the system clock was set back
    second = store.update(memory, "second", BY_HAND)

    assert second.created_at == T0 + timedelta(minutes=30)  # what the clock said
    assert second.valid_from == T0 + timedelta(minutes=60)  # never before its predecessor
    assert store.get(memory, as_of=T0 + timedelta(minutes=60)) == second
    assert store.get(memory, as_of=T0 + timedelta(minutes=45)) is None


# -- delete and tombstones ----------------------------------------------------
def test_a_tombstone_hides_the_memory_but_history_keeps_it(store: MemoryStore) -> None:
    kept = store.add("keep me", "note", "global", BY_HAND)
    gone = store.add("forget me", "note", "global", BY_HAND)
    tombstone = store.delete(gone.memory_id, Provenance(agent_id="cleaner"))

    assert (tombstone.tombstone, tombstone.op, tombstone.version) == (True, ChangeOp.DELETE, 2)
    assert (tombstone.text, tombstone.content_hash) == ("", None)
    assert store.get(gone.memory_id) is None
    assert store.current() == [kept]
    assert store.find_by_hash(content_hash("forget me"), "global") == []
    assert [v.op for v in store.history(gone.memory_id)] == [ChangeOp.ADD, ChangeOp.DELETE]
    assert store.history(gone.memory_id)[0].text == "forget me"
    assert store.delete(gone.memory_id, BY_HAND) == tombstone  # twice: nothing new
    assert len(store.history(gone.memory_id)) == 2
    with pytest.raises(MemoryDeletedError, match="Roll it back"):
        store.update(gone.memory_id, "again", BY_HAND)


def test_unknown_memory_and_version_are_reported(store: MemoryStore) -> None:
    memory = store.add("x", "note", "global", BY_HAND).memory_id
    for call in (
        lambda: store.get(MISSING),
        lambda: store.history(MISSING),
        lambda: store.update(MISSING, "x", BY_HAND),
        lambda: store.delete(MISSING, BY_HAND),
        lambda: store.rollback_memory(MISSING, 1, BY_HAND),
    ):
        with pytest.raises(MemoryNotFoundError, match=MISSING):
            call()
    with pytest.raises(MemoryVersionNotFoundError, match="7 of memory"):
        store.rollback_memory(memory, 7, BY_HAND)
    with pytest.raises(MemoryVersionNotFoundError):
        store.set_vector(MISSING, "m", [1.0])


def test_expected_version_refuses_to_write_over_a_newer_change(store: MemoryStore) -> None:
    read = store.add("draft", "note", "global", BY_HAND)
    store.update(read.memory_id, "someone else's edit", BY_HAND, expected_version=1)
    with pytest.raises(MemoryConflictError) as caught:
        store.update(read.memory_id, "my stale edit", BY_HAND, expected_version=1)
    with pytest.raises(MemoryConflictError):
        store.delete(read.memory_id, BY_HAND, expected_version=1)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert texts(store.history(read.memory_id)) == ["draft", "someone else's edit"]


# -- rollback ----------------------------------------------------------------------
def test_rollback_of_one_memory_appends_a_copy(store: MemoryStore, clock: Clock) -> None:
    first = store.add("v1 text", "note", "global", BY_HAND, metadata={"n": 1})
    clock.at(1)
    store.update(first.memory_id, "v2 text", BY_HAND, metadata={"n": 2})
    clock.at(2)
    store.delete(first.memory_id, BY_HAND)
    before = store.history(first.memory_id)
    clock.at(3)

    restored = store.rollback_memory(first.memory_id, 1, OWNER_UNDO)

    assert (restored.version, restored.op, restored.restored_from) == (4, ChangeOp.RESTORE, 1)
    assert (restored.text, restored.metadata) == ("v1 text", {"n": 1})
    assert restored.content_hash == first.content_hash
    assert restored.provenance == OWNER_UNDO
    assert restored.id != first.id
    after = store.history(first.memory_id)
    assert after[:2] == before[:2]  # untouched, closed versions
    assert [v.version for v in after] == [1, 2, 3, 4]
    assert store.get(first.memory_id) == restored
    assert store.rollback_memory(first.memory_id, 4, OWNER_UNDO) == restored  # no-op
    undeleted_again = store.rollback_memory(first.memory_id, 3, OWNER_UNDO)
    assert undeleted_again.tombstone and store.get(first.memory_id) is None


def test_rollback_of_a_run_undoes_what_it_created_updated_and_deleted(
    store: MemoryStore, clock: Clock
) -> None:
    prior = Provenance(agent_id="owner")
    run = Provenance(agent_id="crm", run_id="run-bad")
    later = Provenance(agent_id="owner", run_id="run-later")
    updated = store.add("Bob: supplier", "crm_fact", "contact:bob", prior)
    deleted = store.add("Bob pays in 30 days", "crm_fact", "contact:bob", prior)
    contested = store.add("Bob's office: Rue A", "crm_fact", "contact:bob", prior)
    clock.at(1)
    created = store.add("Bob is a competitor", "crm_fact", "contact:bob", run)
    store.update(updated.memory_id, "Bob: former supplier", run)
    store.update(updated.memory_id, "Bob: blocked", run)
    store.delete(deleted.memory_id, run)
    transient = store.add("temp", "note", "global", run)
    store.delete(transient.memory_id, run)
    store.update(contested.memory_id, "Bob's office: Rue B", run)
    clock.at(2)
    store.update(contested.memory_id, "Bob's office: Rue C", later)  # the owner's fix stays
    clock.at(3)

    report = store.rollback_run("run-bad", OWNER_UNDO)

    assert report.skipped == (contested.memory_id,)
    by_memory = {v.memory_id: v for v in report.written}
    assert set(by_memory) == {created.memory_id, updated.memory_id, deleted.memory_id}
    assert by_memory[created.memory_id].tombstone
    assert by_memory[updated.memory_id].restored_from == 1
    assert by_memory[deleted.memory_id].restored_from == 1
    assert all(v.provenance == OWNER_UNDO for v in report.written)
    assert sorted(texts(store.current(scope="contact:bob"))) == [
        "Bob pays in 30 days",
        "Bob's office: Rue C",
        "Bob: supplier",
    ]
    assert len(store.history(transient.memory_id)) == 2  # created and deleted: nothing to do
    assert len(store.history(updated.memory_id)) == 4  # history only grows
    assert store.rollback_run("run-bad", OWNER_UNDO).written == ()  # done already


def test_rollback_of_a_run_keeps_others_work_beneath_its_last_writes(
    store: MemoryStore,
) -> None:
    memory = store.add("a", "note", "global", Provenance(run_id="r1")).memory_id
    store.update(memory, "b", Provenance(run_id="r2"))
    store.update(memory, "c", Provenance(run_id="r1"))

    report = store.rollback_run("r1", OWNER_UNDO)

    assert [v.text for v in report.written] == ["b"]
    assert store.get(memory).text == "b"  # type: ignore[union-attr]


# -- scopes and kinds ----------------------------------------------------------------
@pytest.mark.parametrize(
    "scope", ["global", "agent:a1", "contact:ada@example.com", "contact:o'brien_%", "agent:ü"]
)
def test_well_formed_scopes_are_accepted(store: MemoryStore, scope: str) -> None:
    assert check_scope(scope) == scope
    added = store.add("x", "note", scope, BY_HAND)
    assert store.current(scope=scope) == [added]


@pytest.mark.parametrize(
    "scope",
    ["", "Global", "global ", "agent:", "agent: a", "contact:a b", "team:x", "agent:a\x00",
     "contact:" + "x" * 201, "agent:a\n"],
)  # fmt: skip
def test_malformed_scopes_are_refused_and_nothing_written(
    store: MemoryStore, db: Database, scope: str
) -> None:
    with pytest.raises(ValueError, match="invalid memory scope"):
        store.add("x", "note", scope, BY_HAND)
    with pytest.raises(ValueError):
        store.current(scope=scope)
    assert count(db, "memories") == 0


def test_scope_helpers_and_kinds(store: MemoryStore, db: Database) -> None:
    assert agent_scope("planner") == "agent:planner"
    assert contact_scope("c42") == "contact:c42"
    with pytest.raises(ValueError):
        agent_scope("two words")
    with pytest.raises(ValueError, match="unknown memory kind"):
        store.add("x", "gossip", "global", BY_HAND)
    with pytest.raises(ValueError):
        store.current(kinds=["gossip"])
    assert count(db, "memories") == 0
    with pytest.raises(ValueError, match="run_id"):
        Provenance(step_seq=3)


def test_current_filters_by_scope_and_kind_newest_first(store: MemoryStore, clock: Clock) -> None:
    g = store.add("global fact", "fact", "global", BY_HAND)
    clock.at(1)
    a = store.add("agent note", "note", "agent:planner", BY_HAND)
    clock.at(2)
    c = store.add("contact fact", "crm_fact", "contact:ada", BY_HAND)
    clock.at(3)
    store.add("other agent", "note", "agent:mailer", BY_HAND)

    assert store.current(scope="global") == [g]
    assert store.current(scope=["global", "agent:planner", "contact:ada"]) == [c, a, g]
    assert store.current(kinds=["fact", "crm_fact"]) == [c, g]
    assert store.current(scope="agent:planner", kinds=["fact"]) == []
    assert store.current(scope=[]) == []
    assert len(store.current(limit=2)) == 2
    assert store.current(limit=2)[0].text == "other agent"


# -- hostile text -------------------------------------------------------------------
HOSTILE = [
    "'; DROP TABLE memories; --",
    "100% of _all_ rows",
    "quotes ' \" ` and \\ backslash \\'",
    "NUL \x00 inside",
    "ünïcode ✓ 𝄞 \u202e RTL",
    "  leading and trailing spaces\n\t",
    "",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_text_with_sql_metacharacters_round_trips_exactly(
    store: MemoryStore, db: Database, text: str
) -> None:
    scope = "contact:o'brien%_"
    decoy = store.add("decoy", "note", "contact:o'brienXY", BY_HAND)
    metadata = {"k'; --": text, "%": ["_", text]}
    added = store.add(
        text, "note", scope, Provenance(tool=text, source_url=text), metadata=metadata
    )

    read = store.get(added.memory_id)
    assert read is not None
    assert read.text == text
    assert read.metadata == metadata
    assert read.provenance.tool == read.provenance.source_url == text
    assert store.current(scope=scope) == [read]  # '%' and '_' are not wildcards
    assert store.find_by_hash(content_hash(text), scope) == [read]
    assert store.current(scope="contact:o'brienXY") == [decoy]
    assert count(db, "memories") == 2  # the table is still there


def test_content_hash_ignores_spacing_but_not_case(store: MemoryStore) -> None:
    first = store.add("Invoice  due\n15 May", "fact", "global", BY_HAND)
    assert content_hash(" Invoice due 15 May ") == first.content_hash
    assert content_hash("invoice due 15 may") != first.content_hash
    assert store.find_by_hash(content_hash("Invoice due 15 May"), "global") == [first]
    assert store.find_by_hash(content_hash("Invoice due 15 May"), "agent:x") == []


# -- persistence, privacy ------------------------------------------------------------
def test_memories_and_vectors_persist_across_reopen(db_path: Path) -> None:
    with Database.open(db_path) as first:
        store = MemoryStore(first)
        added = store.add("kept", "fact", "global", BY_HAND, vector=Embedding.of("m", [1, 2]))
        store.update(added.memory_id, "kept, v2", BY_HAND)
        history = store.history(added.memory_id)

    with Database.open(db_path) as second:
        reopened = MemoryStore(second)
        assert reopened.history(added.memory_id) == history
        assert reopened.vectors("m").version_ids == []
        with pytest.raises(VectorDimensionError):
            reopened.set_vector(history[-1].id, "m", [1, 2, 3])


def test_reprs_and_logs_never_carry_text(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="soloist.memory"):
        added = store.add(SECRET, "note", "global", BY_HAND, vector=Embedding.of("m", [1.0]))
        store.update(added.memory_id, SECRET + "!", BY_HAND)
    assert SECRET not in repr(added)
    assert SECRET not in repr(store.history(added.memory_id))
    assert SECRET not in caplog.text
    assert added.memory_id in caplog.text
    assert f"chars={len(SECRET)}" in repr(added)


def test_errors_survive_pickling() -> None:
    errors: list[StoreError] = [
        MemoryNotFoundError("m"),
        MemoryVersionNotFoundError("3 of memory m"),
        MemoryDeletedError("m"),
        MemoryConflictError("m", 1, 2),
        VectorDimensionError("mini", 384, 768),
    ]
    for error in errors:
        assert str(pickle.loads(pickle.dumps(error))) == str(error)
