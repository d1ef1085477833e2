"""Ingestion of document folders: real DuckDB files, real parsing, two embedders.

The happy path runs the real all-MiniLM-L6-v2 (loaded once for the module).
The logic-heavy tests (incremental runs, dedupe, cancel, kill) use
``HashEmbedder``: deterministic vectors from each text's hash, a call log,
and an optional delay per batch, so they are quick and exact about what was
embedded. Every bad input of the issue is built in tmp_path.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_documents import make_docx, make_email, make_pdf, para, rewrite_pdf

from app.engine.embeddings import SentenceTransformerEmbedder
from app.memory.db import Database
from app.memory.documents import ParsedDocument, UnreadableDocumentError, parse_file
from app.memory.errors import (
    IngestBusyError,
    IngestEmbeddingError,
    IngestSourceError,
    IngestSourceNotFoundError,
    StoreError,
)
from app.memory.ingest import IngestOptions, Ingestor
from app.memory.ingest_types import (
    FileStatus,
    IngestFile,
    IngestProgress,
    IngestReport,
    ProgressMeter,
    RunStatus,
)
from app.memory.ingest_walk import Action, FoundFile, decide, walk_folder
from app.memory.longterm import MemoryStore
from app.memory.provenance import Provenance

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SECRET = "Zanzibar-7734"

# Paragraphs on distinct topics; each ~250 characters, so four make a chunk.
TOPICS = (
    "The wedding cake for the Okafor family is three tiers of lemon sponge with "
    "elderflower buttercream, to be delivered to the town hall on Saturday at ten.",
    "Flour arrives from the mill every Tuesday; last week the delivery was two "
    "sacks short and the supplier promised a credit note on the next invoice.",
    "The sourdough starter is fed twice a day with equal weights of rye flour and "
    "water, and it is kept in the cool pantry beside the proving baskets.",
    "Customers who order forty croissants or more for an office breakfast get a "
    "ten percent discount and free delivery within the ring road.",
    "The shop closes at six on weekdays and at two on Saturdays; on public "
    "holidays it opens only in the morning for pre-ordered bread.",
    "Our insurance renews in April; the broker asked for the new oven's serial "
    "number and the electrician's safety certificate before then.",
)


def prose(seed: int, paragraphs: int = 8) -> str:
    """Deterministic text: distinct numbered paragraphs of varied words."""
    rng = np.random.default_rng(seed)
    words = ["alpha", "bread", "cake", "delivery", "flour", "invoice", "oven", "order"]
    words += ["rye", "shop", "supplier", "tuesday"]
    out = []
    for p in range(paragraphs):
        body = " ".join(str(w) for w in rng.choice(words, size=40))
        out.append(f"Paragraph {seed}-{p}: {body}.")
    return "\n\n".join(out)


class HashEmbedder:
    """An Embedder whose vectors come from each text's sha256; it logs what it embeds."""

    def __init__(
        self,
        model_name: str = "hash-16",
        dimension: int = 16,
        delay_s: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model_name = model_name
        self.dimension = dimension
        self.delay_s = delay_s
        self.on_batch = on_batch
        self.batches: list[list[str]] = []

    @property
    def texts(self) -> list[str]:
        return [text for batch in self.batches for text in batch]

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.on_batch is not None:
            self.on_batch(len(self.batches))
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> list[float]:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        values = np.random.default_rng(seed).normal(size=self.dimension)
        return [float(x) for x in values / np.linalg.norm(values)]


class CountingParser:
    """``parse_file`` that counts its calls per file name."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path: str, **kwargs: Any) -> ParsedDocument:
        self.calls.append(Path(path).name)
        return parse_file(path, **kwargs)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    return folder


@pytest.fixture
def store(db: Database) -> MemoryStore:
    return MemoryStore(db)


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def parser() -> CountingParser:
    return CountingParser()


@pytest.fixture
def ingestor(
    store: MemoryStore, db: Database, embedder: HashEmbedder, parser: CountingParser
) -> Ingestor:
    return Ingestor(store, db, embedder, options=IngestOptions(batch_size=4), parse=parser)


def write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def files_by_name(ingestor: Ingestor, source_id: str) -> dict[str, IngestFile]:
    return {Path(f.path).name: f for f in ingestor.files(source_id)}


def live_chunk_count(db: Database) -> int:
    row = db.fetchone(
        "SELECT count(*) FROM memory_versions v JOIN memories m ON m.id = v.memory_id "
        "WHERE m.kind = 'document_chunk' AND v.valid_to IS NULL AND NOT v.tombstone"
    )
    assert row is not None
    return int(row[0])


def assert_consistent(db: Database, model: str) -> None:
    """No duplicate live chunks; every indexed file whole; nothing else linked."""
    duplicates = db.fetchall(
        """
        SELECT m.scope, v.content_hash, count(*) FROM memory_versions v
        JOIN memories m ON m.id = v.memory_id
        WHERE m.kind = 'document_chunk' AND v.valid_to IS NULL AND NOT v.tombstone
        GROUP BY ALL HAVING count(*) > 1
        """
    )
    assert duplicates == []
    files = db.fetchall(
        """
        SELECT f.path, f.status, f.chunk_count, count(c.seq),
               count(v.id) FILTER (WHERE NOT v.tombstone AND x.version_id IS NOT NULL)
        FROM ingest_files f
        LEFT JOIN ingest_chunks c ON c.source_id = f.source_id AND c.path = f.path
        LEFT JOIN memory_versions v ON v.memory_id = c.memory_id AND v.valid_to IS NULL
        LEFT JOIN memory_vectors x ON x.version_id = v.id AND x.model = ?
        GROUP BY ALL
        """,
        [model],
    )
    for path, status, chunk_count, links, live_with_vector in files:
        if status == "indexed":
            assert links == chunk_count > 0, path
            assert live_with_vector == chunk_count, path  # each link: live, with a vector
        else:
            assert links == 0 and chunk_count == 0, path


# ---------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def minilm() -> Iterator[SentenceTransformerEmbedder]:
    model = SentenceTransformerEmbedder()
    model.load()
    yield model


@pytest.mark.slow
def test_every_format_is_indexed_and_found_by_meaning(
    db: Database, store: MemoryStore, docs: Path, minilm: SentenceTransformerEmbedder
) -> None:
    write(docs, "cake.md", f"# Wedding cake\n\n{TOPICS[0]}")
    write(docs, "flour.txt", TOPICS[1])
    write(docs, "starter.html", f"<html><title>Starter</title><body><p>{TOPICS[2]}</p></body>")
    write(docs, "sub/croissants.docx", make_docx(para(TOPICS[3])))
    write(docs, "hours.pdf", make_pdf([TOPICS[4][:80], TOPICS[4][80:]]))
    write(docs, "mail.eml", make_email())
    ingestor = Ingestor(store, db, minilm)
    source = ingestor.add_source(docs)

    report = ingestor.run(source.id)

    assert report.status is RunStatus.SUCCEEDED
    assert (report.files_indexed, report.files_skipped) == (6, 0)
    assert report.chunks_added == report.texts_embedded == live_chunk_count(db) == 6
    assert store.embedding_dimension(minilm.model_name) == 384
    assert_consistent(db, minilm.model_name)
    vectors = store.vectors(minilm.model_name)
    assert vectors.matrix.shape == (6, 384)
    for question, expected in [
        ("When is the wedding cake delivered?", "cake.md"),
        ("Which supplier owes us a credit note?", "flour.txt"),
        ("What time does the shop close on Saturday?", "hours.pdf"),
        ("discount for a big croissant order", "croissants.docx"),
    ]:
        query = np.asarray(minilm.embed([question])[0], dtype=np.float32)
        best = vectors.memory_ids[int(np.argmax(vectors.matrix @ query))]
        found = store.get(best)
        assert found is not None and found.provenance.source_file is not None
        assert Path(found.provenance.source_file).name == expected, question
        assert found.kind == "document_chunk" and found.provenance.tool == "ingest"
    pdf_link = db.fetchone("SELECT page FROM ingest_chunks WHERE path LIKE '%hours.pdf'")
    assert pdf_link == (1,)


# ---------------------------------------------------------------- bad inputs


def test_every_bad_input_is_skipped_with_its_reason_and_the_run_finishes(
    ingestor: Ingestor, store: MemoryStore, db: Database, docs: Path, embedder: HashEmbedder
) -> None:
    write(docs, "good.md", prose(1))
    write(docs, "corrupt.pdf", b"%PDF-1.7\n" + os.urandom(4096))
    write(docs, "locked.pdf", rewrite_pdf(make_pdf(["Secret terms"]), user_password="hunter2"))
    write(docs, "binary.txt", bytes(range(256)) * 64)
    write(docs, "empty.txt", b"")
    write(docs, "blank.md", b"  \n\n\t \n")
    write(docs, "legacy.txt", "Café crème brûlée, 12€ the slice.".encode("cp1252"))
    write(docs, "photo.jpg", b"\xff\xd8\xff\xe0 not really")
    huge = docs / "huge.txt"
    with huge.open("wb") as fh:
        fh.truncate(200 * 2**20)  # sparse: 200 MB that take no disk
    source = ingestor.add_source(docs)

    report = ingestor.run(source.id)

    assert report.status is RunStatus.SUCCEEDED
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons == {
        "corrupt.pdf": "corrupt",
        "locked.pdf": "encrypted",
        "binary.txt": "binary",
        "empty.txt": "empty",
        "blank.md": "empty",
        "huge.txt": "too_large",
        "photo.jpg": "unsupported",
    }
    rows = files_by_name(ingestor, source.id)
    for name, reason in reasons.items():
        assert rows[name].status is FileStatus.SKIPPED
        assert rows[name].reason == reason
        assert rows[name].detail is not None and rows[name].detail.startswith(f"Skipped {docs}")
    assert rows["good.md"].status is rows["legacy.txt"].status is FileStatus.INDEXED
    legacy = [m for m in store.current() if "crème" in m.text]
    assert legacy and "12€" in legacy[0].text  # cp1252 read as such, not refused
    assert report.files_indexed == 2
    assert_consistent(db, embedder.model_name)


def test_unchanged_bad_files_are_not_read_again_but_unreadable_ones_are(
    store: MemoryStore, db: Database, docs: Path
) -> None:
    write(docs, "binary.txt", bytes(range(256)) * 8)
    write(docs, "locked.txt", prose(2))
    locked = True  # as another program holding it open on Windows: the OS refuses the read
    calls: list[str] = []

    def parse(path: str, **kwargs: Any) -> ParsedDocument:
        calls.append(Path(path).name)
        if locked and path.endswith("locked.txt"):
            raise UnreadableDocumentError(path, "Permission denied")
        return parse_file(path, **kwargs)

    ingestor = Ingestor(store, db, HashEmbedder(), parse=parse)
    source = ingestor.add_source(docs)
    first = ingestor.run(source.id)
    assert {s.reason for s in first.skipped} == {"binary", "unreadable"}
    calls.clear()
    ingestor.run(source.id)
    assert calls == ["locked.txt"]  # a lock may go away; binary stays binary
    locked = False
    third = ingestor.run(source.id)
    assert files_by_name(ingestor, source.id)["locked.txt"].status is FileStatus.INDEXED
    assert third.files_indexed == 1


# ---------------------------------------------------------------- dedupe


def test_duplicate_content_under_two_names_shares_its_chunks(
    ingestor: Ingestor, db: Database, store: MemoryStore, docs: Path, embedder: HashEmbedder
) -> None:
    text = prose(3, paragraphs=12)
    write(docs, "a-original.md", text)
    write(docs, "b-copy.txt", "\n\n".join(text.split("\n\n")))  # same text, other format
    source = ingestor.add_source(docs)

    report = ingestor.run(source.id)

    rows = files_by_name(ingestor, source.id)
    chunks = rows["a-original.md"].chunk_count
    assert chunks > 1 and rows["b-copy.txt"].chunk_count == chunks
    assert report.chunks_added == live_chunk_count(db) == chunks
    assert report.chunks_reused == chunks
    assert len(embedder.texts) == len(set(embedder.texts)) == chunks  # each text once
    links = db.fetchall("SELECT path, memory_id FROM ingest_chunks ORDER BY path, seq")
    by_file: dict[str, list[str]] = {}
    for path, memory_id in links:
        by_file.setdefault(Path(path).name, []).append(memory_id)
    assert by_file["a-original.md"] == by_file["b-copy.txt"]
    first = store.get(by_file["b-copy.txt"][0])
    assert first is not None and first.provenance.source_file == str(docs / "a-original.md")

    (docs / "a-original.md").unlink()
    ingestor.run(source.id)
    assert live_chunk_count(db) == chunks  # still held by the copy
    (docs / "b-copy.txt").unlink()
    gone = ingestor.run(source.id)
    assert (gone.files_removed, gone.chunks_removed, live_chunk_count(db)) == (1, chunks, 0)
    assert_consistent(db, embedder.model_name)


# ---------------------------------------------------------------- incremental


def test_unchanged_files_are_not_read_and_touched_ones_not_embedded(
    ingestor: Ingestor, docs: Path, parser: CountingParser, embedder: HashEmbedder, db: Database
) -> None:
    for i in range(3):
        write(docs, f"doc{i}.md", prose(10 + i))
    source = ingestor.add_source(docs)
    ingestor.run(source.id)
    versions = db.fetchone("SELECT count(*) FROM memory_versions")
    parser.calls.clear()
    embedded = len(embedder.texts)

    again = ingestor.run(source.id)

    assert (again.files_unchanged, again.files_indexed, parser.calls) == (3, 0, [])
    assert len(embedder.texts) == embedded
    touched = docs / "doc1.md"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    third = ingestor.run(source.id)
    assert parser.calls == ["doc1.md"]  # read to see it is the same text...
    assert third.files_unchanged == 3 and len(embedder.texts) == embedded  # ...and no more
    assert db.fetchone("SELECT count(*) FROM memory_versions") == versions


def test_a_changed_file_is_rechunked_keeping_its_unchanged_chunks_and_history(
    ingestor: Ingestor, store: MemoryStore, docs: Path, embedder: HashEmbedder, db: Database
) -> None:
    paragraphs = prose(20, paragraphs=16).split("\n\n")
    path = write(docs, "notes.md", "\n\n".join(paragraphs))
    source = ingestor.add_source(docs)
    ingestor.run(source.id)
    before = {link[0]: link[1] for link in _links(db)}
    assert len(before) > 3
    embedded = len(embedder.texts)

    paragraphs[-1] = "A new closing paragraph about the spring menu and its prices."
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    report = ingestor.run(source.id)

    after = {link[0]: link[1] for link in _links(db)}
    kept = set(before.values()) & set(after.values())
    gone = set(before.values()) - set(after.values())
    assert len(kept) == len(before) - 1 and len(gone) == 1  # only the last chunk changed
    assert report.chunks_added == 1 and report.chunks_removed == 1
    assert len(embedder.texts) == embedded + 1
    (old_id,) = gone
    assert store.get(old_id) is None
    history = store.history(old_id)
    assert [v.op.value for v in history] == ["add", "delete"]
    assert history[-1].provenance.source_file == str(path)
    assert history[-1].provenance.run_id == report.run_id
    assert_consistent(db, embedder.model_name)


def test_a_deleted_file_has_its_memories_tombstoned(
    ingestor: Ingestor, store: MemoryStore, docs: Path, db: Database
) -> None:
    write(docs, "keep.md", prose(30))
    doomed = write(docs, "doomed.md", prose(31))
    source = ingestor.add_source(docs)
    ingestor.run(source.id)
    doomed_ids = [
        m for p, m in db.fetchall("SELECT path, memory_id FROM ingest_chunks") if "doomed" in p
    ]
    doomed.unlink()

    report = ingestor.run(source.id)

    assert (report.files_removed, report.chunks_removed) == (1, len(doomed_ids))
    assert files_by_name(ingestor, source.id)["doomed.md"].status is FileStatus.REMOVED
    for memory_id in doomed_ids:
        assert store.get(memory_id) is None
        assert store.history(memory_id)[-1].tombstone
    write(docs, "doomed.md", prose(31))
    back = ingestor.run(source.id)
    assert back.files_indexed == 1 and back.chunks_added == len(doomed_ids)


def test_a_missing_folder_leaves_its_memories_alone(
    ingestor: Ingestor, docs: Path, db: Database
) -> None:
    write(docs, "a.md", prose(40))
    source = ingestor.add_source(docs)
    ingestor.run(source.id)
    live = live_chunk_count(db)
    docs.rename(docs.with_name("unplugged"))

    report = ingestor.run(source.id)

    assert report.sources_missing == (source.root,)
    assert report.files_removed == 0 and live_chunk_count(db) == live
    assert files_by_name(ingestor, source.id)["a.md"].status is FileStatus.INDEXED


# ---------------------------------------------------------------- cancel and kill


def test_cancel_mid_run_then_resume_finishes_without_duplicates(
    store: MemoryStore, db: Database, docs: Path
) -> None:
    for i in range(12):
        write(docs, f"doc{i:02}.md", prose(50 + i, paragraphs=6))
    cancel = threading.Event()
    embedder = HashEmbedder(on_batch=lambda n: cancel.set() if n == 3 else None)
    ingestor = Ingestor(store, db, embedder, options=IngestOptions(batch_size=4))
    source = ingestor.add_source(docs)

    stopped = ingestor.run(source.id, cancel=cancel)

    assert stopped.status is RunStatus.CANCELLED
    assert len(embedder.batches) == 3  # nothing embedded after the cancel was seen
    assert 0 < stopped.files_indexed < 12
    assert_consistent(db, embedder.model_name)
    statuses = [f.status for f in ingestor.files(source.id)]
    assert statuses.count(FileStatus.PENDING) == 12 - stopped.files_indexed

    resumed = ingestor.run(source.id)

    assert resumed.status is RunStatus.SUCCEEDED
    assert resumed.files_indexed == 12 - stopped.files_indexed
    assert resumed.files_unchanged == stopped.files_indexed
    assert all(f.status is FileStatus.INDEXED for f in ingestor.files(source.id))
    assert_consistent(db, embedder.model_name)
    unique = db.fetchone("SELECT count(DISTINCT chunk_sha256) FROM ingest_chunks")
    assert unique == (live_chunk_count(db),)


KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_ingest import HashEmbedder
from app.memory.db import Database
from app.memory.ingest import IngestOptions, Ingestor
from app.memory.longterm import MemoryStore

db = Database.open({db!r})
ingestor = Ingestor(MemoryStore(db), db, HashEmbedder(delay_s=0.15),
                    options=IngestOptions(batch_size=3, progress_interval_s=0.0))
source = ingestor.add_source({root!r})
ingestor.run(source.id, progress=lambda p: print("done", p.files_done, flush=True))
print("finished", flush=True)
"""


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_with_nothing_half_written(tmp_path: Path, docs: Path) -> None:
    for i in range(30):
        write(docs, f"doc{i:02}.md", prose(100 + i, paragraphs=5))
    db_path = tmp_path / "killed.duckdb"
    script = KILLED_RUN.format(tests=str(TESTS), db=str(db_path), root=str(docs))
    with subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        try:
            for line in child.stdout:
                if line.startswith("done") and int(line.split()[1]) >= 6:
                    break
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with Database.open(db_path) as db:
        embedder = HashEmbedder()
        ingestor = Ingestor(MemoryStore(db), db, embedder)
        (source,) = ingestor.sources()
        indexed = [f for f in ingestor.files(source.id) if f.status is FileStatus.INDEXED]
        assert 6 <= len(indexed) < 30  # killed mid-way, with files done
        assert_consistent(db, embedder.model_name)  # none half-written, no duplicates
        assert db.fetchall("SELECT status FROM ingest_runs") == [("running",)]

        report = ingestor.run(source.id)

        assert report.status is RunStatus.SUCCEEDED
        assert report.files_unchanged == len(indexed)
        assert report.files_indexed == 30 - len(indexed)
        assert all(f.status is FileStatus.INDEXED for f in ingestor.files(source.id))
        assert_consistent(db, embedder.model_name)
        statuses = sorted(row[0] for row in db.fetchall("SELECT status FROM ingest_runs"))
        assert statuses == ["interrupted", "succeeded"]


def test_an_embedder_failure_stops_the_run_and_keeps_what_was_written(
    store: MemoryStore, db: Database, docs: Path
) -> None:
    for i in range(6):
        write(docs, f"doc{i}.md", prose(200 + i, paragraphs=6))

    def fail_third(n: int) -> None:
        if n == 3:
            raise RuntimeError("engine went away")

    embedder = HashEmbedder(on_batch=fail_third)
    ingestor = Ingestor(store, db, embedder, options=IngestOptions(batch_size=4))
    source = ingestor.add_source(docs)
    with pytest.raises(IngestEmbeddingError) as caught:
        ingestor.run(source.id)
    assert "RuntimeError" in str(caught.value) and "next run continues" in str(caught.value)
    assert db.fetchone("SELECT status, error FROM ingest_runs")[0] == "failed"  # type: ignore[index]
    assert_consistent(db, embedder.model_name)

    embedder.on_batch = None
    assert ingestor.run(source.id).status is RunStatus.SUCCEEDED
    assert_consistent(db, embedder.model_name)


# ---------------------------------------------------------------- models, progress, guards


def test_a_new_embedding_model_reembeds_existing_chunks(
    store: MemoryStore, db: Database, docs: Path
) -> None:
    for i in range(3):
        write(docs, f"doc{i}.md", prose(300 + i))
    old = HashEmbedder("hash-old", 16)
    source = Ingestor(store, db, old).add_source(docs)
    first = Ingestor(store, db, old).run(source.id)
    new = HashEmbedder("hash-new", 8)

    report = Ingestor(store, db, new, options=IngestOptions(batch_size=5)).run(source.id)

    assert report.files_unchanged == 3 and report.chunks_added == 0
    assert report.vectors_added == first.chunks_added == len(new.texts)
    assert store.vectors("hash-new").matrix.shape == (first.chunks_added, 8)
    assert store.vectors("hash-old").matrix.shape == (first.chunks_added, 16)
    assert_consistent(db, "hash-new")

    store.add("The owner's birthday is in May.", "fact", "global", Provenance())
    newest = HashEmbedder("hash-newest", 4)
    assert Ingestor(store, db, newest).embed_missing() == first.chunks_added + 1
    assert store.versions_missing_vectors("hash-newest") == []


def test_progress_events_are_throttled_named_and_end_with_a_final_one(
    store: MemoryStore, db: Database, docs: Path
) -> None:
    for i in range(8):
        write(docs, f"doc{i}.md", prose(400 + i, paragraphs=4))
    write(docs, "skip.bin.txt", b"\x00\x01" * 100)
    events: list[IngestProgress] = []
    ingestor = Ingestor(
        store,
        db,
        HashEmbedder(delay_s=0.03),
        options=IngestOptions(batch_size=2, progress_interval_s=0.1),
    )
    source = ingestor.add_source(docs)

    report = ingestor.run(source.id, progress=events.append)

    assert len(events) >= 3
    *running, final = events
    assert final.final and not any(e.final for e in running)
    assert final.files_done == final.files_total == 9
    assert final.chunks_done == report.chunks_added + report.chunks_reused
    assert final.bytes_done == final.bytes_total > 0
    assert final.rate > 0 and final.eta_s == 0
    gaps = [b.elapsed_s - a.elapsed_s for a, b in itertools.pairwise(running)]
    assert all(gap >= 0.1 for gap in gaps)
    assert all(e.current in {"", *(f"doc{i}.md" for i in range(8)), "skip.bin.txt"} for e in events)
    assert [e.files_done for e in events] == sorted(e.files_done for e in events)


def test_progress_meter_eta_from_bytes() -> None:
    now = [0.0]
    meter = ProgressMeter("run", None, clock=lambda: now[0])
    meter.files_total, meter.bytes_total = 4, 1000
    now[0] = 2.0
    meter.file_done(250)
    meter.chunks(10)
    event = meter.snapshot(now[0])
    assert (event.files_done, event.chunks_done, event.rate) == (1, 10, 5.0)
    assert event.eta_s == pytest.approx(6.0)  # 750 bytes left at 125 bytes/s
    assert meter.snapshot(now[0], final=True).eta_s == 0.0


def test_a_second_run_while_one_is_going_is_refused(
    store: MemoryStore, db: Database, docs: Path
) -> None:
    write(docs, "a.md", prose(500))
    entered, release = threading.Event(), threading.Event()

    def block(_: int) -> None:
        entered.set()
        release.wait(10)

    ingestor = Ingestor(store, db, HashEmbedder(on_batch=block))
    source = ingestor.add_source(docs)
    results: list[IngestReport] = []
    worker = threading.Thread(target=lambda: results.append(ingestor.run(source.id)))
    worker.start()
    try:
        assert entered.wait(10)
        with pytest.raises(IngestBusyError):
            ingestor.run(source.id)
    finally:
        release.set()
        worker.join(10)
    assert results[0].status is RunStatus.SUCCEEDED


def test_sources_are_checked_and_registered_once(ingestor: Ingestor, docs: Path) -> None:
    first = ingestor.add_source(docs)
    assert ingestor.add_source(docs / ".") == first
    assert ingestor.sources() == [first]
    with pytest.raises(IngestSourceError, match="no such folder"):
        ingestor.add_source(docs / "nope")
    with pytest.raises(IngestSourceError, match="not a folder"):
        ingestor.add_source(write(docs, "file.md", "x"))
    with pytest.raises(ValueError, match="scope"):
        ingestor.add_source(docs, scope="everyone")
    with pytest.raises(IngestSourceNotFoundError):
        ingestor.run("no-such-source")
    with pytest.raises(ValueError, match="overlap_chars"):
        IngestOptions(max_chars=100, overlap_chars=60)
    with pytest.raises(ValueError, match="invalid ingest options"):
        IngestOptions(batch_size=0)


def test_every_source_runs_when_none_is_named(
    ingestor: Ingestor, tmp_path: Path, db: Database
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, "a.md", prose(600))
    write(two, "b.md", prose(601))
    sources = [ingestor.add_source(one), ingestor.add_source(two, scope="agent:bookkeeper")]

    report = ingestor.run()

    assert report.source_ids == tuple(s.id for s in sources)
    assert report.files_indexed == 2
    scopes = {row[0] for row in db.fetchall("SELECT scope FROM memories")}
    assert scopes == {"global", "agent:bookkeeper"}


def test_errors_are_readable_and_survive_pickling() -> None:
    errors: list[StoreError] = [
        IngestSourceError("/x", "no such folder"),
        IngestSourceNotFoundError("abc"),
        IngestBusyError("run1"),
        IngestEmbeddingError("hash-16", "RuntimeError"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert str(error).endswith(".") and "\n" not in str(error)


def test_logs_carry_no_text_or_file_names(
    ingestor: Ingestor, docs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(docs, f"{SECRET}.md", f"{SECRET} {prose(700)}")
    write(docs, f"{SECRET}.txt", b"\x00" * 10)
    source = ingestor.add_source(docs)
    with caplog.at_level(logging.DEBUG, logger="soloist"):
        ingestor.run(source.id)
        (docs / f"{SECRET}.md").unlink()
        ingestor.run(source.id)
    assert caplog.records
    assert not [r for r in caplog.records if SECRET in r.getMessage()]


# ---------------------------------------------------------------- walking


def test_walk_skips_hidden_entries_and_ends_symlink_loops(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "a.md", "a")
    write(root, "sub/b.txt", "b")
    write(root, ".git/config.txt", "hidden")
    write(root, ".notes.md", "hidden")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "sub" / "again").symlink_to(root / "sub", target_is_directory=True)
    outside = write(tmp_path / "elsewhere", "c.md", "c")
    (root / "linked").symlink_to(outside.parent, target_is_directory=True)
    (root / "dangling.md").symlink_to(tmp_path / "missing.md")
    os.mkfifo(root / "pipe.txt")

    found = [Path(f.path).relative_to(root).as_posix() for f in walk_folder(root)]

    assert found == ["a.md", "linked/c.md", "sub/b.txt"]


def found_file(name: str = "a.md", size: int = 10, mtime_ns: int = 5) -> FoundFile:
    return FoundFile(f"/r/{name}", size, mtime_ns)


def stored_row(
    status: FileStatus, reason: str | None = None, size: int = 10, mtime_ns: int = 5
) -> IngestFile:
    return IngestFile("s", "/r/a.md", size, mtime_ns, "h", status, reason, None, 0, "run")


@pytest.mark.parametrize(
    ("found", "stored", "action"),
    [
        (found_file(), None, Action.INDEX),
        (found_file(), stored_row(FileStatus.INDEXED), Action.UNCHANGED),
        (found_file(size=11), stored_row(FileStatus.INDEXED), Action.INDEX),
        (found_file(mtime_ns=6), stored_row(FileStatus.INDEXED), Action.INDEX),
        (found_file(), stored_row(FileStatus.PENDING), Action.INDEX),
        (found_file(), stored_row(FileStatus.REMOVED), Action.INDEX),
        (found_file(), stored_row(FileStatus.SKIPPED, "corrupt"), Action.UNCHANGED),
        (found_file(), stored_row(FileStatus.SKIPPED, "unreadable"), Action.INDEX),
        (found_file(size=11), stored_row(FileStatus.SKIPPED, "corrupt"), Action.INDEX),
        (found_file("a.jpg"), None, Action.UNSUPPORTED),
        (found_file("a.jpg"), stored_row(FileStatus.SKIPPED, "unsupported"), Action.UNCHANGED),
        (found_file("a.jpg", size=3), stored_row(FileStatus.SKIPPED), Action.UNSUPPORTED),
        (found_file("a.jpg"), stored_row(FileStatus.INDEXED), Action.UNSUPPORTED),
        (found_file("README"), None, Action.UNSUPPORTED),
    ],
)
def test_decide(found: FoundFile, stored: IngestFile | None, action: Action) -> None:
    assert decide(found, stored) is action


def _links(db: Database) -> list[tuple[int, str]]:
    return [(int(r[0]), r[1]) for r in db.fetchall("SELECT seq, memory_id FROM ingest_chunks")]
