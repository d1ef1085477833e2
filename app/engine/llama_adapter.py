"""A small adapter over llama.cpp's C API (through llama-cpp-python's ctypes).

Only the calls Soloist needs, with Python types in and out. Every object
here belongs to the engine thread that created it; nothing is thread-safe.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.engine.errors import GenerationError, InvalidGrammarError, ModelLoadError
from app.engine.types import SamplingParams

log = logging.getLogger("soloist.engine.llama")

# ggml log levels: 1 debug... 2 info, 3 warn, 4 error, 5 cont
_LEVELS = {2: logging.DEBUG, 3: logging.INFO, 4: logging.WARNING}


class _Runtime:
    """The process-wide llama.cpp set-up, done once."""

    lock = threading.Lock()
    lib: Any = None
    log_callback: Any = None  # kept alive: llama.cpp holds a pointer to it


def _on_log(level: int, text: bytes, _user: Any) -> None:
    py_level = _LEVELS.get(level, logging.DEBUG)
    if text and log.isEnabledFor(py_level):
        log.log(py_level, "%s", text.decode("utf-8", "replace").rstrip())


def llama() -> Any:
    """Import llama_cpp once, route its log to ours, init the backend."""
    with _Runtime.lock:
        if _Runtime.lib is None:
            import llama_cpp

            _Runtime.log_callback = llama_cpp.llama_log_callback(_on_log)
            llama_cpp.llama_log_set(_Runtime.log_callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _Runtime.lib = llama_cpp
        return _Runtime.lib


AUTO_GPU_LAYERS = -1


@dataclass(frozen=True, slots=True)
class ContextConfig:
    """How a model's context is built."""

    n_ctx: int = 4096  # KV cells shared by all sequences of the context
    n_batch: int = 512
    n_threads: int = 0  # 0: all cores
    # Layers on the GPU; AUTO_GPU_LAYERS lets the engine fit them to free memory.
    n_gpu_layers: int = AUTO_GPU_LAYERS
    n_seq_max: int = 1
    # One KV buffer for all sequences: any sequence may use any cell, and a
    # saved sequence state restores into any sequence of any such context.
    kv_unified: bool = True
    flash_attn: bool | None = None  # None: llama.cpp decides


