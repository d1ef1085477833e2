"""Put Soloist in the Linux applications menu (and take it out again).

``install_desktop_entry`` writes ``$XDG_DATA_HOME/applications/soloist.desktop``
and copies the app icon into the user's hicolor theme
(``$XDG_DATA_HOME/icons/hicolor/<n>x<n>/apps/soloist.png``, plus the SVG under
``scalable``). Running it again rewrites the same files, so it is idempotent;
the ``Exec`` line points at the Soloist that is running (see
:func:`~app.desktop.entry.running_command`). Files are written to a temporary
name and renamed, so a menu never reads half a file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app import assets
from app.desktop.entry import APP_ID, desktop_entry, running_command, xdg_dir
from app.desktop.files import remove_file, write_file

log = logging.getLogger("soloist.desktop")

HICOLOR_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


@dataclass(frozen=True, slots=True)
class Installed:
    """What :func:`install_desktop_entry` wrote."""

    entry: Path
    icons: tuple[Path, ...]


def data_home(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """``$XDG_DATA_HOME``, else ``~/.local/share``."""
    env = os.environ if environ is None else environ
    return xdg_dir("XDG_DATA_HOME", ".local/share", env, home or Path.home())


def entry_path(base: Path) -> Path:
    return base / "applications" / f"{APP_ID}.desktop"


def icon_targets(base: Path, source: Path | None = None) -> dict[Path, Path]:
    """Each icon file in ``source`` (default: the bundled assets) and where it goes."""
    folder = source or assets.assets_dir()
    hicolor = base / "icons" / "hicolor"
    targets = {
        folder / "icons" / f"{APP_ID}-{size}.png": hicolor / f"{size}x{size}" / "apps"
        for size in HICOLOR_SIZES
    }
    targets[folder / f"{APP_ID}.svg"] = hicolor / "scalable" / "apps"
    return {src: dest / f"{APP_ID}{src.suffix}" for src, dest in targets.items() if src.is_file()}


def install_desktop_entry(
    command: Sequence[str] | None = None, *, base: Path | None = None, source: Path | None = None
) -> Installed:
    """Write the menu entry running ``command`` (default: this Soloist) and the icons."""
    base = base or data_home()
    icons = icon_targets(base, source)
    for src, target in icons.items():
        write_file(target, src.read_bytes())
    entry = entry_path(base)
    write_file(entry, desktop_entry(command or running_command()).encode())
    log.info("desktop entry installed at %s with %d icons", entry, len(icons))
    return Installed(entry, tuple(icons.values()))


def uninstall_desktop_entry(*, base: Path | None = None) -> list[Path]:
    """Remove the menu entry and the icons; returns the files that were there."""
    base = base or data_home()
    hicolor = base / "icons" / "hicolor"
    candidates = [entry_path(base), hicolor / "scalable" / "apps" / f"{APP_ID}.svg"]
    candidates += [hicolor / f"{n}x{n}" / "apps" / f"{APP_ID}.png" for n in HICOLOR_SIZES]
    removed = [path for path in candidates if remove_file(path)]
    log.info("desktop entry uninstalled: %d files removed", len(removed))
    return removed
