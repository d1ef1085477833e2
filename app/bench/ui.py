"""Scenarios 13-16: how the desktop app feels, measured on the real app.

13. Cold start to first paint: ``python -m app`` is started in a fresh data
    directory under the offscreen platform, and reports ``soloist: first
    paint after N ms`` (:mod:`app.ui.first_paint`: process start to the main
    window's first paint event). Each run is a new process and a new data
    directory; the value is the median.
14. Event-loop lag p99 while the engine generates four streams and a folder
    is indexed: the engine runs in its child process (as in the app), four
    worker threads of this process each keep one stream going, and the
    ingestion of scenario 12's corpus embeds in the same child; meanwhile
    this process runs a Qt event loop with scenario 12's 10 ms timer.
15. Idle CPU: after the first run of 13 is ready and has settled, its
    process CPU time (user + system, all threads, from ``/proc/<pid>/stat``)
    over ``IDLE_S`` of wall time, in percent of one core.
16. Resident memory without a model: that process's ``VmRSS`` at the end of
    the idle window, plus any child processes it started.

13, 15 and 16 share one app process (``bench.cache``); they need no model.
Linux only (``/proc``); elsewhere they report ``n/a``.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.bench.ingest import QUICK_FILES, LagProbe, lag_summary, write_corpus
from app.bench.report import ScenarioResult
from app.bench.session import Bench
from app.bench.workload import stream_prompt

FIRST_PAINT_RE = re.compile(r"soloist: first paint after (\d+(?:\.\d+)?) ms")
READY = "soloist: ready"
START_TIMEOUT_S = 60.0
SETTLE_S = 2.0
IDLE_S = 10.0
QUICK_IDLE_S = 2.0
RUNS, QUICK_RUNS = 3, 1
STREAMS = 4
INGEST_FILES = 60

# -- pure parsers --------------------------------------------------------------


def first_paint_ms(line: str) -> float | None:
    match = FIRST_PAINT_RE.search(line)
    return float(match.group(1)) if match else None


def cpu_ticks(stat_text: str) -> int:
    """utime + stime of one ``/proc/<pid>/stat`` (fields 14 and 15, after the name)."""
    fields = stat_text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_bytes(status_text: str) -> int:
    """``VmRSS`` of one ``/proc/<pid>/status``, in bytes."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no VmRSS line")


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text(encoding="ascii").split()]
    return found


# -- the app in a subprocess ------------------------------------------------------


