"""Which compute devices this machine has, and how much memory each has free.

The devices come from ggml, the library under llama.cpp, through its backend
device registry: those are exactly the devices llama.cpp can put layers on,
in the build that is installed (a CPU-only wheel sees no GPU even when one is
there). Other sources only refine what ggml says:

- the OS for host RAM (``/proc/meminfo``, ``sysctl hw.memsize`` and
  ``vm_stat`` on macOS, ``os.sysconf`` elsewhere), because ggml's CPU device
  reports its total as "free";
- NVML (``nvidia-ml-py``, imported only when installed) for the free memory
  of NVIDIA GPUs without creating a CUDA context, and for GPUs the driver
  sees but this llama.cpp build cannot use (``source="nvml"``);
- ``llama_print_system_info()`` for CPU features and backend build flags.

Everything that touches hardware sits behind :class:`DeviceProbe`, a bundle
of plain callables; :func:`build_devices` turns what they return into
:class:`Device` values and is pure, so tests can fake an 8 GB CUDA GPU on a
machine that has none. Discovery never raises: a probe that fails is logged
and counts as "nothing found", and there is always at least one CPU device.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

log = logging.getLogger("soloist.engine.devices")

DeviceKind = Literal["cpu", "gpu", "igpu", "accel"]
# ggml's enum ggml_backend_dev_type, in order; 4 is META (a wrapper over other
# devices for tensor parallelism), which is skipped so no memory counts twice.
GGML_DEVICE_KINDS: tuple[DeviceKind, ...] = ("cpu", "gpu", "igpu", "accel")

# Registry names that differ from what people call the backend: newer ggml
# registers Metal as "MTL" (devices "MTL0"...). llama_print_system_info()
# sections use the registry name, so features are looked up by that.
_BACKEND_NAMES = {"MTL": "Metal"}

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Device:
    """One compute device as Soloist plans with it.

    ``source`` says who reported it: ``"ggml"`` (llama.cpp can use it),
    ``"nvml"`` (the NVIDIA driver sees it, this llama.cpp build cannot use
    it) or ``"os"`` (the CPU, when ggml could not be asked). Memory is
    ``None`` when unknown, never a made-up zero.
    """

    name: str  # ggml's device name: "CPU", "CUDA0", "Metal", "Vulkan0"
    kind: DeviceKind
    backend: str  # "CPU", "CUDA", "ROCm", "Metal", "Vulkan", "BLAS"...
    description: str  # what a person recognises: "NVIDIA GeForce RTX 4070"
    memory_total_bytes: int | None
    memory_free_bytes: int | None
    features: tuple[str, ...] = ()  # enabled build flags: "AVX2", "USE_GRAPHS"...
    source: str = "ggml"

    @property
    def can_offload(self) -> bool:
        """Whether llama.cpp can put model layers on this device."""
        return self.source == "ggml" and self.kind in ("gpu", "igpu")

    @property
    def shares_host_memory(self) -> bool:
        """Its memory is system RAM (Apple silicon, integrated GPUs).

        A model placed here takes RAM from the CPU too, so a budget must
        not count the two devices' memory twice.
        """
        return self.kind == "igpu" or self.backend == "Metal"

    def to_dict(self) -> dict[str, Any]:
        """Builtins only, for JSON and for crossing a process boundary."""
        data = asdict(self)
        data["features"] = list(self.features)
        return data


# ------------------------------------------------------------ raw probe data


@dataclass(frozen=True, slots=True)
class GgmlDevice:
    """One entry of ggml's device registry, as ggml reports it."""

    name: str
    description: str
    type_code: int  # enum ggml_backend_dev_type
    backend: str
    memory_free_bytes: int
    memory_total_bytes: int


@dataclass(frozen=True, slots=True)
class NvidiaGpu:
    """One GPU as the NVIDIA driver (NVML) reports it."""

    index: int
    name: str
    memory_total_bytes: int
    memory_free_bytes: int
    pci_bus_id: str = ""


@dataclass(frozen=True, slots=True)
class HostMemory:
    """System RAM; ``free_bytes`` is what can be used without swapping."""

    total_bytes: int | None
    free_bytes: int | None


# ------------------------------------------------------------- pure parsers


def parse_system_info(text: str) -> dict[str, dict[str, str]]:
    """Split ``llama_print_system_info()`` into sections of flags.

    The text looks like ``"CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 =
    1 | AVX2 = 1 | "``: a ``NAME :`` starts a section, ``KEY = VALUE`` pairs
    are separated by ``|``. Flags before any section name go under ``""``.
    """
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for raw_piece in text.split("|"):
        pair = raw_piece.strip()
        head, colon, rest = pair.partition(":")
        if colon and "=" not in head:
            current = head.strip()
            sections.setdefault(current, {})
            pair = rest
        key, equals, value = pair.partition("=")
        if equals and key.strip():
            sections.setdefault(current, {})[key.strip()] = value.strip()
    return sections


