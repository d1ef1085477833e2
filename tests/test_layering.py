"""The layering rules of DESIGN.md, checked on the source with ``ast``.

Only ``app/ui`` may import Qt; ``app/engine`` imports nothing of the other
layers; ``app/memory`` never reaches up into integrations, agents or the UI;
``app/integrations`` never imports agents, the UI, the office or the engine.
The start path (office and engine types) stays light: no Qt, no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

QT_FREE = (
    "engine",
    "agents",
    "memory",
    "integrations",
    "office.py",
    "paths.py",
    "doctor.py",
    "desktop",
)
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "shiboken2", "PySide2")

FORBIDDEN = {
    "engine": ("app.memory", "app.agents", "app.integrations", "app.ui", "app.office"),
    "memory": ("app.integrations", "app.agents", "app.ui"),
    "integrations": ("app.agents", "app.ui", "app.office", "app.engine"),
}


def python_files(entry: str) -> list[Path]:
    path = APP / entry
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    return [path] if path.exists() else []


def _resolve_relative(file: Path, node: ast.ImportFrom) -> str:
    """``from ..x import y`` in app/a/b.py -> ``app.x``."""
    package = list(file.relative_to(APP.parent).parts[:-1])  # __init__.py too
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(source: str, file: Path) -> Iterator[tuple[int, str]]:
    """Every module ``source`` (the text of ``file``) imports, functions included."""
    for node in ast.walk(ast.parse(source, filename=str(file))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = _resolve_relative(file, node) if node.level else (node.module or "")
            yield node.lineno, module
            for alias in node.names:  # `from app import ui` imports app.ui
                yield node.lineno, f"{module}.{alias.name}"


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(entries: tuple[str, ...], banned: tuple[str, ...]) -> list[str]:
    found = []
    for entry in entries:
        for file in python_files(entry):
            for lineno, module in imported_modules(file.read_text(encoding="utf-8"), file):
                if any(_matches(module, prefix) for prefix in banned):
                    found.append(f"{file.relative_to(APP.parent)}:{lineno} imports {module}")
    return sorted(set(found))


def test_the_checked_layers_exist() -> None:
    assert python_files("engine"), "app/engine has no Python files: is APP right?"
    assert python_files("office.py")


@pytest.mark.parametrize("entry", QT_FREE)
def test_no_qt_outside_the_ui(entry: str) -> None:
    assert violations((entry,), QT_MODULES) == []


@pytest.mark.parametrize(("layer", "banned"), sorted(FORBIDDEN.items()))
def test_layer_does_not_import_upwards(layer: str, banned: tuple[str, ...]) -> None:
    assert violations((layer,), banned) == []


def test_the_checker_sees_each_import_form() -> None:
    """So that an empty list of violations means something."""
    source = (
        "import PySide6.QtCore\n"
        "from app.memory import db\n"
        "from app import ui\n"
        "def f():\n"
        "    from ..agents import runtime\n"
        "    from . import llamacpp\n"
    )
    found = {module for _, module in imported_modules(source, APP / "engine" / "probe.py")}
    in_init = {module for _, module in imported_modules(source, APP / "engine" / "__init__.py")}

    assert {"PySide6.QtCore", "app.memory", "app.ui", "app.agents", "app.engine"} <= found
    assert "app.engine.llamacpp" in found
    assert found == in_init


def test_start_path_stays_light() -> None:
    code = (
        "import sys, app.office, app.engine.types\n"
        "heavy = ('PySide6', 'torch', 'sentence_transformers')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=APP.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
