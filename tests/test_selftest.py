"""``soloist --self-test``: the real run end to end, and a failing step's report."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import selftest
from app.selftest import (
    STEPS,
    Outcome,
    SelfTestError,
    StepResult,
    Workspace,
    render_report,
)

REPO = Path(__file__).resolve().parents[1]
STEP_NAMES = [name for name, _ in STEPS]

# The self-test as ``soloist --self-test`` runs it, then whether any Qt module was loaded.
_RUN = """
import sys
from app.cli import main
code = main(["--self-test"])
print("qt loaded:", any(name.startswith("PySide6") for name in sys.modules))
sys.exit(code)
"""


def test_render_report_lists_each_step_and_the_verdict() -> None:
    results = [StepResult("one", Outcome.OK, 0.4123), StepResult("two", Outcome.OK, 2.0)]
    assert render_report(results, 2.45).splitlines() == [
        "ok   one   412 ms",
        "ok   two   2000 ms",
        "self-test passed in 2.5 s",
    ]


def test_render_report_of_a_failure_has_no_passed_line() -> None:
    results = [
        StepResult("one", Outcome.OK, 0.001),
        StepResult("two", Outcome.FAIL, 0.5, "it broke"),
        StepResult("three", Outcome.SKIPPED),
    ]
    lines = render_report(results, 1.0).splitlines()
    assert lines[1:3] == ["FAIL two: it broke", "skipped three"]
    assert lines[-1] == "self-test FAILED in 1.0 s"
    assert not any("passed" in line for line in lines)


def _explode(_ws: Workspace) -> None:
    raise RuntimeError("boom\nsecond line")


def _failing_steps() -> list[selftest.Step]:
    """The real first step, an injected failure, then real steps that must not run."""
    return [STEPS[0], ("explode", _explode), *STEPS[2:]]


def test_a_failing_step_reports_fail_then_skipped_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    temp = tmp_path / "tmp"
    temp.mkdir()
    code = selftest.main(steps=_failing_steps(), temp_parent=temp, out=out)
    lines = out.getvalue().splitlines()
    assert code == 1
    assert lines[0].startswith("ok   generate a tiny model")
    assert lines[1] == "FAIL explode: RuntimeError: boom second line"
    assert lines[2:-1] == [f"skipped {name}" for name in STEP_NAMES[2:]]
    assert lines[-1].startswith("self-test FAILED in ")
    assert "Traceback" not in capsys.readouterr().err
    assert list(temp.iterdir()) == []  # the temporary office is gone all the same


def test_verbose_prints_the_failing_step_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = selftest.main(
        verbose=True, steps=[("explode", _explode)], temp_parent=tmp_path, out=io.StringIO()
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err


def test_a_check_that_fails_is_reported_by_its_message_alone(tmp_path: Path) -> None:
    def check(_ws: Workspace) -> None:
        raise SelfTestError("the memory just written was not found")

    out = io.StringIO()
    assert selftest.main(steps=[("find", check)], temp_parent=tmp_path, out=out) == 1
    assert out.getvalue().splitlines()[0] == "FAIL find: the memory just written was not found"


def test_a_step_needing_the_office_fails_cleanly_without_one(tmp_path: Path) -> None:
    out = io.StringIO()
    steps = [STEPS[0], STEPS[2]]  # the model, but no office opened
    assert selftest.main(steps=steps, temp_parent=tmp_path, out=out) == 1
    assert "FAIL load model through engine process: no office is open" in out.getvalue()


@pytest.mark.slow
def test_the_real_self_test_passes_headless_and_leaves_nothing(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    env.pop("QT_QPA_PLATFORM", None)
    result = subprocess.run(
        [sys.executable, "-c", _RUN],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split("   ")[0] for line in lines[: len(STEPS)]] == ["ok"] * len(STEPS)
    assert [line[5:].split("   ")[0].strip() for line in lines[: len(STEPS)]] == STEP_NAMES
    assert lines[len(STEPS)].startswith("self-test passed in ")
    assert lines[-1] == "qt loaded: False"
    assert "Traceback" not in result.stderr
    # Office, model and engine socket folders removed (torch keeps a cache of its own there).
    assert [p.name for p in temp.iterdir() if not p.name.startswith("torchinductor")] == []


# -- the engine child of a frozen bundle ---------------------------------------------------
def test_a_frozen_bundle_starts_its_engine_child_as_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.engine.process import ENGINE_CHILD
    from app.engine.process.supervisor import default_command

    assert default_command()[1:] == ("-m", "app.engine.process.child")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert default_command() == (sys.executable, ENGINE_CHILD)


@pytest.mark.slow
def test_the_bundle_child_command_serves_a_model(tiny_model: Path) -> None:
    """``soloist engine-child ADDRESS`` (what a bundle runs) goes through the CLI's entry."""
    from app.engine.process import ENGINE_CHILD
    from app.engine.process.supervisor import ProcessConfig, ProcessEngine
    from app.engine.types import GenerateRequest, Message, SamplingParams

    # ``python -m app`` is the bundle's executable here: the same app.cli.main.
    engine = ProcessEngine(ProcessConfig(command=(sys.executable, "-m", "app", ENGINE_CHILD)))
    try:
        request = GenerateRequest(
            str(tiny_model), (Message("user", "hi"),), SamplingParams(max_tokens=4)
        )
        chunks = list(engine.generate(request))
        assert chunks[-1].error is None and chunks[-1].timings is not None
        assert engine.loaded_models() == [str(tiny_model)]
    finally:
        engine.close()
