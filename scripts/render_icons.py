"""Render assets/soloist.svg to the PNG sizes desktops and the tray ask for.

Run with the project's venv: ``.venv/bin/python scripts/render_icons.py``.
The PNGs are committed, so this only needs running after the SVG changes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.assets import icon_pngs, icon_svg

REPO = Path(__file__).resolve().parents[1]


def render(renderer: QSvgRenderer, size: int, target: Path) -> None:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    if not image.save(str(target)):
        raise OSError(f"could not write {target}")


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(icon_svg()))
    if not renderer.isValid():
        print(f"{icon_svg()} is not a valid SVG", file=sys.stderr)
        return 1
    for size, target in icon_pngs().items():
        target.parent.mkdir(exist_ok=True)
        render(renderer, size, target)
        print(f"wrote {target.relative_to(REPO)}")
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
