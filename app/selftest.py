"""``soloist --self-test``: the whole stack once, headless, in a temporary office.

Works from the source tree and inside a frozen bundle; imports no Qt. The
steps run in order, each timed, and stop at the first failure:

1. generate a tiny random-weight GGUF model (app.devtools.testmodels);
2. open an office in a temporary folder (its own data directory);
3. load the model through the engine *process* (the office's ProcessEngine);
4. one agent step: a generation constrained by the agent loop's tool-call
   schema (the grammar), parsed and checked against that schema;
5. write a memory and find it again by hybrid search (vectors from the
   packaged all-MiniLM-L6-v2 in the engine process, keywords from DuckDB fts);
6. close everything and delete the folder.

The report is one line per step and a verdict; ``render_report`` is pure.
The folder is removed whatever happens.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from app.engine.interface import Engine
    from app.engine.types import Chunk, GenerateRequest
    from app.office import Office

__all__ = ["STEPS", "SelfTestError", "Step", "StepResult", "main", "render_report", "run_steps"]

log = logging.getLogger("soloist.selftest")

EXIT_FAILED = 1
_MEMORY_TEXT = "Quince jam from the self-test ships to Porto every Tuesday."
_MEMORY_QUERY = "when does the quince jam ship"


class SelfTestError(Exception):
    """A step ran but did not get what it should have; the message says what."""


class Outcome(Enum):
    OK = "ok"
    FAIL = "FAIL"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class StepResult:
    """How one step went: its outcome, its time, and why it failed."""

    name: str
    outcome: Outcome
    seconds: float = 0.0
    reason: str = ""


@dataclass
class Workspace:
    """What the steps share: the temporary folder and what they opened in it."""

    root: Path
    model: Path | None = None
    office: Office | None = None

    def close(self) -> None:
        """Close the office (engine, memory, database); idempotent."""
        office, self.office = self.office, None
        if office is not None:
            office.close()


Step = tuple[str, Callable[[Workspace], None]]


# -- the steps ---------------------------------------------------------------------------
def _generate_model(ws: Workspace) -> None:
    from app.devtools.testmodels import write_tiny_model

    ws.model = write_tiny_model(ws.root / "models" / "selftest.gguf")
    if ws.model.stat().st_size == 0:
        raise SelfTestError(f"{ws.model} is empty")


def _open_office(ws: Workspace) -> None:
    from app.engine.process import ENGINE_MODE_ENV
    from app.office import Office
    from app.secrets import SecretStore

    os.environ[ENGINE_MODE_ENV] = "process"  # the self-test is about the engine process
    # A service name of its own: nothing the self-test does can touch the owner's secrets.
    ws.office = Office(ws.root / "office", secrets=SecretStore(service="soloist-selftest"))


def _load_model(ws: Workspace) -> None:
    from app.engine.process.supervisor import ProcessEngine
    from app.engine.types import GenerateRequest, Message, SamplingParams

    office, model = _office(ws), _model(ws)
    engine = office.engine
    if not isinstance(engine, ProcessEngine):
        raise SelfTestError(f"the office's engine is {type(engine).__name__}, not ProcessEngine")
    engine.wait_ready(timeout=60)
    request = GenerateRequest(
        str(model), (Message("user", "hi"),), SamplingParams(max_tokens=1, seed=7)
    )
    _generate(engine, request)  # loads the model in the child
    if str(model) not in engine.loaded_models():
        raise SelfTestError("the engine process does not list the model as loaded")
    office.set_model_path(str(model))


def _agent_step(ws: Workspace) -> None:
    from app.agents.definitions import ToolGrant
    from app.agents.loop_steps import parse_call, system_prompt
    from app.agents.tools_registry import FINAL, ToolBox, builtin_tools
    from app.agents.tools_schema import check_arguments
    from app.engine.types import FinishReason, GenerateRequest, Message, SamplingParams

    box = ToolBox(
        [ToolGrant("time.now"), ToolGrant("memory.search")], builtin_tools(), max_string=16
    )
    schema = box.schema()
    messages = (
        Message("system", system_prompt("Self-test", "Look up the time.", box.describe())),
        Message("user", "Trigger: manual.\n\nDecide the next step."),
    )
    sampling = SamplingParams(json_schema=json.dumps(schema), max_tokens=400, seed=11)
    request = GenerateRequest(str(_model(ws)), messages, sampling)
    text, final = _generate(_office(ws).engine, request)
    if final.finish_reason is FinishReason.LENGTH:
        raise SelfTestError(f"the tool call was cut short at {len(text)} characters")
    call = parse_call(text)
    problem = check_arguments(schema, {"tool": call.tool, "arguments": call.arguments}, "call")
    if problem:
        raise SelfTestError(f"the grammar let through an invalid call ({problem})")
    if call.tool != FINAL:
        box.check(call.tool, call.arguments)  # the registry's own check, as the loop's


def _memory_round_trip(ws: Workspace) -> None:
    from app.engine.process.supervisor import ProcessEngine

    office = _office(ws)
    engine = office.engine
    if isinstance(engine, ProcessEngine):  # first, so a missing embedding model says so
        embedded = engine.embed([_MEMORY_TEXT], timeout_s=300)
        if len(embedded.vectors[0]) != embedded.dimension:
            raise SelfTestError(f"{embedded.model} gave a vector of the wrong size")
    memory = office.memory
    if not memory.wait_ready(120):
        raise SelfTestError(f"the memory index did not load (state {memory.state.name})")
    written = memory.remember(_MEMORY_TEXT, "fact")
    result = memory.search(_MEMORY_QUERY, k=3, timeout_s=60)
    hit = next((h for h in result if h.memory_id == written.memory_id), None)
    if hit is None:
        raise SelfTestError("the memory just written was not found")
    if hit.vector_rank is None or hit.keyword_rank is None:
        sides = f"vector rank {hit.vector_rank}, keyword rank {hit.keyword_rank}"
        raise SelfTestError(f"the search was not hybrid ({sides})")


def _close(ws: Workspace) -> None:
    ws.close()
    shutil.rmtree(ws.root)
    if ws.root.exists():
        raise SelfTestError(f"{ws.root} is still there")


STEPS: tuple[Step, ...] = (
    ("generate a tiny model", _generate_model),
    ("open a temporary office", _open_office),
    ("load model through engine process", _load_model),
    ("agent step with a grammar", _agent_step),
    ("write and find a memory (hybrid)", _memory_round_trip),
    ("close everything, delete temp dir", _close),
)


def _office(ws: Workspace) -> Office:
    if ws.office is None:
        raise SelfTestError("no office is open")
    return ws.office


def _model(ws: Workspace) -> Path:
    if ws.model is None:
        raise SelfTestError("no model was generated")
    return ws.model


def _generate(engine: Engine, request: GenerateRequest) -> tuple[str, Chunk]:
    """The whole reply and its final chunk; a stream that ends in an error raises."""
    from app.agents.loop_steps import collect, engine_error

    text, final = collect(engine.generate(request))
    error = engine_error(final)
    if error is not None or final is None:
        raise SelfTestError(error or "no final chunk")
    return text, final


# -- running and reporting ----------------------------------------------------------------
def run_steps(
    steps: Sequence[Step], ws: Workspace, *, verbose: bool = False, err: TextIO | None = None
) -> list[StepResult]:
    """Run ``steps`` in order; after the first failure the rest are skipped."""
    results: list[StepResult] = []
    for name, step in steps:
        if results and results[-1].outcome is not Outcome.OK:
            results.append(StepResult(name, Outcome.SKIPPED))
            continue
        started = time.perf_counter()
        try:
            step(ws)
        except Exception as exc:
            log.exception("self-test step %r failed", name)
            if verbose:
                traceback.print_exc(file=err or sys.stderr)
            results.append(StepResult(name, Outcome.FAIL, _elapsed(started), _reason(exc)))
        else:
            log.info("self-test step %r ok in %.3f s", name, _elapsed(started))
            results.append(StepResult(name, Outcome.OK, _elapsed(started)))
    return results


def render_report(results: Sequence[StepResult], total_s: float) -> str:
    """One line per step, then the verdict (see the module docstring)."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for result in results:
        if result.outcome is Outcome.OK:
            lines.append(f"ok   {result.name:<{width}}   {result.seconds * 1000:.0f} ms")
        elif result.outcome is Outcome.FAIL:
            lines.append(f"FAIL {result.name}: {result.reason}")
        else:
            lines.append(f"skipped {result.name}")
    if all(r.outcome is Outcome.OK for r in results):
        lines.append(f"self-test passed in {total_s:.1f} s")
    else:
        lines.append(f"self-test FAILED in {total_s:.1f} s")
    return "\n".join(lines)


