"""The multi-sequence engine on the real llama.cpp: batching, preemption, sharing."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.devtools.testmodels import write_model
from app.engine.devices import DeviceProbe, GgmlDevice
from app.engine.errors import (
    EngineBusyError,
    InvalidGrammarError,
    ModelTooLargeError,
    NotGGUFError,
)
from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import EngineConfig, LlamaCppEngine
from app.engine.types import (
    Chunk,
    FinishReason,
    GenerateRequest,
    Message,
    Priority,
    SamplingParams,
)

SYSTEM = "You are the office assistant of a small design studio. " * 3


def _req(
    model: Path,
    text: str,
    *,
    priority: Priority = Priority.INTERACTIVE,
    seed: int = 1,
    max_tokens: int = 24,
    **sampling: object,
) -> GenerateRequest:
    return GenerateRequest(
        model_path=str(model),
        messages=(Message("system", SYSTEM), Message("user", text)),
        sampling=SamplingParams(seed=seed, max_tokens=max_tokens, **sampling),  # type: ignore[arg-type]
        priority=priority,
    )


def _engine(**overrides: object) -> LlamaCppEngine:
    config = EngineConfig(
        context=ContextConfig(n_ctx=overrides.pop("n_ctx", 2048)),  # type: ignore[arg-type]
        **overrides,  # type: ignore[arg-type]
    )
    return LlamaCppEngine(config)


@pytest.fixture
def engine() -> Iterator[LlamaCppEngine]:
    eng = _engine(n_seq_max=4)
    yield eng
    eng.close()


def _collect(engine: LlamaCppEngine, request: GenerateRequest) -> list[Chunk]:
    return list(engine.generate(request))


def _text(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks)


def _concurrently(engine: LlamaCppEngine, requests: list[GenerateRequest]) -> list[list[Chunk]]:
    results: list[list[Chunk]] = [[] for _ in requests]

    def run(i: int) -> None:
        results[i] = _collect(engine, requests[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_concurrent_requests_are_batched_and_all_complete(
    engine: LlamaCppEngine, tiny_model: Path
) -> None:
    # Bit-identity with solo runs is not asserted here: with four prompts
    # competing, llama.cpp's CPU kernels may round differently (the KV cells
    # and ubatch split differ), by ~1e-5 in the logits. The tests below pin
    # what the engine itself controls: interleaving and preemption.
    prompts = ["draft an invoice", "summarise my week", "plan a launch", "answer a client"]
    together = _concurrently(engine, [_req(tiny_model, p, seed=i) for i, p in enumerate(prompts)])
    for chunks in together:
        final = chunks[-1]
        assert final.finish_reason is FinishReason.LENGTH
        assert final.timings is not None
        assert final.timings.completion_tokens == 24
        assert _text(chunks)


def test_two_interleaved_agents_match_their_solo_runs(tiny_model: Path) -> None:
    engine = _engine(n_seq_max=2, step_token_budget=8)  # small steps: prefills interleave
    try:
        a = _req(tiny_model, "agent A reads the inbox " * 4, seed=11, max_tokens=40)
        b = _req(tiny_model, "agent B checks the orders " * 4, seed=22, max_tokens=40)
        solo_a, solo_b = _text(_collect(engine, a)), _text(_collect(engine, b))
        a2 = _req(tiny_model, "agent A reads the inbox " * 4, seed=11, max_tokens=40)
        b2 = _req(tiny_model, "agent B checks the orders " * 4, seed=22, max_tokens=40)
        got_a, got_b = _concurrently(engine, [a2, b2])
        assert (_text(got_a), _text(got_b)) == (solo_a, solo_b)
    finally:
        engine.close()


@dataclass
class _Interrupted:
    """A background run, alone and then interrupted by an interactive chat."""

    uninterrupted: str
    interrupted: str
    background: GenerateRequest
    final: Chunk
    chat: list[Chunk]


def _interrupt_background(
    engine: LlamaCppEngine,
    model: Path,
    max_tokens: int,
    on_chat_chunk: Callable[[Chunk], None] = lambda _: None,
) -> _Interrupted:
    """Run the same seeded background request twice, the second time with a chat in between."""

    def background() -> GenerateRequest:
        return _req(
            model, "nightly report", priority=Priority.BACKGROUND, seed=5, max_tokens=max_tokens
        )

    uninterrupted = _text(_collect(engine, background()))
    request = background()
    stream = engine.generate(request)
    first = next(stream)  # background is decoding now
    chat = []
    for chunk in engine.generate(_req(model, "quick question", max_tokens=8)):
        on_chat_chunk(chunk)
        chat.append(chunk)
    rest = list(stream)
    return _Interrupted(uninterrupted, first.text + _text(rest), request, rest[-1], chat)


def test_interactive_preempts_background_which_resumes_bit_identical(tiny_model: Path) -> None:
    # One slot: the background sequence must be swapped out and back in.
    engine = _engine(n_seq_max=1)
    try:
        run = _interrupt_background(engine, tiny_model, max_tokens=200)
        bg2, final = run.background, run.final
        assert run.chat[-1].finish_reason is FinishReason.LENGTH
        assert final.timings is not None
        assert final.timings.preemptions >= 1
        assert run.interrupted == run.uninterrupted
        record = next(r for r in engine.metrics.recent(10) if r["request_id"] == bg2.request_id)
        assert record["preemptions"] == final.timings.preemptions
        assert record["snapshot_bytes"] > 0  # it was swapped out of the only slot
        assert record["priority"] == "background"
        by_class = engine.metrics.percentiles("time_to_first_token_s", by=("priority",))
        assert by_class[("interactive",)]["count"] == 1
    finally:
        engine.close()


def test_interactive_is_served_before_queued_background(tiny_model: Path) -> None:
    engine = _engine(n_seq_max=1)
    order: list[str] = []
    lock = threading.Lock()
    try:
        bgs = [
            _req(tiny_model, f"batch job {i}", priority=Priority.BACKGROUND, max_tokens=60)
            for i in range(3)
        ]
        streams = [engine.generate(r) for r in bgs]
        first = next(streams[0])
        assert first.text or first.is_final

        def drain(name: str, it: Iterator[Chunk]) -> None:
            list(it)
            with lock:
                order.append(name)

        threads = [
            threading.Thread(target=drain, args=(f"bg{i}", s)) for i, s in enumerate(streams)
        ]
        for t in threads:
            t.start()
        chat = _collect(engine, _req(tiny_model, "hello?", max_tokens=4))
        with lock:
            order.append("chat")
        for t in threads:
            t.join(120)
        assert chat[-1].is_final
        assert order.index("chat") < order.index("bg1")
        assert order.index("chat") < order.index("bg2")
    finally:
        engine.close()


def test_shared_system_prompt_gives_the_same_text(engine: LlamaCppEngine, tiny_model: Path) -> None:
    alone = _text(_collect(engine, _req(tiny_model, "second question", seed=3, max_tokens=30)))
    long_one = engine.generate(_req(tiny_model, "first question", seed=2, max_tokens=400))
    next(long_one)  # its prompt (with the same system prompt) is in the context now
    shared = _collect(engine, _req(tiny_model, "second question", seed=3, max_tokens=30))
    engine.cancel(next(long_one).request_id)
    list(long_one)
    runner_logs = _text(shared)
    assert runner_logs == alone


def test_json_schema_constrains_a_random_model_to_valid_json(
    engine: LlamaCppEngine, tiny_model: Path
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "tool": {"type": "string", "enum": ["send_email", "create_event"]},
            "priority": {"type": "integer"},
        },
        "required": ["tool", "priority"],
    }
    chunks = _collect(
        engine, _req(tiny_model, "pick a tool", json_schema=json.dumps(schema), max_tokens=200)
    )
    assert chunks[-1].finish_reason is FinishReason.STOP  # the grammar ended it
    value = json.loads(_text(chunks))
    assert value["tool"] in ("send_email", "create_event")
    assert isinstance(value["priority"], int)


def test_gbnf_grammar(engine: LlamaCppEngine, tiny_model: Path) -> None:
    grammar = 'root ::= ("yes" | "no") "."'
    chunks = _collect(engine, _req(tiny_model, "ok?", grammar=grammar, max_tokens=20))
    assert _text(chunks) in ("yes.", "no.")


@pytest.mark.parametrize(
    "bad",
    [{"grammar": "root ::= ( unclosed"}, {"json_schema": "{not json"}],
)
def test_invalid_grammar_is_refused_and_the_engine_goes_on(
    engine: LlamaCppEngine, tiny_model: Path, bad: dict[str, str]
) -> None:
    with pytest.raises(InvalidGrammarError):
        _collect(engine, _req(tiny_model, "x", **bad))
    assert _collect(engine, _req(tiny_model, "still there?", max_tokens=3))[-1].is_final


def test_full_queue_is_refused_with_a_reason(tiny_model: Path) -> None:
    engine = _engine(n_seq_max=1, max_queue=1)
    try:
        running = engine.generate(_req(tiny_model, "a", max_tokens=300))
        next(running)
        queued = engine.generate(_req(tiny_model, "b", max_tokens=5))
        with pytest.raises(EngineBusyError, match="already wait to start"):
            for _ in range(3):  # the third cannot even queue
                _collect(engine, _req(tiny_model, "c", max_tokens=5))
        engine.cancel(next(running).request_id)
        assert list(running)[-1].is_final
        assert list(queued)[-1].is_final
    finally:
        engine.close()


def test_cancel_during_prefill(tiny_model: Path) -> None:
    engine = _engine(n_seq_max=1, step_token_budget=4)  # a long prompt takes many steps
    try:
        request = _req(tiny_model, "a long document " * 60, max_tokens=10)
        stream = engine.generate(request)
        assert engine.cancel(request.request_id)
        chunks = list(stream)
        assert chunks[-1].finish_reason is FinishReason.CANCELLED
        assert chunks[-1].timings is None or chunks[-1].timings.completion_tokens == 0
        assert _collect(engine, _req(tiny_model, "next", max_tokens=3))[-1].is_final
    finally:
        engine.close()


def test_least_recently_used_idle_model_is_unloaded_and_reloaded(
    tiny_model: Path, tmp_path: Path
) -> None:
    other = write_model(tmp_path / "other.gguf", seed=99)
    engine = _engine(max_models=1)
    try:
        first = _text(_collect(engine, _req(tiny_model, "hi", max_tokens=10)))
        _collect(engine, _req(other, "hi", max_tokens=10))
        assert engine.loaded_models() == [str(other)]
        again = _text(_collect(engine, _req(tiny_model, "hi", max_tokens=10)))
        assert engine.loaded_models() == [str(tiny_model)]
        assert again == first
    finally:
        engine.close()


def test_a_model_that_cannot_load_degrades_to_the_next_one(
    engine: LlamaCppEngine, tiny_model: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "big-model.gguf"
    broken.write_bytes(tiny_model.read_bytes()[:1000])  # cut short
    request = GenerateRequest(
        model_path=str(broken),
        messages=(Message("user", "hi"),),
        sampling=SamplingParams(max_tokens=4),
        fallback_models=(str(tmp_path / "missing.gguf"), str(tiny_model)),
    )
    chunks = _collect(engine, request)
    assert chunks[-1].is_final
    assert engine.loaded_models() == [str(tiny_model)]
    events = [(Path(e.model_path).name, e.error) for e in engine.events]
    assert events == [
        ("big-model.gguf", "TruncatedModelError"),
        ("missing.gguf", "ModelNotFoundError"),
    ]


def test_when_every_model_fails_the_preferred_ones_reason_is_raised(
    engine: LlamaCppEngine, tmp_path: Path
) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    request = GenerateRequest(
        model_path=str(text),
        messages=(Message("user", "hi"),),
        fallback_models=(str(tmp_path / "missing.gguf"),),
    )
    with pytest.raises(NotGGUFError):
        _collect(engine, request)


def _budgeted(budget: int, **overrides: object) -> LlamaCppEngine:
    return _engine(max_models=4, memory_budget_bytes=budget, **overrides)


def _one_model_budget(model: Path) -> int:
    from app.engine.placement import estimate_memory, footprint_from_gguf

    estimate = estimate_memory(footprint_from_gguf(model), 2048, 0)
    return int((estimate.device_bytes + estimate.host_bytes) * 1.5)  # one fits, two do not


def test_a_model_larger_than_the_budget_is_refused(tiny_model: Path) -> None:
    engine = _budgeted(1000)
    try:
        with pytest.raises(ModelTooLargeError, match="more than the"):
            _collect(engine, _req(tiny_model, "hi", max_tokens=2))
        assert engine.loaded_models() == []
    finally:
        engine.close()


def test_the_memory_budget_unloads_the_idle_model(tiny_model: Path, tmp_path: Path) -> None:
    other = write_model(tmp_path / "other.gguf", seed=7)
    engine = _budgeted(_one_model_budget(tiny_model))
    try:
        _collect(engine, _req(tiny_model, "hi", max_tokens=2))
        _collect(engine, _req(other, "hi", max_tokens=2))
        assert engine.loaded_models() == [str(other)]
    finally:
        engine.close()


def test_a_pinned_model_stays_and_the_newcomer_waits(tiny_model: Path, tmp_path: Path) -> None:
    other = write_model(tmp_path / "other.gguf", seed=7)
    engine = _budgeted(_one_model_budget(tiny_model), pinned=(str(tiny_model),))
    try:
        _collect(engine, _req(tiny_model, "hi", max_tokens=2))
        with pytest.raises(EngineBusyError, match="pinned"):
            _collect(engine, _req(other, "hi", max_tokens=2))
        assert engine.loaded_models() == [str(tiny_model)]
        assert _collect(engine, _req(tiny_model, "still here", max_tokens=2))[-1].is_final
    finally:
        engine.close()


def _probe_with_gpu(free_bytes: int) -> DeviceProbe:
    gpu = GgmlDevice("CUDA0", "NVIDIA test GPU", 1, "CUDA", free_bytes, 8 * 2**30)
    cpu = GgmlDevice("CPU", "test CPU", 0, "CPU", 16 * 2**30, 16 * 2**30)
    return DeviceProbe(ggml_devices=lambda: [gpu, cpu])


@pytest.mark.parametrize(
    ("free_bytes", "expected"),
    [(8 * 2**30, "all"), (0, 0)],
)
def test_gpu_layers_are_fitted_to_the_free_device_memory(
    tiny_model: Path, free_bytes: int, expected: object
) -> None:
    from app.engine.placement import footprint_from_gguf, gpu_layers_that_fit

    engine = _engine(device_probe=_probe_with_gpu(free_bytes))
    try:
        assert _collect(engine, _req(tiny_model, "hi", max_tokens=2))[-1].is_final
        layers = engine._runners[str(tiny_model)].gpu_layers
    finally:
        engine.close()
    footprint = footprint_from_gguf(tiny_model)
    if expected == "all":
        assert layers == footprint.n_layer + 1  # every block and the output layer
    else:
        assert layers == expected == gpu_layers_that_fit(footprint, free_bytes, 2048)


def test_without_a_gpu_everything_stays_on_the_cpu(tiny_model: Path) -> None:
    engine = _engine()  # this machine's real devices: no GPU in CI
    try:
        _collect(engine, _req(tiny_model, "hi", max_tokens=2))
        runner = engine._runners[str(tiny_model)]
    finally:
        engine.close()
    from app.engine.devices import discover_devices

    if not any(d.can_offload for d in discover_devices()):
        assert runner.gpu_layers == 0


def test_past_the_host_budget_a_preempted_sequence_waits_on_disk(
    tiny_model: Path, tmp_path: Path
) -> None:
    swap = tmp_path / "swap"
    engine = _engine(n_seq_max=1, host_swap_budget_bytes=0, swap_dir=swap)
    try:
        seen_on_disk: list[int] = []

        def during_chat(chunk: Chunk) -> None:
            seen_on_disk.append(len(list(swap.rglob("*.solokv"))))
            assert chunk.error is None

        run = _interrupt_background(engine, tiny_model, max_tokens=120, on_chat_chunk=during_chat)
        assert max(seen_on_disk) == 1  # the background state was on disk meanwhile
        assert run.final.timings is not None
        assert run.final.timings.preemptions >= 1
        assert run.interrupted == run.uninterrupted
        assert not list(swap.rglob("*.solokv"))  # taken back, file removed
    finally:
        engine.close()


def test_requests_for_models_that_evict_each_other_all_complete(
    tiny_model: Path, tmp_path: Path
) -> None:
    other = write_model(tmp_path / "other.gguf", seed=3)
    engine = _engine(max_models=1, n_seq_max=2)
    try:
        requests = [
            _req(m, f"turn {i}", max_tokens=6) for i, m in enumerate([tiny_model, other] * 3)
        ]
        results = _concurrently(engine, requests)
        assert all(r and r[-1].finish_reason is FinishReason.LENGTH for r in results)
        assert len(engine.loaded_models()) <= 2  # a busy model is never unloaded under it
    finally:
        engine.close()
