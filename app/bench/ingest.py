"""Scenario 12: ingestion throughput, and how late the UI's event loop runs meanwhile.

A seeded corpus of Markdown and text files is written to a temporary folder
and indexed into a fresh database there (never the office's), with the
default embedder (all-MiniLM-L6-v2), on a worker thread, as the office does.
Meanwhile this process runs a Qt event loop (``QCoreApplication``) with a
10 ms precise ``QTimer``; each firing records how much later than 10 ms
after the previous one it came. That lateness is what a window would feel:
its p99 is the scenario's value (goal: <= 50 ms).

It runs twice: with embeddings in the engine child process (as the office
runs them: ``ProcessEngine(...).embedder()``, so torch's CPU work stays out
of the UI process), then in this process. Models are loaded and warmed up
before each measurement, so no load is timed. Throughput is chunks written
per second of the run, and, comparable with the embedder's own figure in
sentences per second, the corpus's sentences over the same time.
"""

from __future__ import annotations

import math
import random
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.bench.report import ScenarioResult
from app.bench.session import Bench
from app.engine.embeddings import Embedder, SentenceTransformerEmbedder
from app.engine.errors import EngineError
from app.memory.db import Database
from app.memory.ingest import Ingestor
from app.memory.ingest_types import IngestReport
from app.memory.longterm import MemoryStore

TICK_MS = 10
FULL_FILES = 200
QUICK_FILES = 8
IDLE_S = 1.0

_WORDS = tuple(
    " ".join(
        (
            "invoice order customer supplier delivery bakery flour bread cake oven shop",
            "week monday friday price discount credit note account payment reminder",
            "meeting schedule owner staff holiday receipt tax quarter report stock",
            "sourdough croissant wedding birthday catering insurance broker contract",
        )
    ).split(" ")
)


@dataclass(frozen=True, slots=True)
class Corpus:
    folder: Path
    files: int
    sentences: int
    bytes: int


