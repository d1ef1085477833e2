"""The raw baseline: hand-written loops over llama.cpp's C API, no scheduler.

"Raw" means the same C calls the engine makes (``llama_batch``,
``llama_decode``, a ``llama_sampler`` chain) through the same thin adapter
(:class:`LoadedModel`, :class:`BatchEntry`, :class:`Sampler`), called
straight from the benchmark's thread: no engine thread, no queue, no
scheduler, no text assembly. Each token is still turned into bytes with
``llama_token_to_piece``, as any client that shows text must.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from app.bench.runs import BatchRun, StreamRun
from app.engine import kvstate
from app.engine.chat_template import render_prompt
from app.engine.gguf_file import GGUFInfo
from app.engine.llama_adapter import BatchEntry, LoadedModel, Sampler
from app.engine.snapshots import SnapshotStore
from app.engine.types import Message, SamplingParams


def prompt_tokens(model: LoadedModel, info: GGUFInfo, msgs: Sequence[Message]) -> list[int]:
    """The tokens the engine feeds for ``msgs`` (as ``ContextRunner`` renders them)."""
    text = render_prompt(
        info.chat_template, msgs, bos_token=info.bos_token, eos_token=info.eos_token
    )
    return model.tokenize(text, add_special=not text.startswith(info.bos_token))


def common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens all ``prompts`` start with (what the engine could share between them)."""
    n = 0
    for column in zip(*prompts, strict=False):
        if any(tok != column[0] for tok in column):
            break
        n += 1
    return n


def prefill(model: LoadedModel, tokens: Sequence[int], seq: int) -> int:
    """Decode ``tokens`` into ``seq`` from position 0 in ``n_batch`` chunks.

    Only the last token gets logits; returns its index in the last batch.
    """
    last = 0
    for begin in range(0, len(tokens), model.n_batch):
        chunk = tokens[begin : begin + model.n_batch]
        end = begin + len(chunk)
        model.decode_batch(
            [BatchEntry(tok, begin + i, seq, begin + i == end - 1) for i, tok in enumerate(chunk)]
        )
        last = len(chunk) - 1
    return last


def stream(
    model: LoadedModel, tokens: Sequence[int], params: SamplingParams, max_tokens: int
) -> StreamRun:
    """One stream on sequence 0 of an empty context: prefill, then one token per decode."""
    model.clear()
    sampler = model.new_sampler(params)
    try:
        started = time.perf_counter()
        token = sampler.sample(prefill(model, tokens, 0))
        first = time.perf_counter()
        n, pos = 1, len(tokens)
        while not model.is_eog(token):
            model.piece(token)
            if n >= max_tokens:
                break
            model.decode_batch([BatchEntry(token, pos, 0, True)])
            token = sampler.sample(0)
            pos, n = pos + 1, n + 1
        end = time.perf_counter()
    finally:
        sampler.close()
    return StreamRun(
        n,
        first - started,
        end - started,
        wall_s=end - started,
        finish="stop" if model.is_eog(token) else "length",
        prompt_tokens=len(tokens),
    )


@dataclass(slots=True)
class _Seq:
    """One stream of a raw batched run."""

    prompt_len: int
    sampler: Sampler
    token: int = -1
    n: int = 0
    first_at: float = 0.0
    end_at: float = 0.0
    marks: list[tuple[float, int]] = field(default_factory=list)


def batched(
    model: LoadedModel,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    max_tokens: int,
) -> BatchRun:
    """Streams on sequences 0..n-1: all prompts prefilled, then one batch per token step."""
    model.clear()
    seqs = [_Seq(len(p), model.new_sampler(params)) for p in prompts]
    try:
        started = time.perf_counter()
        _prefill_all(model, prompts, seqs)
        live = [i for i, s in enumerate(seqs) if not _done(model, s, max_tokens)]
        while live:
            entries = [_next_entry(seqs[i], i) for i in live]
            model.decode_batch(entries)
            for index, i in enumerate(live):
                _take(model, seqs[i], seqs[i].sampler.sample(index))
            live = [i for i in live if not _done(model, seqs[i], max_tokens)]
        end = time.perf_counter()
    finally:
        for s in seqs:
            s.sampler.close()
    runs = tuple(
        StreamRun(
            s.n,
            s.first_at - started,
            s.end_at - started,
            wall_s=s.end_at - started,
            finish="stop" if model.is_eog(s.token) else "length",
            prompt_tokens=s.prompt_len,
            marks=tuple(s.marks),
        )
        for s in seqs
    )
    return BatchRun(runs, end - started)


