"""The in-process llama.cpp engine: one thread, many models, many sequences.

One engine thread owns every llama.cpp object. ``generate`` posts the
request to the thread's inbox and returns an iterator fed through a
per-request queue; ``cancel`` posts a cancel that takes effect at the next
token boundary. Each loaded model has a :class:`ContextRunner` whose
scheduler mixes the sequences of all its requests into one batch per step,
so an interactive request preempts background work instead of waiting
behind it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.devices import DeviceProbe, discover_devices
from app.engine.errors import (
    EngineBusyError,
    EngineError,
    EngineUnavailableError,
    GenerationError,
    ModelInUseError,
    ModelLoadError,
    ModelTooLargeError,
)
from app.engine.gguf_file import GGUFInfo, gguf_info, read_gguf_header
from app.engine.llama_adapter import AUTO_GPU_LAYERS, ContextConfig, LoadedModel
from app.engine.metrics import MetricsRing
from app.engine.placement import (
    LoadedModelInfo,
    ModelFootprint,
    choose_eviction,
    estimate_memory,
    expired,
    footprint_from_header,
    gpu_layers_that_fit,
    next_model,
    over_count,
)
from app.engine.runner import ContextRunner
from app.engine.scheduler import SchedulerConfig
from app.engine.sessions import SessionCache, kv_identity
from app.engine.status import write_status
from app.engine.streams import drain
from app.engine.swap import SwapSpace
from app.engine.types import Chunk, FinishReason, GenerateRequest, Priority

log = logging.getLogger("soloist.engine")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the engine builds contexts and schedules them."""

    context: ContextConfig = field(default_factory=ContextConfig)
    n_seq_max: int = 4
    step_token_budget: int = 512
    max_queue: int = 64
    max_models: int = 2  # loaded at once; the least recently used idle one goes
    keep_alive_s: float = 300.0  # an idle model is unloaded after this
    # One KV buffer for all sequences: a long conversation may use most of
    # the context while other sequences are short, and a saved sequence state
    # restores into any slot. (False: a fixed n_ctx / n_seq_max per slot.)
    kv_unified: bool = True
    # Where finished sessions' KV snapshots go (None: not kept). The office
    # points it into its data directory.
    snapshot_dir: Path | None = None
    snapshot_max_bytes: int = 2 * 2**30
    # Memory the loaded models may use together (weights and KV); None: no limit.
    memory_budget_bytes: int | None = None
    pinned: tuple[str, ...] = ()  # model paths never unloaded for room or keep-alive
    device_probe: DeviceProbe | None = None  # how devices are found (tests fake a GPU)
    status_file: Path | None = None  # where residency is published for `soloist doctor`
    # Preempted sequences' KV waits in RAM up to this many bytes, then on disk
    # under swap_dir (None: always in RAM).
    host_swap_budget_bytes: int = 1 * 2**30
    swap_dir: Path | None = None
    # Called on the engine thread as models come and go: (what, path, detail)
    # with what in "loading", "loaded", "failed", "unloaded". The engine
    # process forwards these, so a crash inside a load names its model.
    on_model_event: Callable[[str, str, str], None] | None = None

    def scheduler(self, n_ctx: int) -> SchedulerConfig:
        return SchedulerConfig(
            n_seq_max=self.n_seq_max,
            step_token_budget=max(self.step_token_budget, self.n_seq_max),
            kv_budget_tokens=n_ctx,
            max_queue=self.max_queue,
        )


@dataclass(frozen=True, slots=True)
class DegradedEvent:
    """A request fell back from a model that could not be loaded."""

    request_id: str
    model_path: str
    error: str


@dataclass
class _Job:
    request: GenerateRequest
    out: queue.Queue[Chunk | BaseException]
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class _Cancel:
    request_id: str


@dataclass(frozen=True, slots=True)
class _Preload:
    path: str


@dataclass(frozen=True, slots=True)
class _Residency:
    """An owner's residency action, carried out on the engine thread."""

    action: str  # "unload" | "pin" | "unpin"
    path: str
    done: Future[None]


_STOP = object()
# How long unload/pin wait for the engine thread (it answers between two steps).
CONTROL_TIMEOUT_S = 30.0


