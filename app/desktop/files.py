"""Writing and removing the small files desktop integration owns.

A file is written to a hidden temporary name beside it and renamed over the
target, so a desktop reading the folder never sees half a file. ``OSError``
becomes :class:`~app.desktop.errors.DesktopWriteError` here, at the boundary.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from app.desktop.errors import DesktopWriteError


def write_file(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` (creating its folder) through a temporary file."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        os.replace(partial, target)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the folder itself may be what failed
            partial.unlink(missing_ok=True)
        raise DesktopWriteError("write the file", str(target), _reason(exc)) from exc


def remove_file(path: Path) -> bool:
    """Remove ``path``; False when it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise DesktopWriteError("remove the file", str(path), _reason(exc)) from exc
    return True


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
