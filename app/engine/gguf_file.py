"""Check a GGUF file before llama.cpp sees it, and read its header.

llama.cpp reports a bad file only as a failed load; checking here first
lets the engine say *why*: no file, not a GGUF, or a GGUF cut short.

:func:`read_gguf_header` is the engine's one GGUF header reader; the load
check (:func:`check_gguf`), the memory footprint
(:func:`app.engine.placement.footprint_from_gguf`) and the model catalog
all use it. It walks the header with ``struct`` over a memory map rather
than using ``gguf.GGUFReader``, which builds a numpy view for every element
of every array: a real model's vocabulary (150k tokens and as many merges)
costs that reader 10 seconds and more, and this walk a small fraction of
one. Array values stay raw bytes until something reads them
(:class:`GGUFArray`), so the vocabulary is only walked, not decoded.

Every count and length in the header is checked against the bytes the
file holds before it is used, so a damaged or hostile header raises
:class:`TruncatedModelError` and never allocates more than the file
holds. The rules are those of llama.cpp's own reader (``gguf.cpp``):
versions 2 and 3, no nested arrays, no duplicate keys or tensor names, at
most four dimensions, a power-of-two ``general.alignment`` of type uint32.
It needs no ``gguf`` import (see ``GGML_TYPE_SIZES``).
"""

from __future__ import annotations

import math
import mmap
import operator
import struct
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, overload

from app.engine.errors import ModelNotFoundError, NotGGUFError, TruncatedModelError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
GGML_MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32  # gguf.GGUF_DEFAULT_ALIGNMENT

# GGUF value types (gguf.GGUFValueType).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL = range(8)
STRING, ARRAY, UINT64, INT64, FLOAT64 = range(8, 13)
# The fixed-size types: their struct format.
_SCALAR_FORMATS = dict(enumerate("BbHhIif?")) | {UINT64: "Q", INT64: "q", FLOAT64: "d"}

# The smallest key-value pair (key length, type, a one-byte value) and tensor
# info (name length, dimension count, type, offset): counts in the header
# that could not fit the bytes left are refused before any loop runs.
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What the header of a GGUF file says about its model."""

    path: str
    size_bytes: int
    architecture: str
    name: str
    context_length: int
    block_count: int
    chat_template: str | None
    bos_token: str
    eos_token: str


class GGUFArray(Sequence[Any]):
    """An array value of a GGUF header, decoded when first read.

    It keeps the array's raw bytes: reading one item decodes only that item
    (a string item walks the strings before it), and iterating, slicing or
    :meth:`values` decodes them all once. Items are ``int``, ``float``,
    ``bool`` or ``str`` (invalid UTF-8 replaced), as ``GGUFReader`` gives.
    Compare contents with ``list(array)``: an array is not equal to a list.
    """

    __slots__ = ("_count", "_order", "_raw", "_values", "item_type")

    def __init__(self, item_type: int, count: int, raw: bytes, byte_order: str = "<") -> None:
        self.item_type = item_type
        self._count = count
        self._raw = raw
        self._order = byte_order
        self._values: tuple[Any, ...] | None = None

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Any, ...]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self.values()[index]
        i = operator.index(index)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError("GGUF array index out of range")
        if self._values is not None:
            return self._values[i]
        if self.item_type == STRING:
            length_at, raw, pos = struct.Struct(self._order + "Q").unpack_from, self._raw, 0
            for _ in range(i):
                pos += 8 + length_at(raw, pos)[0]
            end = pos + 8 + length_at(raw, pos)[0]
            return raw[pos + 8 : end].decode("utf-8", errors="replace")
        fmt = _SCALAR_FORMATS[self.item_type]
        return struct.unpack_from(self._order + fmt, self._raw, i * struct.calcsize(fmt))[0]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values())

    def __reversed__(self) -> Iterator[Any]:
        return iter(self.values()[::-1])

    def index(self, value: Any, start: int = 0, stop: int = sys.maxsize) -> int:
        return self.values().index(value, start, stop)

    def __repr__(self) -> str:
        return f"GGUFArray(item_type={self.item_type}, {self._count} items)"

    def values(self) -> tuple[Any, ...]:
        """Every item, decoded (once; later calls return the same tuple)."""
        if self._values is None:
            self._values = self._decode()
        return self._values

    def _decode(self) -> tuple[Any, ...]:
        if self.item_type != STRING:
            fmt = f"{self._order}{self._count}{_SCALAR_FORMATS[self.item_type]}"
            return struct.unpack_from(fmt, self._raw)
        length_at = struct.Struct(self._order + "Q").unpack_from
        raw, pos, items = self._raw, 0, []
        for _ in range(self._count):
            end = pos + 8 + length_at(raw, pos)[0]
            items.append(raw[pos + 8 : end].decode("utf-8", errors="replace"))
            pos = end
        return tuple(items)


@dataclass(frozen=True, slots=True)
class GGUFTensorInfo:
    """One tensor as the header describes it; its data is not read."""

    name: str
    shape: tuple[int, ...]  # ggml's ne: the fastest-varying dimension first
    ggml_type: int  # a gguf.GGMLQuantizationType value
    offset: int  # absolute: where its data starts in the file
    n_elements: int
    n_bytes: int

    @property
    def n_dims(self) -> int:
        return len(self.shape)


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    """Everything a GGUF file holds but its tensor data.

    ``metadata`` maps each key to an ``int``, ``float``, ``bool``, ``str`` or
    :class:`GGUFArray`; ``value_types`` to its GGUF value type (``ARRAY`` for
    an array, whose ``item_type`` says the rest).
    """

    path: str
    file_size: int
    version: int
    big_endian: bool
    metadata: Mapping[str, Any]
    value_types: Mapping[str, int]
    tensors: tuple[GGUFTensorInfo, ...]
    alignment: int
    data_offset: int  # where the tensor data starts; tensor offsets include it


def check_gguf(path: str | Path) -> GGUFInfo:
    """Validate ``path`` and return its metadata, or raise a typed error."""
    return gguf_info(read_gguf_header(path))


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Read and check the header of the GGUF file at ``path``.

    Raises ``ModelNotFoundError`` (no file), ``NotGGUFError`` (no GGUF magic)
    or ``TruncatedModelError`` (a header that cannot be read, or tensors
    that run past the end of the file).
    """
    file = Path(path)
    if not file.is_file():
        raise ModelNotFoundError(f"No model file at {file}.")
    with file.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise NotGGUFError(
                f"{file.name} is not a GGUF model file (it does not start with 'GGUF')."
            )
        size = file.stat().st_size
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                header = _Walker(buf).header(str(file), size)
            except (ValueError, IndexError, KeyError, OverflowError, struct.error) as exc:
                raise TruncatedModelError(
                    f"{file.name} is damaged or cut short: its GGUF header cannot be read."
                ) from exc
    end = max((t.offset + t.n_bytes for t in header.tensors), default=0)
    if end > size:
        raise TruncatedModelError(
            f"{file.name} is cut short: it holds {size:,} bytes but its tensors need {end:,}. "
            "Download or copy it again."
        )
    return header


