"""Scenarios 4-5: interactive time to first token under load, and scheduler cost."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.bench import raw
from app.bench.engine_side import LoadWorkers, run_request
from app.bench.report import ScenarioResult
from app.bench.runs import StreamRun, percentiles, ratio
from app.bench.session import Bench
from app.bench.workload import INTERACTIVE_PROMPT, fifo_config, messages, stream_prompt
from app.engine.llamacpp import LlamaCppEngine
from app.engine.scheduler import RequestState, SchedRequest, Scheduler, SchedulerConfig
from app.engine.types import GenerateRequest, Priority

FIFO_HOW = (
    "a second LlamaCppEngine with one sequence slot (EngineConfig n_seq_max=1) whose "
    "scheduler has aging and yielding off (aging_rate=0, yield_class=None); the background "
    "streams and the interactive request are all submitted as BACKGROUND, so requests are "
    "ranked by arrival alone and each runs by itself to its end: the interactive request "
    "waits for the rest of the running job and for every job queued before it"
)
TTFT_MEASURE = (
    "submission (generate() called) to the first token sampled on the engine thread "
    "(Timings.queue_s + time_to_first_token_s), nearest-rank percentiles"
)


def _samples(
    engine: LlamaCppEngine, make: Callable[[], GenerateRequest], n: int, gap_s: float
) -> list[StreamRun]:
    """``n`` interactive requests one after another, ``gap_s`` apart."""
    runs = []
    for _ in range(n):
        time.sleep(gap_s)  # lands at another point of the background's steps
        runs.append(run_request(engine, make()))
    return runs


def _under_load(
    engine: LlamaCppEngine,
    background: Callable[[int, int], GenerateRequest],
    streams: int,
    sample: Callable[[], list[StreamRun]],
    *,
    all_started: bool,
) -> tuple[list[StreamRun], dict[str, Any]]:
    workers = LoadWorkers(engine, streams, background)
    workers.start()
    try:
        workers.wait_until_loaded(all_started=all_started)
        runs = sample()
    finally:
        stats = workers.stop()
    return runs, stats


def _ttfts(runs: list[StreamRun]) -> list[float]:
    return [r.submit_to_first_token_s for r in runs]


def interactive_latency(bench: Bench) -> ScenarioResult:
    """4: interactive TTFT while background streams generate, against an idle engine."""
    w, sizes = bench.workload, bench.workload.sizes
    engine = bench.engine

    def interactive(priority: Priority) -> Callable[[], GenerateRequest]:
        msgs = messages(INTERACTIVE_PROMPT)
        return lambda: w.request(msgs, sizes.interactive_tokens, priority)

    def background(i: int, _k: int) -> GenerateRequest:
        return w.request(stream_prompt(i + 1), sizes.background_tokens, Priority.BACKGROUND)

    def sampler(eng: LlamaCppEngine, prio: Priority, n: int) -> Callable[[], list[StreamRun]]:
        return lambda: _samples(eng, interactive(prio), n, sizes.sample_gap_s)

    n, streams = sizes.interactive_samples, sizes.background_streams
    # Half the idle samples before the load and half after, so that a drift
    # in the machine's other load weighs on both sides alike.
    idle = sampler(engine, Priority.INTERACTIVE, (n + 1) // 2)()
    bench.progress(f"  idle samples taken; now under {streams} background streams")
    load, load_stats = _under_load(
        engine, background, streams, sampler(engine, Priority.INTERACTIVE, n), all_started=True
    )
    idle += sampler(engine, Priority.INTERACTIVE, n // 2)()
    bench.progress("  priority engine done; now the FIFO contrast")
    fifo_engine = bench.warm_engine(LlamaCppEngine(fifo_config(w)))
    try:
        fifo, fifo_stats = _under_load(
            fifo_engine,
            background,
            streams,
            sampler(fifo_engine, Priority.BACKGROUND, sizes.fifo_samples),
            all_started=False,
        )
    finally:
        fifo_engine.close()
    return _latency_result(bench, idle, load, fifo, {"load": load_stats, "fifo": fifo_stats})


def _latency_result(
    bench: Bench,
    idle: list[StreamRun],
    load: list[StreamRun],
    fifo: list[StreamRun],
    workers: dict[str, dict[str, Any]],
) -> ScenarioResult:
    sizes = bench.workload.sizes
    idle_p, load_p, fifo_p = (percentiles(_ttfts(x)) for x in (idle, load, fifo))
    value = ratio(load_p["p95"], idle_p["p95"])
    fifo_x = ratio(fifo_p["p95"], idle_p["p95"])
    notes = (
        f"FIFO contrast (one slot, arrival order): TTFT p50 {fifo_p['p50']:.2f} s, "
        f"p95 {fifo_p['p95']:.2f} s" + (f" = {fifo_x:.1f}x idle" if fifo_x else ""),
        f"under load: p50 {load_p['p50'] * 1e3:.0f} ms vs idle p50 {idle_p['p50'] * 1e3:.0f} ms; "
        f"background preemptions {workers['load']['preemptions']}",
    )
    return ScenarioResult(
        4,
        f"interactive TTFT p95, {sizes.background_streams} background streams",
        f"load {load_p['p95'] * 1e3:.0f} ms",
        f"idle {idle_p['p95'] * 1e3:.0f} ms",
        value,
        "n/a" if value is None else f"{value:.2f}x",
        {
            "measure": TTFT_MEASURE,
            "fifo_emulation": FIFO_HOW,
            "background": (
                f"{sizes.background_streams} workers, each generating {sizes.background_tokens}-"
                "token BACKGROUND replies back to back until the samples are taken; their "
                "prompts share no prefix with the interactive one, so prefix sharing cannot "
                "make the loaded case cheaper than the idle one"
            ),
            "idle_order": "half the idle samples before the loaded ones, half after",
            "common_prefix_tokens": _common_prefix(bench),
            "interactive_prompt_tokens": idle[0].prompt_tokens if idle else 0,
            "interactive_tokens": sizes.interactive_tokens,
            "sample_gap_s": sizes.sample_gap_s,
            "idle_ttft_s": idle_p,
            "load_ttft_s": load_p,
            "fifo_ttft_s": fifo_p,
            "fifo_over_idle_p95": fifo_x,
            "idle_runs": [x.to_dict() for x in idle],
            "load_runs": [x.to_dict() for x in load],
            "fifo_runs": [x.to_dict() for x in fifo],
            "workers": workers,
        },
        notes,
    )


def _common_prefix(bench: Bench) -> int | None:
    """Tokens the interactive prompt shares with a background one (None: not tokenized)."""
    model = bench.raw_if_loaded
    if model is None:
        return None
    streams = bench.workload.sizes.background_streams
    interactive = raw.prompt_tokens(model, bench.info, messages(INTERACTIVE_PROMPT))
    background = [
        raw.prompt_tokens(model, bench.info, stream_prompt(i + 1)) for i in range(streams)
    ]
    return max(raw.common_prefix([interactive, b]) for b in background)


# -- scenario 5 --------------------------------------------------------

# No interactive class: it would make background sequences yield, and the
# step would then plan fewer than all of them.
_CLASSES = (Priority.STANDARD, Priority.BACKGROUND)
_PROMPT = 64


def _loaded_scheduler(n_seqs: int, steps: int) -> Scheduler:
    """A scheduler with ``n_seqs`` requests of two classes, all past their prefill."""
    most = _PROMPT + steps + 64
    config = SchedulerConfig(n_seq_max=n_seqs, kv_budget_tokens=n_seqs * most)
    scheduler = Scheduler(config)
    for i in range(n_seqs):
        request = SchedRequest(
            request_id=f"bench-{i}",
            agent_id="bench",
            session_id=f"session-{i}",
            priority=_CLASSES[i % len(_CLASSES)],
            prompt_tokens=_PROMPT,
            max_tokens=most - _PROMPT,
            arrival=time.monotonic(),
        )
        scheduler.add(request)
    for _ in range(64):
        scheduler.complete_step(scheduler.schedule())
        if all(s.state is RequestState.DECODING for s in scheduler.live()):
            break
    return scheduler


def scheduler_overhead(bench: Bench) -> ScenarioResult:
    """5: Python time of one schedule() + complete_step() with live sequences."""
    sizes = bench.workload.sizes
    scheduler = _loaded_scheduler(sizes.sched_seqs, sizes.sched_steps)
    times_us: list[float] = []
    decoding: list[int] = []
    for _ in range(sizes.sched_steps):
        started = time.perf_counter_ns()
        plan = scheduler.schedule()
        scheduler.complete_step(plan)
        times_us.append((time.perf_counter_ns() - started) / 1e3)
        decoding.append(len(plan.decode))
    mean = sum(times_us) / len(times_us)
    spread = percentiles(times_us)
    per_step = sum(decoding) / len(decoding)
    note = (
        f"p50 {spread['p50']:.0f} µs, p95 {spread['p95']:.0f} µs; "
        f"{per_step:.1f} of {sizes.sched_seqs} sequences decode per step"
    )
    return ScenarioResult(
        5,
        f"scheduler step, {sizes.sched_seqs} sequences",
        f"{mean:.0f} µs/step",
        "-",
        mean,
        f"{mean:.0f} µs",
        {
            "measure": (
                "mean wall time of Scheduler.schedule() + complete_step() in Python, no "
                "llama.cpp; standard and background sequences, past their prefill"
            ),
            "live_sequences": len(scheduler),
            "steps": sizes.sched_steps,
            "mean_us": mean,
            "step_us": spread,
            "decoding_per_step": per_step,
            "step_times_us": [round(t, 1) for t in times_us],
        },
        (note,),
    )
