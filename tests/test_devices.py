"""Device discovery: the pure merge on faked hardware, and the real ggml registry."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from app.engine import devices
from app.engine.devices import (
    Device,
    DeviceProbe,
    GgmlDevice,
    HostMemory,
    NvidiaGpu,
    build_devices,
    discover_devices,
    parse_meminfo,
    parse_system_info,
    parse_vm_stat,
    read_nvidia_gpus,
)

GiB = 2**30
CPU_RAW = GgmlDevice("CPU", "AMD Ryzen 7", 0, "CPU", 32 * GiB, 32 * GiB)
CUDA_RAW = GgmlDevice("CUDA0", "NVIDIA GeForce RTX 4060", 1, "CUDA", 7 * GiB, 8 * GiB)
HOST = HostMemory(total_bytes=32 * GiB, free_bytes=20 * GiB)
INFO = (
    "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | PEER_MAX = 0 | CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | "
)


# ------------------------------------------------------------------ parsers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("AVX = 1 | AVX2 = 0 | ", {"": {"AVX": "1", "AVX2": "0"}}),
        (
            INFO,
            {
                "CUDA": {"ARCHS": "890", "USE_GRAPHS": "1", "PEER_MAX": "0"},
                "CPU": {"SSE3": "1", "AVX2": "1", "AVX512": "0"},
            },
        ),
        (
            "Metal : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ",
            {"Metal": {"EMBED_LIBRARY": "1"}, "CPU": {"NEON": "1"}},
        ),
    ],
)
def test_parse_system_info(text: str, expected: dict[str, dict[str, str]]) -> None:
    assert parse_system_info(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\n", HostMemory(1024000, 614400)),
        ("MemTotal: 1000 kB\nMemFree: 200 kB\n", HostMemory(1024000, 204800)),  # old kernels
        ("", HostMemory(None, None)),
        ("garbage\nMemTotal: lots\n", HostMemory(None, None)),
    ],
)
def test_parse_meminfo(text: str, expected: HostMemory) -> None:
    assert parse_meminfo(text) == expected


VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               10.
Pages active:                            500.
Pages inactive:                           20.
Pages speculative:                         3.
Pages purgeable:                           7.
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [(VM_STAT, (10 + 20 + 3 + 7) * 16384), ("no header\nPages free: 10.\n", None), ("", None)],
)
def test_parse_vm_stat(text: str, expected: int | None) -> None:
    assert parse_vm_stat(text) == expected


# --------------------------------------------------------------- the merge


def _merge(ggml: list[GgmlDevice], nvidia: list[NvidiaGpu] | None = None) -> list[Device]:
    return build_devices(ggml, nvidia or [], HOST, INFO, "AMD Ryzen 7 7840U w/ Radeon")


def test_cpu_takes_ram_from_the_os_and_features_from_system_info() -> None:
    [cpu] = _merge([CPU_RAW])
    assert cpu == Device(
        name="CPU",
        kind="cpu",
        backend="CPU",
        description="AMD Ryzen 7",
        memory_total_bytes=32 * GiB,
        memory_free_bytes=20 * GiB,  # not ggml's "all of it is free"
        features=("SSE3", "AVX2"),
        source="ggml",
    )
    assert not cpu.can_offload


def test_a_cuda_gpu_from_ggml_can_take_layers() -> None:
    gpu, cpu = _merge([CUDA_RAW, CPU_RAW])
    assert (gpu.name, gpu.kind, gpu.backend, gpu.source) == ("CUDA0", "gpu", "CUDA", "ggml")
    assert (gpu.memory_total_bytes, gpu.memory_free_bytes) == (8 * GiB, 7 * GiB)
    assert gpu.features == ("USE_GRAPHS",)
    assert gpu.can_offload
    assert cpu.kind == "cpu"


def test_nvml_refines_the_free_memory_of_the_matching_gpu() -> None:
    nvml = NvidiaGpu(0, "NVIDIA GeForce RTX 4060", 8 * GiB, 5 * GiB, "00000000:01:00.0")
    gpu, _ = _merge([CUDA_RAW, CPU_RAW], [nvml])
    assert (gpu.memory_total_bytes, gpu.memory_free_bytes, gpu.source) == (8 * GiB, 5 * GiB, "ggml")


def test_twin_gpus_pair_with_nvml_in_order() -> None:
    second = GgmlDevice("CUDA1", CUDA_RAW.description, 1, "CUDA", 6 * GiB, 8 * GiB)
    nvml = [NvidiaGpu(i, CUDA_RAW.description, 8 * GiB, free * GiB) for i, free in ((0, 4), (1, 3))]
    first_gpu, second_gpu, _ = _merge([CUDA_RAW, second, CPU_RAW], nvml)
    assert (first_gpu.memory_free_bytes, second_gpu.memory_free_bytes) == (4 * GiB, 3 * GiB)


def test_a_gpu_only_nvml_sees_is_reported_but_cannot_take_layers() -> None:
    nvml = NvidiaGpu(0, "NVIDIA H100 80GB HBM3", 80 * GiB, 79 * GiB)
    cpu, gpu = _merge([CPU_RAW], [nvml])  # a CPU-only llama.cpp build
    assert cpu.kind == "cpu"
    assert (gpu.kind, gpu.backend, gpu.source, gpu.name) == ("gpu", "NVML", "nvml", "NVML0")
    assert gpu.memory_free_bytes == 79 * GiB
    assert not gpu.can_offload


@pytest.mark.parametrize(
    ("ggml", "expected_kinds"),
    [
        ([], ["cpu"]),  # ggml unreachable: the OS's CPU
        ([CPU_RAW, CPU_RAW], ["cpu"]),  # never two CPUs
        ([GgmlDevice("Meta0", "split", 4, "Meta", 0, 0), CPU_RAW], ["cpu"]),  # META skipped
        ([GgmlDevice("X", "future kind", 9, "X", 0, 0), CPU_RAW], ["cpu"]),
        ([GgmlDevice("BLAS", "OpenBLAS", 3, "BLAS", 0, 0), CPU_RAW], ["accel", "cpu"]),
        ([GgmlDevice("Vulkan0", "Radeon 780M", 2, "Vulkan", GiB, 2 * GiB)], ["igpu", "cpu"]),
    ],
)
def test_device_kinds(ggml: list[GgmlDevice], expected_kinds: list[str]) -> None:
    assert [dev.kind for dev in _merge(ggml)] == expected_kinds


def test_cpu_without_ggml_comes_from_the_os() -> None:
    [cpu] = build_devices([], [], HostMemory(None, None), "", "")
    assert (cpu.name, cpu.kind, cpu.backend, cpu.description, cpu.source) == (
        "CPU",
        "cpu",
        "CPU",
        "CPU",
        "os",
    )
    assert cpu.memory_total_bytes is None


def test_metal_under_its_new_registry_name() -> None:
    metal = GgmlDevice("MTL0", "Apple M3 Pro", 1, "MTL", 20 * GiB, 27 * GiB)
    info = "MTL : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ARM_FMA = 1 | "
    gpu, cpu = build_devices([metal, CPU_RAW], [], HOST, info, "arm")
    assert (gpu.name, gpu.backend, gpu.features) == ("MTL0", "Metal", ("EMBED_LIBRARY",))
    assert gpu.can_offload and gpu.shares_host_memory
    assert cpu.features == ("NEON", "ARM_FMA")
    assert not cpu.shares_host_memory


def test_unknown_device_memory_is_none_not_zero() -> None:
    blas = _merge([GgmlDevice("BLAS", "OpenBLAS", 3, "BLAS", 0, 0)])[0]
    assert (blas.memory_total_bytes, blas.memory_free_bytes) == (None, None)


def test_device_dicts_are_json() -> None:
    data = [dev.to_dict() for dev in _merge([CUDA_RAW, CPU_RAW])]
    assert json.loads(json.dumps(data)) == data
    assert data[1]["features"] == ["SSE3", "AVX2"]


# ---------------------------------------------------------------- the seam


def fake_probe(**overrides: Any) -> DeviceProbe:
    """An 8 GB CUDA laptop, whatever machine runs the test."""
    defaults: dict[str, Any] = {
        "ggml_devices": lambda: [CUDA_RAW, CPU_RAW],
        "nvidia_gpus": list,
        "host_memory": lambda: HOST,
        "system_info": lambda: INFO,
        "cpu_name": lambda: "AMD Ryzen 7",
    }
    return DeviceProbe(**(defaults | overrides))


def test_discover_with_a_fake_8gb_gpu() -> None:
    found = discover_devices(fake_probe())
    assert [dev.name for dev in found] == ["CUDA0", "CPU"]
    [gpu] = [dev for dev in found if dev.can_offload]
    assert gpu.memory_total_bytes == 8 * GiB


def test_a_failing_probe_is_logged_and_discovery_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> list[GgmlDevice]:
        raise OSError("driver fault")

    with caplog.at_level(logging.WARNING, logger="soloist.engine.devices"):
        found = discover_devices(fake_probe(ggml_devices=broken))
    assert [(dev.kind, dev.source) for dev in found] == [("cpu", "os")]
    assert found[0].memory_free_bytes == 20 * GiB
    assert any(
        "ggml" in r.getMessage() and "driver fault" in r.getMessage() for r in caplog.records
    )


# ------------------------------------------------------------ NVML, faked


class _Memory:
    total, free, used = 8 * GiB, 6 * GiB, 2 * GiB


def _fake_pynvml(name: Any, init_error: Exception | None = None) -> Any:
    calls: list[str] = []
    module: Any = types.ModuleType("pynvml")

    def init() -> None:
        calls.append("init")
        if init_error is not None:
            raise init_error

    module.calls = calls
    module.nvmlInit = init
    module.nvmlShutdown = lambda: calls.append("shutdown")
    module.nvmlDeviceGetCount = lambda: 1
    module.nvmlDeviceGetHandleByIndex = lambda index: ("handle", index)
    module.nvmlDeviceGetName = lambda handle: name
    module.nvmlDeviceGetMemoryInfo = lambda handle: _Memory()
    module.nvmlDeviceGetPciInfo = lambda handle: types.SimpleNamespace(busId=b"00000000:01:00.0")
    return module


@pytest.mark.parametrize("name", ["NVIDIA GeForce RTX 4060", b"NVIDIA GeForce RTX 4060"])
def test_nvml_reader_with_a_fake_pynvml(monkeypatch: pytest.MonkeyPatch, name: Any) -> None:
    fake = _fake_pynvml(name)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert read_nvidia_gpus() == [
        NvidiaGpu(0, "NVIDIA GeForce RTX 4060", 8 * GiB, 6 * GiB, "00000000:01:00.0")
    ]
    assert fake.calls == ["init", "shutdown"]


def test_nvml_reader_without_a_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml("x", init_error=RuntimeError("NVML Shared Library Not Found"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert read_nvidia_gpus() == []


def test_nvml_reader_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    assert read_nvidia_gpus() == []


# ------------------------------------------------------------- real ggml


def test_real_ggml_registry_has_a_cpu() -> None:
    raw = devices.read_ggml_devices()
    assert any(dev.type_code == 0 and dev.backend == "CPU" for dev in raw), raw
    assert all(dev.name for dev in raw)


def test_real_discovery_finds_this_machine() -> None:
    found = discover_devices()
    cpus = [dev for dev in found if dev.kind == "cpu"]
    assert len(cpus) == 1
    assert cpus[0].source == "ggml"
    assert cpus[0].memory_total_bytes is not None and cpus[0].memory_total_bytes > 0
    free = cpus[0].memory_free_bytes
    assert free is None or 0 < free <= cpus[0].memory_total_bytes
    assert devices.read_system_info().strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/meminfo is Linux's")
def test_real_host_memory_on_linux() -> None:
    host = devices.read_host_memory()
    assert host.total_bytes is not None and host.free_bytes is not None
    assert 0 < host.free_bytes <= host.total_bytes


def test_symbols_are_found_in_whichever_library_exports_them() -> None:
    import ctypes
    import ctypes.util

    from llama_cpp import _ggml

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    count = devices._bind([libc, _ggml.libggml], "ggml_backend_dev_count", ctypes.c_size_t)
    assert count() >= 1
    with pytest.raises(AttributeError, match="no_such_symbol"):
        devices._bind([libc], "ggml_no_such_symbol", None)


def test_a_separately_built_llama_cpp_is_probed_where_libllama_comes_from(
    tmp_path: Path,
) -> None:
    """LLAMA_CPP_LIB_PATH points llama-cpp-python at other libraries; the probe follows."""
    import llama_cpp

    lib = tmp_path / "custom-build"  # stands for a separately built llama.cpp
    lib.symlink_to(Path(llama_cpp.__file__).parent / "lib", target_is_directory=True)
    code = (
        "from app.engine.devices import _ggml_api, read_ggml_devices\n"
        "api, lib_dir = _ggml_api()\n"
        "print(lib_dir, [d.name for d in read_ggml_devices()])\n"
    )
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(lib))
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.startswith(str(lib))
    assert "CPU" in out
