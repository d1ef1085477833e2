"""Where Soloist's icons are on disk.

The assets live in ``assets/`` at the top of the repository, beside the
``app`` package, which is where an editable install (``pip install -e .``)
finds them. A PyInstaller bundle is expected to copy that folder as
``assets`` next to the bundled code (``sys._MEIPASS``). No Qt here: the UI
turns these paths into ``QIcon``s itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


def assets_dir() -> Path:
    """The folder holding ``soloist.svg`` and ``icons/``."""
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and isinstance(bundle, str):
        return Path(bundle) / "assets"
    return Path(__file__).resolve().parents[1] / "assets"


def icon_svg() -> Path:
    """The app icon as a scalable SVG."""
    return assets_dir() / "soloist.svg"


def icon_pngs() -> dict[int, Path]:
    """The app icon rendered as PNGs, by pixel size (smallest first)."""
    icons = assets_dir() / "icons"
    return {size: icons / f"soloist-{size}.png" for size in ICON_SIZES}
