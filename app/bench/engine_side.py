"""The engine side: requests through ``LlamaCppEngine.generate``, as callers make them.

Times come from the final chunk's :class:`~app.engine.types.Timings`,
measured on the engine thread where the tokens are made (as the raw loop
measures its own), and from the caller's side around ``generate``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.bench.runs import BatchRun, BenchError, StreamRun
from app.engine.interface import Engine
from app.engine.llamacpp import LlamaCppEngine
from app.engine.types import Chunk, FinishReason, GenerateRequest

log = logging.getLogger("soloist.bench")

_JOIN_S = 600.0


def run_request(engine: Engine, request: GenerateRequest) -> StreamRun:
    """Generate to the end; the stream's numbers (an error or a cancel raises)."""
    submitted = time.perf_counter()
    first_chunk: float | None = None
    final: Chunk | None = None
    marks: list[tuple[float, int]] = []
    for chunk in engine.generate(request):
        now = time.perf_counter()
        if chunk.text:
            first_chunk = now - submitted if first_chunk is None else first_chunk
            marks.append((now, chunk.index))  # a text chunk's index is the tokens so far
        if chunk.is_final:
            final = chunk
    wall = time.perf_counter() - submitted
    if final is None or final.timings is None or final.finish_reason not in _DONE:
        reason = final.finish_reason if final else "no final chunk"
        raise BenchError(f"request {request.request_id} ended without finishing ({reason})")
    t = final.timings
    return StreamRun(
        tokens=t.completion_tokens,
        ttft_s=t.time_to_first_token_s,
        total_s=t.total_s,
        queue_s=t.queue_s,
        wall_s=wall,
        first_chunk_s=first_chunk,
        finish=str(final.finish_reason),
        preemptions=t.preemptions,
        prompt_tokens=t.prompt_tokens,
        marks=(*marks, (submitted + wall, t.completion_tokens)),
    )


_DONE = (FinishReason.STOP, FinishReason.LENGTH)


def run_concurrent(engine: LlamaCppEngine, requests: Sequence[GenerateRequest]) -> BatchRun:
    """One thread per request, released together; wall time until the last ends."""
    n = len(requests)
    results: list[StreamRun | None] = [None] * n
    ended = [0.0] * n
    errors: list[BaseException] = []
    gate = threading.Barrier(n + 1)

    def work(i: int) -> None:
        gate.wait()
        try:
            results[i] = run_request(engine, requests[i])
        except BaseException as exc:  # handed to the main thread below
            errors.append(exc)
        ended[i] = time.perf_counter()

    threads = [
        threading.Thread(target=work, args=(i,), name=f"bench-stream-{i}", daemon=True)
        for i in range(n)
    ]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    gate.wait()
    for thread in threads:
        thread.join(_JOIN_S)
    if errors:
        raise errors[0]
    runs = tuple(r for r in results if r is not None)
    if len(runs) != n:
        raise BenchError("a concurrent stream did not finish in time")
    return BatchRun(runs, max(ended) - started)


class LoadWorkers:
    """Background streams kept running back to back until stopped.

    Worker ``i`` submits ``make(i, k)`` for k = 0, 1, ... and reads it to the
    end, so the load stays on for as long as the measurement needs it.
    """

    def __init__(
        self, engine: LlamaCppEngine, n: int, make: Callable[[int, int], GenerateRequest]
    ) -> None:
        self._engine = engine
        self._make = make
        self._lock = threading.Lock()
        self._stopped = False
        self._current: dict[int, str] = {}
        self.submitted = [threading.Event() for _ in range(n)]
        self.started = [threading.Event() for _ in range(n)]
        self.finished: list[StreamRun] = []
        self.cancelled = 0
        self.preemptions = 0  # of every request, finished or cancelled
        self.errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"bench-load-{i}", daemon=True)
            for i in range(n)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wait_until_loaded(self, *, all_started: bool, timeout: float = _JOIN_S) -> None:
        """Every worker has a request in; and every one (else any one) is generating."""
        deadline = time.monotonic() + timeout
        for event in self.submitted:
            event.wait(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline and not self.errors:
            flags = [e.is_set() for e in self.started]
            if all(flags) if all_started else any(flags):
                return
            time.sleep(0.01)
        raise BenchError("the background streams did not start") from _first(self.errors)

    def stop(self) -> dict[str, Any]:
        """Cancel what runs, wait for the workers, and say what they did."""
        with self._lock:
            self._stopped = True
            live = list(self._current.values())
        for request_id in live:
            self._engine.cancel(request_id)
        for thread in self._threads:
            thread.join(_JOIN_S)
        if self.errors:
            raise self.errors[0]
        return {
            "completed_requests": len(self.finished),
            "completed_tokens": sum(r.tokens for r in self.finished),
            "cancelled_requests": self.cancelled,
            "preemptions": self.preemptions,
            "decode_tok_s": [r.decode_tok_s for r in self.finished],
        }

    def _work(self, i: int) -> None:
        try:
            for k in itertools.count():
                with self._lock:
                    if self._stopped:
                        return
                    request = self._make(i, k)
                    self._current[i] = request.request_id
                    stream = self._engine.generate(request)  # submits now
                self.submitted[i].set()
                self._drain(i, stream, time.perf_counter())
        except BaseException as exc:  # handed over by stop()
            self.errors.append(exc)

    def _drain(self, i: int, stream: Any, submitted: float) -> None:
        for chunk in stream:
            if chunk.text:
                self.started[i].set()
            if chunk.is_final:
                self._account(chunk, time.perf_counter() - submitted)

    def _account(self, chunk: Chunk, wall: float) -> None:
        t = chunk.timings
        if t is None:
            return
        with self._lock:  # workers finish on their own threads
            self.preemptions += t.preemptions
            if chunk.finish_reason is FinishReason.CANCELLED:
                self.cancelled += 1
                return
        run = StreamRun(
            tokens=t.completion_tokens,
            ttft_s=t.time_to_first_token_s,
            total_s=t.total_s,
            queue_s=t.queue_s,
            wall_s=wall,
            finish=str(chunk.finish_reason),
            preemptions=t.preemptions,
        )
        with self._lock:
            self.finished.append(run)


def _first(errors: list[BaseException]) -> BaseException | None:
    return errors[0] if errors else None
