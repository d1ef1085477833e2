"""Sessions survive the engine: a finished turn is saved, the next one resumes from it."""

from __future__ import annotations

from pathlib import Path

from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import EngineConfig, LlamaCppEngine
from app.engine.types import Chunk, GenerateRequest, Message, SamplingParams

SYSTEM = "You keep the books of a one-person bakery. Answer in short lines. " * 4


def _engine(snapshots: Path | None) -> LlamaCppEngine:
    return LlamaCppEngine(
        EngineConfig(context=ContextConfig(n_ctx=2048), n_seq_max=2, snapshot_dir=snapshots)
    )


def _turn(engine: LlamaCppEngine, model: Path, messages: list[Message]) -> list[Chunk]:
    request = GenerateRequest(
        model_path=str(model),
        messages=tuple(messages),
        sampling=SamplingParams(temperature=0.0, max_tokens=20),
        session_id="books",
    )
    return list(engine.generate(request))


def _text(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks)


def test_a_session_resumes_after_an_engine_restart(tiny_model: Path, tmp_path: Path) -> None:
    first_turn = [Message("system", SYSTEM), Message("user", "What did we sell today?")]
    engine = _engine(tmp_path / "kv")
    reply = _text(_turn(engine, tiny_model, first_turn))
    engine.close()  # waits for the snapshot to be written
    assert list((tmp_path / "kv").glob("*.solokv"))

    second_turn = [*first_turn, Message("assistant", reply), Message("user", "And yesterday?")]
    fresh = _engine(tmp_path / "kv")  # a new engine: nothing in memory
    resumed = _turn(fresh, tiny_model, second_turn)
    fresh.close()
    cold = _engine(None)
    from_scratch = _turn(cold, tiny_model, second_turn)
    cold.close()

    timings = resumed[-1].timings
    assert timings is not None
    assert timings.cached_tokens > 100  # the system prompt and first turn were restored
    assert from_scratch[-1].timings is not None
    assert from_scratch[-1].timings.cached_tokens == 0
    assert _text(resumed) == _text(from_scratch)


def test_same_prompt_again_restores_all_but_the_last_token(
    tiny_model: Path, tmp_path: Path
) -> None:
    messages = [Message("system", SYSTEM), Message("user", "Regenerate this.")]
    engine = _engine(tmp_path / "kv")
    try:
        first = _turn(engine, tiny_model, messages)
        again = _turn(engine, tiny_model, messages)
    finally:
        engine.close()
    assert first[-1].timings is not None and again[-1].timings is not None
    assert again[-1].timings.cached_tokens == first[-1].timings.prompt_tokens - 1
    assert _text(again) == _text(first)


def test_a_damaged_snapshot_is_skipped_and_the_prompt_prefilled(
    tiny_model: Path, tmp_path: Path
) -> None:
    messages = [Message("system", SYSTEM), Message("user", "Count the loaves.")]
    engine = _engine(tmp_path / "kv")
    first = _text(_turn(engine, tiny_model, messages))
    engine.close()
    for snap in (tmp_path / "kv").glob("*.solokv"):
        data = bytearray(snap.read_bytes())
        data[-10] ^= 0xFF  # flip a byte of the KV payload
        snap.write_bytes(bytes(data))
    fresh = _engine(tmp_path / "kv")
    try:
        again = _turn(fresh, tiny_model, messages)
    finally:
        fresh.close()
    assert again[-1].timings is not None
    assert again[-1].timings.cached_tokens == 0
    assert _text(again) == first
