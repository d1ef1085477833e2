"""The loaded things one run shares: the raw model and the engine, each loaded once.

Both are made on first use and warmed up with one short generation, so no
scenario ever times a model load or a first-call cost.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from app.bench import raw
from app.bench.engine_side import run_request
from app.bench.runs import BenchError
from app.bench.workload import Progress, Workload, stream_prompt
from app.engine.gguf_file import GGUFInfo
from app.engine.llama_adapter import LoadedModel
from app.engine.llamacpp import LlamaCppEngine
from app.engine.process.supervisor import ProcessEngine

log = logging.getLogger("soloist.bench")

WARMUP_TOKENS = 4


class Bench:
    """The workload, the model's metadata, and lazily the raw model and the engine."""

    def __init__(self, workload: Workload, info: GGUFInfo | None, progress: Progress) -> None:
        self.workload = workload
        self._info = info
        self.progress = progress
        self._raw: LoadedModel | None = None
        self._engine: LlamaCppEngine | None = None
        self._process: ProcessEngine | None = None
        self.snapshot_dir: Path | None = None  # the engine child's, made with it
        self.cache: dict[str, Any] = {}  # results scenarios share (6 and 7)

    @property
    def info(self) -> GGUFInfo:
        """The model's metadata (scenario 5 alone runs without a model)."""
        if self._info is None:
            raise BenchError("this scenario needs a model")
        return self._info

    @property
    def raw(self) -> LoadedModel:
        """The raw side's model, with the engine's context parameters."""
        if self._raw is None:
            started = time.perf_counter()
            model = LoadedModel(self.workload.model_path, self.workload.context(n_seq_max=4))
            self._raw = model
            tokens = raw.prompt_tokens(model, self.info, stream_prompt(0))
            raw.stream(model, tokens, self.workload.sampling, WARMUP_TOKENS)
            self._loaded("raw model", started)
        return self._raw

    @property
    def raw_if_loaded(self) -> LoadedModel | None:
        """The raw model when an earlier scenario loaded it (not loaded for this)."""
        return self._raw

    @property
    def engine(self) -> LlamaCppEngine:
        """The engine, configured as the app configures it (4 sequences)."""
        if self._engine is None:
            self._engine = self.warm_engine(LlamaCppEngine(self.workload.engine_config()))
        return self._engine

    @property
    def process_engine(self) -> ProcessEngine:
        """The same engine in its supervised child process (scenarios 6-8)."""
        if self._process is None:
            from app.bench.process import make_process_engine

            started = time.perf_counter()
            self._process = make_process_engine(self)
            run_request(self._process, self.workload.request(stream_prompt(0), WARMUP_TOKENS))
            self._loaded("engine child", started)
        return self._process

    def warm_engine(self, engine: LlamaCppEngine) -> LlamaCppEngine:
        """Load the model into ``engine`` and run one short request."""
        started = time.perf_counter()
        run_request(engine, self.workload.request(stream_prompt(0), WARMUP_TOKENS))
        self._loaded("engine", started)
        return engine

    def _loaded(self, what: str, started: float) -> None:
        self.progress(f"  {what}: loaded and warmed up in {time.perf_counter() - started:.1f} s")

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None
        if self.snapshot_dir is not None:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)
            self.snapshot_dir = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def __enter__(self) -> Bench:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
