"""A second process that holds the office database open, as a running office does."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def database_held_by_another_process(path: Path) -> Iterator[subprocess.Popen[str]]:
    """``path`` open in DuckDB in another process until the block ends (it then exits 0)."""
    code = (
        "import sys, duckdb\n"
        f"conn = duckdb.connect({str(path)!r})\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
        "conn.close()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.communicate(timeout=60)