def main(
    *,
    verbose: bool = False,
    steps: Sequence[Step] = STEPS,
    temp_parent: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the self-test, print the report; 0 when every step passed, else 1."""
    from app.engine.process import ENGINE_MODE_ENV

    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="soloist-selftest-", dir=temp_parent))
    ws = Workspace(root)
    engine_mode = os.environ.get(ENGINE_MODE_ENV)
    try:
        results = run_steps(steps, ws, verbose=verbose)
    finally:
        _clean_up(ws)
        _restore_env(ENGINE_MODE_ENV, engine_mode)
    print(render_report(results, time.perf_counter() - started), file=out or sys.stdout)
    return 0 if all(r.outcome is Outcome.OK for r in results) else EXIT_FAILED


def _clean_up(ws: Workspace) -> None:
    """Whatever the steps left: the office closed, the folder gone (never raises)."""
    try:
        ws.close()
    except Exception:
        log.exception("closing the self-test office failed")
    shutil.rmtree(ws.root, ignore_errors=True)


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _elapsed(started: float) -> float:
    return time.perf_counter() - started


def _reason(exc: BaseException) -> str:
    """One line: the message of a check, the type and message of anything else."""
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    return text if isinstance(exc, SelfTestError) else f"{type(exc).__name__}: {text}"