class LlamaCppEngine:
    """Runs requests on llama.cpp in a thread of its own."""

    def __init__(self, config: ContextConfig | EngineConfig | None = None) -> None:
        if isinstance(config, ContextConfig):
            config = EngineConfig(context=config)
        self._config = config or EngineConfig()
        self._inbox: queue.Queue[_Job | _Cancel | object] = queue.Queue()
        self._live: dict[str, _Job] = {}
        self._live_lock = threading.Lock()
        self._runners: dict[str, ContextRunner] = {}
        self._pinned: set[str] = set(self._config.pinned)  # the engine thread's
        self.metrics = MetricsRing()  # one record per finished request; thread-safe
        self._residency: list[dict[str, Any]] = []  # replaced whole by the engine thread
        # Models that failed to load, newest last (appended by the engine thread).
        self.events: deque[DegradedEvent] = deque(maxlen=256)
        self._step_started: float | None = None  # set while the engine thread is in a step
        self._thread = threading.Thread(target=self._run, name="soloist-engine", daemon=True)
        self._thread.start()

    # -- public interface ----------------------------------------------
    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        job = _Job(request, queue.Queue())
        with self._live_lock:
            self._live[request.request_id] = job
        self._inbox.put(job)
        return self._drain(job)

    def cancel(self, request_id: str) -> bool:
        with self._live_lock:
            job = self._live.get(request_id)
        if job is None:
            return False
        job.cancelled.set()
        self._inbox.put(_Cancel(request_id))
        return True

    def preload(self, path: str) -> None:
        """Load ``path`` in the background (a failure is logged and reported as an event)."""
        self._inbox.put(_Preload(path))

    def stalled_s(self) -> float:
        """How long the engine thread has been inside one decode step (0 when not)."""
        started = self._step_started
        return 0.0 if started is None else time.monotonic() - started

    def residency(self) -> list[dict[str, Any]]:
        """The loaded models: path, GPU layers, memory estimate... (plain data, a snapshot)."""
        return list(self._residency)

    def memory_in_use(self) -> int:
        """Bytes the loaded models are estimated to hold (weights and KV)."""
        return sum(int(m["memory_bytes"]) for m in self._residency)

    def loaded_models(self) -> list[str]:
        """Paths of the models loaded now (a snapshot; may change at once)."""
        return list(self._runners)

    @property
    def keep_alive_s(self) -> float:
        return self._config.keep_alive_s

    def queue_by_priority(self) -> dict[str, int]:
        """Requests in flight (queued or running) per priority class name."""
        with self._live_lock:
            jobs = list(self._live.values())
        counts = Counter(job.request.priority.name.lower() for job in jobs)
        return {p.name.lower(): counts[p.name.lower()] for p in Priority}

    def unload(self, path: str) -> None:
        """Unload ``path`` now; nothing to do when it is not loaded.

        Refused with :class:`ModelInUseError` while requests run or wait on
        it (it is not unloaded under them; try again when they finish).
        """
        self._control("unload", path)

    def pin(self, path: str) -> None:
        """Keep ``path`` loaded once it is: no keep-alive expiry, never evicted for room."""
        self._control("pin", path)

    def unpin(self, path: str) -> None:
        """Let ``path`` go again; its keep-alive counts from now."""
        self._control("unpin", path)

    def _control(self, action: str, path: str) -> None:
        if not self._thread.is_alive():
            raise EngineUnavailableError("The engine has stopped.")
        done: Future[None] = Future()
        self._inbox.put(_Residency(action, path, done))
        try:
            done.result(timeout=CONTROL_TIMEOUT_S)
        except FutureTimeout:
            raise EngineUnavailableError(
                f"The engine did not answer within {CONTROL_TIMEOUT_S:.0f} s."
            ) from None

    def close(self) -> None:
        if self._thread.is_alive():
            with self._live_lock:
                live = list(self._live)
            for request_id in live:
                self.cancel(request_id)
            self._inbox.put(_STOP)
            self._thread.join(timeout=30)

    # -- caller side ---------------------------------------------------
    def _drain(self, job: _Job) -> Iterator[Chunk]:
        request_id = job.request.request_id

        def forget() -> None:
            with self._live_lock:
                self._live.pop(request_id, None)

        return drain(job.out, abandon=lambda: self.cancel(request_id), finish=forget)

    # -- engine thread -------------------------------------------------
    def _run(self) -> None:
        while True:
            busy = any(r.busy for r in self._runners.values())
            if not self._take_messages(block=not busy):
                break
            for path, runner in list(self._runners.items()):
                if runner.busy:
                    self._step(path, runner)
            self._unload_expired()
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
        self._publish()
        while True:  # an owner waiting on an unload or a pin is told at once
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Residency):
                item.done.set_exception(EngineUnavailableError("The engine has stopped."))

    def _take_messages(self, *, block: bool) -> bool:
        """Handle what is in the inbox; False when asked to stop."""
        try:
            item = self._inbox.get(timeout=1.0) if block else self._inbox.get_nowait()
        except queue.Empty:
            return True
        while True:
            if item is _STOP:
                return False
            if isinstance(item, _Job):
                self._submit(item)
            elif isinstance(item, _Cancel):
                self._cancel(item.request_id)
            elif isinstance(item, _Preload):
                self._preload(item.path)
            elif isinstance(item, _Residency):
                self._residency_action(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _submit(self, job: _Job) -> None:
        req = job.request
        if job.cancelled.is_set():
            job.out.put(Chunk(req.request_id, 0, finish_reason=FinishReason.CANCELLED))
            return
        try:
            runner = self._runner_with_fallback(req)
            runner.submit(req, job.out.put, job.submitted)
        except EngineError as exc:
            job.out.put(exc)
        except Exception as exc:  # a bug: tell the caller, keep serving
            log.exception("request %s could not start", req.request_id)
            job.out.put(GenerationError(f"Internal engine error: {type(exc).__name__}."))

    def _runner_with_fallback(self, req: GenerateRequest) -> ContextRunner:
        """The runner of the first model in the request's preference list that loads."""
        failed: set[str] = set()
        errors: list[ModelLoadError] = []
        preferences = [req.model_path, *req.fallback_models]
        while (path := next_model(preferences, failed)) is not None:
            try:
                return self._runner_for(path)
            except ModelLoadError as exc:
                errors.append(exc)
                failed.add(path)
                self.events.append(DegradedEvent(req.request_id, path, type(exc).__name__))
                log.warning(
                    "request %s: model %s failed to load (%s)",
                    req.request_id,
                    Path(path).name,
                    type(exc).__name__,
                )
        raise errors[0]  # the preferred model's reason is the one to show

    def _cancel(self, request_id: str) -> None:
        for runner in self._runners.values():
            if runner.cancel(request_id):
                return

    def _preload(self, path: str) -> None:
        try:
            self._runner_for(path)
        except EngineError as exc:
            log.warning("preloading %s failed: %s", Path(path).name, type(exc).__name__)
        except Exception:
            log.exception("preloading %s failed", Path(path).name)

    def _residency_action(self, item: _Residency) -> None:
        try:
            if item.action == "unload":
                self._unload_now(item.path)
            elif item.action == "pin":
                self._pinned.add(item.path)
            else:
                self._pinned.discard(item.path)
                runner = self._runners.get(item.path)
                if runner is not None:
                    runner.last_used = time.monotonic()  # a full keep-alive from now
            self._publish()
        except EngineError as exc:
            item.done.set_exception(exc)
            return
        except Exception as exc:  # a bug: tell the owner, keep serving
            log.exception("%s %s failed", item.action, Path(item.path).name)
            item.done.set_exception(
                GenerationError(f"Internal engine error: {type(exc).__name__}.")
            )
            return
        item.done.set_result(None)

    def _unload_now(self, path: str) -> None:
        runner = self._runners.get(path)
        if runner is None:
            return
        if runner.busy:
            raise ModelInUseError(
                f"{Path(path).name} is answering requests; it can be unloaded when they finish."
            )
        self._unload(path, "the owner asked")

    def _step(self, path: str, runner: ContextRunner) -> None:
        self._step_started = time.monotonic()
        try:
            runner.step()
        except EngineError as exc:
            log.error("model %s failed a step: %s", path, exc)
            runner.fail_all(exc)
        except Exception as exc:
            log.exception("model %s failed a step", path)
            runner.fail_all(GenerationError(f"Internal engine error: {type(exc).__name__}."))
        finally:
            self._step_started = None

    # -- residency -----------------------------------------------------
    def _runner_for(self, path: str) -> ContextRunner:
        runner = self._runners.get(path)
        if runner is not None:
            return runner
        header = read_gguf_header(path)  # once: info and footprint both come from it
        info = gguf_info(header)
        footprint = footprint_from_header(header)
        ctx = self._config.context
        layers = self._gpu_layers(footprint, ctx)
        estimate = estimate_memory(footprint, ctx.n_ctx, layers)
        need = estimate.device_bytes + estimate.host_bytes
        self._make_room(path, need)
        started = time.perf_counter()
        ctx_config = ContextConfig(
            n_ctx=ctx.n_ctx,
            n_batch=max(ctx.n_batch, self._config.step_token_budget),
            n_threads=ctx.n_threads,
            n_gpu_layers=layers,
            n_seq_max=self._config.n_seq_max,
            kv_unified=self._config.kv_unified,
        )
        self._model_event("loading", path, "")
        try:
            model = LoadedModel(path, ctx_config)
        except EngineError as exc:
            self._model_event("failed", path, str(exc))
            raise
        runner = ContextRunner(
            model,
            info,
            self._config.scheduler(model.n_ctx),
            metrics=self.metrics,
            sessions=self._sessions(info),
            swap=self._swap_space(info),
        )
        runner.memory_bytes = need
        runner.gpu_layers = layers
        self._runners[path] = runner
        self._publish()
        self._model_event("loaded", path, "")
        log.info(
            "loaded %s (%d bytes, n_ctx=%d, %d GPU layers, %d sequences) in %.2f s",
            info.name,
            info.size_bytes,
            model.n_ctx,
            layers,
            self._config.n_seq_max,
            time.perf_counter() - started,
        )
        return runner

    def _swap_space(self, info: GGUFInfo) -> SwapSpace:
        cfg = self._config
        disk = None if cfg.swap_dir is None else cfg.swap_dir / f"{abs(hash(info.path)):x}"
        identity = kv_identity(info, n_seq_max=cfg.n_seq_max, kv_unified=cfg.kv_unified)
        return SwapSpace(cfg.host_swap_budget_bytes, disk, identity)

    def _sessions(self, info: GGUFInfo) -> SessionCache | None:
        cfg = self._config
        if cfg.snapshot_dir is None:
            return None
        return SessionCache(
            cfg.snapshot_dir,
            info,
            n_seq_max=cfg.n_seq_max,
            kv_unified=cfg.kv_unified,
            max_bytes=cfg.snapshot_max_bytes,
        )

    def _make_room(self, path: str, need_bytes: int) -> None:
        """Unload idle models until ``path`` fits the count limit and the memory budget."""
        cfg = self._config
        for victim in over_count(self._loaded(), cfg.max_models):
            self._unload(victim, "to make room")
        if cfg.memory_budget_bytes is None:
            return
        if need_bytes > cfg.memory_budget_bytes:
            raise ModelTooLargeError(
                f"{Path(path).name} needs about {need_bytes / 2**30:.1f} GiB, more than the "
                f"{cfg.memory_budget_bytes / 2**30:.1f} GiB Soloist may use. Choose a smaller "
                "model or raise the memory budget."
            )
        victims = choose_eviction(
            self._loaded(), need_bytes, cfg.memory_budget_bytes, time.monotonic()
        )
        if victims is None:
            raise EngineBusyError(
                f"Not enough memory for {Path(path).name} while the loaded models are busy "
                "or pinned; it can start when they finish."
            )
        for victim in victims:
            self._unload(victim, "memory budget")

    def _loaded(self) -> list[LoadedModelInfo]:
        """The loaded models as the pure residency decisions of placement.py see them."""
        return [
            LoadedModelInfo(
                path,
                runner.memory_bytes,
                runner.last_used,
                in_flight=int(runner.busy),
                pinned=path in self._pinned,
                keep_alive_s=self._config.keep_alive_s,
            )
            for path, runner in self._runners.items()
        ]

    def _gpu_layers(self, footprint: ModelFootprint, ctx: ContextConfig) -> int:
        """The configured layer count, or (``AUTO_GPU_LAYERS``) what fits the best device."""
        if ctx.n_gpu_layers != AUTO_GPU_LAYERS:
            return ctx.n_gpu_layers
        devices = [d for d in discover_devices(self._config.device_probe) if d.can_offload]
        free = max((d.memory_free_bytes or 0 for d in devices), default=0)
        if free <= 0:
            return 0
        return gpu_layers_that_fit(footprint, free, ctx.n_ctx, n_seq=1)

    def _unload_expired(self) -> None:
        for path in expired(self._loaded(), time.monotonic()):
            self._unload(path, "kept alive long enough")

    def _unload(self, path: str, why: str) -> None:
        runner = self._runners.pop(path)
        runner.close()
        log.info("unloaded %s (%s)", runner.info.name, why)
        self._publish()
        self._model_event("unloaded", path, why)

    def _model_event(self, what: str, path: str, detail: str) -> None:
        hook = self._config.on_model_event
        if hook is None:
            return
        try:
            hook(what, path, detail)
        except Exception:  # an observer must not break loading
            log.exception("model event hook failed")

    def _publish(self) -> None:
        self._residency = self._describe_models()
        if self._config.status_file is None:
            return
        write_status(self._config.status_file, self._residency)

    def _describe_models(self) -> list[dict[str, Any]]:
        return [
            {
                "path": path,
                "name": runner.info.name,
                "n_layer": runner.info.block_count,
                "gpu_layers": runner.gpu_layers,
                "memory_bytes": runner.memory_bytes,
                "n_ctx": runner.model.n_ctx,
                "n_seq_max": runner.model.n_seq_max,
                "pinned": path in self._pinned,
            }
            for path, runner in self._runners.items()
        ]
