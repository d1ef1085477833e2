"""`soloist doctor`: its JSON report, its verdict, and the system-info parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app import doctor

REPO = Path(__file__).resolve().parents[1]


def run_doctor(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """`soloist doctor --json` as a user runs it (in-process if there is no __main__)."""
    monkeypatch.setenv("SOLOIST_HOME", str(home))
    if (REPO / "app" / "__main__.py").exists():
        proc = subprocess.run(
            [sys.executable, "-m", "app", "doctor", "--json"],
            cwd=REPO,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return proc.returncode, proc.stdout, proc.stderr
    code = doctor.main(True)
    out, err = capsys.readouterr()
    return code, out, err


def test_reports_a_usable_machine(
    soloist_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run_doctor(soloist_home, capsys, monkeypatch)

    report: dict[str, Any] = json.loads(out)
    assert report["ok"] is True, report["problems"]
    assert report["problems"] == []
    assert code == 0, err
    assert Path(report["data_dir"]["path"]) == soloist_home.resolve()
    assert report["data_dir"]["writable"] is True
    assert report["database"]["exists"] is False
    cpus = [dev for dev in report["devices"] if dev["kind"] == "cpu"]
    assert cpus, report["devices"]
    assert cpus[0]["memory_total_bytes"] > 0
    for dev in report["devices"]:
        assert {"name", "kind", "description", "memory_total_bytes", "memory_free_bytes"} <= set(
            dev
        )
    assert report["llama_cpp"]["importable"] is True
    assert report["packages"]["duckdb"]


def test_unwritable_data_dir_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    code, out, err = run_doctor(blocker / "sub", capsys, monkeypatch)

    assert code != 0
    report = json.loads(out)
    assert report["ok"] is False
    assert any("data directory" in problem for problem in report["problems"])
    assert "data directory" in err
    assert "Traceback" not in err


def test_human_report_has_sections(soloist_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = doctor.main(False)

    out, _ = capsys.readouterr()
    assert code == 0
    for heading in ("Python", "Packages", "Data", "llama.cpp", "Devices", "Keyring"):
        assert f"\n{heading}\n" in out
    assert str(soloist_home.resolve()) in out
    assert "Result: ok" in out


def test_missing_data_dir_that_can_be_created_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOLOIST_HOME", str(tmp_path / "not" / "yet"))

    report = doctor.collect()

    assert report["data_dir"]["writable"] is True
    assert not (tmp_path / "not").exists()  # the doctor creates nothing


def test_a_model_that_crashed_the_engine_is_listed_with_its_reason(
    soloist_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = {"/models/bad.gguf": {"reason": "killed by SIGABRT: GGML_ASSERT(x) failed"}}
    (soloist_home / "engine-broken.json").write_text(json.dumps(broken), encoding="utf-8")
    assert doctor.main(False) == 0
    out, _ = capsys.readouterr()
    assert "broken: bad.gguf" in out
    assert "SIGABRT: GGML_ASSERT(x) failed" in out
