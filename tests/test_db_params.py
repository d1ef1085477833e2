"""duckdb's per-parameter ``import pandas`` attempts are made cheap when pandas is absent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import importlib.util, sys
from pathlib import Path
from app.memory.db import Database
db = Database.open(Path(sys.argv[1]))
db.execute("CREATE TABLE t (v FLOAT[])")
calls = 0
real_find_spec = importlib.machinery.PathFinder.find_spec
def counting(name, *args, **kwargs):
    global calls
    if name == "pandas":
        calls += 1
    return real_find_spec(name, *args, **kwargs)
importlib.machinery.PathFinder.find_spec = counting
db.execute("INSERT INTO t VALUES (?)", [[0.5] * 384])
print(calls, db.fetchone("SELECT len(v) FROM t")[0])
db.close()
"""


@pytest.mark.skipif(importlib.util.find_spec("pandas") is not None, reason="pandas is installed")
def test_binding_a_vector_does_not_search_for_pandas(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "p.duckdb")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert out == ["0", "384"]  # no sys.path walk per element; the row went in whole
