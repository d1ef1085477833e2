"""The MLX engine: mlx-lm on Apple silicon, behind the same Engine interface.

A fallback backend, not the batching scheduler: one worker thread of its own
loads one model folder at a time and serves one request at a time, in
priority order (then first come, first served). ``cancel`` may be called
from any thread: it sets a flag the worker checks between tokens, so the
stream ends within one token with ``FinishReason.CANCELLED``; a request
still waiting ends at once.

mlx and mlx-lm exist only on macOS arm64 and are imported only there, inside
:class:`MlxLmRuntime`, on the worker thread. Elsewhere :class:`MLXEngine`
raises :class:`MLXUnavailableError`. The runtime is a seam: the engine's
threading, cancellation and ordering run in tests on a scripted runtime.

Errors, beside those of :mod:`app.engine.errors`::

    EngineError
    ├── MLXUnavailableError      not macOS on Apple silicon, or no mlx-lm
    ├── MLXEngineClosedError     the engine was closed
    └── ModelLoadError
        └── MLXModelLoadError    the folder is not a model mlx-lm can load
"""

from __future__ import annotations

import heapq
import importlib
import importlib.util
import itertools
import logging
import platform
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.engine.chat_template import plain_prompt
from app.engine.errors import (
    EngineError,
    GenerationError,
    InvalidGrammarError,
    ModelLoadError,
    ModelNotFoundError,
)
from app.engine.streams import drain
from app.engine.textstream import TextAssembler
from app.engine.types import Chunk, FinishReason, GenerateRequest, Message, SamplingParams, Timings

log = logging.getLogger("soloist.engine.mlx")


class MLXUnavailableError(EngineError):
    """MLX cannot run on this machine."""


class MLXEngineClosedError(EngineError):
    """The request came after the engine was closed."""


class MLXModelLoadError(ModelLoadError):
    """mlx-lm could not load the model folder."""


def mlx_problem(system: str, machine: str, has_mlx_lm: bool) -> str | None:
    """Why MLX cannot run here, or None when it can."""
    if system != "darwin" or machine != "arm64":
        return (
            f"MLX needs macOS on Apple silicon; this is {system} on {machine}. "
            "Use the llama.cpp backend here."
        )
    if not has_mlx_lm:
        return "MLX needs the mlx-lm package: reinstall Soloist (pip install mlx-lm)."
    return None


def _mlx_problem_here() -> str | None:
    system, machine = sys.platform, platform.machine()
    if system != "darwin" or machine != "arm64":  # never look for mlx elsewhere
        return mlx_problem(system, machine, has_mlx_lm=False)
    return mlx_problem(system, machine, importlib.util.find_spec("mlx_lm") is not None)


@dataclass(frozen=True, slots=True)
class MLXStep:
    """One token's worth of output from the runtime."""

    text: str
    prompt_tokens: int
    generation_tokens: int
    finish_reason: str | None = None  # "stop" | "length" on the last step


class MLXRuntime(Protocol):
    """What the engine needs of mlx-lm; every call comes from the worker thread."""

    def load(self, model_dir: str) -> Any: ...

    def unload(self, loaded: Any) -> None: ...

    def stream(
        self, loaded: Any, messages: Sequence[Message], sampling: SamplingParams
    ) -> Iterator[MLXStep]: ...


class MlxLmRuntime:
    """The real runtime: ``mlx_lm.load``, ``stream_generate`` and ``make_sampler``."""

    def load(self, model_dir: str) -> Any:
        mlx_lm = importlib.import_module("mlx_lm")
        loaded = mlx_lm.load(model_dir)
        return loaded[0], loaded[1]  # (model, tokenizer); newer versions may add a config

    def unload(self, loaded: Any) -> None:
        mx = importlib.import_module("mlx.core")
        clear = getattr(mx, "clear_cache", None) or mx.metal.clear_cache
        clear()

    def stream(
        self, loaded: Any, messages: Sequence[Message], sampling: SamplingParams
    ) -> Iterator[MLXStep]:
        mlx_lm = importlib.import_module("mlx_lm")
        sample_utils = importlib.import_module("mlx_lm.sample_utils")
        importlib.import_module("mlx.core").random.seed(sampling.seed)
        model, tokenizer = loaded
        sampler = sample_utils.make_sampler(
            temp=sampling.temperature,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            top_k=sampling.top_k,
        )
        penalty = sampling.repeat_penalty if sampling.repeat_penalty != 1.0 else None
        processors = sample_utils.make_logits_processors(repetition_penalty=penalty)
        for response in mlx_lm.stream_generate(
            model,
            tokenizer,
            _chat_prompt(tokenizer, messages),
            max_tokens=sampling.max_tokens,
            sampler=sampler,
            logits_processors=processors,
        ):
            yield MLXStep(
                response.text,
                int(response.prompt_tokens),
                int(response.generation_tokens),
                response.finish_reason,
            )


