"""Scenarios 6-8: what the engine's process boundary costs, and how fast it comes back.

6. decode tokens/s seen by the caller, engine child / in-process engine
7. time to first token seen by the caller, engine child minus in-process (ms)
8. SIGKILL of the engine child during a session's decode until the first
   token of that session's next turn, model load reported apart

Both engines run the same requests, interleaved (ABBA), in one process.
Unlike scenarios 1-4, times here are taken on the caller's side around
``generate`` (``perf_counter`` at each chunk), because what the boundary
adds happens between the engine thread and the caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from app.bench.engine_side import run_request
from app.bench.report import ScenarioResult
from app.bench.runs import BenchError, StreamRun, median, ratio
from app.bench.session import Bench
from app.bench.workload import CONTEXT_TEXT, GREEDY, stream_prompt
from app.engine.errors import EngineRestartedError
from app.engine.process.supervisor import ProcessConfig, ProcessEngine
from app.engine.types import GenerateRequest, Message

CALLER_DECODE = (
    "caller side: tokens between the first and the last text chunk / the time between "
    "them, median over the runs"
)
CALLER_TTFT = "caller side: generate() called to first text chunk, median over the runs"


def caller_decode_tok_s(run: StreamRun) -> float:
    """Decode speed as the caller sees it (chunk arrival times, not engine timings)."""
    marks = run.marks[:-1]  # the last mark is the final chunk's
    if len(marks) < 2:
        return 0.0
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


def _pairs(bench: Bench) -> tuple[list[StreamRun], list[StreamRun]]:
    """The same request on both engines, ABBA, measured once for scenarios 6 and 7."""
    cached = bench.cache.get("process_pairs")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    w, sizes = bench.workload, bench.workload.sizes
    local, child = bench.engine, bench.process_engine
    request = w.request(stream_prompt(0), sizes.max_tokens)
    local_runs: list[StreamRun] = []
    child_runs: list[StreamRun] = []
    for r in range(max(sizes.stream_repeats, 4)):
        fresh = replace(request, request_id=f"{request.request_id}-{r}")
        if r % 2 == 0:
            local_runs.append(run_request(local, fresh))
        child_runs.append(run_request(child, replace(fresh, request_id=fresh.request_id + "c")))
        if r % 2 == 1:
            local_runs.append(run_request(local, replace(fresh, request_id=fresh.request_id + "l")))
    bench.cache["process_pairs"] = (local_runs, child_runs)
    return local_runs, child_runs


def process_decode(bench: Bench) -> ScenarioResult:
    """6: caller-side tokens/s through the child over in-process."""
    local_runs, child_runs = _pairs(bench)
    local = median([caller_decode_tok_s(x) for x in local_runs])
    child = median([caller_decode_tok_s(x) for x in child_runs])
    value = ratio(child, local)
    per_token_us = (1 / child - 1 / local) * 1e6 if child > 0 and local > 0 else None
    notes: tuple[str, ...] = ()
    if per_token_us is not None:
        notes = (f"the boundary adds {per_token_us:.0f} µs per token as the caller sees it",)
    return ScenarioResult(
        6,
        "process boundary, decode",
        f"child {child:.1f} tok/s",
        f"in-process {local:.1f} tok/s",
        value,
        "n/a" if value is None else f"{value:.2f}x",
        {
            "measure": CALLER_DECODE,
            "child_tok_s": child,
            "in_process_tok_s": local,
            "extra_us_per_token": per_token_us,
            "child_runs": [x.to_dict() for x in child_runs],
            "in_process_runs": [x.to_dict() for x in local_runs],
        },
        notes,
    )


def process_ttft(bench: Bench) -> ScenarioResult:
    """7: caller-side time to first token through the child minus in-process, in ms."""
    local_runs, child_runs = _pairs(bench)
    local = median([x.first_chunk_s or 0.0 for x in local_runs])
    child = median([x.first_chunk_s or 0.0 for x in child_runs])
    extra_ms = (child - local) * 1e3
    return ScenarioResult(
        7,
        "process boundary, TTFT",
        f"child {child * 1e3:.1f} ms",
        f"in-process {local * 1e3:.1f} ms",
        extra_ms,
        f"{extra_ms:+.1f} ms",
        {"measure": CALLER_TTFT, "child_ttft_s": child, "in_process_ttft_s": local},
    )


def restart_time(bench: Bench) -> ScenarioResult:
    """8: SIGKILL during a session's decode until its next turn's first token."""
    rounds = [_restart_round(bench, r) for r in range(1 if bench.workload.options.quick else 3)]
    totals = [x.total_s for x in rounds]
    loads = [x.load_s for x in rounds]
    restarts = [x.restart_s for x in rounds]
    healthy = [x.healthy_s for x in rounds]
    cached = [x.cached_tokens for x in rounds]
    total, load, turn = median(totals), median(loads), median(healthy)
    value = total - load
    return ScenarioResult(
        8,
        "restart after SIGKILL",
        f"{value:.2f} s + load {load:.2f} s",
        f"next token {total:.2f} s",
        value,
        f"{value:.2f} s",
        {
            "measure": (
                "SIGKILL of the child during a session's decode until the first text chunk of "
                "that session's next turn (caller side), minus the model's load time in the "
                "new child; median over the rounds"
            ),
            "total_s": totals,
            "model_load_s": loads,
            "process_restart_s": restarts,
            "healthy_next_turn_first_token_s": healthy,
            "cached_tokens": cached,
        },
        (
            f"restored {cached} prompt tokens from snapshots instead of prefilling them",
            f"of the {value:.2f} s, {turn:.2f} s is what the same next turn costs without a "
            f"crash (restore + prefill of its new words); the process restart took "
            f"{median(restarts):.2f} s",
        ),
    )


@dataclass(frozen=True, slots=True)
class _Round:
    total_s: float
    load_s: float
    restart_s: float
    healthy_s: float
    cached_tokens: int


def _turn(bench: Bench, session: str, history: list[Message], question: str) -> list[Message]:
    """One finished 8-token turn of ``session`` (snapshot on disk); the history to go on."""
    engine, model = bench.process_engine, bench.workload.model_path
    before = _snapshot_count(bench)
    reply = "".join(c.text for c in engine.generate(_session_request(model, session, history, 8)))
    _wait_snapshots(bench, before)
    return [*history, Message("assistant", reply), Message("user", question)]


def _restart_round(bench: Bench, r: int) -> _Round:
    engine, model = bench.process_engine, bench.workload.model_path
    system = Message("system", CONTEXT_TEXT * 4)
    late = "And what came late?"
    # Each round, and the twin, have their own words: an identical turn would
    # reuse another's snapshot (content-addressed) and write none.
    session = f"bench-session-{r}"
    history = _turn(bench, session, [system, Message("user", f"Round {r}: short?")], late)
    # The same kind of next turn on a twin session in a healthy child: the
    # restore and the prefill of the new words, which any next turn costs.
    twin = _turn(bench, f"{session}-twin", [system, Message("user", f"Twin {r}: short?")], late)
    healthy = _first_token_s(engine, _session_request(model, f"{session}-twin", twin, 4))
    stream = iter(engine.generate(_session_request(model, session, history, 4096)))
    next(stream)  # decoding now
    pid = engine.pid
    if pid is None:
        raise BenchError("the engine child is not running")
    killed_at = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(EngineRestartedError):
        for _ in stream:
            pass
    first_token_at = None
    final = None
    for chunk in engine.generate(_session_request(model, session, history, 4)):
        if chunk.text and first_token_at is None:
            first_token_at = time.perf_counter()
        final = chunk if chunk.is_final else final
    if first_token_at is None or final is None or final.timings is None:
        raise BenchError("the restored session produced no token")
    return _Round(
        total_s=first_token_at - killed_at,
        load_s=engine.load_seconds.get(model, 0.0),
        restart_s=engine.last_restart_s or 0.0,
        healthy_s=healthy,
        cached_tokens=final.timings.cached_tokens,
    )


def _first_token_s(engine: ProcessEngine, request: GenerateRequest) -> float:
    started = time.perf_counter()
    first = None
    for chunk in engine.generate(request):
        if chunk.text and first is None:
            first = time.perf_counter() - started
    if first is None:
        raise BenchError("the healthy next turn produced no token")
    return first


def _session_request(
    model: str, session: str, history: list[Message], max_tokens: int
) -> GenerateRequest:
    return GenerateRequest(
        model_path=model,
        messages=tuple(history),
        sampling=replace(GREEDY, max_tokens=max_tokens),
        session_id=session,
        agent_id="bench",
    )


def _snapshot_count(bench: Bench) -> int:
    folder = bench.snapshot_dir
    if folder is None:
        raise BenchError("the engine child has no snapshot folder")
    return len(list(folder.rglob("*.solokv"))) if folder.exists() else 0


def _wait_snapshots(bench: Bench, before: int, timeout: float = 30.0) -> None:
    """Snapshots are written on a background thread: wait until one more is on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _snapshot_count(bench) > before:
            return
        time.sleep(0.02)
    raise BenchError("the session's snapshot was not written")


def make_process_engine(bench: Bench) -> ProcessEngine:
    folder = Path(tempfile.mkdtemp(prefix="soloist-bench-kv-"))
    bench.snapshot_dir = folder
    config = replace(bench.workload.engine_config(), snapshot_dir=folder)
    return ProcessEngine(ProcessConfig(engine=config))
