"""Errors raised by desktop integration (menu entry, icons, start at login).

::

    DesktopError                  anything this package reports
    ├── DesktopWriteError         a file or registry value could not be written or removed
    └── UnsupportedDesktopError   this platform has no such integration

Every error is a *known* error: ``str(err)`` is one line a user can read,
saying what happened, what was kept safe and what to do next. ``OSError``
from the file system or the registry is mapped at the boundary with
``raise ... from exc``.
"""

from __future__ import annotations


class DesktopError(Exception):
    """Anything desktop integration reports; ``str()`` is one readable line."""


class DesktopWriteError(DesktopError):
    """A file or registry value could not be written or removed."""

    def __init__(self, what: str, where: str, reason: str) -> None:
        super().__init__(what, where, reason)
        self.what, self.where, self.reason = what, where, reason

    def __str__(self) -> str:
        return (
            f"Could not {self.what} at {self.where} ({self.reason}). "
            "Your office data was not touched; check that the folder is writable and try again."
        )


class UnsupportedDesktopError(DesktopError):
    """This platform has no such integration."""

    def __init__(self, feature: str, platform: str) -> None:
        super().__init__(feature, platform)
        self.feature, self.platform = feature, platform

    def __str__(self) -> str:
        return f"{self.feature} is not available on this system ({self.platform})."
