"""Write small llama-architecture GGUF models with random weights.

Used by the test suite and by ``scripts/make_test_model.py``: the real
llama.cpp loads them, so tests exercise the real engine without downloading
anything. The vocabulary is byte-level: ``<unk>``, ``<s>``, ``</s>`` and the
256 ``<0xNN>`` byte tokens, so any text can be tokenised.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("soloist.devtools")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# llama.cpp token types (gguf.TokenType): NORMAL=1, UNKNOWN=2, CONTROL=3, BYTE=6.
_UNKNOWN, _CONTROL, _BYTE = 2, 3, 6


@dataclass(frozen=True, slots=True)
class ModelShape:
    """Hyper-parameters of a generated model."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx_train: int = 2048


TINY = ModelShape()
BENCH = ModelShape(n_embd=1024, n_layer=16, n_head=16, n_head_kv=8, n_ff=2816, n_ctx_train=4096)


def byte_vocab() -> tuple[list[bytes], list[float], list[int]]:
    """Tokens, scores and token types of the 259-token byte vocabulary."""
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    scores = [0.0] * len(tokens)
    types = [_UNKNOWN, _CONTROL, _CONTROL] + [_BYTE] * 256
    return tokens, scores, types


def _byte_bias() -> np.ndarray:
    """Per-token pull towards the shared direction: letters and spaces first."""
    bias = np.full(259, -3.0, dtype=np.float32)
    for byte in range(0x20, 0x7F):
        bias[3 + byte] = 1.0
    for byte in b" etaoinshrdlu":
        bias[3 + byte] = 3.0
    bias[2] = 0.5  # </s>: a reply ends now and then
    return bias


def _tensors(shape: ModelShape, rng: np.random.Generator, dtype: type) -> dict[str, np.ndarray]:
    """Random weights; numpy shapes are ggml's ``ne`` reversed."""
    n_vocab = 259
    head_dim = shape.n_embd // shape.n_head
    kv_dim = head_dim * shape.n_head_kv

    def rand(*dims: int) -> np.ndarray:
        scale = 1.0 / np.sqrt(dims[-1])
        weights: np.ndarray = (rng.standard_normal(dims, dtype=np.float32) * scale).astype(dtype)
        return weights

    # Every embedding shares one direction and the output rows of readable
    # bytes lean towards it, so even random weights mostly emit ASCII words
    # rather than invalid UTF-8 (nicer in screenshots, same speed).
    common = rng.standard_normal(shape.n_embd).astype(np.float32)
    common /= np.linalg.norm(common)
    embd = rand(n_vocab, shape.n_embd).astype(np.float32) + common * 2 * np.sqrt(shape.n_embd)
    out = {
        "token_embd.weight": embd.astype(dtype),
        "output_norm.weight": np.ones(shape.n_embd, dtype=np.float32),
        "output.weight": (
            rand(n_vocab, shape.n_embd).astype(np.float32) + np.outer(_byte_bias(), common)
        ).astype(dtype),
    }
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        out |= {
            p + "attn_norm.weight": np.ones(shape.n_embd, dtype=np.float32),
            p + "attn_q.weight": rand(shape.n_embd, shape.n_embd),
            p + "attn_k.weight": rand(kv_dim, shape.n_embd),
            p + "attn_v.weight": rand(kv_dim, shape.n_embd),
            p + "attn_output.weight": rand(shape.n_embd, shape.n_embd),
            p + "ffn_norm.weight": np.ones(shape.n_embd, dtype=np.float32),
            p + "ffn_gate.weight": rand(shape.n_ff, shape.n_embd),
            p + "ffn_up.weight": rand(shape.n_ff, shape.n_embd),
            p + "ffn_down.weight": rand(shape.n_embd, shape.n_ff),
        }
    return out


def write_model(
    path: Path,
    shape: ModelShape = TINY,
    *,
    chat_template: str | None = CHATML_TEMPLATE,
    seed: int = 1234,
    f16: bool = False,
    name: str = "soloist-test",
) -> Path:
    """Write a random-weight llama GGUF to ``path`` (atomically) and return it."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(name)
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(1 if f16 else 0)
    tokens, scores, types = byte_vocab()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    rng = np.random.default_rng(seed)
    for tname, data in _tensors(shape, rng, np.float16 if f16 else np.float32).items():
        writer.add_tensor(tname, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return path


def write_tiny_model(path: Path, *, chat_template: str | None = CHATML_TEMPLATE) -> Path:
    """The ~0.5 MB test model (cached: an existing file is kept)."""
    if path.exists():
        return path
    return write_model(path, TINY, chat_template=chat_template)


def write_bench_model(path: Path, *, keep_f16: bool = False) -> Path:
    """The ~120 MB benchmark model: 1024 wide, 16 layers, quantised to Q4_K_M."""
    if path.exists():
        return path
    f16_path = path.with_name(path.stem + "-f16.gguf")
    started = time.perf_counter()
    write_model(f16_path, BENCH, f16=True, name="soloist-bench")
    quantize(f16_path, path, "Q4_K_M")
    if not keep_f16:
        f16_path.unlink()
    log.info("bench model written in %.1f s: %s", time.perf_counter() - started, path)
    return path


def quantize(src: Path, dst: Path, kind: str = "Q4_K_M") -> Path:
    """Quantise a GGUF with llama.cpp's own quantiser."""
    from app.engine.llama_adapter import llama

    llama_cpp = llama()  # its log goes to ours, not the terminal
    ftypes = {
        "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    }
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[kind]
    params.nthread = os.cpu_count() or 1
    tmp = dst.with_suffix(dst.suffix + f".tmp{os.getpid()}")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama_model_quantize failed with code {rc}")
    tmp.replace(dst)
    return dst


def write_crashing_model(path: Path) -> Path:
    """A GGUF that passes every header check but makes llama.cpp abort.

    Its 3 KV heads do not divide its 4 query heads: the file loads, then
    creating a context trips ``GGML_ASSERT(ggml_can_mul_mat(k, q))`` and the
    process dies of SIGABRT. Used to test the engine process's supervision.
    """
    if path.exists():
        return path
    return write_model(path, ModelShape(n_head=4, n_head_kv=3), name="soloist-crash")
