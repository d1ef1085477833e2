"""``soloist doctor``: what this machine offers Soloist, and whether it can run.

:func:`collect` gathers a report as plain data (JSON-ready); :func:`main`
prints it, for people or as one JSON document, and returns the exit status:
0 when Soloist can run, 1 when something stops it. Each such *problem* is
also written to stderr as one line saying what is wrong and what to do.
Things that only limit Soloist (no GPU, no usable keyring yet, the
database held by the running office) are *warnings*.

The doctor is read-only and quick: it creates no files or folders (the
write test uses a temporary file it removes), never imports Qt, torch or
sentence-transformers (their versions come from package metadata), and
imports ``llama_cpp`` only inside the functions that need it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import paths
from app.engine.devices import discover_devices, enabled_flags, parse_system_info

Report = dict[str, Any]

# (label shown, distribution names to try in order)
PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("soloist", ("soloist",)),
    ("llama-cpp-python", ("llama-cpp-python",)),
    ("duckdb", ("duckdb",)),
    ("duckdb-extension-fts", ("duckdb-extension-fts",)),
    ("duckdb-extension-vss", ("duckdb-extension-vss",)),
    ("PySide6", ("PySide6-Essentials", "PySide6")),
    ("sentence-transformers", ("sentence-transformers",)),
    ("torch", ("torch",)),
    ("keyring", ("keyring",)),
    ("apscheduler", ("APScheduler",)),
)
# Missing these only limits Soloist (no window, no embeddings, no schedules).
OPTIONAL_PACKAGES = ("PySide6", "sentence-transformers", "torch", "apscheduler", "keyring")
DUCKDB_EXTENSIONS = ("fts", "vss")


class _Findings:
    """Problems (Soloist cannot run) and warnings (it runs, with limits)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []


# ---------------------------------------------------------------- pure parts


def _gib(size: int | None) -> str:
    return "?" if size is None else f"{size / 2**30:.1f} GiB"


# ------------------------------------------------------------------- checks


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for label, candidates in PACKAGES:
        versions[label] = None
        for dist in candidates:
            try:
                versions[label] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def _check_packages(versions: dict[str, str | None], found: _Findings) -> None:
    for label in OPTIONAL_PACKAGES:
        if versions.get(label) is None:
            found.warnings.append(f"{label} is not installed; the features that need it are off")
    duckdb_version = versions.get("duckdb")
    if duckdb_version is None:
        found.problems.append("duckdb is not installed: reinstall Soloist (pip install soloist)")
    for ext in DUCKDB_EXTENSIONS:
        dist = f"duckdb-extension-{ext}"
        version = versions.get(dist)
        if version is None:
            found.problems.append(
                f"DuckDB's {ext} extension package ({dist}) is not installed: "
                "reinstall Soloist to get it"
            )
        elif duckdb_version is not None and version != duckdb_version:
            found.problems.append(
                f"{dist} {version} does not match duckdb {duckdb_version}: "
                f"install {dist}=={duckdb_version}"
            )


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _data_dir_status(path: Path) -> tuple[bool, str]:
    """Whether Soloist could write its data at ``path``, and why not."""
    if path.exists():
        if not path.is_dir():
            return False, f"{path} is a file, not a directory"
        try:
            fd, probe = tempfile.mkstemp(prefix=".soloist-doctor-", dir=path)
        except OSError as exc:
            return False, f"cannot write in {path}: {exc.strerror or exc}"
        os.close(fd)
        os.unlink(probe)
        return True, "writable"
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        return False, f"cannot be created: {ancestor} is a file, not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return False, f"cannot be created: {ancestor} is not writable"
    return True, "not created yet, can be created"


def _check_data_dir(found: _Findings) -> Report:
    path = paths.data_dir()
    writable, detail = _data_dir_status(path)
    if not writable:
        found.problems.append(
            f"the data directory {path} is not usable ({detail}): point "
            f"{paths.HOME_ENV} at a writable folder or fix the path's permissions"
        )
    return {"path": str(path), "exists": path.is_dir(), "writable": writable, "detail": detail}


