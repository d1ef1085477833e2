"""``soloist chat`` end to end, through the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOLOIST = Path(sys.executable).with_name("soloist")


def _soloist(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(SOLOIST)] if SOLOIST.exists() else [sys.executable, "-m", "app"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, check=False)


def test_chat_streams_a_reply_and_reports_timings(tiny_model: Path) -> None:
    result = _soloist("chat", "--model", str(tiny_model), "--max-tokens", "32", "hi")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) > 0
    assert "time to first token" in result.stderr
    assert "tokens/s" in result.stderr


def test_chat_with_system_prompt(tiny_model: Path) -> None:
    result = _soloist(
        "chat", "--model", str(tiny_model), "--system", "Be terse.", "--max-tokens", "8", "hi"
    )
    assert result.returncode == 0, result.stderr


def _assert_one_line_failure(result: subprocess.CompletedProcess[str], phrase: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("soloist: ")
    assert phrase in lines[0]
    assert "Traceback" not in result.stderr


def test_chat_missing_model(tmp_path: Path) -> None:
    result = _soloist("chat", "--model", str(tmp_path / "nope.gguf"), "hi")
    _assert_one_line_failure(result, "No model file")


def test_chat_text_file_renamed_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "readme.gguf"
    fake.write_text("# not a model\n" * 20)
    _assert_one_line_failure(_soloist("chat", "--model", str(fake), "hi"), "not a GGUF")


@pytest.mark.parametrize("fraction", [0.5, 0.01])
def test_chat_truncated_model(tiny_model: Path, tmp_path: Path, fraction: float) -> None:
    cut = tmp_path / "cut.gguf"
    data = tiny_model.read_bytes()
    cut.write_bytes(data[: int(len(data) * fraction)])
    _assert_one_line_failure(_soloist("chat", "--model", str(cut), "hi"), "cut short")


def test_chat_prompt_longer_than_context(tiny_model: Path) -> None:
    result = _soloist("chat", "--model", str(tiny_model), "--ctx", "128", "word " * 200)
    _assert_one_line_failure(result, "context holds")


def test_version() -> None:
    result = _soloist("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("soloist ")
