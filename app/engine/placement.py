"""Placement and residency decisions, as pure functions.

How much memory a model needs, how many of its layers fit on a GPU, which
loaded model to evict for a new one (for memory or for the count of loaded
models), which have outlived their keep-alive (a pinned model never does),
and which model to try next when the preferred one cannot load. Nothing
here loads, frees or measures anything: the residency manager gathers the
facts (free memory from :mod:`app.engine.devices`, a footprint from the
GGUF header) and acts on what these functions decide. That keeps every
decision table-testable without a GPU or a model.

The ``n_gpu_layers`` convention is llama.cpp's: for a model with ``n_layer``
repeating blocks, ``n_gpu_layers = k`` puts the *last* ``min(k, n_layer)``
blocks on the GPU (with their KV cache), and ``k = n_layer + 1`` also puts
the output layer (``output_norm``, ``output``) there. The token embeddings
always stay in host memory, as llama.cpp keeps them. So ``0`` is CPU only
and ``n_layer + 1`` is everything that can be offloaded; a negative value
means "all", as llama.cpp's ``-1`` does.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.engine.gguf_file import GGUFHeader

log = logging.getLogger("soloist.engine.placement")

# Left free on a GPU: the driver's context, llama.cpp's compute buffers
# (they grow with n_ctx and the batch size) and allocator slack. Ollama
# keeps a similar margin; running out of device memory mid-load is a crash.
DEFAULT_RESERVE_BYTES = 512 * 2**20
F16_BYTES = 2  # llama.cpp's default KV cache type

_LAYER_TENSOR = re.compile(r"^blk\.(\d+)\.")
_OUTPUT_TENSORS = ("output.weight", "output_norm.weight", "output_norm.bias", "output.bias")
_TOKEN_EMBD = "token_embd.weight"


@dataclass(frozen=True, slots=True)
class ModelFootprint:
    """What a model's weights and KV cache occupy, read from its GGUF header.

    ``layer_bytes[i]`` is the size of block ``i``'s tensors in the file;
    ``output_bytes`` of the output layer; ``input_bytes`` of every other
    tensor (token embeddings and friends, which stay on the host).
    ``n_embd_k_gqa`` / ``n_embd_v_gqa`` are the K and V widths of one KV
    cache row (head dim times KV heads); where a model varies its KV heads
    per layer, the widest layer counts for all (an overestimate, on purpose).
    """

    architecture: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ctx_train: int
    layer_bytes: tuple[int, ...]
    input_bytes: int
    output_bytes: int
    embedding_bytes: int = 0  # token_embd, part of input_bytes
    tied_embeddings: bool = False  # no output.weight: token_embd is reused

    @property
    def n_embd_k_gqa(self) -> int:
        return self.head_dim_k * self.n_head_kv

    @property
    def n_embd_v_gqa(self) -> int:
        return self.head_dim_v * self.n_head_kv

    @property
    def non_layer_bytes(self) -> int:
        return self.input_bytes + self.output_bytes

    @property
    def weight_bytes(self) -> int:
        """All tensor bytes in the file."""
        return sum(self.layer_bytes) + self.non_layer_bytes

    @property
    def output_offload_bytes(self) -> int:
        """Device bytes of the output layer; tied models copy token_embd there."""
        return self.output_bytes + (self.embedding_bytes if self.tied_embeddings else 0)


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Bytes a model needs on the GPU and in host memory, weights plus KV."""

    device_bytes: int
    host_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.device_bytes + self.host_bytes


# ------------------------------------------------------------ the footprint


def _as_int(value: Any, default: int) -> int:
    """A metadata number; per-layer arrays count at their largest entry."""
    if value is None:
        return default
    if isinstance(value, list | tuple):
        return max((int(v) for v in value), default=default)
    return int(value)


