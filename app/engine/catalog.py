"""The models on this machine, and the ones we recommend downloading.

``read_model_info`` reads what a GGUF header says (architecture, parameter
count, quantisation, context length, chat template) without reading the
weights, with the engine's one header reader,
:func:`app.engine.gguf_file.read_gguf_header` (fast on a 150k-token
vocabulary, and the typed errors of ``check_gguf``).

``ModelCatalog`` lists a folder of ``*.gguf`` files. A file that cannot be
read is reported with the reason rather than failing the whole list, and
SHA-256 digests are cached in a small JSON file beside the models, keyed by
size and modification time, so a multi-gigabyte file is hashed once.

``RECOMMENDED`` lists small instruct models a laptop can run. Every size and
SHA-256 there is a published value, not one computed here; an entry whose
digest is ``None`` is downloaded *unverified*: the downloader records the
digest it computed (trust on first use) and the UI must say "unverified".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.engine.errors import EngineError
from app.engine.gguf_file import GGML_TYPE_NAMES, GGUFHeader, metadata_int, read_gguf_header

log = logging.getLogger("soloist.catalog")

HASH_CACHE_NAME = ".soloist-sha256.json"
_HASH_CACHE_VERSION = 1


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What one GGUF file holds, read from its header."""

    path: str
    file_size: int
    architecture: str
    parameters: int
    quantisation: str
    context_length: int
    has_chat_template: bool
    name: str
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class BrokenModel:
    """A ``*.gguf`` file the catalog cannot use, and why (one readable line)."""

    path: str
    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class CatalogScan:
    """The result of listing a models folder."""

    models: tuple[ModelInfo, ...]
    broken: tuple[BrokenModel, ...]


def read_model_info(path: str | Path, *, hash: bool = False) -> ModelInfo:
    """Read a GGUF header; with ``hash``, also read the whole file for its SHA-256.

    Raises the typed errors of ``check_gguf``: ``ModelNotFoundError``,
    ``NotGGUFError``, ``TruncatedModelError``.
    """
    header = read_gguf_header(path)
    file = Path(header.path)
    return _model_info(file, header, sha256_file(file) if hash else None)


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a whole file, read in chunks."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _model_info(file: Path, header: GGUFHeader, sha256: str | None) -> ModelInfo:
    meta = header.metadata
    arch = str(meta.get("general.architecture") or "unknown")
    return ModelInfo(
        path=str(file),
        file_size=header.file_size,
        architecture=arch,
        parameters=sum(t.n_elements for t in header.tensors),
        quantisation=_quantisation(header),
        context_length=metadata_int(meta.get(f"{arch}.context_length")),
        has_chat_template=bool(meta.get("tokenizer.chat_template")),
        name=str(meta.get("general.name") or file.stem),
        sha256=sha256,
    )


# llama.cpp's file types (gguf 0.19's LlamaFileType), by general.file_type. Not
# imported from gguf: see GGML_TYPE_SIZES in gguf_file for why.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}


def _quantisation(header: GGUFHeader) -> str:
    """The file type's name (Q4_K_M, F16...), else the type holding most weights."""
    file_type = header.metadata.get("general.file_type")
    if isinstance(file_type, int) and file_type in FILE_TYPES:
        return FILE_TYPES[file_type]
    weights: Counter[int] = Counter()
    for tensor in header.tensors:
        if tensor.n_dims >= 2:  # norms and biases stay F32 in every quantisation
            weights[tensor.ggml_type] += tensor.n_elements
    if not weights:
        return "unknown"
    ggml_type = weights.most_common(1)[0][0]
    return GGML_TYPE_NAMES.get(ggml_type, f"type {ggml_type}")


# --- the catalog -------------------------------------------------------------