def enabled_flags(flags: dict[str, str]) -> list[str]:
    """The names of the flags that are switched on (value ``1``)."""
    return [name for name, value in flags.items() if value == "1"]


def parse_meminfo(text: str) -> HostMemory:
    """RAM from Linux ``/proc/meminfo``: MemAvailable counts reclaimable cache."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if parts[1:2] == ["kB"] else 1
            values[key.strip()] = int(parts[0]) * scale
    free = values.get("MemAvailable", values.get("MemFree"))
    return HostMemory(values.get("MemTotal"), free)


def parse_vm_stat(text: str) -> int | None:
    """Free RAM from macOS ``vm_stat``: free, inactive, speculative, purgeable pages.

    Those are the pages macOS hands out without swapping; "Pages free"
    alone is nearly always small because the OS keeps RAM full of cache.
    """
    size = re.search(r"page size of (\d+) bytes", text)
    if size is None:
        return None
    wanted = ("Pages free", "Pages inactive", "Pages speculative", "Pages purgeable")
    pages = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in wanted and value.strip().rstrip(".").isdigit():
            pages += int(value.strip().rstrip("."))
    return pages * int(size.group(1))


# ------------------------------------------------------------- the decision


def _cpu_features(sections: dict[str, dict[str, str]]) -> tuple[str, ...]:
    return tuple(enabled_flags(sections.get("CPU", sections.get("", {}))))


def _cpu_device(
    raw: GgmlDevice | None, host: HostMemory, cpu_name: str, sections: dict[str, dict[str, str]]
) -> Device:
    """The CPU: ggml's entry when there is one, with the OS's view of RAM."""
    total = host.total_bytes or (raw.memory_total_bytes if raw else None) or None
    # ggml's description comes from the CPU itself (cpuid, sysctl), which
    # names Apple chips where the OS fallback says only "arm".
    return Device(
        name=raw.name if raw else "CPU",
        kind="cpu",
        backend=raw.backend if raw else "CPU",
        description=(raw.description if raw else "") or cpu_name or "CPU",
        memory_total_bytes=total,
        # ggml's CPU device reports all RAM as free; only the OS knows better.
        memory_free_bytes=host.free_bytes,
        features=_cpu_features(sections),
        source="ggml" if raw else "os",
    )


def _take_nvidia(description: str, pool: list[NvidiaGpu]) -> NvidiaGpu | None:
    """The first unclaimed NVML GPU with this name.

    ggml's CUDA description is the CUDA device name, which is NVML's name
    too; ggml orders devices like CUDA (fastest first) and NVML by PCI bus,
    so names match them where indices would not. Twins of one model are
    paired in order: their totals agree, only their free memory may be off.
    """
    for gpu in pool:
        if gpu.name.strip() == description.strip():
            pool.remove(gpu)
            return gpu
    return None


def _ggml_device(
    raw: GgmlDevice, pool: list[NvidiaGpu], sections: dict[str, dict[str, str]]
) -> Device:
    kind = GGML_DEVICE_KINDS[raw.type_code]
    total: int | None = raw.memory_total_bytes or None
    free: int | None = raw.memory_free_bytes if total else None
    if raw.backend == "CUDA" and (gpu := _take_nvidia(raw.description, pool)) is not None:
        total, free = gpu.memory_total_bytes, gpu.memory_free_bytes
    return Device(
        name=raw.name,
        kind=kind,
        backend=_BACKEND_NAMES.get(raw.backend, raw.backend),
        description=raw.description or raw.name,
        memory_total_bytes=total,
        memory_free_bytes=free,
        features=tuple(enabled_flags(sections.get(raw.backend, {}))),
    )


def _nvml_only(gpu: NvidiaGpu) -> Device:
    return Device(
        name=f"NVML{gpu.index}",
        kind="gpu",
        backend="NVML",
        description=gpu.name,
        memory_total_bytes=gpu.memory_total_bytes,
        memory_free_bytes=gpu.memory_free_bytes,
        source="nvml",
    )


def build_devices(
    ggml: list[GgmlDevice],
    nvidia: list[NvidiaGpu],
    host: HostMemory,
    system_info: str,
    cpu_name: str,
) -> list[Device]:
    """Merge what the probes found into devices, in ggml's order.

    Pure: the whole policy of discovery, table-tested. Exactly one CPU
    device comes out, even when ggml reported none.
    """
    sections = parse_system_info(system_info)
    pool = list(nvidia)
    devices: list[Device] = []
    cpu_seen = False
    for raw in ggml:
        if not 0 <= raw.type_code < len(GGML_DEVICE_KINDS):
            log.debug("skipping ggml device %s of type %d", raw.name, raw.type_code)
        elif raw.type_code == 0 and not cpu_seen:
            devices.append(_cpu_device(raw, host, cpu_name, sections))
            cpu_seen = True
        elif raw.type_code != 0:
            devices.append(_ggml_device(raw, pool, sections))
    if not cpu_seen:
        devices.append(_cpu_device(None, host, cpu_name, sections))
    devices.extend(_nvml_only(gpu) for gpu in pool)
    return devices


# ------------------------------------------------------- the real hardware


class _GgmlApi:
    """ggml's device registry, bound through ctypes on llama_cpp's libraries.

    llama-cpp-python does not wrap the registry. The functions are bound as
    fresh prototypes (never by setting ``argtypes`` on the shared library
    object, which other code may also configure), and each symbol is looked
    up in libggml, then in libggml-base: on Linux and macOS a handle finds
    its dependencies' symbols, on Windows it does not.
    """

    def __init__(self, libs: list[Any]) -> None:
        vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
        size_p = ctypes.POINTER(ctypes.c_size_t)
        self.count = _bind(libs, "ggml_backend_dev_count", sz)
        self.get = _bind(libs, "ggml_backend_dev_get", vp, sz)
        self.name = _bind(libs, "ggml_backend_dev_name", cp, vp)
        self.description = _bind(libs, "ggml_backend_dev_description", cp, vp)
        self.type = _bind(libs, "ggml_backend_dev_type", ctypes.c_int, vp)
        self.memory = _bind(libs, "ggml_backend_dev_memory", None, vp, size_p, size_p)
        self.backend_reg = _bind(libs, "ggml_backend_dev_backend_reg", vp, vp)
        self.reg_name = _bind(libs, "ggml_backend_reg_name", cp, vp)
        try:  # newer than the device API itself; only DL builds need it
            self.load_all_from_path: Any = _bind(libs, "ggml_backend_load_all_from_path", None, cp)
        except AttributeError:
            self.load_all_from_path = None


def _bind(libs: list[Any], symbol: str, restype: Any, *argtypes: Any) -> Any:
    prototype = ctypes.CFUNCTYPE(restype, *argtypes)
    for lib in libs:
        try:
            return prototype((symbol, lib))
        except AttributeError:
            continue
    raise AttributeError(f"{symbol} is not exported by libggml")


@cache
def _ggml_api() -> tuple[_GgmlApi, Path]:
    from llama_cpp import _ctypes_extensions

    # llama-cpp-python loads libllama from $LLAMA_CPP_LIB_PATH when it is set
    # (a llama.cpp built separately, e.g. with CUDA), but its _ggml module
    # always loads the package's own lib/: read the registry of the copy
    # libllama uses, or the GPU it found is never seen here.
    custom = os.environ.get("LLAMA_CPP_LIB_PATH")
    if custom:
        lib_dir = Path(custom)
        libs = [_ctypes_extensions.load_shared_library("ggml", lib_dir)]
    else:
        from llama_cpp import _ggml

        lib_dir = Path(_ggml.libggml_base_path)
        libs = [_ggml.libggml]
    try:
        libs.append(_ctypes_extensions.load_shared_library("ggml-base", lib_dir))
    except (OSError, RuntimeError, FileNotFoundError):
        log.debug("no separate libggml-base in %s", lib_dir)
    return _GgmlApi(libs), lib_dir


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", errors="replace").strip()


def read_ggml_devices() -> list[GgmlDevice]:
    """Every device in ggml's registry, loading backend modules if none are.

    Wheels built with ``GGML_BACKEND_DL`` ship each backend (CPU included)
    as a module that nothing loads until asked; an empty registry means that.
    """
    from app.engine.llama_adapter import llama

    llama()  # ggml's log goes to ours before any backend module talks
    api, lib_dir = _ggml_api()
    if api.count() == 0 and api.load_all_from_path is not None:
        log.info("ggml has no devices registered; loading backend modules from %s", lib_dir)
        api.load_all_from_path(str(lib_dir).encode())
    return [_read_ggml_device(api, index) for index in range(api.count())]


def _read_ggml_device(api: _GgmlApi, index: int) -> GgmlDevice:
    dev = api.get(index)
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    api.memory(dev, ctypes.byref(free), ctypes.byref(total))
    reg = api.backend_reg(dev)
    return GgmlDevice(
        name=_text(api.name(dev)),
        description=_text(api.description(dev)),
        type_code=int(api.type(dev)),
        backend=_text(api.reg_name(reg)) if reg else "",
        memory_free_bytes=int(free.value),
        memory_total_bytes=int(total.value),
    )


def read_system_info() -> str:
    """llama.cpp's one-line summary of its build: backends and CPU features."""
    from app.engine.llama_adapter import llama

    info = llama().llama_print_system_info()
    return info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)


