"""Bundle metadata (Info.plist, Windows version resource) and the committed icon files.

``packaging/desktop_meta.py`` is loaded from its path, as the PyInstaller spec
does (``packaging`` is also the name of a PyPI library). The Windows version
text is evaluated the way PyInstaller reads a ``version=`` file, with
stand-ins that take the same arguments as its classes. The ICO and ICNS files
are read back with an independent reader below, and each image is compared
with the PNG of the same size.
"""

from __future__ import annotations

import importlib.util
import plistlib
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app import __version__
from app.desktop.install import HICOLOR_SIZES

REPO = Path(__file__).resolve().parents[1]
ICONS = REPO / "assets" / "icons"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def meta() -> ModuleType:
    return load("desktop_meta", REPO / "packaging" / "desktop_meta.py")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# -- Info.plist --------------------------------------------------------------------------
@pytest.mark.parametrize("tray_only", [False, True])
def test_info_plist(meta: ModuleType, tray_only: bool) -> None:
    info = meta.info_plist(__version__, tray_only=tray_only)
    assert info["CFBundleIdentifier"] == "app.soloist.Soloist"
    assert info["CFBundleName"] == "Soloist"
    assert info["CFBundleIconFile"] == "soloist.icns"
    assert info["CFBundleShortVersionString"] == __version__
    assert info["LSUIElement"] is tray_only
    assert info["NSHighResolutionCapable"] is True
    assert plistlib.loads(plistlib.dumps(info)) == info  # every value is plist-able


def test_short_version_keeps_three_numbers(meta: ModuleType) -> None:
    info = meta.info_plist("1.2.3rc1", tray_only=False)
    assert info["CFBundleShortVersionString"] == "1.2.3"
    assert info["CFBundleVersion"] == "1.2.3rc1"


@pytest.mark.parametrize(
    ("version", "numbers"),
    [("0.1.0", (0, 1, 0, 0)), ("2", (2, 0, 0, 0)), ("1.2.3.4.5", (1, 2, 3, 4)),
     ("1.0.0.dev7", (1, 0, 0, 0)), ("3.1rc2", (3, 1, 0, 0))],
)  # fmt: skip
def test_version_numbers(meta: ModuleType, version: str, numbers: tuple[int, ...]) -> None:
    assert meta.version_numbers(version) == numbers


def test_not_a_version(meta: ModuleType) -> None:
    with pytest.raises(ValueError, match="not a version"):
        meta.version_numbers("dev")


# -- Windows version resource ------------------------------------------------------------
# FixedFileInfo's keyword arguments in PyInstaller 6 (its other classes are lambdas below).
FIXED_FILE_INFO_ARGS = {
    "filevers", "prodvers", "mask", "flags", "OS", "fileType", "subtype", "date"
}  # fmt: skip


class Node:
    """Records the arguments of one PyInstaller versioninfo constructor."""

    def __init__(self, kind: str, *args: Any, **kwargs: Any) -> None:
        self.kind, self.args, self.kwargs = kind, args, kwargs


def stand_ins() -> dict[str, Any]:
    """Callables with the signatures of PyInstaller.utils.win32.versioninfo's classes."""

    def fixed(**kwargs: Any) -> Node:
        assert set(kwargs) <= FIXED_FILE_INFO_ARGS, set(kwargs) - FIXED_FILE_INFO_ARGS
        return Node("FixedFileInfo", **kwargs)

    return {
        "VSVersionInfo": lambda ffi=None, kids=None: Node("VSVersionInfo", ffi=ffi, kids=kids),
        "FixedFileInfo": fixed,
        "StringFileInfo": lambda kids=None: Node("StringFileInfo", kids=kids),
        "StringTable": lambda name=None, kids=None: Node("StringTable", name=name, kids=kids),
        "StringStruct": lambda name=None, val=None: Node("StringStruct", name=name, val=val),
        "VarFileInfo": lambda kids=None: Node("VarFileInfo", kids=kids),
        "VarStruct": lambda name=None, kids=None: Node("VarStruct", name=name, kids=kids),
    }


def test_windows_version_info(meta: ModuleType) -> None:
    text = meta.windows_version_info("1.4.2rc1")
    info = eval(text, {"__builtins__": {}}, stand_ins())  # as PyInstaller reads the file
    assert info.kind == "VSVersionInfo"
    assert info.kwargs["ffi"].kwargs["filevers"] == (1, 4, 2, 0)
    assert info.kwargs["ffi"].kwargs["prodvers"] == (1, 4, 2, 0)
    string_info, var_info = info.kwargs["kids"]
    table = string_info.kwargs["kids"][0]
    assert table.kwargs["name"] == "040904B0"  # US English, Unicode
    strings = {s.kwargs["name"]: s.kwargs["val"] for s in table.kwargs["kids"]}
    assert strings["FileVersion"] == strings["ProductVersion"] == "1.4.2rc1"
    assert strings["ProductName"] == "Soloist" and strings["CompanyName"] == "Soloist"
    assert strings["OriginalFilename"] == "Soloist.exe"
    assert strings["FileDescription"]
    assert var_info.kwargs["kids"][0].kwargs["kids"] == [1033, 1200]


# -- icons -------------------------------------------------------------------------------
def read_ico(data: bytes) -> dict[int, bytes]:
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind) == (0, 1)
    images = {}
    for index in range(count):
        width, height, _, _, planes, bits, length, offset = struct.unpack_from(
            "<BBBBHHII", data, 6 + 16 * index
        )
        assert width == height and planes == 1 and bits == 32
        images[width or 256] = data[offset : offset + length]
    return images


def read_icns(data: bytes) -> dict[bytes, bytes]:
    assert data[:4] == b"icns" and struct.unpack_from(">I", data, 4)[0] == len(data)
    elements, offset = {}, 8
    while offset < len(data):
        kind, length = data[offset : offset + 4], struct.unpack_from(">I", data, offset + 4)[0]
        elements[kind] = data[offset + 8 : offset + length]
        offset += length
    assert offset == len(data)
    return elements


def test_hicolor_pngs_are_committed_at_their_sizes() -> None:
    for size in HICOLOR_SIZES:
        assert png_size((ICONS / f"soloist-{size}.png").read_bytes()) == (size, size)


def test_ico_holds_the_pngs_16_to_256() -> None:
    images = read_ico((ICONS / "soloist.ico").read_bytes())
    assert sorted(images) == [16, 24, 32, 48, 64, 128, 256]
    for size, data in images.items():
        assert data == (ICONS / f"soloist-{size}.png").read_bytes(), size


def test_icns_holds_png_elements_up_to_1024() -> None:
    elements = read_icns((ICONS / "soloist.icns").read_bytes())
    expected = {b"ic07": 128, b"ic08": 256, b"ic09": 512, b"ic10": 1024, b"icp4": 16}
    for kind, size in expected.items():
        assert png_size(elements[kind]) == (size, size), kind
    assert elements[b"ic09"] == (ICONS / "soloist-512.png").read_bytes()


def test_the_icon_writers_round_trip() -> None:
    render = load("render_icons", REPO / "scripts" / "render_icons.py")
    pngs = {size: PNG_MAGIC + bytes([size % 256]) * size for size in (16, 32, 256)}
    assert read_ico(render.ico_bytes(pngs)) == pngs
    every = {size: PNG_MAGIC + str(size).encode() for _, size in render.ICNS_TYPES}
    elements = read_icns(render.icns_bytes(every))
    assert {kind: every[size] for kind, size in render.ICNS_TYPES} == elements
