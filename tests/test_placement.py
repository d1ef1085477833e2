"""Placement and residency decisions: tables, properties, and a real GGUF footprint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.errors import ModelNotFoundError, NotGGUFError
from app.engine.placement import (
    LoadedModelInfo,
    MemoryEstimate,
    ModelFootprint,
    choose_eviction,
    estimate_memory,
    expired,
    footprint_from_gguf,
    footprint_from_tensors,
    gpu_layers_that_fit,
    kv_cache_bytes,
    next_model,
    over_count,
)

# Four layers of 100 bytes; one KV row is 1 K + 1 V element, so at f16 and
# n_ctx=10 each layer's KV cache is 10 * 2 * 2 = 40 bytes.
FP = ModelFootprint(
    architecture="llama",
    n_layer=4,
    n_embd=8,
    n_head=8,
    n_head_kv=1,
    head_dim_k=1,
    head_dim_v=1,
    n_ctx_train=4096,
    layer_bytes=(100, 100, 100, 100),
    input_bytes=50,
    output_bytes=40,
    embedding_bytes=50,
)


# ---------------------------------------------------------------- KV cache


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"n_ctx": 10}, 4 * 40),
        ({"n_ctx": 0}, 0),
        ({"n_ctx": 10, "n_seq": 3}, 3 * 4 * 40),
        ({"n_ctx": 10, "type_bytes": 4}, 4 * 80),  # f32 cache
        ({"n_ctx": 32, "type_bytes": 34 / 32}, 4 * 32 * 2 * 34 // 32),  # q8_0
        ({"n_ctx": 10, "n_layers": 1}, 40),
        ({"n_ctx": 10, "n_layers": 0}, 0),
        ({"n_ctx": 10, "n_layers": 99}, 4 * 40),
    ],
)
def test_kv_cache_bytes(kwargs: dict[str, Any], expected: int) -> None:
    assert kv_cache_bytes(FP, **kwargs) == expected


def test_kv_cache_with_different_k_and_v_widths() -> None:
    mla = replace(FP, head_dim_k=3, head_dim_v=1, n_head_kv=2)  # rows of 6 + 2 elements
    assert kv_cache_bytes(mla, 10) == 10 * (6 + 2) * 2 * 4


# ------------------------------------------------------- memory estimates


@pytest.mark.parametrize(
    ("n_gpu_layers", "device", "host"),
    [
        (0, 0, 400 + 50 + 40 + 160),
        (1, 100 + 40, 300 + 50 + 40 + 120),
        (3, 300 + 120, 100 + 50 + 40 + 40),
        (4, 400 + 160, 50 + 40),  # every block, the output layer stays on the host
        (5, 400 + 160 + 40, 50),  # n_layer + 1: the output layer too
        (-1, 400 + 160 + 40, 50),  # llama.cpp's "all"
        (99, 400 + 160 + 40, 50),
    ],
)
def test_estimate_memory(n_gpu_layers: int, device: int, host: int) -> None:
    assert estimate_memory(FP, 10, n_gpu_layers) == MemoryEstimate(device, host)


def test_tied_embeddings_copy_token_embd_to_the_gpu_with_the_output_layer() -> None:
    tied = replace(FP, output_bytes=8, tied_embeddings=True)  # output_norm only
    assert estimate_memory(tied, 10, 5) == MemoryEstimate(400 + 160 + 8 + 50, 50)
    assert estimate_memory(tied, 10, 4).host_bytes == 50 + 8


def test_the_last_layers_are_offloaded_first() -> None:
    uneven = replace(FP, layer_bytes=(10, 20, 30, 1000))
    assert estimate_memory(uneven, 0, 1).device_bytes == 1000
    assert gpu_layers_that_fit(uneven, 999, 0, reserve_bytes=0) == 0


# -------------------------------------------------------- layers that fit


@pytest.mark.parametrize(
    ("free", "reserve", "expected"),
    [
        (0, 0, 0),
        (139, 0, 0),
        (140, 0, 1),
        (279, 0, 1),
        (280, 0, 2),
        (559, 0, 3),
        (560, 0, 4),  # all blocks, not the output layer
        (599, 0, 4),
        (600, 0, 5),  # everything
        (10**12, 0, 5),
        (240, 100, 1),
        (50, 100, 0),  # less free than the reserve
    ],
)
def test_gpu_layers_that_fit(free: int, reserve: int, expected: int) -> None:
    assert gpu_layers_that_fit(FP, free, 10, reserve_bytes=reserve) == expected


def test_more_sequences_need_more_room() -> None:
    assert gpu_layers_that_fit(FP, 600, 10, reserve_bytes=0, n_seq=2) == 3


@st.composite
def footprints(draw: st.DrawFn) -> ModelFootprint:
    n_layer = draw(st.integers(1, 40))
    return ModelFootprint(
        architecture="llama",
        n_layer=n_layer,
        n_embd=64,
        n_head=4,
        n_head_kv=draw(st.integers(1, 8)),
        head_dim_k=draw(st.integers(1, 256)),
        head_dim_v=draw(st.integers(1, 256)),
        n_ctx_train=4096,
        layer_bytes=tuple(
            draw(st.lists(st.integers(0, 10**9), min_size=n_layer, max_size=n_layer))
        ),
        input_bytes=draw(st.integers(0, 10**9)),
        output_bytes=draw(st.integers(0, 10**9)),
        embedding_bytes=draw(st.integers(0, 10**9)),
        tied_embeddings=draw(st.booleans()),
    )


memory = st.integers(0, 10**12)
contexts = st.integers(0, 32768)


@given(footprints(), memory, memory, contexts, st.integers(0, 10**9))
def test_layers_that_fit_grow_with_free_memory(
    fp: ModelFootprint, free_a: int, free_b: int, n_ctx: int, reserve: int
) -> None:
    low, high = sorted((free_a, free_b))
    assert gpu_layers_that_fit(fp, low, n_ctx, reserve) <= gpu_layers_that_fit(
        fp, high, n_ctx, reserve
    )


@given(footprints(), memory, contexts, st.integers(0, 10**9))
def test_chosen_layers_fit_and_one_more_would_not(
    fp: ModelFootprint, free: int, n_ctx: int, reserve: int
) -> None:
    chosen = gpu_layers_that_fit(fp, free, n_ctx, reserve)
    assert 0 <= chosen <= fp.n_layer + 1
    device = estimate_memory(fp, n_ctx, chosen).device_bytes
    assert device == 0 if chosen == 0 else device <= free - reserve
    if chosen < fp.n_layer + 1:
        assert estimate_memory(fp, n_ctx, chosen + 1).device_bytes > free - reserve


@given(footprints(), contexts, st.integers(-1, 50))
def test_estimates_account_for_every_byte(fp: ModelFootprint, n_ctx: int, layers: int) -> None:
    estimate = estimate_memory(fp, n_ctx, layers)
    output_offloaded = layers < 0 or layers > fp.n_layer
    output_copy = fp.embedding_bytes if fp.tied_embeddings and output_offloaded else 0
    assert estimate.total_bytes == fp.weight_bytes + kv_cache_bytes(fp, n_ctx) + output_copy


# ------------------------------------------------------------- footprints


def _meta(**extra: Any) -> dict[str, Any]:
    base = {
        "general.architecture": "llama",
        "llama.block_count": 2,
        "llama.embedding_length": 64,
        "llama.attention.head_count": 4,
        "llama.context_length": 2048,
    }
    return base | extra


TENSORS = [
    ("token_embd.weight", 1000),
    ("output_norm.weight", 10),
    ("output.weight", 900),
    ("blk.0.attn_q.weight", 100),
    ("blk.0.ffn_up.weight", 200),
    ("blk.1.attn_q.weight", 100),
    ("blk.1.ffn_up.weight", 250),
]


@pytest.mark.parametrize(
    ("metadata", "tensors", "expected"),
    [
        (
            _meta(),
            TENSORS,
            {"n_layer": 2, "n_head_kv": 4, "head_dim_k": 16, "layer_bytes": (300, 350)},
        ),
        (_meta(**{"llama.attention.head_count_kv": 2}), TENSORS, {"n_head_kv": 2}),
        (_meta(**{"llama.attention.head_count_kv": [0, 8, 2]}), TENSORS, {"n_head_kv": 8}),
        (
            _meta(**{"llama.attention.key_length": 192, "llama.attention.value_length": 128}),
            TENSORS,
            {"head_dim_k": 192, "head_dim_v": 128},
        ),
        (
            _meta(),
            [*TENSORS, ("rope_freqs.weight", 7)],
            {"input_bytes": 1007, "output_bytes": 910, "embedding_bytes": 1000},
        ),
        (
            _meta(),
            [t for t in TENSORS if t[0] != "output.weight"],
            {"tied_embeddings": True, "output_bytes": 10},
        ),
        (
            _meta(),
            [*TENSORS, ("blk.2.nextn.weight", 5)],
            {"n_layer": 3, "layer_bytes": (300, 350, 5)},
        ),
        ({}, [], {"architecture": "unknown", "n_layer": 0, "n_head_kv": 0, "layer_bytes": ()}),
    ],
)
def test_footprint_from_tensors(
    metadata: dict[str, Any], tensors: list[tuple[str, int]], expected: dict[str, Any]
) -> None:
    fp = footprint_from_tensors(metadata, tensors)
    assert {key: getattr(fp, key) for key in expected} == expected
    assert fp.weight_bytes == sum(size for _, size in tensors)


def test_footprint_of_a_real_gguf(tiny_model: Path) -> None:
    import gguf

    tensors = gguf.GGUFReader(str(tiny_model), "r").tensors
    fp = footprint_from_gguf(tiny_model)

    layer_sums = [
        sum(int(t.n_bytes) for t in tensors if t.name.startswith(f"blk.{i}.")) for i in range(2)
    ]
    non_layer = sum(int(t.n_bytes) for t in tensors if not t.name.startswith("blk."))
    assert list(fp.layer_bytes) == layer_sums
    assert fp.non_layer_bytes == non_layer
    assert sum(fp.layer_bytes) + fp.non_layer_bytes == sum(int(t.n_bytes) for t in tensors)
    assert (fp.architecture, fp.n_layer, fp.n_embd, fp.n_head, fp.n_head_kv) == (
        "llama",
        2,
        64,
        4,
        2,
    )
    assert (fp.n_embd_k_gqa, fp.n_embd_v_gqa, fp.n_ctx_train) == (32, 32, 2048)
    assert not fp.tied_embeddings
    # llama.cpp logs "KV buffer size = 0.50 MiB" for this model at n_ctx 2048.
    assert kv_cache_bytes(fp, 2048) == 2**19


def test_footprint_of_a_bad_path_raises_the_engine_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        footprint_from_gguf(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(NotGGUFError):
        footprint_from_gguf(text)


# --------------------------------------------------------------- residency


def model(model_id: str, size: int, last_used: float, **kwargs: Any) -> LoadedModelInfo:
    return LoadedModelInfo(model_id, size, last_used, **kwargs)


LOADED = [
    model("a", 10, 1.0),
    model("b", 20, 2.0),
    model("busy", 30, 0.5, in_flight=1),
    model("pinned", 40, 0.1, pinned=True),
]


@pytest.mark.parametrize(
    ("need", "budget", "expected"),
    [
        (0, 100, []),
        (10, 150, []),  # fits without evicting
        (60, 150, ["a"]),
        (10, 100, ["a"]),  # least recently used
        (20, 100, ["b"]),  # "a" alone is too small, and with "b" not needed
        (25, 100, ["a", "b"]),
        (31, 100, None),  # the rest is busy or pinned
        (200, 100, None),  # more than the whole budget
    ],
)
def test_choose_eviction(need: int, budget: int, expected: list[str] | None) -> None:
    assert choose_eviction(LOADED, need, budget, now=3.0) == expected


def test_expired_models_go_before_older_ones() -> None:
    loaded = [model("old", 10, 1.0, keep_alive_s=None), model("stale", 20, 2.0, keep_alive_s=1.0)]
    assert choose_eviction(loaded, 10, 30, now=10.0) == ["stale"]
    assert choose_eviction(loaded, 10, 30, now=2.5) == ["old"]  # nothing expired yet


def test_ties_break_by_model_id() -> None:
    loaded = [model("z", 10, 1.0), model("m", 10, 1.0)]
    assert choose_eviction(loaded, 10, 20, now=1.0) == ["m"]


@pytest.mark.parametrize(
    ("info", "now", "is_expired"),
    [
        (model("m", 1, 0.0, keep_alive_s=300.0), 299.9, False),
        (model("m", 1, 0.0, keep_alive_s=300.0), 300.0, True),
        (model("m", 1, 0.0, keep_alive_s=0.0), 0.0, True),  # unload as soon as idle
        (model("m", 1, 0.0, keep_alive_s=None), 1e9, False),  # keep forever
        (model("m", 1, 0.0, keep_alive_s=1.0, in_flight=2), 1e9, False),
        (model("m", 1, 0.0, keep_alive_s=1.0, pinned=True), 1e9, False),
    ],
)
def test_expired(info: LoadedModelInfo, now: float, is_expired: bool) -> None:
    assert expired([info], now) == (["m"] if is_expired else [])


def test_expired_lists_least_recently_used_first() -> None:
    loaded = [model("new", 1, 5.0, keep_alive_s=1.0), model("old", 1, 2.0, keep_alive_s=1.0)]
    assert expired(loaded, now=100.0) == ["old", "new"]


@pytest.mark.parametrize(
    ("max_models", "expected"),
    [
        (5, []),  # room for one more
        (4, ["a"]),  # four loaded, four allowed: the least recently used idle one goes
        (3, ["a", "b"]),
        (2, ["a", "b"]),  # busy and pinned stay: the new one loads past the count
        (1, ["a", "b"]),
        (0, ["a", "b"]),  # at least one model may be loaded
    ],
)
def test_over_count(max_models: int, expected: list[str]) -> None:
    assert over_count(LOADED, max_models) == expected


@pytest.mark.parametrize(
    ("loaded", "max_models", "expected"),
    [
        ([], 1, []),
        ([model("p", 1, 0.0, pinned=True)], 1, []),  # pinned: never for room
        ([model("p", 1, 0.0, pinned=True), model("q", 1, 9.0)], 2, ["q"]),  # newer but idle
        ([model("z", 1, 1.0), model("m", 1, 1.0)], 2, ["m"]),  # ties by model id
        ([model("busy", 1, 0.0, in_flight=1)], 1, []),
    ],
)
def test_over_count_never_takes_a_pinned_or_busy_model(
    loaded: list[LoadedModelInfo], max_models: int, expected: list[str]
) -> None:
    assert over_count(loaded, max_models) == expected


@pytest.mark.parametrize(
    ("pinned", "in_flight", "idle_s", "evicted_for_keep_alive", "evicted_for_room"),
    [
        (False, 0, 10.0, True, True),
        (False, 0, 0.5, False, True),  # within keep-alive, still the one to make room
        (True, 0, 10.0, False, False),  # pinned: neither
        (True, 0, 0.5, False, False),
        (False, 1, 10.0, False, False),  # in use: neither
    ],
)
def test_the_pinned_rule_in_every_eviction_decision(
    pinned: bool, in_flight: int, idle_s: float, evicted_for_keep_alive: bool,
    evicted_for_room: bool,
) -> None:  # fmt: skip
    loaded = [model("m", 10, 0.0, pinned=pinned, in_flight=in_flight, keep_alive_s=1.0)]
    assert (expired(loaded, idle_s) == ["m"]) is evicted_for_keep_alive
    assert (over_count(loaded, 1) == ["m"]) is evicted_for_room
    assert (choose_eviction(loaded, 10, 10, idle_s) == ["m"]) is evicted_for_room


loaded_models = st.lists(
    st.builds(
        LoadedModelInfo,
        model_id=st.text("abcdef", min_size=1, max_size=4),
        device_bytes=st.integers(0, 1000),
        last_used=st.floats(0, 100),
        in_flight=st.integers(0, 2),
        pinned=st.booleans(),
        keep_alive_s=st.none() | st.floats(0, 100),
    ),
    max_size=8,
    unique_by=lambda m: m.model_id,
)


@given(loaded_models, st.integers(0, 3000), st.integers(0, 3000), st.floats(0, 200))
def test_eviction_frees_enough_and_touches_only_idle_models(
    loaded: list[LoadedModelInfo], need: int, budget: int, now: float
) -> None:
    shortfall = need - (budget - sum(m.device_bytes for m in loaded))
    idle = {m.model_id: m for m in loaded if m.evictable}
    chosen = choose_eviction(loaded, need, budget, now)
    if chosen is None:
        assert shortfall > sum(m.device_bytes for m in idle.values())
    else:
        assert set(chosen) <= set(idle)
        assert len(set(chosen)) == len(chosen)
        assert sum(idle[i].device_bytes for i in chosen) >= shortfall


@given(loaded_models, st.integers(0, 10))
def test_over_count_makes_room_with_idle_models_only(
    loaded: list[LoadedModelInfo], max_models: int
) -> None:
    chosen = over_count(loaded, max_models)
    idle = {m.model_id for m in loaded if m.evictable}
    assert set(chosen) <= idle and len(set(chosen)) == len(chosen)
    left = len(loaded) - len(chosen)
    assert left < max(max_models, 1) or set(chosen) == idle  # room, or all the idle went


@pytest.mark.parametrize(
    ("preferences", "failed", "expected"),
    [
        (["big", "small", "remote"], set(), "big"),
        (["big", "small", "remote"], {"big"}, "small"),
        (["big", "small", "remote"], {"big", "small"}, "remote"),
        (["big", "small", "remote"], {"big", "small", "remote"}, None),
        ([], set(), None),
        (["big"], {"unrelated"}, "big"),
    ],
)
def test_next_model(preferences: list[str], failed: set[str], expected: str | None) -> None:
    assert next_model(preferences, failed) == expected