def _check_database(found: _Findings) -> Report:
    path = paths.db_path()
    report: Report = {"path": str(path), "exists": path.exists(), "schema_version": None}
    if not path.exists():
        report["state"] = "not created yet"
        return report
    try:
        from app.memory.db import Database
        from app.memory.errors import DatabaseLockedError, SchemaTooNewError, StoreError
    except ImportError as exc:
        report["state"] = "cannot be checked"
        found.problems.append(f"cannot check the office database: {exc}")
        return report
    try:
        db = Database.open_readonly(path)
    except DatabaseLockedError:
        report["state"] = "in use by the running office"
        found.warnings.append("the office database is in use by the running office (not checked)")
    except SchemaTooNewError as exc:
        report["state"] = "newer than this Soloist"
        report["schema_version"] = exc.file_version
        found.problems.append(str(exc))
    except StoreError as exc:
        report["state"] = "cannot be opened"
        found.problems.append(str(exc))
    else:
        try:
            report["schema_version"] = db.schema_version
            report["state"] = "ok"
        finally:
            db.close()
    return report


def _check_keyring(found: _Findings) -> Report:
    try:
        import keyring
    except ImportError:
        return {"backend": None, "priority": None, "usable": False}
    backend = keyring.get_keyring()
    cls = type(backend)
    name = f"{cls.__module__}.{cls.__qualname__}"
    try:
        priority = float(backend.priority)
    except Exception:  # a backend may raise to say it is not viable
        priority = 0.0
    unusable = cls.__module__.endswith((".fail", ".null")) or priority <= 0
    if unusable:
        found.warnings.append(
            f"no usable keyring ({name}): connectors that need passwords cannot store them; "
            "install or unlock a Secret Service (GNOME Keyring, KWallet)"
        )
    return {"backend": name, "priority": priority, "usable": not unusable}


# ---------------------------------------------------------- llama.cpp, devices


def _devices() -> list[Report]:
    """Every device, always with the CPU (from the OS when ggml cannot say)."""
    return [device.to_dict() for device in discover_devices()]


def _check_llama(found: _Findings) -> tuple[Report, list[Report]]:
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError from loading the library
        found.problems.append(
            f"llama-cpp-python cannot be imported ({type(exc).__name__}: {exc}): "
            "reinstall it (scripts/setup, or pip install llama-cpp-python)"
        )
        return {"importable": False, "error": str(exc)}, _devices()
    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    sections = parse_system_info(text)
    report: Report = {
        "importable": True,
        "system_info": text.strip(),
        "backends": sections,
        "cpu_features": enabled_flags(sections.get("CPU", sections.get("", {}))),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "mmap": bool(llama_cpp.llama_supports_mmap()),
    }
    devices = _devices()
    if not report["gpu_offload"]:
        found.warnings.append("this llama.cpp build has no GPU support: models run on the CPU")
    return report, devices


# ---------------------------------------------------------------- the report


def _guarded(found: _Findings, what: str, check: Callable[[], Any], default: Any) -> Any:
    """Run one check; a failure of the check itself becomes a problem line."""
    try:
        return check()
    except Exception as exc:
        found.problems.append(f"checking {what} failed: {type(exc).__name__}: {exc}")
        return default


def _engine_status() -> Report | None:
    """What the running office's engine holds, from the file it publishes."""
    from app.engine.status import STATUS_FILE, read_status

    status = read_status(paths.data_dir() / STATUS_FILE)
    broken = _broken_models()
    if status is None and not broken:
        return None
    status = status or {"alive": False, "models": []}
    status["broken_models"] = broken
    return status


def _broken_models() -> dict[str, str]:
    """Models kept out of loading because they crashed the engine process."""
    from app.engine.process import BROKEN_MODELS_FILE

    try:
        data = json.loads((paths.data_dir() / BROKEN_MODELS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v.get("reason", "")) for k, v in data.items() if isinstance(v, dict)}


def _engine_rows(engine: Report | None) -> list[tuple[str, str]]:
    if engine is None:
        return [("models", "no engine has run here yet")]
    broken = [
        (f"broken: {Path(path).name}", reason)
        for path, reason in engine.get("broken_models", {}).items()
    ]
    return _resident_rows(engine) + broken