class ModelCatalog:
    """The GGUF files of one folder, with cached SHA-256 digests."""

    def __init__(self, models_dir: str | Path) -> None:
        self.models_dir = Path(models_dir)
        self._cache_path = self.models_dir / HASH_CACHE_NAME

    def scan(self, *, hash: bool = False) -> CatalogScan:
        """Read every ``*.gguf``; with ``hash``, compute digests not yet cached."""
        if not self.models_dir.is_dir():
            return CatalogScan((), ())
        cache = self._load_cache()
        models: list[ModelInfo] = []
        broken: list[BrokenModel] = []
        for file in sorted(self.models_dir.glob("*.gguf")):
            try:
                info = read_model_info(file)
            except (EngineError, OSError) as exc:
                reason = str(exc) if isinstance(exc, EngineError) else f"{file.name}: {exc}"
                broken.append(BrokenModel(str(file), reason, type(exc).__name__))
                continue
            digest = self._cached(cache, file) or (self._hash_into(cache, file) if hash else None)
            models.append(replace(info, sha256=digest))
        present = {m.path for m in models} | {b.path for b in broken}
        stale = [n for n in cache if str(self.models_dir / n) not in present]
        for name in stale:
            del cache[name]
        if hash or stale:
            self._save_cache(cache)
        return CatalogScan(tuple(models), tuple(broken))

    def sha256(self, path: str | Path) -> str:
        """The file's SHA-256, from the cache when size and mtime still match."""
        file = Path(path)
        cache = self._load_cache()
        digest = self._cached(cache, file)
        if digest is None:
            digest = self._hash_into(cache, file)
            self._save_cache(cache)
        return digest

    def record_sha256(self, path: str | Path, digest: str) -> None:
        """Remember a digest computed elsewhere (the downloader hashes as it writes)."""
        file = Path(path)
        cache = self._load_cache()
        cache[file.name] = self._entry(file, digest.lower())
        self._save_cache(cache)

    def _cached(self, cache: dict[str, dict[str, Any]], file: Path) -> str | None:
        entry = cache.get(file.name)
        if entry is None:
            return None
        stat = file.stat()
        if entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
            return None
        digest = entry.get("sha256")
        return digest if isinstance(digest, str) else None

    def _hash_into(self, cache: dict[str, dict[str, Any]], file: Path) -> str:
        digest = sha256_file(file)
        log.info("hashed %s (%d bytes)", file.name, file.stat().st_size)
        cache[file.name] = self._entry(file, digest)
        return digest

    @staticmethod
    def _entry(file: Path, digest: str) -> dict[str, Any]:
        stat = file.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}

    def _load_cache(self) -> dict[str, dict[str, Any]]:
        try:
            doc = json.loads(self._cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict) or doc.get("version") != _HASH_CACHE_VERSION:
            return {}
        files = doc.get("files")
        if not isinstance(files, dict):
            return {}
        return {k: v for k, v in files.items() if isinstance(v, dict)}

    def _save_cache(self, cache: dict[str, dict[str, Any]]) -> None:
        doc = {"version": _HASH_CACHE_VERSION, "files": cache}
        tmp = self._cache_path.with_name(f"{self._cache_path.name}.tmp{os.getpid()}")
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
            tmp.replace(self._cache_path)
        except OSError as exc:  # a read-only folder still lists; it just hashes again
            log.info("could not write the hash cache in %s: %s", self.models_dir, exc)


# --- recommended models ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecommendedModel:
    """A small instruct GGUF we suggest on first run.

    ``size_bytes`` and ``sha256`` are published values (``None`` if none was
    found): a download is verified only when ``sha256`` is set.
    """

    name: str
    repo: str
    filename: str
    size_bytes: int | None
    sha256: str | None
    licence: str
    parameters: str  # the size label the publisher uses, e.g. "1.5B"
    quantisation: str
    context_length: int
    notes: str

    @property
    def key(self) -> str:
        """The name as typed on the command line: ``qwen2.5-1.5b-instruct``."""
        return self.name.lower().replace(" ", "-")

    @property
    def url(self) -> str:
        return hf_url(self.repo, self.filename)

    @property
    def verified(self) -> bool:
        return self.sha256 is not None


def hf_url(repo: str, filename: str, revision: str = "main") -> str:
    """The download address of one file in a Hugging Face repository."""
    return f"https://huggingface.co/{repo}/resolve/{revision}/{filename}"


def find_recommended(name: str) -> RecommendedModel | None:
    """The recommended model with this key, name or file name (any case)."""
    wanted = name.strip().lower()
    for model in RECOMMENDED:
        if wanted in (model.key, model.name.lower(), model.filename.lower()):
            return model
    return None


