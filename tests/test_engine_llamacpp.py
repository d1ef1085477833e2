"""The real llama.cpp engine on generated GGUF models."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.errors import (
    ModelNotFoundError,
    NotGGUFError,
    PromptTooLongError,
    TruncatedModelError,
)
from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import LlamaCppEngine
from app.engine.types import Chunk, FinishReason, GenerateRequest, Message, SamplingParams


@pytest.fixture
def engine() -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(ContextConfig(n_ctx=512, n_batch=64))
    yield eng
    eng.close()


def _request(model: Path, text: str = "hello", **sampling: object) -> GenerateRequest:
    return GenerateRequest(
        model_path=str(model),
        messages=(Message("system", "Be brief."), Message("user", text)),
        sampling=SamplingParams(**sampling),  # type: ignore[arg-type]
    )


def test_streams_tokens_and_ends_with_timings(engine: LlamaCppEngine, tiny_model: Path) -> None:
    chunks = list(engine.generate(_request(tiny_model, max_tokens=24)))
    final = chunks[-1]
    assert final.is_final
    assert all(not c.is_final for c in chunks[:-1])
    assert len([c for c in chunks if c.text]) >= 2  # streamed in pieces, not one blob
    assert final.timings is not None
    assert final.timings.prompt_tokens > 10
    assert 1 <= final.timings.completion_tokens <= 24
    assert final.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
    if final.finish_reason is FinishReason.LENGTH:
        assert final.timings.completion_tokens == 24


def test_same_seed_gives_same_text(engine: LlamaCppEngine, tiny_model: Path) -> None:
    def text(seed: int) -> str:
        chunks = engine.generate(_request(tiny_model, max_tokens=16, seed=seed))
        return "".join(c.text for c in chunks)

    assert text(7) == text(7)
    assert text(7) != text(8)


def test_model_without_template_uses_plain_prompt(
    engine: LlamaCppEngine, tiny_model_no_template: Path
) -> None:
    chunks = list(engine.generate(_request(tiny_model_no_template, max_tokens=8)))
    assert chunks[-1].is_final
    assert chunks[-1].error is None


def test_cancel_stops_the_stream_within_one_token_step(
    engine: LlamaCppEngine, tiny_model: Path
) -> None:
    request = _request(tiny_model, max_tokens=5000, temperature=1.0)
    stream = engine.generate(request)
    seen: list[Chunk] = []
    generated_at_cancel = -1
    for chunk in stream:
        seen.append(chunk)
        if len(seen) == 3:
            active = engine._runners[str(tiny_model)]._active[request.request_id]
            assert engine.cancel(request.request_id)
            # White-box: how far the engine thread had got once the cancel was posted.
            generated_at_cancel = active.n_out
    final = seen[-1]
    assert final.finish_reason is FinishReason.CANCELLED
    assert final.timings is not None
    assert generated_at_cancel >= 3
    # At most the one token step already under way when the flag was set.
    assert final.timings.completion_tokens <= generated_at_cancel + 1


def test_cancel_from_another_thread(engine: LlamaCppEngine, tiny_model: Path) -> None:
    request = _request(tiny_model, max_tokens=5000, temperature=1.0)
    first = threading.Event()
    chunks: list[Chunk] = []

    def consume() -> None:
        for chunk in engine.generate(request):
            chunks.append(chunk)
            first.set()

    reader = threading.Thread(target=consume)
    reader.start()
    assert first.wait(30)
    assert engine.cancel(request.request_id)
    reader.join(30)
    assert not reader.is_alive()
    assert chunks[-1].finish_reason is FinishReason.CANCELLED


def test_cancel_of_unknown_request_is_false(engine: LlamaCppEngine) -> None:
    assert engine.cancel("nope") is False


def test_stop_string_ends_the_reply(engine: LlamaCppEngine, tiny_model: Path) -> None:
    # The test model favours spaces, so " " turns up quickly.
    chunks = list(engine.generate(_request(tiny_model, max_tokens=200, stop=(" ",))))
    assert chunks[-1].finish_reason is FinishReason.STOP
    assert " " not in "".join(c.text for c in chunks)


def test_missing_model(engine: LlamaCppEngine, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="No model file"):
        list(engine.generate(_request(tmp_path / "absent.gguf")))


def test_text_file_named_gguf(engine: LlamaCppEngine, tmp_path: Path) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("these are my notes, not a model")
    with pytest.raises(NotGGUFError, match="not a GGUF"):
        list(engine.generate(_request(fake)))


def test_truncated_model(engine: LlamaCppEngine, tiny_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    data = tiny_model.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedModelError, match="cut short"):
        list(engine.generate(_request(cut)))


def test_prompt_longer_than_context(engine: LlamaCppEngine, tiny_model: Path) -> None:
    with pytest.raises(PromptTooLongError, match="context holds 512"):
        list(engine.generate(_request(tiny_model, "x" * 2000)))


def test_engine_keeps_serving_after_an_error(engine: LlamaCppEngine, tiny_model: Path) -> None:
    with pytest.raises(PromptTooLongError):
        list(engine.generate(_request(tiny_model, "x" * 2000)))
    chunks = list(engine.generate(_request(tiny_model, max_tokens=4)))
    assert chunks[-1].is_final


@pytest.mark.parametrize(("offset", "value"), [(8, 2**40), (16, 2**40), (8, 10**6)])
def test_header_claiming_absurd_sizes(
    engine: LlamaCppEngine, tiny_model: Path, tmp_path: Path, offset: int, value: int
) -> None:
    data = bytearray(tiny_model.read_bytes())
    data[offset : offset + 8] = struct.pack("<Q", value)  # tensor or key-value count
    absurd = tmp_path / "absurd.gguf"
    absurd.write_bytes(bytes(data))
    with pytest.raises(TruncatedModelError):
        list(engine.generate(_request(absurd)))
    assert list(engine.generate(_request(tiny_model, max_tokens=2)))[-1].is_final