def _resident_rows(engine: Report) -> list[tuple[str, str]]:
    if not engine["alive"]:
        return [("models", "none (the office is not running)")]
    if not engine["models"]:
        return [("models", "none loaded")]
    return [
        (
            m["name"],
            f"{m['gpu_layers']}/{m['n_layer'] + 1} layers on the GPU, "
            f"~{m['memory_bytes'] / 2**20:,.0f} MiB, n_ctx {m['n_ctx']}, "
            f"{m['n_seq_max']} sequences{', pinned' if m.get('pinned') else ''}",
        )
        for m in engine["models"]
    ]


def collect() -> Report:
    """Everything the doctor knows, as JSON-ready data."""
    found = _Findings()
    versions = _package_versions()
    _guarded(found, "packages", lambda: _check_packages(versions, found), None)
    llama, devices = _guarded(
        found, "llama.cpp", lambda: _check_llama(found), ({"importable": False}, [])
    )
    devices = devices or _devices()
    return {
        "soloist": {"version": versions["soloist"]},
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "packages": versions,
        "data_dir": _guarded(found, "the data directory", lambda: _check_data_dir(found), {}),
        "database": _guarded(found, "the database", lambda: _check_database(found), {}),
        "llama_cpp": llama,
        "devices": devices,
        "engine": _guarded(found, "the engine", _engine_status, None),
        "keyring": _guarded(found, "the keyring", lambda: _check_keyring(found), {}),
        "ok": not found.problems,
        "problems": found.problems,
        "warnings": found.warnings,
    }


def _yes(value: object) -> str:
    return "yes" if value else "no"


def _device_line(dev: Report) -> str:
    memory = f"{_gib(dev.get('memory_total_bytes'))} total"
    if dev.get("memory_free_bytes"):
        memory += f", {_gib(dev['memory_free_bytes'])} free"
    return f"{dev['kind']:<5}  {dev['description'] or dev['name']}  ({memory})"


def format_report(report: Report) -> str:
    """The report as aligned, readable sections."""
    python, data, db = report["python"], report["data_dir"], report["database"]
    llama, ring = report["llama_cpp"], report["keyring"]
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        (
            "Python",
            [
                ("version", f"{python['version']} ({python['implementation']})"),
                ("executable", python["executable"]),
            ],
        ),
        ("Packages", [(name, v or "not installed") for name, v in report["packages"].items()]),
        (
            "Data",
            [
                ("directory", f"{data.get('path', '?')} ({data.get('detail', '?')})"),
                ("database", f"{db.get('path', '?')} ({db.get('state', '?')})"),
                ("schema version", str(db.get("schema_version") or "-")),
            ],
        ),
        (
            "llama.cpp",
            [
                ("importable", _yes(llama.get("importable"))),
                ("CPU features", " ".join(llama.get("cpu_features", [])) or "-"),
                ("GPU offload", _yes(llama.get("gpu_offload"))),
                ("mmap", _yes(llama.get("mmap"))),
            ],
        ),
        ("Devices", [(dev["name"], _device_line(dev)) for dev in report["devices"]]),
        ("Engine", _engine_rows(report.get("engine"))),
        (
            "Keyring",
            [
                ("backend", f"{ring.get('backend')} (priority {ring.get('priority'):g})"),
                ("usable", _yes(ring.get("usable"))),
            ],
        ),
    ]
    width = max(len(key) for _, rows in sections for key, _ in rows) + 2
    lines = [f"Soloist {report['soloist']['version'] or '(not installed)'} doctor"]
    for title, rows in sections:
        lines += ["", title] + [f"  {key:<{width}}{value}" for key, value in rows]
    if report["warnings"]:
        lines += ["", "Warnings"] + [f"  - {warning}" for warning in report["warnings"]]
    verdict = "ok: Soloist can run here" if report["ok"] else "NOT OK: see the problems below"
    lines += ["", f"Result: {verdict}"]
    return "\n".join(lines)


def main(as_json: bool) -> int:
    """Print the report; 0 when Soloist can run, 1 when it cannot."""
    report = collect()
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    for problem in report["problems"]:
        print(f"soloist doctor: {problem}", file=sys.stderr)
    return 0 if report["ok"] else 1