def footprint_from_tensors(
    metadata: Mapping[str, Any], tensors: Iterable[tuple[str, int]]
) -> ModelFootprint:
    """A footprint from GGUF metadata and ``(tensor name, bytes)`` pairs.

    The part of :func:`footprint_from_gguf` that needs no file.
    """
    arch = str(metadata.get("general.architecture") or "unknown")
    sizes = list(tensors)
    indices = [int(m.group(1)) for name, _ in sizes if (m := _LAYER_TENSOR.match(name))]
    n_layer = max(_as_int(metadata.get(f"{arch}.block_count"), 0), max(indices, default=-1) + 1)
    layer_bytes = [0] * n_layer
    input_bytes = output_bytes = 0
    for name, size in sizes:
        if match := _LAYER_TENSOR.match(name):
            layer_bytes[int(match.group(1))] += size
        elif name in _OUTPUT_TENSORS:
            output_bytes += size
        else:
            input_bytes += size
    n_embd = _as_int(metadata.get(f"{arch}.embedding_length"), 0)
    n_head = _as_int(metadata.get(f"{arch}.attention.head_count"), 0)
    head_dim = n_embd // n_head if n_head else 0
    return ModelFootprint(
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=_as_int(metadata.get(f"{arch}.attention.head_count_kv"), n_head),
        head_dim_k=_as_int(metadata.get(f"{arch}.attention.key_length"), head_dim),
        head_dim_v=_as_int(metadata.get(f"{arch}.attention.value_length"), head_dim),
        n_ctx_train=_as_int(metadata.get(f"{arch}.context_length"), 0),
        layer_bytes=tuple(layer_bytes),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        embedding_bytes=sum(size for name, size in sizes if name == _TOKEN_EMBD),
        tied_embeddings="output.weight" not in {name for name, _ in sizes},
    )


def footprint_from_gguf(path: str | Path) -> ModelFootprint:
    """The footprint of the GGUF model at ``path``.

    The header is read once, by :func:`app.engine.gguf_file.read_gguf_header`,
    which checks the file as it goes, so a missing, foreign or truncated file
    raises the engine's typed errors rather than a numpy or struct error.
    """
    from app.engine.gguf_file import read_gguf_header

    return footprint_from_header(read_gguf_header(path))


def footprint_from_header(header: GGUFHeader) -> ModelFootprint:
    """The footprint from a header already read (the vocabulary is skipped, never decoded)."""
    from app.engine.gguf_file import GGUFArray

    metadata = {
        key: list(value) if isinstance(value, GGUFArray) else value
        for key, value in header.metadata.items()
        if not key.startswith("tokenizer.")
    }
    tensors = [(t.name, t.n_bytes) for t in header.tensors]
    footprint = footprint_from_tensors(metadata, tensors)
    log.debug(
        "footprint %s: %d layers, %d weight bytes",
        Path(header.path).name,
        footprint.n_layer,
        footprint.weight_bytes,
    )
    return footprint


# ------------------------------------------------------- memory and layers


def kv_cache_bytes(
    footprint: ModelFootprint,
    n_ctx: int,
    n_seq: int = 1,
    type_bytes: float = F16_BYTES,
    *,
    n_layers: int | None = None,
) -> int:
    """Bytes of the KV cache: a K and a V row per cell, per layer.

    ``n_ctx`` is the context of one sequence and ``n_seq`` the number of
    sequences, each with its own ``n_ctx`` cells (llama.cpp's own ``n_ctx``
    is the total, so pass that with ``n_seq=1``). ``type_bytes`` may be a
    fraction for quantised caches (q8_0 is 34/32). ``n_layers`` limits the
    count to that many layers (those offloaded); all by default.
    """
    layers = footprint.n_layer if n_layers is None else max(0, min(n_layers, footprint.n_layer))
    row = footprint.n_embd_k_gqa + footprint.n_embd_v_gqa
    return math.ceil(max(0, n_ctx) * max(0, n_seq) * row * type_bytes * layers)


def _clamp_gpu_layers(footprint: ModelFootprint, n_gpu_layers: int) -> int:
    top = footprint.n_layer + 1
    return top if n_gpu_layers < 0 else min(n_gpu_layers, top)


def estimate_memory(
    footprint: ModelFootprint,
    n_ctx: int,
    n_gpu_layers: int,
    *,
    n_seq: int = 1,
    type_bytes: float = F16_BYTES,
) -> MemoryEstimate:
    """Device and host bytes for weights and KV cache with ``n_gpu_layers``.

    The last blocks are the offloaded ones (llama.cpp's choice), and a
    block's KV cache lives where the block does. Compute buffers are not
    counted: the reserve of :func:`gpu_layers_that_fit` covers them.
    """
    k = _clamp_gpu_layers(footprint, n_gpu_layers)
    on_gpu = min(k, footprint.n_layer)
    first_gpu = footprint.n_layer - on_gpu
    output_on_gpu = k > footprint.n_layer
    kv_gpu = kv_cache_bytes(footprint, n_ctx, n_seq, type_bytes, n_layers=on_gpu)
    kv_all = kv_cache_bytes(footprint, n_ctx, n_seq, type_bytes)
    device = sum(footprint.layer_bytes[first_gpu:]) + kv_gpu
    host = sum(footprint.layer_bytes[:first_gpu]) + footprint.input_bytes + (kv_all - kv_gpu)
    if output_on_gpu:
        device += footprint.output_offload_bytes
    else:
        host += footprint.output_bytes
    return MemoryEstimate(device_bytes=device, host_bytes=host)


