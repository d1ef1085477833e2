"""`soloist doctor` shows what the running engine holds, through engine.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import EngineConfig, LlamaCppEngine
from app.engine.status import STATUS_FILE, read_status
from app.engine.types import GenerateRequest, Message, SamplingParams


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_doctor_lists_the_loaded_model_and_its_layers(tiny_model: Path, soloist_home: Path) -> None:
    status = soloist_home / STATUS_FILE
    engine = LlamaCppEngine(
        EngineConfig(context=ContextConfig(n_ctx=1024), n_seq_max=2, status_file=status)
    )
    try:
        request = GenerateRequest(
            model_path=str(tiny_model),
            messages=(Message("user", "hi"),),
            sampling=SamplingParams(max_tokens=2),
        )
        list(engine.generate(request))
        assert engine.residency()[0]["path"] == str(tiny_model)
        assert engine.memory_in_use() == engine.residency()[0]["memory_bytes"] > 0
        report = json.loads(_doctor("--json").stdout)
        human = _doctor().stdout
    finally:
        engine.close()
    assert report["engine"]["alive"] is True
    (model,) = report["engine"]["models"]
    assert model["path"] == str(tiny_model)
    assert model["gpu_layers"] == 0  # no GPU in CI
    assert model["n_seq_max"] == 2
    assert model["memory_bytes"] > 0
    assert "Engine" in human
    assert "0/3 layers on the GPU" in human  # 2 blocks + the output layer
    after = read_status(status)
    assert after is not None
    assert after["models"] == []  # a closed engine holds nothing


def test_a_status_left_by_a_dead_process_is_reported_as_not_running(soloist_home: Path) -> None:
    (soloist_home / STATUS_FILE).write_text(
        json.dumps({"pid": 2**22 + 12345, "updated_at": 0, "models": [{"name": "x"}]})
    )
    status = read_status(soloist_home / STATUS_FILE)
    assert status is not None
    assert status["alive"] is False
    assert "office is not running" in _doctor().stdout


def test_a_damaged_status_file_is_ignored(soloist_home: Path) -> None:
    (soloist_home / STATUS_FILE).write_text("{not json")
    assert read_status(soloist_home / STATUS_FILE) is None
    result = _doctor("--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["engine"] is None