def read_nvidia_gpus() -> list[NvidiaGpu]:
    """NVIDIA GPUs through NVML, or none when nvidia-ml-py or the driver is missing."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return []
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded...
        log.debug("NVML unavailable: %s", exc)
        return []
    try:
        return [_nvidia_gpu(nvml, index) for index in range(nvml.nvmlDeviceGetCount())]
    finally:
        nvml.nvmlShutdown()


def _nvidia_gpu(nvml: Any, index: int) -> NvidiaGpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    name = nvml.nvmlDeviceGetName(handle)  # bytes in older nvidia-ml-py
    try:
        bus_id = nvml.nvmlDeviceGetPciInfo(handle).busId
    except Exception:  # not every GPU or driver reports PCI info
        bus_id = ""
    return NvidiaGpu(
        index=index,
        name=name.decode() if isinstance(name, bytes) else str(name),
        memory_total_bytes=int(memory.total),
        memory_free_bytes=int(memory.free),
        pci_bus_id=bus_id.decode() if isinstance(bus_id, bytes) else str(bus_id),
    )


def _apple_memsize() -> int | None:
    """``sysctl hw.memsize``: all of a Mac's RAM, which its GPU shares."""
    libc = ctypes.CDLL(None)
    value, size = ctypes.c_uint64(0), ctypes.c_size_t(8)
    rc = libc.sysctlbyname(b"hw.memsize", ctypes.byref(value), ctypes.byref(size), None, 0)
    return int(value.value) if rc == 0 and value.value else None


