"""The GGUF header reader: agrees with gguf.GGUFReader, fails only with typed errors."""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.devtools.testmodels import ModelShape, quantize, write_model
from app.engine.catalog import read_model_info
from app.engine.errors import ModelNotFoundError, NotGGUFError, TruncatedModelError
from app.engine.gguf_file import (
    ARRAY,
    GGUFArray,
    GGUFInfo,
    GGUFTensorInfo,
    check_gguf,
    read_gguf_header,
)
from app.engine.placement import ModelFootprint, footprint_from_gguf, footprint_from_tensors

DAMAGED = "is damaged or cut short: its GGUF header cannot be read"
ALL_VALUE_TYPES = set(range(13))  # gguf.GGUFValueType: UINT8 .. FLOAT64


# --- generated models ----------------------------------------------------------


def _write(path: Path, fill: Callable[[Any], None], **kwargs: Any) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama", **kwargs)
    fill(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _every_value_type(writer: Any) -> None:
    """One key of every GGUF value type, an array of each, odd tensor shapes and types."""
    import gguf

    vt = gguf.GGUFValueType
    writer.add_custom_alignment(64)
    writer.add_uint8("t.u8", 255)
    writer.add_int8("t.i8", -128)
    writer.add_uint16("t.u16", 65_535)
    writer.add_int16("t.i16", -32_768)
    writer.add_uint32("t.u32", 2**32 - 1)
    writer.add_int32("t.i32", -(2**31))
    writer.add_float32("t.f32", -1.5e-3)
    writer.add_bool("t.bool", True)
    writer.add_bool("t.bool_false", False)
    writer.add_string("t.str", "héllo ✓ \n\t")
    writer.add_string("t.empty_str", "")
    writer.add_uint64("t.u64", 2**64 - 1)
    writer.add_int64("t.i64", -(2**63))
    writer.add_float64("t.f64", 2.5e300)
    arrays: dict[Any, list[Any]] = {
        vt.UINT8: [0, 1, 255],
        vt.INT8: [-128, 0, 127],
        vt.UINT16: [0, 65_535],
        vt.INT16: [-32_768, 32_767],
        vt.UINT32: [0, 2**32 - 1],
        vt.INT32: [-(2**31), 2**31 - 1],
        vt.FLOAT32: [0.5, -2.25, 3.0e38],
        vt.BOOL: [True, False, True],
        vt.STRING: ["", "a", "ünïcode", "x" * 300],
        vt.UINT64: [0, 2**64 - 1],
        vt.INT64: [-(2**63), 2**63 - 1],
        vt.FLOAT64: [1e-300, -0.0],
    }
    for item_type, items in arrays.items():
        writer.add_key_value(f"a.{item_type.name.lower()}", items, vt.ARRAY, sub_type=item_type)
    writer.add_tensor("f32.2d", np.arange(6 * 4, dtype=np.float32).reshape(6, 4))
    writer.add_tensor("f16.1d", np.ones(7, dtype=np.float16))
    writer.add_tensor("i32.3d", np.zeros((2, 3, 5), dtype=np.int32))
    writer.add_tensor("i8.4d", np.zeros((1, 2, 3, 4), dtype=np.int8))
    q8 = gguf.quants.quantize(np.ones((3, 64), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)


@pytest.fixture(scope="module")
def models(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tiny_model_no_template: Path
) -> dict[str, Path]:
    """Every kind of file the reader is compared on, by name."""
    import gguf

    folder = tmp_path_factory.mktemp("gguf-file")
    wide = ModelShape(n_embd=256, n_layer=3, n_head=8, n_head_kv=4, n_ff=512, n_ctx_train=8192)
    f16 = write_model(folder / "wide-f16.gguf", wide, f16=True, chat_template=None, name="wide")
    return {
        "tiny": tiny_model,
        "tiny-no-template": tiny_model_no_template,
        "wide-f16": f16,
        "wide-q4_k_m": quantize(f16, folder / "wide-q4_k_m.gguf", "Q4_K_M"),
        "tiny-q8_0": quantize(tiny_model, folder / "tiny-q8_0.gguf", "Q8_0"),
        "every-type": _write(folder / "every-type.gguf", _every_value_type),
        "every-type-big-endian": _write(
            folder / "every-type-be.gguf", _every_value_type, endianess=gguf.GGUFEndian.BIG
        ),
    }


MODEL_NAMES = [
    "tiny",
    "tiny-no-template",
    "wide-f16",
    "wide-q4_k_m",
    "tiny-q8_0",
    "every-type",
    "every-type-big-endian",
]


# --- agreement with gguf.GGUFReader --------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_header_agrees_with_gguf_reader(models: dict[str, Path], name: str) -> None:
    import gguf

    path = models[name]
    reader = gguf.GGUFReader(str(path), "r")
    header = read_gguf_header(path)

    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert list(header.metadata) == list(fields)  # same keys, in file order
    for key, field in fields.items():
        value, expected = header.metadata[key], field.contents()
        assert header.value_types[key] == field.types[0], key
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            assert isinstance(value, GGUFArray), key
            assert value.item_type == field.types[-1], key
            assert len(value) == len(expected), key
            assert [value[0], value[-1]] == [expected[0], expected[-1]], key  # before decoding
            assert list(value) == expected, key
            assert [type(v) for v in value] == [type(v) for v in expected], key
        else:
            assert value == expected, key
            assert type(value) is type(expected), key

    assert header.version == reader.fields["GGUF.version"].contents()
    assert header.big_endian == (reader.byte_order == "S")
    assert (header.alignment, header.data_offset) == (reader.alignment, reader.data_offset)
    assert header.file_size == path.stat().st_size
    assert [_tensor(t) for t in header.tensors] == [
        (
            t.name,
            tuple(int(d) for d in t.shape),
            int(t.tensor_type),
            int(t.data_offset),
            int(t.n_elements),
            int(t.n_bytes),
        )
        for t in reader.tensors
    ]


def _tensor(t: GGUFTensorInfo) -> tuple[str, tuple[int, ...], int, int, int, int]:
    return (t.name, t.shape, t.ggml_type, t.offset, t.n_elements, t.n_bytes)


@pytest.mark.parametrize("name", ["every-type", "every-type-big-endian"])
def test_every_value_type_is_compared(models: dict[str, Path], name: str) -> None:
    header = read_gguf_header(models[name])
    scalars = set(header.value_types.values())
    items = {v.item_type for v in header.metadata.values() if isinstance(v, GGUFArray)}
    assert scalars | items == ALL_VALUE_TYPES
    assert items == ALL_VALUE_TYPES - {ARRAY}
    assert header.alignment == 64
    assert header.big_endian == name.endswith("big-endian")
    assert {t.n_dims for t in header.tensors} == {1, 2, 3, 4}


def _info_via_gguf_reader(path: Path) -> GGUFInfo:
    """What check_gguf returned when it used gguf.GGUFReader."""
    import gguf

    reader = gguf.GGUFReader(str(path), "r")

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None and f.data else None

    arch = str(field("general.architecture") or "unknown")
    tokens = field("tokenizer.ggml.tokens") or []

    def token(key: str, fallback: str) -> str:
        idx = field(key)
        return str(tokens[idx]) if isinstance(idx, int) and 0 <= idx < len(tokens) else fallback

    return GGUFInfo(
        path=str(path),
        size_bytes=path.stat().st_size,
        architecture=arch,
        name=str(field("general.name") or path.stem),
        context_length=int(field(f"{arch}.context_length") or 0),
        block_count=int(field(f"{arch}.block_count") or 0),
        chat_template=field("tokenizer.chat_template"),
        bos_token=token("tokenizer.ggml.bos_token_id", "<s>"),
        eos_token=token("tokenizer.ggml.eos_token_id", "</s>"),
    )


def _footprint_via_gguf_reader(path: Path) -> ModelFootprint:
    """What footprint_from_gguf returned when it used gguf.GGUFReader."""
    import gguf

    reader = gguf.GGUFReader(str(path), "r")
    metadata = {
        key: f.contents()
        for key, f in reader.fields.items()
        if not key.startswith("tokenizer.") and f.data
    }
    return footprint_from_tensors(metadata, [(t.name, int(t.n_bytes)) for t in reader.tensors])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_check_gguf_and_footprint_are_unchanged(models: dict[str, Path], name: str) -> None:
    path = models[name]
    assert check_gguf(path) == _info_via_gguf_reader(path)
    assert footprint_from_gguf(path) == _footprint_via_gguf_reader(path)


def test_generated_model_values(models: dict[str, Path]) -> None:
    info = check_gguf(models["wide-q4_k_m"])
    assert (info.architecture, info.name, info.context_length, info.block_count) == (
        "llama",
        "wide",
        8192,
        3,
    )
    assert (info.chat_template, info.bos_token, info.eos_token) == (None, "<s>", "</s>")
    header = read_gguf_header(models["wide-q4_k_m"])
    import gguf

    types = {gguf.GGMLQuantizationType(t.ggml_type).name for t in header.tensors}
    assert {"Q4_K", "F32"} <= types  # really quantised, norms kept in F32
    assert read_model_info(models["wide-q4_k_m"]).quantisation == "Q4_K_M"


def test_arrays_decode_lazily_and_act_as_sequences(models: dict[str, Path]) -> None:
    meta = read_gguf_header(models["every-type"]).metadata
    strings, ints = meta["a.string"], meta["a.int64"]
    assert isinstance(strings, GGUFArray) and isinstance(ints, GGUFArray)
    assert (strings[2], strings[-1], ints[1], ints[-2]) == (
        "ünïcode",
        "x" * 300,
        2**63 - 1,
        -(2**63),
    )
    assert strings[1:3] == ("a", "ünïcode")
    assert list(reversed(ints)) == [2**63 - 1, -(2**63)]
    assert "a" in strings and strings.index("a") == 1
    assert strings.values() is strings.values()  # decoded once
    assert strings[2] == "ünïcode"  # from the decoded tuple now
    for bad in (4, -5):
        with pytest.raises(IndexError):
            strings[bad]
    assert "4 items" in repr(strings)
    with pytest.raises(TypeError):
        meta["t.u8"] = 1  # type: ignore[index]


def test_empty_header_and_empty_arrays(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "bare.gguf"
    kv = _kv("a.none", _u32(ARRAY) + _u32(4) + _u64(0)) + _kv(
        "b.none", _u32(ARRAY) + _u32(8) + _u64(0)
    )
    path.write_bytes(_gguf(n_kv=2, body=kv))
    header = read_gguf_header(path)
    reader = gguf.GGUFReader(str(path), "r")
    for key in ("a.none", "b.none"):
        assert list(header.metadata[key]) == reader.fields[key].contents() == []
    assert header.tensors == () and header.data_offset == reader.data_offset
    assert check_gguf(path) == _info_via_gguf_reader(path)
    assert footprint_from_gguf(path) == _footprint_via_gguf_reader(path)
    assert footprint_from_gguf(path).n_layer == 0


# --- broken files ------------------------------------------------------------


def test_missing_and_foreign_files(tmp_path: Path, tiny_model: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"^No model file at .*missing\.gguf\.$"):
        read_gguf_header(tmp_path / "missing.gguf")
    with pytest.raises(ModelNotFoundError):
        check_gguf(tmp_path)  # a folder
    data = tiny_model.read_bytes()
    for magic in (b"", b"G", b"GGU", b"GGML", b"ggjt", b"gguf", b"FUGG", b"\x89PNG", b"PK\x03\x04"):
        path = tmp_path / "foreign.gguf"
        path.write_bytes(magic + data[4:] if len(magic) == 4 else magic)
        with pytest.raises(
            NotGGUFError,
            match=r"^foreign\.gguf is not a GGUF model file \(it does not start with 'GGUF'\)\.$",
        ):
            check_gguf(path)


def test_every_cut_through_the_header_is_a_typed_error(tmp_path: Path, tiny_model: Path) -> None:
    """Cut the file at every byte of its header, and at a few points in its data."""
    header = read_gguf_header(tiny_model)
    size = header.file_size
    tensor_end = max(t.offset + t.n_bytes for t in header.tensors)
    path = tmp_path / "cut.gguf"
    shutil.copy(tiny_model, path)
    data_cuts = [tensor_end - 1, (header.data_offset + tensor_end) // 2, header.data_offset]
    header_cuts = range(header.data_offset - 1, 3, -1)
    for cut in [*data_cuts, *header_cuts]:
        os.truncate(path, cut)  # the cuts only get shorter
        with pytest.raises(TruncatedModelError) as caught:
            read_gguf_header(path)
        cut_short = (
            f"cut.gguf is cut short: it holds {cut:,} bytes but its tensors need "
            f"{tensor_end:,}. Download or copy it again."
        )
        # Only a cut in the padding before the data leaves a readable header.
        if cut > header.data_offset - header.alignment:
            assert str(caught.value) in (cut_short, f"cut.gguf {DAMAGED}.")
        else:
            assert str(caught.value) == f"cut.gguf {DAMAGED}."
    assert len(header_cuts) > 5000 and tensor_end <= size


def test_random_damage_gives_typed_errors_only(tmp_path: Path, tiny_model: Path) -> None:
    data = tiny_model.read_bytes()
    header_end = read_gguf_header(tiny_model).data_offset
    rng = random.Random(20240611)
    path = tmp_path / "damaged.gguf"
    for _ in range(400):
        damaged = bytearray(data[:header_end] if rng.random() < 0.5 else data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(4, header_end)
            width = rng.choice((1, 4, 8))
            damaged[at : at + width] = rng.choice((b"\xff", b"\x00", b"\x7f", b"\x80")) * width
        path.write_bytes(bytes(damaged))
        try:
            header = read_gguf_header(path)
        except TruncatedModelError:
            continue
        assert header.file_size == len(damaged)  # damage the header could still read


def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def _str(text: str) -> bytes:
    raw = text.encode()
    return _u64(len(raw)) + raw


def _kv(key: str, typed_value: bytes) -> bytes:
    return _str(key) + typed_value


def _tensor_info(name: str, shape: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    return (
        _str(name)
        + _u32(len(shape))
        + b"".join(_u64(d) for d in shape)
        + _u32(ggml_type)
        + _u64(offset)
    )


def _gguf(*, version: int = 3, n_tensors: int = 0, n_kv: int = 0, body: bytes = b"") -> bytes:
    return b"GGUF" + _u32(version) + _u64(n_tensors) + _u64(n_kv) + body


HUGE = 2**64 - 1
_ONE_ROW = _tensor_info("t", (4,))

CRAFTED: dict[str, bytes] = {
    "version 0": _gguf(version=0),
    "version 1": _gguf(version=1),
    "version 4": _gguf(version=4),
    "huge key count": _gguf(n_kv=HUGE),
    "huge tensor count": _gguf(n_tensors=2**63),
    "key count past the end": _gguf(n_kv=1000, body=_kv("k", _u32(0) + b"\x01")),
    "huge key length": _gguf(n_kv=1, body=_u64(HUGE) + b"key"),
    "huge string value": _gguf(n_kv=1, body=_str("k") + _u32(8) + _u64(2**63) + b"abc"),
    "huge uint64 array": _gguf(n_kv=1, body=_str("k") + _u32(9) + _u32(10) + _u64(2**61)),
    "huge string array": _gguf(n_kv=1, body=_str("k") + _u32(9) + _u32(8) + _u64(HUGE)),
    "huge string in an array": _gguf(
        n_kv=1, body=_str("k") + _u32(9) + _u32(8) + _u64(2) + _str("ok") + _u64(HUGE) + b"x"
    ),
    "unknown value type": _gguf(n_kv=1, body=_str("k") + _u32(13) + b"\0" * 8),
    "absurd value type": _gguf(n_kv=1, body=_str("k") + _u32(2**32 - 1) + b"\0" * 8),
    "unknown array item type": _gguf(n_kv=1, body=_str("k") + _u32(9) + _u32(99) + _u64(1)),
    "nested array": _gguf(
        n_kv=1, body=_str("k") + _u32(9) + _u32(9) + _u64(1) + _u32(4) + _u64(1) + _u32(7)
    ),
    "duplicate key": _gguf(n_kv=2, body=(_str("k") + _u32(0) + b"\1") * 2),
    "alignment 0": _gguf(n_kv=1, body=_str("general.alignment") + _u32(4) + _u32(0)),
    "alignment 48": _gguf(n_kv=1, body=_str("general.alignment") + _u32(4) + _u32(48)),
    "alignment as uint64": _gguf(n_kv=1, body=_str("general.alignment") + _u32(10) + _u64(32)),
    "alignment as string": _gguf(n_kv=1, body=_str("general.alignment") + _u32(8) + _str("32")),
    "five dimensions": _gguf(n_tensors=1, body=_tensor_info("t", (1, 1, 1, 1, 1))),
    "huge dimension count": _gguf(n_tensors=1, body=_str("t") + _u32(2**32 - 1) + b"\0" * 64),
    "huge dimension": _gguf(n_tensors=1, body=_tensor_info("t", (HUGE,))),
    "overflowing shape": _gguf(n_tensors=1, body=_tensor_info("t", (2**40, 2**40))),
    "unknown tensor type": _gguf(n_tensors=1, body=_tensor_info("t", (4,), ggml_type=4)),
    "absurd tensor type": _gguf(n_tensors=1, body=_tensor_info("t", (4,), ggml_type=2**32 - 1)),
    "duplicate tensor": _gguf(n_tensors=2, body=_ONE_ROW * 2),
    "partial quant block": _gguf(n_tensors=1, body=_tensor_info("t", (33,), ggml_type=8)),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_headers_are_typed_errors_without_big_allocations(
    tmp_path: Path, case: str
) -> None:
    path = tmp_path / "crafted.gguf"
    import gguf  # imported before tracemalloc starts counting

    assert gguf.GGML_QUANT_SIZES
    path.write_bytes(CRAFTED[case] + b"\0" * 4096)  # bytes to misread, not enough to matter
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedModelError, match=re.escape(f"crafted.gguf {DAMAGED}.")):
            read_gguf_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    with pytest.raises(TruncatedModelError):
        check_gguf(path)
    with pytest.raises(TruncatedModelError):
        footprint_from_gguf(path)


def test_tensor_offset_past_the_end_says_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "far.gguf"
    info = _tensor_info("t", (4,), offset=2**62)
    path.write_bytes(_gguf(n_tensors=1, body=info))
    data_start = -(-(24 + len(info)) // 32) * 32  # the header, padded to 32 bytes
    need = data_start + 2**62 + 4 * 4  # four float32
    with pytest.raises(TruncatedModelError) as caught:
        check_gguf(path)
    assert str(caught.value) == (
        f"far.gguf is cut short: it holds {24 + len(info):,} bytes but its tensors need "
        f"{need:,}. Download or copy it again."
    )


# --- a real-sized vocabulary -------------------------------------------------------


N_VOCAB = 150_000


def _vocab(i: int) -> str:
    return f"Ġtok{i}" if i % 7 else f"ünï{i}"


def _big_vocab(writer: Any) -> None:
    writer.add_name("big-vocab")
    writer.add_context_length(32_768)
    writer.add_block_count(1)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([_vocab(i) for i in range(N_VOCAB)])
    writer.add_token_types([1] * N_VOCAB)
    writer.add_bos_token_id(N_VOCAB - 2)
    writer.add_eos_token_id(N_VOCAB - 1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), dtype=np.float16))


def test_a_150k_token_vocabulary(tmp_path: Path) -> None:
    path = _write(tmp_path / "big-vocab.gguf", _big_vocab)
    started = time.perf_counter()
    info = check_gguf(path)
    elapsed = time.perf_counter() - started
    print(f"check_gguf on a {N_VOCAB:,}-token vocabulary: {elapsed:.3f} s")  # no assertion
    assert (info.name, info.context_length, info.block_count) == ("big-vocab", 32_768, 1)
    assert (info.bos_token, info.eos_token) == (_vocab(N_VOCAB - 2), _vocab(N_VOCAB - 1))
    tokens = read_gguf_header(path).metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray) and len(tokens) == N_VOCAB
    assert tokens[123_456] == _vocab(123_456)
    assert list(tokens) == [_vocab(i) for i in range(N_VOCAB)]
    footprint = footprint_from_gguf(path)
    assert (footprint.n_layer, footprint.weight_bytes) == (1, 4 * 32 * 4 + 32 * 32 * 2)
    assert read_model_info(path).parameters == 4 * 32 + 32 * 32


def test_reading_headers_never_imports_the_gguf_package(tiny_model: Path) -> None:
    """``import gguf`` pulls in sentencepiece when installed, whose C++ runtime made
    llama.cpp's CUDA build segfault on the next model load (seen on an H200)."""
    code = (
        "import sys\n"
        "from app.engine.catalog import read_model_info\n"
        "from app.engine.gguf_file import check_gguf\n"
        "from app.engine.placement import footprint_from_gguf\n"
        f"check_gguf({str(tiny_model)!r}); footprint_from_gguf({str(tiny_model)!r})\n"
        f"info = read_model_info({str(tiny_model)!r})\n"
        "assert info.quantisation, info\n"
        "print('gguf' in sys.modules, 'sentencepiece' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "False"]


def test_the_type_tables_match_the_gguf_package() -> None:
    import gguf

    from app.engine.catalog import FILE_TYPES
    from app.engine.gguf_file import GGML_TYPE_NAMES, GGML_TYPE_SIZES

    for kind, sizes in gguf.GGML_QUANT_SIZES.items():
        assert GGML_TYPE_SIZES[int(kind)] == sizes
        assert GGML_TYPE_NAMES[int(kind)] == kind.name
    for file_type in gguf.LlamaFileType:
        if file_type != gguf.LlamaFileType.GUESSED:
            assert FILE_TYPES[int(file_type)] == file_type.name.removeprefix(
                "MOSTLY_"
            ).removeprefix("ALL_")