def gguf_info(header: GGUFHeader) -> GGUFInfo:
    """What :func:`check_gguf` returns, from a header already read."""
    file = Path(header.path)
    meta = header.metadata
    arch = str(meta.get("general.architecture") or "unknown")
    tokens = meta.get("tokenizer.ggml.tokens")

    def token(key: str, fallback: str) -> str:
        idx = meta.get(key)
        if isinstance(tokens, GGUFArray) and isinstance(idx, int) and 0 <= idx < len(tokens):
            return str(tokens[idx])
        return fallback

    template = meta.get("tokenizer.chat_template")
    return GGUFInfo(
        path=str(file),
        size_bytes=header.file_size,
        architecture=arch,
        name=str(meta.get("general.name") or file.stem),
        context_length=metadata_int(meta.get(f"{arch}.context_length")),
        block_count=metadata_int(meta.get(f"{arch}.block_count")),
        chat_template=template if isinstance(template, str) else None,
        bos_token=token("tokenizer.ggml.bos_token_id", "<s>"),
        eos_token=token("tokenizer.ggml.eos_token_id", "</s>"),
    )


def metadata_int(value: Any) -> int:
    """A numeric metadata value as an ``int``; 0 for a missing or non-numeric one."""
    if isinstance(value, int | float) and math.isfinite(value):
        return int(value)
    return 0


# --- the header walk ---------------------------------------------------------


