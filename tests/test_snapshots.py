"""KV snapshots: the file store, and real llama.cpp sequences saved and restored."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.devtools.testmodels import write_model
from app.engine import kvstate
from app.engine.gguf_file import check_gguf
from app.engine.llama_adapter import ContextConfig, LoadedModel, llama
from app.engine.snapshots import (
    HEADER_SIZE,
    SeqStateError,
    SnapshotCorruptError,
    SnapshotModelMismatchError,
    SnapshotNotFoundError,
    SnapshotRef,
    SnapshotStore,
    model_identity_from_info,
    snapshot_key,
)
from app.engine.types import SamplingParams

N_VOCAB = 259  # the byte vocabulary of the generated models
PROMPT = [1] + [random.Random(5).randrange(3, N_VOCAB) for _ in range(299)]


class RawContext:
    """A llama.cpp context with several sequences, decoded through the raw API."""

    def __init__(self, path: Path, *, n_seq_max: int = 2, kv_unified: bool = True) -> None:
        self.lib = lib = llama()
        self.model = lib.llama_model_load_from_file(
            str(path).encode(), lib.llama_model_default_params()
        )
        cparams = lib.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_seq_max = 1024, 512, n_seq_max
        cparams.kv_unified = kv_unified
        cparams.n_threads = cparams.n_threads_batch = 2
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        self.batch = lib.llama_batch_init(512, 0, 1)

    def decode(self, tokens: list[int], start: int, seq: int) -> None:
        for i, tok in enumerate(tokens):
            self.batch.token[i], self.batch.pos[i] = tok, start + i
            self.batch.n_seq_id[i], self.batch.seq_id[i][0] = 1, seq
            self.batch.logits[i] = int(i == len(tokens) - 1)
        self.batch.n_tokens = len(tokens)
        assert self.lib.llama_decode(self.ctx, self.batch) == 0

    def generate(self, seq: int, start: int, mode: str, n: int = 20) -> tuple[list[int], Any]:
        """``n`` tokens from the current logits, and the logits each was drawn from."""
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if mode == "greedy":  # a penalty keeps a random model from repeating one token
            lib.llama_sampler_chain_add(
                chain, lib.llama_sampler_init_penalties(N_VOCAB, 64, 1.5, 0, 0)
            )
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(1.0))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(1234))
        out, logits = [], []
        for pos in range(start, start + n):
            row = lib.llama_get_logits_ith(self.ctx, -1)
            logits.append(np.ctypeslib.as_array(row, shape=(N_VOCAB,)).copy())
            out.append(int(lib.llama_sampler_sample(chain, self.ctx, -1)))
            self.decode(out[-1:], pos, seq)
        lib.llama_sampler_free(chain)
        return out, np.array(logits)

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)
        self.lib.llama_model_free(self.model)


@pytest.fixture
def contexts(tiny_model: Path) -> Iterator[Any]:
    made: list[RawContext] = []

    def make(**options: Any) -> RawContext:
        made.append(RawContext(tiny_model, **options))
        return made[-1]

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture(scope="session")
def identity(tiny_model: Path) -> str:
    return model_identity_from_info(check_gguf(tiny_model), kv_layout=kvstate.kv_layout_tag())


@pytest.fixture(scope="session")
def other_identity(model_dir: Path) -> str:
    other = write_model(model_dir / "tiny-seed7.gguf", seed=7)
    return model_identity_from_info(check_gguf(other), kv_layout=kvstate.kv_layout_tag())


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "kv")


def _holds(ctx: RawContext, seq: int, state: bytearray, spare: int = 0) -> bool:
    """Whether ``seq`` holds exactly the cells of ``state``, a state saved from ``spare``.

    A state names the sequence it came from, so it is compared after a move
    back into that sequence id.
    """
    kvstate.set_seq_state(ctx, spare, kvstate.get_seq_state(ctx, seq))
    same = kvstate.get_seq_state(ctx, spare) == state
    kvstate.clear_seq(ctx, spare)
    return same


# -- real sequences --------------------------------------------------------


@pytest.mark.parametrize("mode", ["greedy", "dist"])
def test_round_trip_into_a_fresh_context_is_bit_identical(
    contexts: Any, store: SnapshotStore, identity: str, mode: str
) -> None:
    a = contexts()
    # Prefill with the last prompt token in a batch of its own: then a
    # restored sequence, which re-decodes that token, computes the same bits.
    a.decode(PROMPT[:-1], 0, 0)
    a.decode(PROMPT[-1:], len(PROMPT) - 1, 0)
    ref = kvstate.snapshot_seq(a, 0, store, identity, PROMPT)
    expected, expected_logits = a.generate(0, len(PROMPT), mode)

    reopened = SnapshotStore(store.root)  # as after an app restart
    b = contexts()
    n = kvstate.resume_seq(b, 1, reopened, identity, PROMPT)
    assert n == len(PROMPT) - 1
    assert kvstate.seq_pos_max(b, 1) == n - 1
    kvstate.trim_seq(a, 0, n)  # what B holds now: A's state less the last token
    assert _holds(b, 1, kvstate.get_seq_state(a, 0))
    b.decode(PROMPT[n:], n, 1)
    got, got_logits = b.generate(1, len(PROMPT), mode)

    assert ref.n_tokens == len(PROMPT)
    assert got == expected
    assert np.array_equal(got_logits, expected_logits)
    assert len(set(expected)) > 3  # the check means something: not one token repeated


def test_round_trip_through_loaded_model_sequence_0(
    tiny_model: Path, store: SnapshotStore, identity: str
) -> None:
    config = ContextConfig(n_ctx=512, n_batch=512, n_threads=2)
    params = SamplingParams(temperature=0, repeat_penalty=1.5)

    def generate(m: LoadedModel, start: int) -> list[int]:
        sampler, out = m.new_sampler(params), []
        for pos in range(start, start + 20):
            out.append(sampler.sample())
            m.decode(out[-1:], pos, want_logits=True)
        sampler.close()
        return out

    a = LoadedModel(str(tiny_model), config)
    a.decode(PROMPT, 0, want_logits=True)
    kvstate.snapshot_seq(a, 0, store, identity, PROMPT)
    expected = generate(a, len(PROMPT))
    a.close()

    b = LoadedModel(str(tiny_model), config)
    n = kvstate.resume_seq(b, 0, store, identity, PROMPT)
    b.decode(PROMPT[n:], n, want_logits=True)
    got = generate(b, len(PROMPT))
    b.close()
    assert got == expected


@pytest.mark.parametrize("mode", ["greedy", "dist"])
@pytest.mark.parametrize("cut", [37, 150, 298])
def test_restored_prefix_plus_tail_matches_full_prefill(
    contexts: Any, store: SnapshotStore, identity: str, mode: str, cut: int
) -> None:
    full = contexts()
    full.decode(PROMPT, 0, 0)
    expected, expected_logits = full.generate(0, len(PROMPT), mode)

    early = contexts()
    early.decode(PROMPT[:cut], 0, 0)
    kvstate.snapshot_seq(early, 0, store, identity, PROMPT[:cut])

    late = contexts()
    n = kvstate.resume_seq(late, 1, store, identity, PROMPT)
    assert n == cut
    # The restore is exact: sequence 1 now holds the very bytes sequence 0 had.
    assert _holds(late, 1, kvstate.get_seq_state(early, 0))
    late.decode(PROMPT[n:], n, 1)
    got, got_logits = late.generate(1, len(PROMPT), mode)
    assert got == expected
    assert len(set(expected)) > 3
    # Not bit-equal: another split of the prompt into batches sums in another order.
    assert np.allclose(got_logits, expected_logits, atol=0.02)


def test_a_unified_kv_snapshot_loads_into_any_context_on_the_model(
    contexts: Any, tiny_model: Path, store: SnapshotStore, identity: str
) -> None:
    source = contexts(n_seq_max=2)
    source.decode(PROMPT[:60], 0, 1)
    ref = kvstate.snapshot_seq(source, 1, store, identity, PROMPT[:60])
    wide = contexts(n_seq_max=4)
    assert kvstate.restore_seq(wide, 3, store, ref.key, identity) == PROMPT[:60]
    assert kvstate.seq_pos_max(wide, 3) == 59
    single = LoadedModel(str(tiny_model), ContextConfig(n_ctx=512, n_threads=2))
    try:
        kvstate.restore_seq(single, 0, store, ref.key, identity)
        assert kvstate.seq_pos_max(single, 0) == 59
    finally:
        single.close()


def test_a_per_sequence_kv_snapshot_fits_only_the_same_stream_count(
    contexts: Any, tiny_model: Path, store: SnapshotStore
) -> None:
    info = check_gguf(tiny_model)

    def identity_for(n_seq_max: int) -> str:
        streams = kvstate.kv_streams(n_seq_max, kv_unified=False)
        tag = kvstate.kv_layout_tag(n_streams=streams)
        return model_identity_from_info(info, kv_layout=tag)

    source = contexts(n_seq_max=2, kv_unified=False)
    source.decode(PROMPT[:30], 0, 0)
    ref = kvstate.snapshot_seq(source, 0, store, identity_for(2), PROMPT[:30])
    with pytest.raises(SnapshotModelMismatchError):
        store.load(ref.key, identity_for(4))
    # Without the tag, llama.cpp itself refuses it.
    with pytest.raises(SeqStateError):
        kvstate.set_seq_state(contexts(n_seq_max=4, kv_unified=False), 2, _state_of(store, ref))
    same = contexts(n_seq_max=2, kv_unified=False)
    kvstate.restore_seq(same, 1, store, ref.key, identity_for(2))
    assert kvstate.seq_pos_max(same, 1) == 29


def _state_of(store: SnapshotStore, ref: SnapshotRef) -> bytes:
    return store.load(ref.key, ref.model_identity).state


def test_restore_replaces_what_the_sequence_held(
    contexts: Any, store: SnapshotStore, identity: str
) -> None:
    ctx = contexts()
    ctx.decode(PROMPT[:50], 0, 0)
    ref = kvstate.snapshot_seq(ctx, 0, store, identity, PROMPT[:50])
    ctx.decode(PROMPT[:200], 0, 1)
    assert kvstate.restore_seq(ctx, 1, store, ref.key, identity) == PROMPT[:50]
    assert kvstate.seq_pos_max(ctx, 1) == 49
    assert kvstate.seq_pos_max(ctx, 0) == 49
    kvstate.clear_seq(ctx, 1)
    assert kvstate.seq_pos_max(ctx, 1) == -1
    assert kvstate.seq_state_size(ctx, 0) == ref.size_bytes - HEADER_SIZE - 4 * 50


def test_snapshot_refuses_tokens_the_sequence_does_not_hold(
    contexts: Any, store: SnapshotStore, identity: str
) -> None:
    ctx = contexts()
    ctx.decode(PROMPT[:10], 0, 0)
    with pytest.raises(ValueError, match="holds 10 positions"):
        kvstate.snapshot_seq(ctx, 0, store, identity, PROMPT[:12])
    assert len(store) == 0


def test_llama_cpp_refusing_a_state_is_a_typed_error(contexts: Any) -> None:
    ctx = contexts()
    ctx.decode(PROMPT[:20], 0, 0)
    state = kvstate.get_seq_state(ctx, 0)
    with pytest.raises(SeqStateError, match="sequence 1"):
        kvstate.set_seq_state(ctx, 1, state[: len(state) // 2])
    assert kvstate.seq_pos_max(ctx, 1) == -1
    kvstate.set_seq_state(ctx, 1, state)  # the context is still usable
    assert kvstate.seq_pos_max(ctx, 1) == 19


def test_resume_skips_a_damaged_snapshot_and_prefills_from_scratch(
    contexts: Any, store: SnapshotStore, identity: str, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = contexts()
    ctx.decode(PROMPT[:40], 0, 0)
    ref = kvstate.snapshot_seq(ctx, 0, store, identity, PROMPT[:40])
    _flip(ref.path, ref.size_bytes - 5)
    with caplog.at_level(logging.WARNING, "soloist.engine.snapshots"):
        assert kvstate.resume_seq(ctx, 1, store, identity, PROMPT) == 0
    assert "SnapshotCorruptError" in caplog.text
    assert kvstate.seq_pos_max(ctx, 1) == -1
    assert ref.key not in store


# -- the file store ------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_save_is_content_addressed_and_reloads(store: SnapshotStore, identity: str) -> None:
    ref = store.save(identity, [1, 2, 3], b"state-bytes")
    assert ref.key == snapshot_key(identity, [1, 2, 3])
    assert ref.path == store.root / f"{ref.key}.solokv"
    assert ref.size_bytes == ref.path.stat().st_size == HEADER_SIZE + 12 + 11
    assert store.save(identity, [1, 2, 3], b"state-bytes") == ref
    assert store.load(ref.key, identity) == ([1, 2, 3], b"state-bytes")
    assert store.load(ref.path, identity).state == b"state-bytes"
    assert list(store.root.iterdir()) == [ref.path]  # no temporary file left


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "truncated"),
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "truncated"),
        (lambda p: _flip(p, HEADER_SIZE + 4 * 3 + 2), "checksum mismatch"),
        (lambda p: _flip(p, HEADER_SIZE + 1), "checksum mismatch"),
        (lambda p: _flip(p, 50), "damaged header"),
        (lambda p: _flip(p, 2), "bad magic"),
        (lambda p: p.write_bytes(p.read_bytes() + b"\0"), "trailing bytes"),
    ],
)
def test_a_damaged_file_is_a_typed_error_and_the_store_stays_usable(
    store: SnapshotStore, identity: str, damage: Any, message: str
) -> None:
    ref = store.save(identity, [1, 2, 3], b"\x00\x01" * 64)
    damage(ref.path)
    with pytest.raises(SnapshotCorruptError, match=message):
        store.load(ref.key, identity)
    assert ref.key not in store
    assert not ref.path.exists()
    again = store.save(identity, [1, 2, 3], b"\x00\x01" * 64)
    assert store.load(again.key, identity).tokens == [1, 2, 3]


def test_a_damaged_file_is_dropped_when_the_store_opens(
    store: SnapshotStore, identity: str
) -> None:
    kept = store.save(identity, [1, 2], b"abc")
    bad = store.save(identity, [1, 2, 3], b"abcd")
    bad.path.write_bytes(bad.path.read_bytes()[:-1])
    (store.root / f"{kept.key}.solokv.tmp99").write_bytes(b"half")
    reopened = SnapshotStore(store.root)
    assert reopened.refs() == [kept]
    assert sorted(reopened.root.iterdir()) == [kept.path]


def test_another_models_snapshot_is_a_mismatch_and_is_kept(
    store: SnapshotStore, identity: str, other_identity: str
) -> None:
    assert other_identity != identity
    ref = store.save(other_identity, [1, 2, 3], b"state")
    with pytest.raises(SnapshotModelMismatchError, match="another model"):
        store.load(ref.key, identity)
    assert store.load(ref.key, other_identity).state == b"state"


def test_an_empty_snapshot_is_refused(store: SnapshotStore, identity: str) -> None:
    with pytest.raises(ValueError, match="at least one token"):
        store.save(identity, [], b"state")
    assert len(store) == 0


def test_missing_snapshot_is_not_found(store: SnapshotStore, identity: str) -> None:
    with pytest.raises(SnapshotNotFoundError):
        store.load("0" * 64, identity)
    with pytest.raises(SnapshotNotFoundError):
        store.load("not-a-key", identity)
    assert not store.delete("0" * 64)


def test_identity_depends_on_kv_layout(tiny_model: Path, identity: str) -> None:
    info = check_gguf(tiny_model)
    assert model_identity_from_info(info, kv_layout=kvstate.kv_layout_tag()) == identity
    q8 = kvstate.kv_layout_tag(type_k="q8_0", type_v="q8_0")
    assert model_identity_from_info(info, kv_layout=q8) != identity


def test_find_longest_prefix_picks_the_longest_of_this_model(
    store: SnapshotStore, identity: str, other_identity: str
) -> None:
    short = store.save(identity, [1, 2, 3], b"s")
    longest = store.save(identity, [1, 2, 3, 4, 5], b"l")
    store.save(identity, [1, 2, 9, 9, 9, 9], b"x")
    store.save(other_identity, [1, 2, 3, 4, 5, 6], b"o")
    for s in (store, SnapshotStore(store.root)):  # and from an index rebuilt from disk
        assert s.find_longest_prefix(identity, [1, 2, 3, 4, 5, 6, 7]) == longest
        assert s.find_longest_prefix(identity, [1, 2, 3, 4]) == short
        assert s.find_longest_prefix(identity, [1, 2, 3]) == short
        assert s.find_longest_prefix(identity, [1, 2]) is None
        assert s.find_longest_prefix(identity, [256, 2, 3]) is None  # bytes differ, not ids
        assert s.find_longest_prefix(other_identity, [1, 2, 3, 4, 5]) is None


def test_prune_keeps_the_most_recently_used_within_the_cap(tmp_path: Path, identity: str) -> None:
    now = iter(range(1_000_000_000, 2_000_000_000, 1_000_000))
    store = SnapshotStore(tmp_path / "kv", clock_ns=lambda: next(now))
    a = store.save(identity, [1], b"a" * 100)
    b = store.save(identity, [2], b"b" * 100)
    c = store.save(identity, [3], b"c" * 100)
    store.load(a.key, identity)  # a is now the most recent
    assert store.total_bytes() == 3 * a.size_bytes
    assert store.prune(2 * a.size_bytes) == [b.key]
    assert [r.key for r in store.refs()] == [a.key, c.key]
    assert not b.path.exists()
    # Recency lives in the files' mtimes, so it survives a restart.
    reopened = SnapshotStore(store.root)
    assert reopened.prune(a.size_bytes) == [c.key]
    assert reopened.refs() == [a]
    assert reopened.prune(0) == [a.key]
    assert reopened.total_bytes() == 0
