"""First run, without Qt: whether to show it, what to recommend, and the choices it saves.

The recommendation is a pure function of the devices found and the curated
list, so it is table-tested. It picks the largest curated model whose
licence allows commercial use (Soloist runs a business) and that fits the
memory of the best device with room to spare: on a GPU llama.cpp can use,
the GPU's free memory; else the free RAM.

The speed shown is an estimate, and says so: decoding one token reads every
weight once, so it is bound by memory bandwidth, and tokens/s is about
(effective bandwidth) / (model file size). The bandwidth is a conservative
figure per kind of device (:data:`BANDWIDTH_GBPS`), not a measurement;
the Models section shows real tokens/s once requests have run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.engine.catalog import RECOMMENDED, ModelInfo, RecommendedModel, read_model_info
from app.engine.devices import Device
from app.office import Office, RemoteEndpoint

DISMISSED_SETTING = "ui.onboarding_dismissed"
REMOTE_ID = "remote"
OVERHEAD_BYTES = 768 * 2**20  # a 4k-token KV cache, compute buffers and the runtime
HEADROOM = 0.8  # use at most this share of the free memory
NOT_FOR_BUSINESS = ("non-commercial", "research")
# Effective decode bandwidth in GB/s, conservative: about half of a typical
# device's peak (dual-channel DDR4/5 for the CPU, mid-range discrete GPUs).
BANDWIDTH_GBPS = {"cpu": 20.0, "igpu": 40.0, "accel": 40.0, "gpu": 250.0, "Metal": 100.0}


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The model to suggest, where it would run, and how fast we expect it to be."""

    model: RecommendedModel
    device: str  # what a person recognises: "NVIDIA GeForce RTX 4070", "CPU"
    fits: bool  # False: nothing fits; the smallest is offered anyway
    tokens_per_s: float
    bandwidth_gbps: float
    free_bytes: int | None

    @property
    def estimate_text(self) -> str:
        return (
            f"About {self.tokens_per_s:.0f} tokens/s on {self.device} (an estimate: "
            f"{self.bandwidth_gbps:.0f} GB/s of memory bandwidth assumed for this kind of "
            f"device, divided by the model's {self.model.size_bytes or 0:,} bytes read per token)."
        )


def should_show(office: Office) -> bool:
    """No model chosen, no remote endpoint, and the owner has not dismissed onboarding."""
    if office.settings.get(DISMISSED_SETTING) is True:
        return False
    return office.model_path() is None and office.remote_endpoint() is None


def dismiss(office: Office) -> None:
    office.settings.set(DISMISSED_SETTING, True)


def for_business(model: RecommendedModel) -> bool:
    licence = model.licence.lower()
    return not any(word in licence for word in NOT_FOR_BUSINESS)


def needs_bytes(model: RecommendedModel) -> int | None:
    return None if model.size_bytes is None else model.size_bytes + OVERHEAD_BYTES


def bandwidth_gbps(device: Device) -> float:
    return BANDWIDTH_GBPS.get(device.backend, BANDWIDTH_GBPS.get(device.kind, 20.0))


def candidate_devices(devices: Sequence[Device]) -> list[Device]:
    """Where a model may run, best first: offload GPUs by free memory, then the CPU."""
    gpus = sorted(
        (d for d in devices if d.can_offload and d.memory_free_bytes),
        key=lambda d: d.memory_free_bytes or 0,
        reverse=True,
    )
    return gpus + [d for d in devices if d.kind == "cpu"][:1]


def _fitting(models: Sequence[RecommendedModel], device: Device) -> list[RecommendedModel]:
    free = device.memory_free_bytes
    if free is None:  # unknown: only the smallest is a safe suggestion
        return [min(models, key=_size)]
    return [m for m in models if (needs_bytes(m) or 0) <= free * HEADROOM]


def recommend(
    devices: Sequence[Device], curated: Sequence[RecommendedModel] = RECOMMENDED
) -> Recommendation | None:
    """The largest business-usable curated model that fits the best device it fits on.

    A GPU comes first (faster); a model that fits no GPU is placed on the
    CPU. When nothing fits anywhere, the smallest is offered, marked so.
    """
    usable = [m for m in curated if for_business(m) and m.size_bytes]
    places = candidate_devices(devices)
    if not usable or not places:
        return None
    for device in places:
        fitting = _fitting(usable, device)
        if fitting:
            return _recommendation(max(fitting, key=_size), device, fits=True)
    return _recommendation(min(usable, key=_size), places[-1], fits=False)


def _recommendation(model: RecommendedModel, device: Device, *, fits: bool) -> Recommendation:
    bandwidth = bandwidth_gbps(device)
    speed = bandwidth * 1e9 / (model.size_bytes or 1)
    return Recommendation(
        model, device.description, fits, speed, bandwidth, device.memory_free_bytes
    )


def _size(model: RecommendedModel) -> int:
    return model.size_bytes or 0


def endpoint_problem(base_url: str) -> str | None:
    """Why ``base_url`` cannot be used, in one line; None when it can."""
    try:
        RemoteEndpoint(id=REMOTE_ID, base_url=base_url.strip())
    except ValueError as exc:
        return str(exc)
    return None


def use_file(office: Office, path: str) -> ModelInfo:
    """Check that ``path`` is a readable GGUF (typed, readable errors), then choose it."""
    info = read_model_info(Path(path).expanduser())
    office.set_model_path(info.path)
    return info


def use_remote(office: Office, base_url: str, model: str, api_key: str | None) -> None:
    """Send every request to an OpenAI-compatible endpoint (the key goes to the keyring).

    The office asks for a chosen model before a chat; with a remote endpoint
    that is the remote model's name, which the remote engine sends.
    """
    endpoint = RemoteEndpoint(
        id=REMOTE_ID,
        base_url=base_url.strip().rstrip("/"),
        model=model.strip() or None,
        priorities=("interactive", "standard", "background"),
    )
    office.set_remote_endpoint(endpoint, api_key or None)
    office.set_model_path(model.strip() or REMOTE_ID)