def _sysconf(name: str) -> int | None:
    try:
        value = os.sysconf(name)
    except (AttributeError, ValueError, OSError):
        return None
    return value if value > 0 else None


def _sysconf_memory() -> HostMemory:
    page = _sysconf("SC_PAGE_SIZE")
    total, free = _sysconf("SC_PHYS_PAGES"), _sysconf("SC_AVPHYS_PAGES")
    return HostMemory(
        page * total if page and total else None, page * free if page and free else None
    )


def _darwin_memory() -> HostMemory:
    """A Mac's RAM: each half guarded, as either tool may be missing or refuse."""
    try:
        total = _apple_memsize()
    except (OSError, AttributeError):
        total = None
    try:
        vm_stat = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=5, check=True)
        free = parse_vm_stat(vm_stat.stdout)
    except (OSError, subprocess.SubprocessError):
        free = None
    return HostMemory(total, free)


def read_host_memory() -> HostMemory:
    """RAM from the OS: /proc/meminfo, sysctl + vm_stat on macOS, else sysconf."""
    if sys.platform == "darwin":
        return _darwin_memory()
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        return parse_meminfo(meminfo.read_text(encoding="utf-8"))
    return _sysconf_memory()


def read_cpu_name() -> str:
    """The CPU's marketing name, where the OS tells it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


# ----------------------------------------------------------------- the seam


@dataclass(frozen=True, slots=True)
class DeviceProbe:
    """The functions that reach the hardware; tests swap in fakes."""

    ggml_devices: Callable[[], list[GgmlDevice]] = read_ggml_devices
    nvidia_gpus: Callable[[], list[NvidiaGpu]] = read_nvidia_gpus
    host_memory: Callable[[], HostMemory] = read_host_memory
    system_info: Callable[[], str] = read_system_info
    cpu_name: Callable[[], str] = read_cpu_name


def _ask(what: str, probe: Callable[[], _T], default: _T) -> _T:
    """Run one probe; its failure is logged and counts as finding nothing."""
    try:
        return probe()
    except Exception as exc:  # a broken driver or library must not stop the app
        log.warning("device probe %s failed: %s: %s", what, type(exc).__name__, exc)
        return default


def discover_devices(probe: DeviceProbe | None = None) -> list[Device]:
    """The devices of this machine, best first as ggml orders them.

    Never raises; there is always at least one CPU device.
    """
    probe = probe or DeviceProbe()
    devices = build_devices(
        ggml=_ask("ggml", probe.ggml_devices, []),
        nvidia=_ask("nvml", probe.nvidia_gpus, []),
        host=_ask("host memory", probe.host_memory, HostMemory(None, None)),
        system_info=_ask("system info", probe.system_info, ""),
        cpu_name=_ask("cpu name", probe.cpu_name, "CPU"),
    )
    for dev in devices:
        log.debug(
            "device %s kind=%s backend=%s total=%s free=%s source=%s",
            dev.name, dev.kind, dev.backend, dev.memory_total_bytes, dev.memory_free_bytes,
            dev.source,
        )  # fmt: skip
    return devices
