"""What the benchmark runs: sizes, prompts, sampling and the two configurations.

Everything both sides share lives here, so the raw loop and the engine see
the same prompt tokens, the same sampler chain and the same context
parameters; the only difference left between them is the engine itself.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from app.bench import SCENARIOS
from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import EngineConfig
from app.engine.scheduler import SchedulerConfig
from app.engine.types import GenerateRequest, Message, Priority, SamplingParams

ALL_LAYERS = 999  # llama.cpp clamps it to the model's layers (+ output)

Progress = Callable[[str], None]

BENCH_MODEL_NAME = "bench-q4_k_m.gguf"


@dataclass(frozen=True, slots=True)
class Sizes:
    """Token counts and repeats of one run (full or ``--quick``)."""

    max_tokens: int = 128  # scenarios 1 and 2, per stream
    streams: int = 4  # scenario 2
    stream_repeats: int = 5  # scenario 1: raw and engine runs each, interleaved
    batch_repeats: int = 3  # scenario 2: likewise
    context_tokens: int = 2000  # scenario 3
    prefill_repeats: int = 2
    restore_repeats: int = 5
    background_streams: int = 4  # scenario 4
    background_tokens: int = 256
    interactive_tokens: int = 16
    interactive_samples: int = 8
    fifo_samples: int = 3  # each waits behind whole jobs: kept few
    sample_gap_s: float = 0.25
    sched_seqs: int = 8  # scenario 5
    sched_steps: int = 2000


FULL = Sizes()
QUICK = Sizes(
    max_tokens=16,
    stream_repeats=1,
    batch_repeats=1,
    context_tokens=200,
    prefill_repeats=1,
    restore_repeats=2,
    background_streams=2,
    background_tokens=32,
    interactive_tokens=4,
    interactive_samples=3,
    fifo_samples=2,
    sample_gap_s=0.05,
    sched_steps=200,
)


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What the command line asked for."""

    model: Path | None = None  # None: the generated bench model in the data dir
    quick: bool = False
    scenarios: tuple[int, ...] = SCENARIOS
    out_dir: Path = Path("bench/results")
    threads: int = 0  # 0: every core, as the engine's own default
    n_ctx: int = 4096

    @property
    def sizes(self) -> Sizes:
        return QUICK if self.quick else FULL

    @property
    def n_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


# Greedy with no penalty: the sampler chain is one greedy sampler on both
# sides, and the same prompt gives the same tokens, so the two sides do the
# same work token for token.
GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0)

_SYSTEM = "You are the office assistant of a one-person bakery. Be brief and concrete."
STREAM_PROMPTS = (
    "Write a short note to a customer whose wedding cake order is confirmed for Saturday.",
    "List five ways to keep bread fresh for a farmers market stall.",
    "Explain in plain words how sourdough starter works.",
    "Draft a polite reply to a supplier who delivered the wrong flour.",
    "Summarise this week's orders: 12 loaves, 3 cakes, 40 croissants.",
    "Suggest a name for a new rye bread with caraway.",
)
INTERACTIVE_PROMPT = (
    "A customer is on the phone right now asking whether the shop has gluten-free bread "
    "today and until what time it is open. Answer in two sentences."
)
CONTEXT_TEXT = (
    "Order book, week 12. Monday: two sourdough loaves for Mrs Alvarez, a birthday cake "
    "with lemon curd for the Okafor family, forty croissants for the cafe on Mill Street. "
    "Tuesday: flour delivery short by two sacks; supplier promised a credit note. "
)


def messages(prompt: str) -> tuple[Message, ...]:
    """An interactive turn: the assistant's system prompt, then the user."""
    return (Message("system", _SYSTEM), Message("user", prompt))


def stream_prompt(index: int) -> tuple[Message, ...]:
    """A user message alone (scenarios 1, 2 and the background of 4).

    No system prompt, so that no two prompts share a prefix long enough for
    the engine to share cells (``MIN_SHARED_PREFIX``): that would save it
    prefill work the raw side does, or make a loaded interactive request
    cheaper than an idle one. Only the template's opening (``<|im_start|>
    user``) is common to these prompts.
    """
    return (Message("user", STREAM_PROMPTS[index % len(STREAM_PROMPTS)]),)