class _Walker:
    """Reads a GGUF header in order: version, counts, key-values, tensor infos.

    Raises ``ValueError`` (or ``struct.error``) for anything it cannot read;
    :func:`read_gguf_header` turns that into ``TruncatedModelError``.
    """

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.end = len(buf)
        self.pos = 4  # after the magic
        # A big-endian file reads as a huge little-endian version number
        # (GGUFReader and llama.cpp make the same guess).
        version = struct.unpack_from("<I", buf, self.pos)[0]
        self.order = "<" if version & 0xFFFF else ">"
        self._u32 = struct.Struct(self.order + "I").unpack_from
        self._u64 = struct.Struct(self.order + "Q").unpack_from
        self._scalars = {t: struct.Struct(self.order + f) for t, f in _SCALAR_FORMATS.items()}

    def need(self, n_bytes: int, what: str) -> None:
        if n_bytes > self.end - self.pos:
            raise ValueError(f"{what} runs past the end of the file")

    def u32(self) -> int:
        value: int = self._u32(self.buf, self.pos)[0]
        self.pos += 4
        return value

    def u64(self) -> int:
        value: int = self._u64(self.buf, self.pos)[0]
        self.pos += 8
        return value

    def string(self) -> str:
        length = self.u64()
        self.need(length, "a string")
        start, self.pos = self.pos, self.pos + length
        return self.buf[start : self.pos].decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            return self.array()
        scalar = self._scalars.get(vtype)
        if scalar is None:
            raise ValueError(f"unknown GGUF value type {vtype}")
        self.need(scalar.size, "a value")
        value = scalar.unpack_from(self.buf, self.pos)[0]
        self.pos += scalar.size
        return value

    def array(self) -> GGUFArray:
        item_type, count = self.u32(), self.u64()
        start = self.pos
        if item_type == STRING:
            self.need(8 * count, "an array of strings")
            buf, length_at, pos = self.buf, self._u64, start
            for _ in range(count):
                pos += 8 + length_at(buf, pos)[0]  # struct.error past the end
            self.pos = pos
            self.need(0, "an array of strings")
        elif item_type in _SCALAR_FORMATS:
            self.need(count * self._scalars[item_type].size, "an array")
            self.pos += count * self._scalars[item_type].size
        elif item_type == ARRAY:
            raise ValueError("nested arrays are not allowed (llama.cpp refuses them)")
        else:
            raise ValueError(f"unknown GGUF array item type {item_type}")
        return GGUFArray(item_type, count, self.buf[start : self.pos], self.order)

    def header(self, path: str, file_size: int) -> GGUFHeader:
        version = self.u32()
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"GGUF version {version} is not supported")
        n_tensors, n_kv = self.u64(), self.u64()
        self.need(n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES, "the header")
        metadata: dict[str, Any] = {}
        value_types: dict[str, int] = {}
        for _ in range(n_kv):
            key = self.string()
            if key in metadata:
                raise ValueError(f"duplicate key {key!r}")
            vtype = self.u32()
            metadata[key] = self.value(vtype)
            value_types[key] = vtype
        infos = [self.tensor_info() for _ in range(n_tensors)]
        alignment = DEFAULT_ALIGNMENT
        if "general.alignment" in metadata:
            alignment = metadata["general.alignment"]
            if value_types["general.alignment"] != UINT32:
                raise ValueError("general.alignment is not a uint32")
            if alignment == 0 or alignment & (alignment - 1):
                raise ValueError(f"general.alignment {alignment} is not a power of two")
        data_offset = -(-self.pos // alignment) * alignment
        return GGUFHeader(
            path=path,
            file_size=file_size,
            version=version,
            big_endian=self.order == ">",
            metadata=MappingProxyType(metadata),
            value_types=MappingProxyType(value_types),
            tensors=_tensors(infos, data_offset),
            alignment=alignment,
            data_offset=data_offset,
        )

    def tensor_info(self) -> tuple[str, tuple[int, ...], int, int]:
        name = self.string()
        n_dims = self.u32()
        if n_dims > GGML_MAX_DIMS:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
        shape = tuple(self.u64() for _ in range(n_dims))
        return name, shape, self.u32(), self.u64()


# (items per block, bytes per block) of each ggml tensor type, as gguf 0.19's
# GGML_QUANT_SIZES. Kept here rather than imported: ``import gguf`` imports
# sentencepiece when it is installed, whose own C++ runtime then shadows
# libstdc++ symbols llama.cpp's CUDA build binds to, and loading a model
# segfaults (seen on an H200 with sentencepiece installed). A type missing
# here is refused like an unknown one.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
}

GGML_TYPE_NAMES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    30: "BF16",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
    40: "NVFP4",
    41: "Q1_0",
}


def _tensors(
    infos: list[tuple[str, tuple[int, ...], int, int]], data_offset: int
) -> tuple[GGUFTensorInfo, ...]:
    seen: set[str] = set()
    tensors = []
    for name, shape, ggml_type, offset in infos:
        if name in seen:
            raise ValueError(f"duplicate tensor {name!r}")
        seen.add(name)
        if ggml_type not in GGML_TYPE_SIZES:
            raise ValueError(f"tensor {name!r} has the unknown type {ggml_type}")
        block_size, type_size = GGML_TYPE_SIZES[ggml_type]
        n_elements = 1
        for dim in shape:
            n_elements *= dim
        if any(dim > _INT64_MAX for dim in shape) or n_elements > _INT64_MAX:
            raise ValueError(f"tensor {name!r} is impossibly large")
        if shape and shape[0] % block_size:
            raise ValueError(f"tensor {name!r} rows are not whole {block_size}-item blocks")
        tensors.append(
            GGUFTensorInfo(
                name=name,
                shape=shape,
                ggml_type=ggml_type,
                offset=data_offset + offset,
                n_elements=n_elements,
                n_bytes=n_elements * type_size // block_size,
            )
        )
    return tuple(tensors)
