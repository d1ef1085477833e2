"""``soloist bench``: run the scenarios, print the table, write the JSON."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.bench.ingest import ingestion
from app.bench.latency import interactive_latency, scheduler_overhead
from app.bench.memory import hybrid_query, index_rebuild, vector_search
from app.bench.process import process_decode, process_ttft, restart_time
from app.bench.report import RAW_MEANS, ScenarioResult, render_table, write_json
from app.bench.runs import BenchError
from app.bench.session import Bench
from app.bench.throughput import four_streams, single_stream, snapshot_restore
from app.bench.ui import first_paint, idle_cpu, idle_memory, lag_under_load
from app.bench.workload import (
    BenchOptions,
    Progress,
    Workload,
    load_average,
    machine_info,
    resolve_model,
)
from app.engine.errors import EngineError
from app.engine.gguf_file import GGUFInfo, check_gguf

log = logging.getLogger("soloist.bench")

EXIT_FAILED = 1

RUNNERS: dict[int, tuple[str, Callable[[Bench], ScenarioResult]]] = {
    1: ("single-stream decode", single_stream),
    2: ("concurrent streams", four_streams),
    3: ("snapshot restore vs prefill", snapshot_restore),
    4: ("interactive TTFT under load", interactive_latency),
    5: ("scheduler overhead", scheduler_overhead),
    6: ("process boundary, decode", process_decode),
    7: ("process boundary, TTFT", process_ttft),
    8: ("restart after SIGKILL", restart_time),
    9: ("vector search top-10", vector_search),
    10: ("vector index rebuild", index_rebuild),
    11: ("hybrid query", hybrid_query),
    12: ("ingestion throughput", ingestion),
    13: ("cold start to first paint", first_paint),
    14: ("UI lag under 4 streams and ingestion", lag_under_load),
    15: ("idle CPU", idle_cpu),
    16: ("resident memory without a model", idle_memory),
}
NEEDS_MODEL = frozenset({1, 2, 3, 4, 6, 7, 8, 14})


def options_from(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        model=Path(args.model) if args.model else None,
        quick=args.quick,
        scenarios=args.scenarios,
        out_dir=Path(args.out),
        threads=args.threads,
    )


def main(args: argparse.Namespace) -> int:
    """The ``bench`` subcommand: 0 when it ran (targets missed or not), 1 when it could not."""
    options = options_from(args)
    try:
        results, document = run(options, _to_stderr)
    except (EngineError, BenchError) as exc:
        print(f"soloist: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(render_table(results, _heading(document)))
    try:
        path = write_json(document, options.out_dir)
    except OSError as exc:
        print(f"soloist: cannot write the results to {options.out_dir}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"\nresults: {path}")
    return 0


def _to_stderr(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def run(options: BenchOptions, progress: Progress) -> tuple[list[ScenarioResult], dict[str, Any]]:
    """Run the chosen scenarios; their results and the whole JSON document."""
    started = datetime.now(UTC)
    machine = machine_info()
    progress(f"n_threads {options.n_threads}; load average {machine['load_average']}")
    model_path, generated = _model(options, progress)
    info = check_gguf(model_path) if model_path else None
    workload = Workload(str(model_path or ""), options)
    results: list[ScenarioResult] = []
    with Bench(workload, info, progress) as bench:
        for index, number in enumerate(options.scenarios, 1):
            results.append(_one(bench, number, f"[{index}/{len(options.scenarios)}]"))
    document = {
        "schema": 1,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": (datetime.now(UTC) - started).total_seconds(),
        "raw_baseline": RAW_MEANS,
        "machine": machine,
        "load_average_after": load_average(),
        "llama_cpp_python": machine["llama_cpp_python"],
        "model": _model_info(info, generated),
        "config": workload.to_dict(),
        "scenarios": {str(r.number): r.to_dict() for r in results},
    }
    return results, document


def _one(bench: Bench, number: int, counter: str) -> ScenarioResult:
    name, runner = RUNNERS[number]
    bench.progress(f"{counter} scenario {number}: {name}")
    started = time.perf_counter()
    result = runner(bench)
    elapsed = time.perf_counter() - started
    bench.progress(
        f"{counter} scenario {number}: {result.value_text} ({result.verdict}) in {elapsed:.1f} s"
    )
    log.info(
        "bench scenario %d: %s, %s, %.1f s", number, result.value_text, result.verdict, elapsed
    )
    return result


def _model(options: BenchOptions, progress: Progress) -> tuple[Path | None, bool]:
    if not NEEDS_MODEL.intersection(options.scenarios):
        return None, False
    return resolve_model(options, progress)


def _model_info(info: GGUFInfo | None, generated: bool) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "path": info.path,
        "size_bytes": info.size_bytes,
        "name": info.name,
        "architecture": info.architecture,
        "context_length": info.context_length,
        "block_count": info.block_count,
        "generated_now": generated,
    }


def _heading(document: dict[str, Any]) -> str:
    model = document["model"]
    config = document["config"]
    what = "no model"
    if model is not None:
        what = f"{Path(model['path']).name} ({model['size_bytes'] / 1e6:.1f} MB)"
    quick = ", quick" if config["quick"] else ""
    return (
        f"soloist bench: {what}, n_threads {config['n_threads']}, n_ctx {config['n_ctx']}"
        f"{quick}; llama-cpp-python {document['llama_cpp_python']}; "
        f"load average {document['machine']['load_average']} -> {document['load_average_after']}"
    )
