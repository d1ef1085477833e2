#!/usr/bin/env python3
"""Write a random-weight GGUF model for tests or benchmarks.

python scripts/make_test_model.py --out tiny.gguf
python scripts/make_test_model.py --bench --out bench-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.devtools.testmodels import (
    CHATML_TEMPLATE,
    write_bench_model,
    write_model,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the .gguf")
    parser.add_argument("--bench", action="store_true", help="1024 wide, 16 layers, Q4_K_M")
    parser.add_argument("--no-template", action="store_true", help="omit the chat template")
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.unlink(missing_ok=True)
    if args.bench:
        write_bench_model(args.out)
    else:
        write_model(args.out, chat_template=None if args.no_template else CHATML_TEMPLATE)
    size_mb = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
