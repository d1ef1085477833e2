"""Move one sequence's KV state in and out of a llama.cpp context.

Thin functions over ``llama_state_seq_*`` and ``llama_memory_seq_*`` on
anything with a ``.ctx`` (a :class:`LoadedModel`, or a test's own context),
plus the glue that saves a sequence to a :class:`SnapshotStore` and brings
it back.

The context must have ``n_seq_max`` above every sequence id used here
(llama.cpp's default is 1: sequence 0 only). Build shared contexts with
``kv_unified=True``: then all sequences draw on one pool of ``n_ctx`` cells
and a saved state loads into any sequence of any context on the model
whatever its ``n_seq_max``. Without it llama.cpp gives each sequence its own
stream of ``n_ctx / n_seq_max`` cells, and a state loads only into a context
with the same number of streams (:func:`kv_layout_tag` records it, so a
snapshot from another layout is a model mismatch, not a failed restore).

A sequence's state holds its KV cells only, not the logits of its last
token, so a restored sequence cannot sample at once: :func:`resume_seq`
keeps at most ``len(tokens) - 1`` tokens and the caller decodes the rest,
at least the last token, which yields the logits to sample from. When only
that last token is re-decoded and the original prefill also decoded it in a
batch of its own, the logits are bit-identical to the original's. A longer
tail is split into other batches than the original prefill was, and
ggml's CPU kernels may sum in another order for another batch size: the
logits then agree to about 1e-3, which in the tests changes no greedy or
seeded pick.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from app.engine.llama_adapter import llama
from app.engine.snapshots import (
    SeqStateError,
    SnapshotError,
    SnapshotRef,
    SnapshotStore,
)

log = logging.getLogger("soloist.engine.snapshots")


class HasContext(Protocol):
    """Anything holding a llama.cpp context pointer (a LoadedModel)."""

    @property
    def ctx(self) -> Any: ...


def kv_streams(n_seq_max: int, *, kv_unified: bool) -> int:
    """How many KV streams llama.cpp gives a context: one, unless split per sequence."""
    return 1 if kv_unified else max(1, n_seq_max)


def kv_layout_tag(type_k: str = "f16", type_v: str = "f16", n_streams: int = 1) -> str:
    """What besides the model decides whether a saved state fits a context.

    A sequence's state records the context's stream count and loads only
    into a context with the same count (see :func:`kv_streams`).
    """
    import llama_cpp

    return f"llama-cpp-python {llama_cpp.__version__}; k={type_k}; v={type_v}; streams={n_streams}"


# -- raw state ---------------------------------------------------------


def seq_state_size(m: HasContext, seq_id: int) -> int:
    """Bytes :func:`get_seq_state` returns for ``seq_id`` now."""
    return int(llama().llama_state_seq_get_size(m.ctx, seq_id))


def get_seq_state(m: HasContext, seq_id: int) -> bytearray:
    """A copy of the KV state of ``seq_id`` (a bytearray: filled in place, copied once)."""
    lib = llama()
    size = int(lib.llama_state_seq_get_size(m.ctx, seq_id))
    data = bytearray(size)
    buf = (ctypes.c_uint8 * size).from_buffer(data)
    written = int(lib.llama_state_seq_get_data(m.ctx, buf, size, seq_id))
    del buf  # a live export would stop the bytearray from being resized
    if written == 0 and size > 0:
        raise SeqStateError(f"llama.cpp could not copy the state of sequence {seq_id}.")
    del data[written:]
    return data


def set_seq_state(m: HasContext, seq_id: int, data: bytes | bytearray) -> None:
    """Replace ``seq_id``'s KV with ``data`` from :func:`get_seq_state`."""
    lib = llama()
    if isinstance(data, bytearray):
        ptr: Any = (ctypes.c_uint8 * len(data)).from_buffer(data)
    else:  # no copy: llama.cpp only reads it, during the call
        ptr = ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_uint8))
    if int(lib.llama_state_seq_set_data(m.ctx, ptr, len(data), seq_id)) == 0:
        raise SeqStateError(
            f"llama.cpp refused the saved state for sequence {seq_id} "
            "(another model or KV layout, or no room in the context)."
        )


def clear_seq(m: HasContext, seq_id: int) -> None:
    """Drop every KV cell of ``seq_id``."""
    lib = llama()
    lib.llama_memory_seq_rm(lib.llama_get_memory(m.ctx), seq_id, -1, -1)


def trim_seq(m: HasContext, seq_id: int, n_keep: int) -> None:
    """Keep the first ``n_keep`` positions of ``seq_id`` and drop the rest."""
    lib = llama()
    if not lib.llama_memory_seq_rm(lib.llama_get_memory(m.ctx), seq_id, n_keep, -1):
        raise SeqStateError(f"llama.cpp cannot cut sequence {seq_id} at {n_keep}.")


def seq_pos_max(m: HasContext, seq_id: int) -> int:
    """The last position held for ``seq_id``; -1 when it is empty."""
    lib = llama()
    return int(lib.llama_memory_seq_pos_max(lib.llama_get_memory(m.ctx), seq_id))


# -- snapshots of sequences --------------------------------------------


def snapshot_seq(
    m: HasContext, seq_id: int, store: SnapshotStore, identity: str, tokens: Sequence[int]
) -> SnapshotRef:
    """Save ``seq_id``, which must hold exactly ``tokens``, to ``store``."""
    held = seq_pos_max(m, seq_id) + 1
    if held != len(tokens):
        raise ValueError(f"sequence {seq_id} holds {held} positions, not {len(tokens)}")
    started = time.perf_counter()
    state = get_seq_state(m, seq_id)
    ref = store.save(identity, tokens, state)
    log.debug("snapshot of seq %d: %.1f ms", seq_id, (time.perf_counter() - started) * 1e3)
    return ref


def restore_seq(
    m: HasContext, seq_id: int, store: SnapshotStore, key_or_path: str | Path, identity: str
) -> list[int]:
    """Load a snapshot into ``seq_id`` and return the tokens it now holds."""
    tokens, state = store.load(key_or_path, identity)
    set_seq_state(m, seq_id, state)
    return tokens


def resume_seq(
    m: HasContext, seq_id: int, store: SnapshotStore, identity: str, tokens: Sequence[int]
) -> int:
    """Restore the saved snapshot sharing the longest prefix with ``tokens`` into ``seq_id``.

    Returns how many tokens the sequence now holds, at most
    ``len(tokens) - 1``: the caller decodes ``tokens[n:]``. A snapshot that
    cannot be used is logged and skipped (the caller then prefills all).
    """
    clear_seq(m, seq_id)
    match = store.find_best_match(identity, tokens) if tokens else None
    if match is None:
        return 0
    ref, common = match
    started = time.perf_counter()
    try:
        restore_seq(m, seq_id, store, ref.key, identity)
    except SnapshotError as exc:
        log.warning("snapshot %s not restored: %s", ref.key[:12], type(exc).__name__)
        clear_seq(m, seq_id)
        return 0
    n_keep = min(common, len(tokens) - 1)
    if n_keep < ref.n_tokens:
        trim_seq(m, seq_id, n_keep)
    log.info(
        "resumed seq %d from %s: %d of %d tokens in %.1f ms",
        seq_id,
        ref.key[:12],
        n_keep,
        len(tokens),
        (time.perf_counter() - started) * 1e3,
    )
    return n_keep
