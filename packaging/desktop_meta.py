"""Desktop metadata for the bundles: the macOS Info.plist and the Windows version resource.

App-independent (no ``app`` import), so the PyInstaller spec can load it
before anything else: put this folder on ``sys.path`` and
``import desktop_meta`` (not ``packaging.desktop_meta``: that name belongs to
the PyPI ``packaging`` library). Then::

    BUNDLE(..., info_plist=desktop_meta.info_plist(version, tray_only=False))
    EXE(..., version=path_of_a_file_holding(desktop_meta.windows_version_info(version)))

Run it as a script to print both for a version:
``python packaging/desktop_meta.py 0.1.0``.
"""

from __future__ import annotations

import plistlib
import re
import sys
from typing import Any

NAME = "Soloist"
BUNDLE_ID = "app.soloist.Soloist"
DESCRIPTION = "Soloist, your AI office"
COMPANY = "Soloist"
EXECUTABLE = "Soloist"  # the Windows .exe's name (PyInstaller sets the macOS one)
ICNS = "soloist.icns"


def version_numbers(version: str) -> tuple[int, int, int, int]:
    """The four numbers Windows wants from a PEP 440 version ("1.2.3rc1" -> 1, 2, 3, 0)."""
    release = re.match(r"\d+(?:\.\d+)*", version.strip())
    if release is None:
        raise ValueError(f"not a version: {version!r}")
    numbers = [min(int(part), 65535) for part in release.group().split(".")[:4]]
    numbers += [0] * (4 - len(numbers))
    return numbers[0], numbers[1], numbers[2], numbers[3]


def short_version(version: str) -> str:
    """``CFBundleShortVersionString``: three numbers, which is all macOS accepts there."""
    return ".".join(str(n) for n in version_numbers(version)[:3])


def info_plist(version: str, tray_only: bool) -> dict[str, Any]:
    """Info.plist keys for the .app; ``tray_only`` hides the Dock icon (LSUIElement)."""
    return {
        "CFBundleIdentifier": BUNDLE_ID,
        "CFBundleName": NAME,
        "CFBundleDisplayName": NAME,
        "CFBundleIconFile": ICNS,
        "CFBundlePackageType": "APPL",
        "CFBundleShortVersionString": short_version(version),
        "CFBundleVersion": version,
        "CFBundleInfoDictionaryVersion": "6.0",
        "LSApplicationCategoryType": "public.app-category.productivity",
        "LSMinimumSystemVersion": "11.0",
        "LSUIElement": tray_only,
        "NSHighResolutionCapable": True,
        "NSRequiresAquaSystemAppearance": False,  # follow the system's dark mode
    }


def windows_version_info(version: str) -> str:
    """The text of PyInstaller's ``version=`` file (a ``VSVersionInfo`` expression)."""
    numbers = version_numbers(version)
    strings = {
        "CompanyName": COMPANY,
        "FileDescription": DESCRIPTION,
        "FileVersion": version,
        "InternalName": EXECUTABLE,
        "OriginalFilename": f"{EXECUTABLE}.exe",
        "ProductName": NAME,
        "ProductVersion": version,
    }
    structs = ",\n".join(
        f"          StringStruct({key!r}, {value!r})" for key, value in strings.items()
    )
    return f"""VSVersionInfo(
  ffi=FixedFileInfo(
    filevers={numbers!r},
    prodvers={numbers!r},
    mask=0x3F,
    flags=0x0,
    OS=0x40004,
    fileType=0x1,
    subtype=0x0,
    date=(0, 0),
  ),
  kids=[
    StringFileInfo(
      [
        StringTable(
          '040904B0',
          [
{structs},
          ],
        )
      ]
    ),
    VarFileInfo([VarStruct('Translation', [1033, 1200])]),
  ],
)
"""


def main(argv: list[str]) -> int:
    version = argv[0] if argv else "0.0.0"
    sys.stdout.write(plistlib.dumps(info_plist(version, tray_only=False)).decode())
    sys.stdout.write(windows_version_info(version))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
