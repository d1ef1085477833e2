"""``soloist bench``: the engine against raw llama.cpp, side by side in one process.

Each scenario runs the same work twice in one run: through the engine
(:class:`~app.engine.llamacpp.LlamaCppEngine`, as the app uses it) and
through a hand-written loop over the same llama.cpp C calls with no
scheduler (:mod:`app.bench.raw`). The printed table gives their ratios
beside the goals of issue 3; the JSON under ``bench/results/`` keeps every
number, the machine and the configuration.

1. decode tokens/s of one stream, engine / raw
2. aggregate tokens/s of four concurrent streams, engine / raw batched
3. a ~2,000-token context restored from a disk snapshot vs prefilled (raw)
4. interactive time to first token under background load vs idle, with a
   first-come-first-served engine for contrast
5. Python cost of one scheduler step with eight live sequences
6. decode tokens/s through the engine child process / in-process (caller side)
7. time to first token through the engine child minus in-process
8. SIGKILL of the child until a restored session's next token (load apart)
9. vector top-10 at 100,000 x 384 through the in-RAM index (p95, recall@10),
   numpy exact and DuckDB's brute force beside it
10. rebuilding that index from the DuckDB table
11. a hybrid query: vector + DuckDB full-text search, fused by RRF
12. UI event-loop lag p99 while a folder is indexed (chunks/s beside it; no model)
13. cold start of the app to its first painted window (no model)
14. UI event-loop lag p99 while the engine child generates 4 streams and indexes
15. idle CPU of the app with nothing running (no model)
16. resident memory of the app without a model

Modules: ``workload`` (sizes, prompts, configs), ``raw`` and
``engine_side`` (the two ways to generate), ``session`` (loads each once),
``throughput`` (1-3), ``latency`` (4-5), ``process`` (6-8), ``memory`` (9-11,
no model), ``ingest`` (12), ``ui`` (13-16), ``report`` (targets, table,
JSON), ``run`` (the command). This module imports none of them, so the
command line can build its parser without loading the engine.
"""

from __future__ import annotations

import argparse

SCENARIOS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)

__all__ = ["SCENARIOS", "main", "parse_scenarios"]


def parse_scenarios(text: str) -> tuple[int, ...]:
    """``"3,1"`` -> ``(1, 3)``; for argparse ``type=``."""
    try:
        chosen = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of scenario numbers: {text!r}") from None
    if not chosen or any(n not in SCENARIOS for n in chosen):
        raise argparse.ArgumentTypeError(f"scenarios are numbers from 1 to {max(SCENARIOS)}")
    return tuple(chosen)


def main(args: argparse.Namespace) -> int:
    """Run ``soloist bench`` with parsed arguments; the exit status."""
    from app.bench.run import main as run_main

    return run_main(args)