class LoadedModel:
    """A model and one context on it, owned by one thread."""

    def __init__(self, path: str, config: ContextConfig) -> None:
        lib = llama()
        self._lib = lib
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = max(config.n_gpu_layers, 0)  # the engine resolves AUTO
        self.model = lib.llama_model_load_from_file(path.encode(), mparams)
        if not self.model:
            raise ModelLoadError(f"llama.cpp could not load {os.path.basename(path)}.")
        self.vocab = lib.llama_model_get_vocab(self.model)
        n_train = lib.llama_model_n_ctx_train(self.model)
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = min(config.n_ctx, n_train) if n_train > 0 else config.n_ctx
        cparams.n_batch = config.n_batch
        cparams.n_seq_max = config.n_seq_max
        cparams.kv_unified = config.kv_unified
        if config.flash_attn is not None:
            cparams.flash_attn_type = int(config.flash_attn)
        threads = config.n_threads or os.cpu_count() or 1
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            lib.llama_model_free(self.model)
            raise ModelLoadError("llama.cpp could not create a context (out of memory?).")
        self.n_ctx = int(lib.llama_n_ctx(self.ctx))
        self.n_batch = config.n_batch
        self.n_seq_max = config.n_seq_max
        self._batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self._piece_buf = ctypes.create_string_buffer(256)

    # -- metadata ------------------------------------------------------
    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self._lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def chat_template(self) -> str | None:
        raw = self._lib.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", "replace") if raw else None

    def token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", "replace")

    def bos(self) -> int:
        return int(self._lib.llama_vocab_bos(self.vocab))

    def eos(self) -> int:
        return int(self._lib.llama_vocab_eos(self.vocab))

    # -- tokens --------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        arr = (self._lib.llama_token * cap)()
        n = self._lib.llama_tokenize(self.vocab, data, len(data), arr, cap, add_special, True)
        if n < 0:
            cap = -n
            arr = (self._lib.llama_token * cap)()
            n = self._lib.llama_tokenize(self.vocab, data, len(data), arr, cap, add_special, True)
        return list(arr[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        buf = self._piece_buf
        n = self._lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.vocab, token))

    # -- decoding ------------------------------------------------------
    def clear(self) -> None:
        self._lib.llama_memory_clear(self._lib.llama_get_memory(self.ctx), True)

    def decode(self, tokens: Sequence[int], start_pos: int, *, want_logits: bool) -> None:
        """Decode up to ``n_batch`` tokens of sequence 0 starting at ``start_pos``."""
        n = len(tokens)
        self.decode_batch(
            [
                BatchEntry(tok, start_pos + i, 0, want_logits and i == n - 1)
                for i, tok in enumerate(tokens)
            ]
        )

    def decode_batch(self, entries: Sequence[BatchEntry]) -> None:
        """Decode one batch mixing sequences; entry ``i`` with logits is sampled at ``i``."""
        batch = self._batch
        for i, entry in enumerate(entries):
            batch.token[i] = entry.token
            batch.pos[i] = entry.pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = entry.seq
            batch.logits[i] = 1 if entry.logits else 0
        batch.n_tokens = len(entries)
        rc = self._lib.llama_decode(self.ctx, batch)
        if rc != 0:
            raise GenerationError(f"llama_decode failed with code {rc} on {len(entries)} tokens.")

    def clear_seq(self, seq: int) -> None:
        """Drop every cell of one sequence."""
        self._lib.llama_memory_seq_rm(self._lib.llama_get_memory(self.ctx), seq, -1, -1)

    def copy_seq(self, src: int, dst: int, n_tokens: int) -> None:
        """Share the first ``n_tokens`` cells of ``src`` with ``dst`` (no copy of data)."""
        self._lib.llama_memory_seq_cp(self._lib.llama_get_memory(self.ctx), src, dst, 0, n_tokens)

    def new_sampler(self, params: SamplingParams) -> Sampler:
        return Sampler(self._lib, self, params)

    def close(self) -> None:
        if self.ctx:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self._lib.llama_model_free(self.model)
            self.model = None


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One token of a batch: which sequence, at which position, with logits or not."""

    token: int
    pos: int
    seq: int
    logits: bool


class Sampler:
    """A llama.cpp sampler chain built from :class:`SamplingParams`."""

    def __init__(self, lib: Any, model: LoadedModel, p: SamplingParams) -> None:
        self._lib = lib
        self._ctx = model.ctx
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lib.llama_sampler_chain_add
        grammar = grammar_for(p)
        if grammar is not None:
            constraint = lib.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
            if not constraint:
                lib.llama_sampler_free(chain)
                raise InvalidGrammarError("The grammar for this request is not valid GBNF.")
            add(chain, constraint)
        if p.repeat_penalty != 1.0:
            n_vocab = lib.llama_vocab_n_tokens(model.vocab)
            add(chain, lib.llama_sampler_init_penalties(n_vocab, 64, p.repeat_penalty, 0.0, 0.0))
        if p.temperature <= 0:
            add(chain, lib.llama_sampler_init_greedy())
        else:
            add(chain, lib.llama_sampler_init_top_k(p.top_k))
            add(chain, lib.llama_sampler_init_top_p(p.top_p, 1))
            add(chain, lib.llama_sampler_init_min_p(p.min_p, 1))
            add(chain, lib.llama_sampler_init_temp(p.temperature))
            add(chain, lib.llama_sampler_init_dist(p.seed & 0xFFFFFFFF))
        self._chain = chain

    def sample(self, index: int = -1) -> int:
        """Pick the next token from the logits of batch entry ``index`` and record it."""
        return int(self._lib.llama_sampler_sample(self._chain, self._ctx, index))

    def close(self) -> None:
        if self._chain:
            self._lib.llama_sampler_free(self._chain)
            self._chain = None


def grammar_for(params: SamplingParams) -> str | None:
    """The GBNF a request's reply must match: its own, or one from its JSON schema."""
    if params.grammar is not None:
        return params.grammar
    if params.json_schema is None:
        return None
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(params.json_schema))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidGrammarError(
            f"The JSON schema cannot be turned into a grammar: {exc}"
        ) from exc