def _prefill_all(model: LoadedModel, prompts: Sequence[Sequence[int]], seqs: list[_Seq]) -> None:
    entries = [
        BatchEntry(tok, pos, seq, pos == len(p) - 1)
        for seq, p in enumerate(prompts)
        for pos, tok in enumerate(p)
    ]
    for begin in range(0, len(entries), model.n_batch):
        chunk = entries[begin : begin + model.n_batch]
        model.decode_batch(chunk)
        for index, entry in enumerate(chunk):
            if entry.logits:
                _take(model, seqs[entry.seq], seqs[entry.seq].sampler.sample(index))


def _next_entry(seq: _Seq, seq_id: int) -> BatchEntry:
    """Feed the last sampled token at the position after the ones in KV."""
    return BatchEntry(seq.token, seq.prompt_len + seq.n - 1, seq_id, True)


def _take(model: LoadedModel, seq: _Seq, token: int) -> None:
    seq.token, seq.n = token, seq.n + 1
    now = time.perf_counter()
    if seq.n == 1:
        seq.first_at = now
    seq.end_at = now
    seq.marks.append((now, seq.n))
    if not model.is_eog(token):
        model.piece(token)


def _done(model: LoadedModel, seq: _Seq, max_tokens: int) -> bool:
    return seq.n >= max_tokens or model.is_eog(seq.token)


# -- scenario 3: a long context, prefilled or restored -----------------


def timed_prefill(
    model: LoadedModel, tokens: Sequence[int], seq: int, params: SamplingParams
) -> tuple[float, int]:
    """Seconds to prefill ``tokens`` into an empty ``seq`` and sample the next token."""
    kvstate.clear_seq(model, seq)
    sampler = model.new_sampler(params)
    try:
        started = time.perf_counter()
        token = sampler.sample(prefill(model, tokens, seq))
        return time.perf_counter() - started, token
    finally:
        sampler.close()


@dataclass(frozen=True, slots=True)
class RestoreRun:
    """One restore from disk, split into its parts (seconds)."""

    load_s: float  # read and verify the file (SnapshotStore.load)
    set_s: float  # llama_state_seq_set_data, and trimming the last position
    decode_s: float  # re-decode the last token and sample from its logits
    next_token: int
    tokens_match: bool

    @property
    def total_s(self) -> float:
        return self.load_s + self.set_s + self.decode_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"total_s": self.total_s}


@dataclass(frozen=True, slots=True)
class SavedContext:
    """Where a context was saved, and what it holds."""

    store: SnapshotStore
    key: str
    identity: str
    tokens: tuple[int, ...]


def timed_restore(
    model: LoadedModel, saved: SavedContext, seq: int, params: SamplingParams
) -> RestoreRun:
    """Load a snapshot into an empty ``seq`` and get the logits of its last token.

    As ``kvstate.resume_seq`` does: the state is restored, its last position
    dropped and that token decoded again, since a state holds no logits.
    """
    kvstate.clear_seq(model, seq)
    sampler = model.new_sampler(params)
    n = len(saved.tokens)
    try:
        started = time.perf_counter()
        held, state = saved.store.load(saved.key, saved.identity)
        loaded = time.perf_counter()
        kvstate.set_seq_state(model, seq, state)
        kvstate.trim_seq(model, seq, n - 1)
        placed = time.perf_counter()
        model.decode_batch([BatchEntry(saved.tokens[-1], n - 1, seq, True)])
        token = sampler.sample(0)
        decoded = time.perf_counter()
    finally:
        sampler.close()
    return RestoreRun(
        loaded - started, placed - loaded, decoded - placed, token, tuple(held) == saved.tokens
    )