@dataclass
class AppRun:
    """One started app: its stderr lines as they came, and when."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    painted: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append(line.rstrip("\n"))
            if first_paint_ms(line) is not None:
                self.painted.set()
            if READY in line:
                self.ready.set()

    @property
    def first_paint_ms(self) -> float | None:
        values = [v for v in map(first_paint_ms, self.lines) if v is not None]
        return values[0] if values else None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def start_app(home: Path) -> AppRun:
    env = os.environ | {"SOLOIST_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    popen = subprocess.Popen(
        [sys.executable, "-m", "app"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    run = AppRun(popen)
    threading.Thread(target=run.read, name="bench-app-stderr", daemon=True).start()
    return run


def _wait(event: threading.Event, run: AppRun, what: str) -> None:
    if not event.wait(START_TIMEOUT_S):
        tail = "; ".join(run.lines[-3:])
        raise RuntimeError(f"the app did not report {what} in {START_TIMEOUT_S:.0f} s: {tail}")


def idle_numbers(pid: int, seconds: float) -> dict[str, float]:
    """CPU share and memory of ``pid`` (and its children) over ``seconds`` doing nothing."""
    stat = Path(f"/proc/{pid}/stat")
    ticks_before, started = cpu_ticks(stat.read_text(encoding="ascii")), time.monotonic()
    time.sleep(seconds)
    ticks_after, wall = cpu_ticks(stat.read_text(encoding="ascii")), time.monotonic() - started
    cpu_s = (ticks_after - ticks_before) / os.sysconf("SC_CLK_TCK")
    rss = rss_bytes(Path(f"/proc/{pid}/status").read_text(encoding="ascii"))
    children = sum(
        rss_bytes(Path(f"/proc/{c}/status").read_text(encoding="ascii")) for c in child_pids(pid)
    )
    return {
        "idle_s": wall,
        "cpu_s": cpu_s,
        "cpu_percent": 100 * cpu_s / wall,
        "rss_mb": rss / 1e6,
        "children_rss_mb": children / 1e6,
    }


def measure_app(runs: int, idle_s: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """Start the app ``runs`` times; first paint of each, idle numbers of the first."""
    paints: list[float] = []
    idle: dict[str, float] = {}
    for index in range(runs):
        with tempfile.TemporaryDirectory(prefix="soloist-bench-app-") as home:
            run = start_app(Path(home))
            try:
                _wait(run.painted, run, "its first paint")
                _wait(run.ready, run, "ready")
                paints.append(run.first_paint_ms or 0.0)
                if index == 0:
                    time.sleep(SETTLE_S)
                    idle = idle_numbers(run.popen.pid, idle_s)
            finally:
                run.stop()
        progress(f"  app start {index + 1}/{runs}: first paint {paints[-1]:.0f} ms")
    return {"first_paint_ms": paints, "idle": idle}


def _app(bench: Bench) -> dict[str, Any]:
    if "ui_app" not in bench.cache:
        quick = bench.workload.options.quick
        bench.cache["ui_app"] = measure_app(
            QUICK_RUNS if quick else RUNS, QUICK_IDLE_S if quick else IDLE_S, bench.progress
        )
    app: dict[str, Any] = bench.cache["ui_app"]
    return app


def _linux_only(number: int, title: str) -> ScenarioResult | None:
    if Path("/proc/self/stat").exists():
        return None
    return ScenarioResult(number, title, "n/a", "", None, "n/a", notes=("needs Linux /proc",))


# -- the scenarios -----------------------------------------------------------------


def first_paint(bench: Bench) -> ScenarioResult:
    """13: cold start to the first painted window."""
    title = "cold start to first paint"
    if (skipped := _linux_only(13, title)) is not None:
        return skipped
    paints = _app(bench)["first_paint_ms"]
    median = statistics.median(paints)
    return ScenarioResult(
        13,
        title,
        f"median {median:.0f} ms of {len(paints)}",
        f"first {paints[0]:.0f} ms",
        median,
        f"{median:.0f} ms",
        {"measure": "python -m app, offscreen, fresh data dir each run", "runs_ms": paints},
    )


def idle_cpu(bench: Bench) -> ScenarioResult:
    """15: CPU share of the app doing nothing."""
    title = "idle CPU, no model"
    if (skipped := _linux_only(15, title)) is not None:
        return skipped
    idle = _app(bench)["idle"]
    return ScenarioResult(
        15,
        title,
        f"{idle['cpu_percent']:.2f} % of a core",
        f"{idle['cpu_s']:.3f} s CPU in {idle['idle_s']:.1f} s",
        idle["cpu_percent"],
        f"{idle['cpu_percent']:.2f} %",
        {"measure": "/proc/<pid>/stat utime+stime over wall time, after ready", **idle},
    )


def idle_memory(bench: Bench) -> ScenarioResult:
    """16: resident memory of the app with no model loaded."""
    title = "resident memory, no model"
    if (skipped := _linux_only(16, title)) is not None:
        return skipped
    idle = _app(bench)["idle"]
    total = idle["rss_mb"] + idle["children_rss_mb"]
    return ScenarioResult(
        16,
        title,
        f"{total:.0f} MB",
        f"app {idle['rss_mb']:.0f} MB + children {idle['children_rss_mb']:.0f} MB",
        total,
        f"{total:.0f} MB",
        {"measure": "VmRSS of the app and its child processes, idle", **idle},
    )


def lag_under_load(bench: Bench) -> ScenarioResult:
    """14: event-loop lag p99 while the engine child generates 4 streams and indexes a folder."""
    from app.memory.db import Database
    from app.memory.ingest import Ingestor
    from app.memory.longterm import MemoryStore

    engine = bench.process_engine
    embedder = engine.embedder()
    embedder.embed(["warm up the embedding model"])
    done, stop = threading.Event(), threading.Event()
    counts = [0] * STREAMS
    files = QUICK_FILES if bench.workload.options.quick else INGEST_FILES
    tokens = bench.workload.sizes.max_tokens

    def stream(index: int) -> None:
        while not stop.is_set():
            for _chunk in engine.generate(bench.workload.request(stream_prompt(index), tokens)):
                pass
            counts[index] += 1

    with tempfile.TemporaryDirectory(prefix="soloist-bench-lag-") as tmp:
        corpus = write_corpus(Path(tmp) / "docs", files)
        db = Database.open(Path(tmp) / "lag.duckdb")
        ingestor = Ingestor(MemoryStore(db), db, embedder)
        source = ingestor.add_source(corpus.folder)
        workers = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(STREAMS)]

        def ingest() -> None:
            try:
                ingestor.run(source.id)
            finally:
                done.set()

        for worker in workers:
            worker.start()
        threading.Thread(target=ingest, daemon=True).start()
        lateness = LagProbe().run(done)
        stop.set()
        for worker in workers:
            worker.join(60)
        db.close()
    return _lag_result(lag_summary(lateness), counts, corpus.files)


def _lag_result(lag: dict[str, float], counts: list[int], files: int) -> ScenarioResult:
    return ScenarioResult(
        14,
        "UI lag, 4 streams + ingestion",
        f"p99 {lag['p99']:.1f} ms (p50 {lag['p50']:.1f}, max {lag['max']:.1f})",
        f"{sum(counts)} requests done, {files} files indexed",
        lag["p99"],
        f"{lag['p99']:.1f} ms",
        {
            "measure": (
                "10 ms precise QTimer in this process's event loop while the engine child "
                f"generates {STREAMS} streams (one worker thread each) and indexes a folder"
            ),
            "lag_ms": lag,
            "requests_per_stream": counts,
            "files": files,
        },
    )
