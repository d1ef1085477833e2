"""Check a GGUF file before llama.cpp sees it, and read its metadata.

llama.cpp reports a bad file only as a failed load; checking here first
lets the engine say *why*: no file, not a GGUF, or a GGUF cut short.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engine.errors import ModelNotFoundError, NotGGUFError, TruncatedModelError

GGUF_MAGIC = b"GGUF"


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


def check_gguf(path: str | Path) -> GGUFInfo:
    """Validate ``path`` and return its metadata, or raise a typed error."""
    file = Path(path)
    if not file.is_file():
        raise ModelNotFoundError(f"No model file at {file}.")
    with file.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise NotGGUFError(f"{file.name} is not a GGUF model file (it does not start with 'GGUF').")
    reader = _read(file)
    _check_tensor_bounds(file, reader)
    return _info(file, reader)


def _read(file: Path) -> Any:
    import gguf

    try:
        return gguf.GGUFReader(str(file), "r")
    except (ValueError, IndexError, OSError, KeyError) as exc:
        raise TruncatedModelError(
            f"{file.name} is damaged or cut short: its GGUF header cannot be read."
        ) from exc


def _check_tensor_bounds(file: Path, reader: Any) -> None:
    size = file.stat().st_size
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise TruncatedModelError(
            f"{file.name} is cut short: it holds {size:,} bytes but its tensors need {end:,}. "
            "Download or copy it again."
        )


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    return field.contents()


def _info(file: Path, reader: Any) -> GGUFInfo:
    arch = str(_field(reader, "general.architecture") or "unknown")
    tokens = _field(reader, "tokenizer.ggml.tokens") or []

    def token(key: str, fallback: str) -> str:
        idx = _field(reader, key)
        return str(tokens[idx]) if isinstance(idx, int) and 0 <= idx < len(tokens) else fallback

    return GGUFInfo(
        path=str(file),
        size_bytes=file.stat().st_size,
        architecture=arch,
        name=str(_field(reader, "general.name") or file.stem),
        context_length=int(_field(reader, f"{arch}.context_length") or 0),
        block_count=int(_field(reader, f"{arch}.block_count") or 0),
        chat_template=_field(reader, "tokenizer.chat_template"),
        bos_token=token("tokenizer.ggml.bos_token_id", "<s>"),
        eos_token=token("tokenizer.ggml.eos_token_id", "</s>"),
    )
