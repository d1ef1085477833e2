#!/usr/bin/env python3
"""Measure the cold start of ``soloist``: process start to first painted window.

Run under a display (``xvfb-run -a python scripts/measure_startup.py``); each
run uses a fresh data directory, waits for the app's ``first paint`` line,
then stops it. Prints each run and the median.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

FIRST_PAINT = "soloist: first paint after"


def one_run(soloist: list[str]) -> tuple[float, float]:
    """(ms reported by the app, ms measured from spawn) for one cold start."""
    home = tempfile.mkdtemp(prefix="soloist-start-")
    env = {**os.environ, "SOLOIST_HOME": home}
    spawned = time.perf_counter()
    proc = subprocess.Popen(soloist, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith(FIRST_PAINT):
                wall_ms = (time.perf_counter() - spawned) * 1000
                return float(line.split()[-2]), wall_ms
        raise RuntimeError(f"soloist exited ({proc.wait()}) before painting")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--command",
        default=None,
        help="what to start (default: this venv's soloist; for the bundle: dist/soloist/soloist)",
    )
    args = parser.parse_args()
    exe = args.command or shutil.which("soloist")
    exe = exe or os.path.join(os.path.dirname(sys.executable), "soloist")
    results = [one_run([exe]) for _ in range(args.runs)]
    for i, (app_ms, wall_ms) in enumerate(results, 1):
        print(f"run {i}: first paint {app_ms:.0f} ms after process start ({wall_ms:.0f} ms wall)")
    print(
        f"median: {statistics.median(r[0] for r in results):.0f} ms (app), "
        f"{statistics.median(r[1] for r in results):.0f} ms (wall)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
