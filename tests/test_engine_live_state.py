"""The engine's live state for the Models & devices page: queue, metrics, unload, pins.

Real engine processes with the tiny generated model; the bookkeeping of
:mod:`app.engine.process.requests` is also tested on its own, without one.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import test_engine_process
from test_engine_process import CONTEXT, Stream, _request, _wait_for

from app.engine.errors import EngineRestartedError, ModelInUseError
from app.engine.llamacpp import EngineConfig, LlamaCppEngine
from app.engine.metrics import FIELDS, MetricsRing
from app.engine.process.requests import InFlight, Pending, cancelled_chunk, record_of
from app.engine.process.supervisor import ProcessEngine
from app.engine.types import Chunk, FinishReason, GenerateRequest, Message, Priority, Timings
from app.ui.sections import models_ops

PROMPT = "the owner's private words xyzzy"
make_engine = test_engine_process.make_engine  # the same fixture: ProcessEngines closed after


def _paths(engine: ProcessEngine | LlamaCppEngine) -> dict[str, bool]:
    """Resident model path -> pinned."""
    return {m["path"]: bool(m["pinned"]) for m in engine.residency()}


def _short_keep_alive(**changes: object) -> EngineConfig:
    return EngineConfig(context=CONTEXT, keep_alive_s=1.0, **changes)  # type: ignore[arg-type]


# ------------------------------------------------------------ no process


def _request_of(priority: Priority, text: str = PROMPT) -> GenerateRequest:
    return GenerateRequest("/models/m.gguf", (Message("user", text),), priority=priority)


def test_in_flight_counts_every_class_and_records_each_ending_once() -> None:
    table = InFlight(MetricsRing())
    made = [Pending(_request_of(p)) for p in (Priority.BACKGROUND, Priority.BACKGROUND)]
    made.append(Pending(_request_of(Priority.INTERACTIVE)))
    for pending in made:
        table.add(pending)
    assert table.queue_by_priority() == {"interactive": 1, "standard": 0, "background": 2}
    timings = Timings(4, 10, 0.05, 0.5, queue_s=0.2, preemptions=1)
    final = Chunk(made[0].request_id, 11, finish_reason=FinishReason.LENGTH, timings=timings)
    table.settle(made[0], final)
    table.settle(made[0], final)  # already settled: not recorded again
    table.settle(made[1], EngineRestartedError("restarted"))
    assert table.queue_by_priority() == {"interactive": 1, "standard": 0, "background": 0}
    first, second = table.metrics.recent(10)
    assert first["model"] == "m.gguf" and first["priority"] == "background"
    assert first["time_to_first_token_s"] == 0.05 and first["completion_tokens"] == 10
    assert first["tokens_per_s"] == pytest.approx(9 / 0.45)
    assert (first["queue_wait_s"], first["preemptions"], first["finish_reason"]) == (
        0.2,
        1,
        "length",
    )
    assert second["finish_reason"] == "error" and second["time_to_first_token_s"] is None
    assert PROMPT not in json.dumps(table.metrics.snapshot())


STOPPED = Chunk("r", 2, finish_reason=FinishReason.STOP, timings=Timings(3, 1, 0.1, 0.1))


@pytest.mark.parametrize(
    ("item", "reason", "ttft", "tok_s"),
    [
        (STOPPED, "stop", 0.1, None),  # one token: no decode speed
        (Chunk("r", 0, finish_reason=FinishReason.CANCELLED), "cancelled", None, None),
        (ModelInUseError("in use"), "error", None, None),
    ],
)
def test_record_of_what_the_caller_got_last(
    item: Chunk | BaseException, reason: str, ttft: float | None, tok_s: float | None
) -> None:
    record = record_of(_request_of(Priority.STANDARD), item, at=5.0).to_dict()
    assert set(record) == FIELDS
    assert (record["finish_reason"], record["time_to_first_token_s"]) == (reason, ttft)
    assert record["tokens_per_s"] == tok_s and record["at"] == 5.0
    assert record["priority"] == "standard"


def test_cancelled_chunk_is_final() -> None:
    pending = Pending(_request_of(Priority.STANDARD))
    assert cancelled_chunk(pending).finish_reason is FinishReason.CANCELLED


# -------------------------------------------------------- the real engine
@pytest.mark.slow
def test_a_generation_leaves_a_record_the_page_charts(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path
) -> None:
    engine = make_engine()
    before = time.time()
    request = _request(tiny_model, PROMPT, max_tokens=32)
    chunks = list(engine.generate(request))
    assert chunks[-1].finish_reason is FinishReason.LENGTH
    (record,) = engine.metrics.recent(10)
    assert record["request_id"] == request.request_id
    assert record["priority"] == "interactive" and record["model"] == "tiny.gguf"
    assert isinstance(record["time_to_first_token_s"], float)
    assert record["time_to_first_token_s"] > 0
    assert isinstance(record["tokens_per_s"], float) and record["tokens_per_s"] > 0
    assert record["completion_tokens"] == 32 and record["finish_reason"] == "length"
    assert before <= record["at"] <= time.time()
    assert PROMPT not in json.dumps(engine.metrics.snapshot())
    # what the page draws from it
    assert models_ops.tokens_per_s_points([record]) == [(1.0, record["tokens_per_s"])]
    assert [name for name, _ in models_ops.ttft_bars([record])] == ["interactive"]
    assert engine.queue_by_priority() == {"interactive": 0, "standard": 0, "background": 0}


@pytest.mark.slow
def test_the_queue_shows_a_background_request_while_it_streams(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path
) -> None:
    engine = make_engine()
    request = _request(tiny_model, max_tokens=4000)
    request = GenerateRequest(
        request.model_path, request.messages, request.sampling, priority=Priority.BACKGROUND
    )
    stream = Stream.start(engine, request)
    assert stream.first.wait(30)
    assert engine.queue_by_priority() == {"interactive": 0, "standard": 0, "background": 1}
    assert engine.cancel(request.request_id)
    stream.join()
    assert engine.queue_by_priority() == {"interactive": 0, "standard": 0, "background": 0}
    record = engine.metrics.recent(1)[0]
    assert (record["priority"], record["finish_reason"]) == ("background", "cancelled")
    assert record["completion_tokens"] >= 1


@pytest.mark.slow
def test_unload_is_refused_while_in_use_and_then_empties_residency(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path, tmp_path: Path
) -> None:
    engine = make_engine()
    engine.unload(str(tmp_path / "never-loaded.gguf"))  # not loaded: nothing to do
    request = _request(tiny_model, max_tokens=4000)
    stream = Stream.start(engine, request)
    assert stream.first.wait(30)
    with pytest.raises(ModelInUseError, match=r"tiny\.gguf"):
        engine.unload(str(tiny_model))
    assert str(tiny_model) in _paths(engine)
    engine.cancel(request.request_id)
    stream.join()
    assert stream.chunks[-1].finish_reason is FinishReason.CANCELLED  # not cut by the unload
    engine.unload(str(tiny_model))
    assert engine.residency() == [] and engine.loaded_models() == []
    # a restart does not load it again
    os.kill(engine.wait_ready(), signal.SIGKILL)
    assert _wait_for(lambda: engine.restarts == 1 and engine.pid is not None, 30)
    time.sleep(1.0)  # a preload would have shown by now
    assert engine.loaded_models() == []


@pytest.mark.slow
def test_a_pinned_model_outlives_keep_alive_and_an_unpinned_one_does_not(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path, tiny_model_no_template: Path
) -> None:
    pinned, other = str(tiny_model), str(tiny_model_no_template)
    engine = make_engine(engine=_short_keep_alive())
    engine.wait_ready()
    engine.pin(pinned)  # before it loads: the pin waits for it
    assert list(engine.generate(_request(tiny_model)))[-1].is_final
    assert list(engine.generate(_request(tiny_model_no_template)))[-1].is_final
    assert set(engine.load_seconds) == {pinned, other}  # both were loaded
    assert _wait_for(lambda: other not in _paths(engine), 15), "keep-alive did not unload it"
    time.sleep(1.5)  # well past the pinned model's keep-alive too
    assert _paths(engine) == {pinned: True}
    engine.unpin(pinned)
    assert _paths(engine) == {pinned: False}  # the reply carries the residency
    assert _wait_for(lambda: engine.residency() == [], 15)


@pytest.mark.slow
def test_a_pinned_model_is_not_evicted_to_make_room(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path, tiny_model_no_template: Path
) -> None:
    pinned, other = str(tiny_model), str(tiny_model_no_template)
    engine = make_engine(engine=EngineConfig(context=CONTEXT, max_models=1))
    assert list(engine.generate(_request(tiny_model)))[-1].is_final
    engine.pin(pinned)
    assert _paths(engine) == {pinned: True}
    assert list(engine.generate(_request(tiny_model_no_template)))[-1].is_final
    assert set(engine.loaded_models()) == {pinned, other}  # past the count, not evicted
    engine.unload(other)
    engine.unpin(pinned)
    assert list(engine.generate(_request(tiny_model_no_template)))[-1].is_final
    assert engine.loaded_models() == [other]  # unpinned and idle, it made room


@pytest.mark.slow
def test_pins_reach_a_restarted_child(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path
) -> None:
    engine = make_engine()
    assert list(engine.generate(_request(tiny_model)))[-1].is_final
    engine.pin(str(tiny_model))
    os.kill(engine.wait_ready(), signal.SIGKILL)
    assert _wait_for(lambda: engine.restarts == 1, 30)
    assert _wait_for(lambda: _paths(engine) == {str(tiny_model): True}, 30)


@pytest.mark.slow
def test_the_in_process_engine_offers_the_same(tiny_model: Path) -> None:
    engine = LlamaCppEngine(_short_keep_alive())
    try:
        request = _request(tiny_model, max_tokens=4000)
        stream = engine.generate(request)
        next(iter(stream))
        assert engine.queue_by_priority()["interactive"] == 1
        with pytest.raises(ModelInUseError):
            engine.unload(str(tiny_model))
        engine.pin(str(tiny_model))
        engine.cancel(request.request_id)
        assert list(stream)[-1].finish_reason is FinishReason.CANCELLED
        assert engine.metrics.recent(1)[0]["finish_reason"] == "cancelled"
        time.sleep(2.5)  # past keep-alive: pinned, it stays
        assert _paths(engine) == {str(tiny_model): True}
        engine.unload(str(tiny_model))  # pinned or not, the owner may unload it
        assert engine.residency() == []
    finally:
        engine.close()