# Sizes and digests: the Git LFS object (sha256, size) of each file on the
# Hugging Face Hub, as published and cross-checked in several independent
# public projects that pin these files. A wrong value fails safe: the
# download stops with ChecksumMismatchError and nothing is kept.
RECOMMENDED: tuple[RecommendedModel, ...] = (
    RecommendedModel(
        name="Qwen2.5 0.5B Instruct",
        repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        filename="qwen2.5-0.5b-instruct-q4_k_m.gguf",
        size_bytes=491_400_032,
        sha256="74a4da8c9fdbcd15bd1f6d01d621410d31c6fc00986f5eb687824e7b93d7a9db",
        licence="Apache-2.0",
        parameters="0.5B",
        quantisation="Q4_K_M",
        context_length=32_768,
        notes="Smallest and fastest; short summaries and simple replies on any laptop.",
    ),
    RecommendedModel(
        name="Qwen2.5 1.5B Instruct",
        repo="Qwen/Qwen2.5-1.5B-Instruct-GGUF",
        filename="qwen2.5-1.5b-instruct-q4_k_m.gguf",
        size_bytes=1_117_320_736,
        sha256="6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e",
        licence="Apache-2.0",
        parameters="1.5B",
        quantisation="Q4_K_M",
        context_length=32_768,
        notes="Good balance of speed and quality; the default for 8 GB machines.",
    ),
    RecommendedModel(
        name="Qwen2.5 3B Instruct",
        repo="Qwen/Qwen2.5-3B-Instruct-GGUF",
        filename="qwen2.5-3b-instruct-q4_k_m.gguf",
        size_bytes=2_104_932_768,
        sha256="626b4a6678b86442240e33df819e00132d3ba7dddfe1cdc4fbb18e0a9615c62d",
        licence="Qwen Research License (non-commercial)",
        parameters="3B",
        quantisation="Q4_K_M",
        context_length=32_768,
        notes="Better answers; its licence does not allow commercial use.",
    ),
    RecommendedModel(
        name="Llama 3.2 1B Instruct",
        repo="bartowski/Llama-3.2-1B-Instruct-GGUF",
        filename="Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        size_bytes=807_694_464,
        sha256="6f85a640a97cf2bf5b8e764087b1e83da0fdb51d7c9fab7d0fece9385611df83",
        licence="Llama 3.2 Community License",
        parameters="1B",
        quantisation="Q4_K_M",
        context_length=131_072,
        notes="Small and quick, friendly chat.",
    ),
    RecommendedModel(
        name="Llama 3.2 3B Instruct",
        repo="bartowski/Llama-3.2-3B-Instruct-GGUF",
        filename="Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        size_bytes=2_019_377_696,
        sha256="6c1a2b41161032677be168d354123594c0e6e67d2b9227c84f296ad037c728ff",
        licence="Llama 3.2 Community License",
        parameters="3B",
        quantisation="Q4_K_M",
        context_length=131_072,
        notes="Good writing; wants 6 GB of memory or more.",
    ),
    RecommendedModel(
        name="Phi-3.5 mini Instruct",
        repo="bartowski/Phi-3.5-mini-instruct-GGUF",
        filename="Phi-3.5-mini-instruct-Q4_K_M.gguf",
        size_bytes=2_393_232_672,
        sha256="e4165e3a71af97f1b4820da61079826d8752a2088e313af0c7d346796c38eff5",
        licence="MIT",
        parameters="3.8B",
        quantisation="Q4_K_M",
        context_length=131_072,
        notes="Strong reasoning for its size; mostly English.",
    ),
    RecommendedModel(
        name="Gemma 2 2B Instruct",
        repo="bartowski/gemma-2-2b-it-GGUF",
        filename="gemma-2-2b-it-Q4_K_M.gguf",
        size_bytes=1_708_582_752,
        sha256="e0aee85060f168f0f2d8473d7ea41ce2f3230c1bc1374847505ea599288a7787",
        licence="Gemma Terms of Use",
        parameters="2B",
        quantisation="Q4_K_M",
        context_length=8_192,
        notes="Fluent writing in many languages; 8k context.",
    ),
)

__all__ = [
    "RECOMMENDED",
    "BrokenModel",
    "CatalogScan",
    "ModelCatalog",
    "ModelInfo",
    "RecommendedModel",
    "find_recommended",
    "hf_url",
    "read_model_info",
    "sha256_file",
]
