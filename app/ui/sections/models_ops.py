"""What the Models & devices section asks the office, as plain functions (no Qt).

Each function takes the office (or its data directory) and returns plain
data, so the section can run it through ``bridge.call`` and tests can call
it directly. It never starts the engine: opening this section must not
load a model. What the engine offers is found by asking it, not assumed:
a queue by priority class, per-request metrics, unloading and pinning are
reported when the running engine has them, and the page says plainly what
it does not offer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import paths
from app.engine.catalog import RECOMMENDED, CatalogScan, ModelCatalog, RecommendedModel
from app.engine.devices import Device, DeviceProbe, discover_devices
from app.engine.status import STATUS_FILE, read_status
from app.office import Office

log = logging.getLogger("soloist.ui")

RECENT_REQUESTS = 60
PRIORITY_CLASSES = ("interactive", "standard", "background")
DOWNLOAD_CHUNK = 256 * 1024  # small enough that a cancel is seen within a fraction of a second
DEFAULT_KEEP_ALIVE_S = 300.0  # EngineConfig.keep_alive_s, as the office configures it


@dataclass(frozen=True, slots=True)
class ResidentModel:
    """One loaded model, from the engine's residency."""

    path: str
    name: str
    layers: int  # the model's blocks plus the output layer
    gpu_layers: int
    memory_bytes: int
    n_ctx: int
    pinned: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResidentModel:
        return cls(
            path=str(data.get("path", "")),
            name=str(data.get("name") or Path(str(data.get("path", "?"))).name),
            layers=int(data.get("n_layer", 0)) + 1,
            gpu_layers=int(data.get("gpu_layers", 0)),
            memory_bytes=int(data.get("memory_bytes", 0)),
            n_ctx=int(data.get("n_ctx", 0)),
            pinned=bool(data.get("pinned", False)),
        )


@dataclass(frozen=True, slots=True)
class EngineView:
    """What the engine shows now; ``None`` fields are things it does not report."""

    started: bool
    residency: tuple[ResidentModel, ...] = ()
    residency_source: str = "none"  # "engine", "status file" or "none"
    queue: dict[str, int] | None = None  # requests in flight per priority class
    recent: tuple[dict[str, Any], ...] | None = None  # RequestRecord dicts, oldest first
    can_unload: bool = False
    can_pin: bool = False
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S
    broken: dict[str, str] = field(default_factory=dict)


def started_engine(office: Office) -> Any | None:
    """The engine if something already started it; never starts one."""
    return office.started_engine()


def _local(engine: Any) -> Any:
    """The local engine behind a router (``RoutingEngine.local``), or the engine itself."""
    return getattr(engine, "local", None) or engine


def engine_view(office: Office) -> EngineView:
    """Residency, queue and recent requests of the running engine, as far as it tells."""
    engine = started_engine(office)
    if engine is None:
        return EngineView(False, *_published_residency(office.home))
    local = _local(engine)
    residency = tuple(ResidentModel.from_dict(m) for m in _call(local, "residency", []))
    broken = _call(local, "broken_models", {})
    return EngineView(
        started=True,
        residency=residency,
        residency_source="engine",
        queue=_queue(local),
        recent=_recent(local),
        can_unload=callable(getattr(local, "unload", None)),
        can_pin=callable(getattr(local, "pin", None)),
        keep_alive_s=_keep_alive(local),
        broken=dict(broken) if isinstance(broken, dict) else {},
    )


def _keep_alive(engine: Any) -> float:
    value = getattr(engine, "keep_alive_s", None)
    return float(value) if isinstance(value, int | float) else DEFAULT_KEEP_ALIVE_S


def _published_residency(home: Path) -> tuple[tuple[ResidentModel, ...], str]:
    """What an engine of another process published (``soloist doctor``'s source)."""
    status = read_status(home / STATUS_FILE)
    if status is None or not status.get("alive"):
        return (), "none"
    return tuple(ResidentModel.from_dict(m) for m in status["models"]), "status file"


def _call(obj: Any, name: str, default: Any) -> Any:
    method = getattr(obj, name, None)
    if not callable(method):
        return default
    try:
        return method()
    except Exception as exc:  # a dying engine must not break the page
        log.info("engine %s unavailable: %s", name, type(exc).__name__)
        return default


