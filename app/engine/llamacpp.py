"""The in-process llama.cpp engine.

One engine thread owns every llama.cpp object. ``generate`` enqueues a job
and returns an iterator fed by that thread through a per-request queue;
``cancel`` sets a flag the thread checks between token steps. Requests are
served one at a time in this first cut; the multi-sequence scheduler
replaces the loop in ``_serve`` without changing this interface.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from app.engine.chat_template import render_prompt
from app.engine.errors import EngineError, GenerationError, PromptTooLongError
from app.engine.gguf_file import GGUFInfo, check_gguf
from app.engine.llama_adapter import ContextConfig, LoadedModel
from app.engine.textstream import TextAssembler
from app.engine.types import Chunk, FinishReason, GenerateRequest, Timings

log = logging.getLogger("soloist.engine")

_STOP_SENTINEL = None


@dataclass
class _Job:
    request: GenerateRequest
    out: queue.Queue[Chunk | BaseException]
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: int = 0  # tokens sampled so far; written by the engine thread only


class LlamaCppEngine:
    """Runs requests on llama.cpp in a thread of its own."""

    def __init__(self, config: ContextConfig | None = None) -> None:
        self._config = config or ContextConfig()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._live: dict[str, _Job] = {}
        self._live_lock = threading.Lock()
        self._model: LoadedModel | None = None
        self._model_info: GGUFInfo | None = None
        self._thread = threading.Thread(target=self._run, name="soloist-engine", daemon=True)
        self._thread.start()

    # -- public interface ----------------------------------------------
    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        job = _Job(request, queue.Queue())
        with self._live_lock:
            self._live[request.request_id] = job
        self._jobs.put(job)
        return self._drain(job)

    def cancel(self, request_id: str) -> bool:
        with self._live_lock:
            job = self._live.get(request_id)
        if job is None:
            return False
        job.cancelled.set()
        return True

    def close(self) -> None:
        if self._thread.is_alive():
            with self._live_lock:
                for job in self._live.values():
                    job.cancelled.set()
            self._jobs.put(_STOP_SENTINEL)
            self._thread.join(timeout=30)

    # -- caller side ---------------------------------------------------
    def _drain(self, job: _Job) -> Iterator[Chunk]:
        try:
            while True:
                item = job.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.is_final:
                    return
        finally:
            job.cancelled.set()  # a caller that stops iterating cancels
            with self._live_lock:
                self._live.pop(job.request.request_id, None)

    # -- engine thread -------------------------------------------------
    def _run(self) -> None:
        while (job := self._jobs.get()) is not _STOP_SENTINEL:
            try:
                self._serve(job)
            except EngineError as exc:
                job.out.put(exc)
            except Exception as exc:  # a bug: report it to the caller, keep serving
                log.exception("request %s failed", job.request.request_id)
                job.out.put(GenerationError(f"Internal engine error: {type(exc).__name__}."))
        if self._model is not None:
            self._model.close()
            self._model = None

    def _load(self, path: str) -> tuple[LoadedModel, GGUFInfo]:
        if self._model is not None and self._model_info and self._model_info.path == path:
            return self._model, self._model_info
        info = check_gguf(path)
        if self._model is not None:
            self._model.close()
            self._model = None
        started = time.perf_counter()
        self._model = LoadedModel(path, self._config)
        self._model_info = info
        log.info(
            "loaded %s (%d bytes, n_ctx=%d) in %.2f s",
            info.name,
            info.size_bytes,
            self._model.n_ctx,
            time.perf_counter() - started,
        )
        return self._model, info

    def _serve(self, job: _Job) -> None:
        req = job.request
        if job.cancelled.is_set():
            job.out.put(Chunk(req.request_id, 0, finish_reason=FinishReason.CANCELLED))
            return
        model, info = self._load(req.model_path)
        started = time.perf_counter()
        prompt = self._prompt_tokens(model, info, req)
        model.clear()
        for i in range(0, len(prompt), model.n_batch):
            part = prompt[i : i + model.n_batch]
            model.decode(part, i, want_logits=i + len(part) == len(prompt))
            if job.cancelled.is_set():
                job.out.put(Chunk(req.request_id, 0, finish_reason=FinishReason.CANCELLED))
                return
        self._decode_loop(job, model, len(prompt), started)

    def _prompt_tokens(self, model: LoadedModel, info: GGUFInfo, req: GenerateRequest) -> list[int]:
        text = render_prompt(
            info.chat_template, req.messages, bos_token=info.bos_token, eos_token=info.eos_token
        )
        tokens = model.tokenize(text, add_special=not text.startswith(info.bos_token))
        if len(tokens) >= model.n_ctx:
            raise PromptTooLongError(
                f"The conversation needs {len(tokens):,} tokens but the model's context holds "
                f"{model.n_ctx:,}. Start a new chat or shorten the message."
            )
        return tokens

    def _decode_loop(self, job: _Job, model: LoadedModel, n_prompt: int, started: float) -> None:
        req, params = job.request, job.request.sampling
        sampler = model.new_sampler(params)
        text = TextAssembler(params.stop)
        pos, n_out, first_at = n_prompt, 0, 0.0
        finish = FinishReason.LENGTH
        try:
            while n_out < params.max_tokens:
                if job.cancelled.is_set():
                    finish = FinishReason.CANCELLED
                    break
                token = sampler.sample()
                n_out += 1
                job.generated = n_out
                if n_out == 1:
                    first_at = time.perf_counter()
                if model.is_eog(token):
                    finish = FinishReason.STOP
                    break
                piece = text.feed(model.piece(token))
                if piece:
                    job.out.put(Chunk(req.request_id, n_out, text=piece))
                if text.stopped:
                    finish = FinishReason.STOP
                    break
                if pos + 1 >= model.n_ctx:
                    break
                model.decode([token], pos, want_logits=True)
                pos += 1
        finally:
            sampler.close()
        end = time.perf_counter()
        timings = Timings(
            prompt_tokens=n_prompt,
            completion_tokens=n_out,
            time_to_first_token_s=(first_at or end) - started,
            total_s=end - started,
            queue_s=started - job.submitted,
        )
        tail = text.flush()
        job.out.put(Chunk(req.request_id, n_out + 1, tail, finish, timings))
        log.info(
            "request %s: %d prompt + %d tokens, ttft %.3f s, %.1f tok/s, %s",
            req.request_id,
            n_prompt,
            n_out,
            timings.time_to_first_token_s,
            timings.tokens_per_s,
            finish.value,
        )