def _chat_prompt(tokenizer: Any, messages: Sequence[Message]) -> str:
    chat = [{"role": m.role, "content": m.content} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
    return plain_prompt(messages)


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    request: GenerateRequest = field(compare=False)
    out: queue.Queue[Chunk | BaseException] = field(compare=False, default_factory=queue.Queue)
    submitted: float = field(compare=False, default_factory=time.perf_counter)
    cancelled: threading.Event = field(compare=False, default_factory=threading.Event)


class MLXEngine:
    """Runs requests on mlx-lm in a thread of its own, one at a time."""

    def __init__(self, runtime: MLXRuntime | None = None) -> None:
        if runtime is None:
            problem = _mlx_problem_here()
            if problem is not None:
                raise MLXUnavailableError(problem)
            runtime = MlxLmRuntime()
        self._runtime = runtime
        self._cond = threading.Condition()
        self._pending: list[_Job] = []  # a heap: priority, then arrival
        self._live: dict[str, _Job] = {}
        self._seq = itertools.count()
        self._closed = False
        self._loaded: tuple[str, Any] | None = None  # touched by the worker only
        self._thread = threading.Thread(target=self._run, name="soloist-mlx", daemon=True)
        self._thread.start()

    # -- Engine protocol -------------------------------------------------
    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        job = _Job(int(request.priority), next(self._seq), request)
        with self._cond:
            if self._closed:
                job.out.put(MLXEngineClosedError("The MLX engine is closed; start it again."))
            else:
                self._live[request.request_id] = job
                heapq.heappush(self._pending, job)
                self._cond.notify()
        return self._drain(job)

    def cancel(self, request_id: str) -> bool:
        with self._cond:
            job = self._live.get(request_id)
            if job is None:
                return False
            job.cancelled.set()
            if job in self._pending:  # not started: it ends now
                self._pending.remove(job)
                heapq.heapify(self._pending)
                job.out.put(_final(job, FinishReason.CANCELLED, _Progress(job)))
        log.info("request %s: cancel asked", request_id)
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            live = list(self._live)
            self._cond.notify()
        for request_id in live:
            self.cancel(request_id)
        self._thread.join(timeout=30)

    # -- caller side -----------------------------------------------------
    def _drain(self, job: _Job) -> Iterator[Chunk]:
        request_id = job.request.request_id

        def forget() -> None:
            with self._cond:
                self._live.pop(request_id, None)

        return drain(job.out, abandon=lambda: self.cancel(request_id), finish=forget)

    # -- worker thread ---------------------------------------------------
    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                self._serve(job)
            except EngineError as exc:
                job.out.put(exc)
            except Exception as exc:  # a bug or an mlx failure: tell the caller, keep serving
                log.exception("request %s failed", job.request.request_id)
                job.out.put(GenerationError(f"MLX failed while generating ({type(exc).__name__})."))
        self._unload()

    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            return heapq.heappop(self._pending)

    def _serve(self, job: _Job) -> None:
        request = job.request
        if job.cancelled.is_set():  # cancelled between the queue and here
            job.out.put(_final(job, FinishReason.CANCELLED, _Progress(job)))
            return
        if request.sampling.grammar or request.sampling.json_schema:
            raise InvalidGrammarError(
                "The MLX backend cannot constrain replies with a grammar or JSON schema; "
                "use the llama.cpp backend for tool calls."
            )
        loaded = self._model(request.model_path)
        progress = _Progress(job)
        text = TextAssembler(request.sampling.stop)
        steps = self._runtime.stream(loaded, request.messages, request.sampling)
        try:
            reason = self._relay(job, steps, text, progress)
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()
        if reason is not FinishReason.CANCELLED:
            progress.emit(text.flush())
        job.out.put(_final(job, reason, progress))
        log.info(
            "request %s: %s, %d tokens, %.3f s",
            request.request_id,
            reason.value,
            progress.completion_tokens,
            time.perf_counter() - progress.started,
        )

    def _relay(
        self, job: _Job, steps: Iterator[MLXStep], text: TextAssembler, progress: _Progress
    ) -> FinishReason:
        """Pass the runtime's steps on as chunks; the reason the stream ended."""
        for step in steps:
            if job.cancelled.is_set():
                return FinishReason.CANCELLED
            progress.prompt_tokens = step.prompt_tokens
            progress.completion_tokens = step.generation_tokens
            progress.emit(text.feed(step.text.encode("utf-8")))
            if text.stopped:
                return FinishReason.STOP
            if step.finish_reason is not None:
                return FinishReason.LENGTH if step.finish_reason == "length" else FinishReason.STOP
        return FinishReason.CANCELLED if job.cancelled.is_set() else FinishReason.STOP

    def _model(self, path: str) -> Any:
        if self._loaded is not None and self._loaded[0] == path:
            return self._loaded[1]
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"No MLX model folder at {path} (it needs a config.json). "
                "Download the model again or choose another one."
            )
        self._unload()
        started = time.perf_counter()
        try:
            loaded = self._runtime.load(str(folder))
        except Exception as exc:
            raise MLXModelLoadError(
                f"MLX could not load the model in {folder.name} ({type(exc).__name__}). "
                "Check that it is an MLX model folder, or choose another model."
            ) from exc
        self._loaded = (path, loaded)
        log.info("loaded MLX model %s in %.2f s", folder.name, time.perf_counter() - started)
        return loaded

    def _unload(self) -> None:
        if self._loaded is not None:
            _, loaded = self._loaded
            self._loaded = None
            self._runtime.unload(loaded)


class _Progress:
    """What one request has produced so far (worker thread only)."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.started = time.perf_counter()
        self.first_text_at: float | None = None
        self.index = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def emit(self, text: str) -> None:
        if not text:
            return
        if self.first_text_at is None:
            self.first_text_at = time.perf_counter()
        self.job.out.put(Chunk(self.job.request.request_id, self.index, text=text))
        self.index += 1


def _final(job: _Job, reason: FinishReason, progress: _Progress) -> Chunk:
    now = time.perf_counter()
    first = progress.first_text_at if progress.first_text_at is not None else now
    timings = Timings(
        prompt_tokens=progress.prompt_tokens,
        completion_tokens=progress.completion_tokens,
        time_to_first_token_s=first - progress.started,
        total_s=now - progress.started,
        queue_s=progress.started - job.submitted,
    )
    return Chunk(job.request.request_id, progress.index, finish_reason=reason, timings=timings)