@dataclass(frozen=True, slots=True)
class Workload:
    """The model and configurations every scenario of one run uses."""

    model_path: str
    options: BenchOptions
    sampling: SamplingParams = GREEDY

    @property
    def sizes(self) -> Sizes:
        return self.options.sizes

    def context(self, n_seq_max: int) -> ContextConfig:
        """The raw side's context: exactly what the engine builds for itself."""
        engine = self.engine_config()
        return ContextConfig(
            n_ctx=self.options.n_ctx,
            n_batch=max(engine.context.n_batch, engine.step_token_budget),
            n_threads=self.options.n_threads,
            n_gpu_layers=ALL_LAYERS,
            n_seq_max=n_seq_max,
            kv_unified=engine.kv_unified,
        )

    def engine_config(self, n_seq_max: int = 4) -> EngineConfig:
        return EngineConfig(
            context=ContextConfig(
                n_ctx=self.options.n_ctx,
                n_threads=self.options.n_threads,
                n_gpu_layers=ALL_LAYERS,  # the same on both sides, wherever a GPU is
            ),
            n_seq_max=n_seq_max,
            keep_alive_s=3600.0,  # no unload between scenarios
        )

    def request(
        self,
        msgs: tuple[Message, ...],
        max_tokens: int,
        priority: Priority = Priority.INTERACTIVE,
    ) -> GenerateRequest:
        return GenerateRequest(
            model_path=self.model_path,
            messages=msgs,
            sampling=replace(self.sampling, max_tokens=max_tokens),
            priority=priority,
            agent_id="bench",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_threads": self.options.n_threads,
            "n_ctx": self.options.n_ctx,
            "quick": self.options.quick,
            "scenarios": list(self.options.scenarios),
            "sizes": asdict(self.sizes),
            "sampling": asdict(self.sampling),
            "engine": asdict(self.engine_config()),
            "raw_context": asdict(self.context(4)),
        }


@dataclass(frozen=True, slots=True)
class FifoEngineConfig(EngineConfig):
    """One slot, no aging, no yielding: requests run one at a time in arrival order.

    With every request in one class, the scheduler's rank key is (class,
    no deadline, arrival), so the queue is first come first served; aging
    is switched off so that a long wait can never lift a queued request
    into a higher band, which could then swap out the running one.
    """

    def scheduler(self, n_ctx: int) -> SchedulerConfig:
        base = EngineConfig.scheduler(self, n_ctx)
        return replace(base, aging_rate=0.0, yield_class=None)


def fifo_config(workload: Workload) -> FifoEngineConfig:
    base = workload.engine_config(n_seq_max=1)
    return FifoEngineConfig(context=base.context, n_seq_max=1, keep_alive_s=base.keep_alive_s)


def resolve_model(options: BenchOptions, progress: Progress) -> tuple[Path, bool]:
    """The model to run, generating the bench model first when needed."""
    if options.model is not None:
        return options.model, False
    from app import paths
    from app.devtools.testmodels import write_bench_model

    path = paths.data_dir() / "models" / BENCH_MODEL_NAME
    if path.exists():
        return path, False
    progress(f"generating the benchmark model (Q4_K_M, 1024 wide, 16 layers, ~114 MB) at {path}")
    started = time.perf_counter()
    write_bench_model(path)
    progress(f"benchmark model written in {time.perf_counter() - started:.1f} s")
    return path, True


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, its features, the llama.cpp build, the load."""
    import llama_cpp

    from app.engine import devices

    found = devices.discover_devices()
    cpu = next((d for d in found if d.kind == "cpu"), None)
    return {
        "cpu_name": devices.read_cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_features": list(cpu.features) if cpu else [],
        "devices": [d.to_dict() for d in found],
        "llama_system_info": devices.read_system_info(),
        "llama_cpp_python": llama_cpp.__version__,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average": load_average(),
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not on every platform
        return None