def gpu_layers_that_fit(
    footprint: ModelFootprint,
    free_bytes: int,
    n_ctx: int,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    *,
    n_seq: int = 1,
    type_bytes: float = F16_BYTES,
) -> int:
    """The largest ``n_gpu_layers`` (0 to ``n_layer + 1``) whose device bytes fit.

    Fits means ``estimate_memory(...).device_bytes <= free_bytes -
    reserve_bytes``. Device bytes only grow with more layers, so the
    answer grows with free memory and the first layer that does not fit
    ends the search.
    """
    budget = free_bytes - reserve_bytes
    fitted = 0
    for k in range(1, footprint.n_layer + 2):
        estimate = estimate_memory(footprint, n_ctx, k, n_seq=n_seq, type_bytes=type_bytes)
        if estimate.device_bytes > budget:
            break
        fitted = k
    return fitted


# --------------------------------------------------------------- residency


@dataclass(frozen=True, slots=True)
class LoadedModelInfo:
    """A resident model as the residency planner sees it.

    Times are seconds on one monotonic clock (the caller's ``now``).
    ``keep_alive_s`` is how long it may stay idle; ``None`` keeps it forever.
    """

    model_id: str
    device_bytes: int
    last_used: float
    in_flight: int = 0  # requests running or queued on it
    pinned: bool = False  # the owner asked to keep it loaded
    keep_alive_s: float | None = 300.0

    @property
    def evictable(self) -> bool:
        return self.in_flight == 0 and not self.pinned

    def is_expired(self, now: float) -> bool:
        return (
            self.evictable
            and self.keep_alive_s is not None
            and now - self.last_used >= self.keep_alive_s
        )


def expired(loaded: Sequence[LoadedModelInfo], now: float) -> list[str]:
    """Models idle past their keep-alive, least recently used first."""
    gone = [m for m in loaded if m.is_expired(now)]
    return [m.model_id for m in sorted(gone, key=lambda m: (m.last_used, m.model_id))]


def choose_eviction(
    loaded: Sequence[LoadedModelInfo], need_bytes: int, budget_bytes: int, now: float
) -> list[str] | None:
    """Which models to unload so ``need_bytes`` more fit in ``budget_bytes``.

    ``[]`` when it already fits; ``None`` when no choice makes room (the
    caller degrades or queues). Expired models go first, then the least
    recently used; a model with requests in flight or pinned never goes.
    Greedy LRU may take a small model it then turns out not to need, so
    picks are reconsidered newest first and kept loaded where possible.
    """
    shortfall = need_bytes - (budget_bytes - sum(m.device_bytes for m in loaded))
    if shortfall <= 0:
        return []
    order = sorted(
        (m for m in loaded if m.evictable),
        key=lambda m: (not m.is_expired(now), m.last_used, m.model_id),
    )
    picks: list[LoadedModelInfo] = []
    for model in order:
        if sum(m.device_bytes for m in picks) >= shortfall:
            break
        picks.append(model)
    if sum(m.device_bytes for m in picks) < shortfall:
        return None
    for model in reversed(list(picks)):
        if sum(m.device_bytes for m in picks) - model.device_bytes >= shortfall:
            picks.remove(model)
    return [m.model_id for m in picks]


def over_count(loaded: Sequence[LoadedModelInfo], max_models: int) -> list[str]:
    """Which models to unload so one more fits under ``max_models`` loaded at once.

    The least recently used evictable ones (idle, not pinned) go first. When
    the others are busy or pinned, fewer than that: the new model then loads
    beyond the count (the memory budget, :func:`choose_eviction`, still holds).
    """
    excess = len(loaded) - max(max_models, 1) + 1
    if excess <= 0:
        return []
    idle = sorted((m for m in loaded if m.evictable), key=lambda m: (m.last_used, m.model_id))
    return [m.model_id for m in idle[:excess]]


def next_model(preferences: Sequence[str], failed: set[str]) -> str | None:
    """The first preferred model not yet failed: graceful degradation.

    ``preferences`` runs from best to last resort (a big local model, a
    smaller one, a remote endpoint); ``None`` when all have failed.
    """
    return next((model for model in preferences if model not in failed), None)