def _queue(engine: Any) -> dict[str, int] | None:
    counts = _call(engine, "queue_by_priority", None)
    if not isinstance(counts, dict):
        return None
    return {name: int(counts.get(name, 0)) for name in PRIORITY_CLASSES}


def _recent(engine: Any) -> tuple[dict[str, Any], ...] | None:
    ring = getattr(engine, "metrics", None)
    recent = getattr(ring, "recent", None)
    if not callable(recent):
        return None
    return tuple(recent(RECENT_REQUESTS))


def unload(office: Office, path: str) -> None:
    engine = started_engine(office)
    if engine is not None:
        _local(engine).unload(path)


def set_pinned(office: Office, path: str, pinned: bool) -> None:
    engine = started_engine(office)
    if engine is not None:
        local = _local(engine)
        local.pin(path) if pinned else local.unpin(path)


# -- charts --------------------------------------------------------------------


def tokens_per_s_points(records: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """(request number, tokens/s) of the recent requests that decoded more than one token."""
    values = [r.get("tokens_per_s") for r in records]
    return [(float(i), float(v)) for i, v in enumerate(values, 1) if isinstance(v, int | float)]


def ttft_bars(records: Sequence[dict[str, Any]]) -> list[tuple[str, float]]:
    """Median time to first token per priority class, in ms (classes with no sample left out)."""
    bars = []
    for name in PRIORITY_CLASSES:
        values = sorted(
            float(r["time_to_first_token_s"]) * 1000
            for r in records
            if r.get("priority") == name and isinstance(r.get("time_to_first_token_s"), float)
        )
        if values:
            bars.append((name, values[(len(values) - 1) // 2]))
    return bars


# -- devices -------------------------------------------------------------------


def devices(probe: DeviceProbe | None = None) -> list[Device]:
    """The accelerators and the CPU, with their memory now (never raises)."""
    return discover_devices(probe)


def memory_line(device: Device) -> str:
    """``"3.2 of 8.0 GB in use"``, or what is known of it."""
    total, free = device.memory_total_bytes, device.memory_free_bytes
    if total is None:
        return "memory unknown"
    if free is None:
        return f"{gb(total)} GB, use unknown"
    return f"{gb(total - free)} of {gb(total)} GB in use"


def gb(n: int) -> str:
    return f"{n / 1e9:.1f}"


# -- local and curated models --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Curated:
    """A recommended model and where it stands on this machine."""

    model: RecommendedModel
    dest: str
    downloaded: bool
    partial_bytes: int  # bytes of an interrupted download (0: none)


@dataclass(frozen=True, slots=True)
class ModelsList:
    chosen: str | None
    scan: CatalogScan
    curated: tuple[Curated, ...]
    models_dir: str


def models_list(office: Office, curated: Sequence[RecommendedModel] = RECOMMENDED) -> ModelsList:
    folder = paths.models_dir(office.home)
    return ModelsList(
        chosen=office.model_path(),
        scan=ModelCatalog(folder).scan(),
        curated=tuple(curated_state(folder, m) for m in curated),
        models_dir=str(folder),
    )


def curated_for(office: Office, model: RecommendedModel) -> Curated:
    return curated_state(paths.models_dir(office.home), model)


def curated_state(folder: Path, model: RecommendedModel) -> Curated:
    from app.engine.downloads import part_path

    dest = folder / model.filename
    part = part_path(dest)
    return Curated(model, str(dest), dest.is_file(), part.stat().st_size if part.is_file() else 0)


ProgressFn = Callable[[Any], None]  # receives app.engine.downloads.DownloadProgress


def download(
    home: Path,
    model: RecommendedModel,
    url: str,
    on_progress: ProgressFn,
    cancel: threading.Event,
) -> str:
    """Download (or resume) ``model`` into the models folder; the file's path.

    Raises the typed errors of :mod:`app.engine.downloads`; a cancel leaves
    the partial file, so the next call resumes.
    """
    from app.engine.downloads import download as fetch

    folder = paths.models_dir(home)
    result = fetch(
        url,
        folder / model.filename,
        expected_sha256=model.sha256,
        expected_size=model.size_bytes,
        on_progress=on_progress,
        cancel=cancel,
        chunk_size=DOWNLOAD_CHUNK,
    )
    ModelCatalog(folder).record_sha256(result.path, result.sha256)
    return str(result.path)