def write_corpus(folder: Path, files: int, seed: int = 12) -> Corpus:
    """``files`` Markdown and text files of varied paragraphs, the same for a seed."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sentences = size = 0
    for index in range(files):
        paragraphs = []
        for _ in range(rng.randint(1, 4)):
            count = rng.randint(2, 5)
            sentences += count
            paragraphs.append(" ".join(_sentence(rng) for _ in range(count)))
        if index % 2 == 0:
            text = f"# Note {index}\n\n" + "\n\n".join(paragraphs)
            path = folder / f"note-{index:03}.md"
        else:
            text = "\n\n".join(paragraphs)
            path = folder / f"memo-{index:03}.txt"
        path.write_text(text + "\n", encoding="utf-8")
        size += path.stat().st_size
    return Corpus(folder, files, sentences, size)


def lag_summary(values: list[float]) -> dict[str, float]:
    """Nearest-rank p50, p95 and p99, the max and the count of lateness samples (ms)."""
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": ordered[-1] if ordered else 0.0,
        "count": float(len(ordered)),
    }


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 20))]
    return " ".join(words).capitalize() + rng.choice(".!?.")


class LagProbe:
    """A Qt event loop with a 10 ms timer, run on this thread until ``done`` is set."""

    def __init__(self) -> None:
        from PySide6.QtCore import QCoreApplication

        self._app = QCoreApplication.instance() or QCoreApplication([])

    def run(self, done: threading.Event, at_least_s: float = 0.0) -> list[float]:
        """Lateness of each tick past 10 ms, in ms, until ``done`` (and ``at_least_s``)."""
        from PySide6.QtCore import QEventLoop, Qt, QTimer

        loop = QEventLoop()
        lateness: list[float] = []
        started = last = time.perf_counter()

        def tick() -> None:
            nonlocal last
            now = time.perf_counter()
            lateness.append(max(0.0, (now - last) * 1000 - TICK_MS))
            last = now
            if done.is_set() and now - started >= at_least_s:
                loop.quit()

        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(TICK_MS)
        timer.timeout.connect(tick)
        timer.start()
        loop.exec()
        timer.stop()
        return lateness


def measure(
    embedder: Embedder, corpus: Corpus, workdir: Path, probe: LagProbe, label: str
) -> dict[str, Any]:
    """Index ``corpus`` into a fresh database on a worker thread while ``probe`` runs."""
    db = Database.open(workdir / f"{label}.duckdb")
    try:
        ingestor = Ingestor(MemoryStore(db), db, embedder)
        source = ingestor.add_source(corpus.folder)
        done = threading.Event()
        outcome: list[IngestReport | BaseException] = []

        def work() -> None:
            try:
                outcome.append(ingestor.run(source.id))
            except BaseException as exc:  # handed to the bench thread, raised there
                outcome.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=work, name=f"bench-ingest-{label}")
        started = time.perf_counter()
        worker.start()
        lateness = probe.run(done)
        worker.join()
        wall = time.perf_counter() - started
    finally:
        db.close()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return _numbers(result, corpus, wall, lateness)


def _numbers(
    report: IngestReport, corpus: Corpus, wall: float, lateness: list[float]
) -> dict[str, Any]:
    chunks = report.chunks_added + report.chunks_reused
    return {
        "files": report.files_indexed,
        "chunks": chunks,
        "texts_embedded": report.texts_embedded,
        "run_s": report.elapsed_s,
        "wall_s": wall,
        "chunks_per_s": chunks / report.elapsed_s if report.elapsed_s else 0.0,
        "sentences_per_s": corpus.sentences / report.elapsed_s if report.elapsed_s else 0.0,
        "lag_ms": lag_summary(lateness),
    }


def ingestion(bench: Bench) -> ScenarioResult:
    """12: event-loop lag p99 while a folder is indexed, embeddings in the engine child."""
    quick = bench.workload.options.quick
    files = QUICK_FILES if quick else FULL_FILES
    with tempfile.TemporaryDirectory(prefix="soloist-bench-ingest-") as tmp:
        workdir = Path(tmp)
        corpus = write_corpus(workdir / "docs", files)
        probe = LagProbe()
        idle_done = threading.Event()
        idle_done.set()
        idle = probe.run(idle_done, at_least_s=IDLE_S / 4 if quick else IDLE_S)
        modes: dict[str, dict[str, Any]] = {}
        notes: list[str] = []
        try:
            modes["child"] = _child_mode(bench, corpus, workdir, probe)
        except EngineError as exc:
            notes.append(f"the engine child could not embed ({exc}); in-process only")
        modes["in_process"] = _in_process_mode(bench, corpus, workdir, probe)
    return _result(corpus, idle, modes, notes)


def _child_mode(bench: Bench, corpus: Corpus, workdir: Path, probe: LagProbe) -> dict[str, Any]:
    from app.engine.process.supervisor import ProcessConfig, ProcessEngine

    started = time.perf_counter()
    engine = ProcessEngine(ProcessConfig())
    try:
        embedder = engine.embedder()
        embedder.embed(["warm up the embedding model"])
        bench.progress(f"  engine child: embedder ready in {time.perf_counter() - started:.1f} s")
        return measure(embedder, corpus, workdir, probe, "child")
    finally:
        engine.close()


def _in_process_mode(
    bench: Bench, corpus: Corpus, workdir: Path, probe: LagProbe
) -> dict[str, Any]:
    started = time.perf_counter()
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up the embedding model"])
    bench.progress(f"  in-process embedder ready in {time.perf_counter() - started:.1f} s")
    return measure(embedder, corpus, workdir, probe, "in_process")


def _result(
    corpus: Corpus, idle: list[float], modes: dict[str, dict[str, Any]], notes: list[str]
) -> ScenarioResult:
    main_mode = "child" if "child" in modes else "in_process"
    main = modes[main_mode]
    p99 = float(main["lag_ms"]["p99"])
    where = "engine child" if main_mode == "child" else "in-process"
    local = modes["in_process"]
    notes = [
        *notes,
        f"{where}: {main['chunks_per_s']:.1f} chunks/s, {main['sentences_per_s']:.0f} corpus "
        f"sentences/s; event-loop lag p50 {main['lag_ms']['p50']:.1f} ms, max "
        f"{main['lag_ms']['max']:.1f} ms",
        f"in-process embeddings: lag p99 {local['lag_ms']['p99']:.1f} ms, "
        f"{local['chunks_per_s']:.1f} chunks/s",
        f"idle event loop: lag p99 {lag_summary(idle)['p99']:.1f} ms",
    ]
    return ScenarioResult(
        12,
        "ingestion, UI event-loop lag",
        f"p99 {p99:.1f} ms, {main['chunks_per_s']:.1f} chunks/s ({where})",
        f"idle p99 {lag_summary(idle)['p99']:.1f} ms",
        p99,
        f"{p99:.1f} ms",
        {
            "measure": (
                "a folder indexed on a worker thread (default embedder) while this process "
                f"runs a Qt event loop with a {TICK_MS} ms precise QTimer; lag = how much later "
                "than 10 ms after the previous tick each tick came; value: p99 with "
                f"embeddings in the {where}"
            ),
            "corpus": {"files": corpus.files, "sentences": corpus.sentences, "bytes": corpus.bytes},
            "embeddings_in": main_mode,
            "chunks_per_s": main["chunks_per_s"],
            "sentences_per_s": main["sentences_per_s"],
            "idle_lag_ms": lag_summary(idle),
            "modes": modes,
        },
        tuple(notes),
    )
