"""``soloist bench`` scenarios 13-16 (the desktop app) and their parsers; no timing asserted.

Like tests/test_bench.py: the numbers of a shared CI machine say nothing, so
what is checked is that each scenario ran the real app (or the engine
child), produced positive numbers and a verdict, and that the parsers read
/proc correctly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_bench import _bench, _only_json

from app.bench import SCENARIOS
from app.bench.report import TARGETS
from app.bench.ui import child_pids, cpu_ticks, first_paint_ms, rss_bytes

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_parsers_read_proc_and_the_app_line() -> None:
    assert first_paint_ms("soloist: first paint after 812 ms") == 812.0
    assert first_paint_ms("soloist: ready") is None
    stat = "123 (python (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 9"
    assert cpu_ticks(stat) == 280  # utime 250 + stime 30, whatever the name holds
    assert rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n") == 2048 * 1024
    own = Path("/proc/self/stat").read_text(encoding="ascii")
    assert cpu_ticks(own) >= 0
    assert rss_bytes(Path("/proc/self/status").read_text(encoding="ascii")) > 10**6
    assert os.getpid() not in child_pids(os.getpid())


def test_ui_scenarios_are_registered_with_targets() -> None:
    assert {13, 14, 15, 16} <= set(SCENARIOS)
    assert [str(TARGETS[n]) for n in (13, 14, 15, 16)] == [
        "<= 1000 ms",
        "<= 50 ms",
        "<= 1 %",
        "<= 300 MB",
    ]


def test_app_scenarios_start_the_real_app(tmp_path: Path, soloist_home: Path) -> None:
    result = _bench(tmp_path, "--quick", "--scenarios", "13,15,16", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    data = _only_json(tmp_path / "o")
    assert data["model"] is None and not (soloist_home / "models").exists()
    thirteen, fifteen, sixteen = (data["scenarios"][n] for n in ("13", "15", "16"))
    assert len(thirteen["runs_ms"]) == 1 and thirteen["value"] > 0
    assert fifteen["idle_s"] >= 2.0 and fifteen["cpu_percent"] >= 0
    assert sixteen["rss_mb"] > 20  # a Qt app with the office open
    for entry in (thirteen, fifteen, sixteen):
        assert entry["verdict"] in ("PASS", "MISS")
    assert "app start 1/1: first paint" in result.stderr


def test_lag_scenario_runs_streams_and_ingestion(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "o"
    args = ("--quick", "--model", str(tiny_model), "--scenarios", "14", "--out", str(out))
    result = _bench(tmp_path, *args, "--threads", "1", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    fourteen = _only_json(out)["scenarios"]["14"]
    assert fourteen["lag_ms"]["count"] > 0 and fourteen["value"] >= 0
    assert len(fourteen["requests_per_stream"]) == 4
    assert all(n >= 1 for n in fourteen["requests_per_stream"])
    assert fourteen["files"] > 0 and fourteen["verdict"] in ("PASS", "MISS")
