"""Embedding vectors of memory versions, stored with their model and dimension.

A vector is stored under (version id, model name), so vectors of two
models never mix: each model is its own space, and changing the configured
model means embedding the current versions again under the new name
(``MemoryStore.versions_missing_vectors``), not comparing across spaces.
``embedding_models`` fixes one dimension per model name from its first
vector; a vector of another length raises ``VectorDimensionError`` inside
the writer's transaction, so the write is undone whole.

The functions here run inside a ``MemoryStore`` transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from app.memory.db import Database, to_db_time
from app.memory.errors import VectorDimensionError

Vector = npt.NDArray[np.float32]
VectorLike = Sequence[float] | npt.NDArray[Any]


@dataclass(frozen=True, slots=True, repr=False)
class Embedding:
    """A vector and the name of the model that made it."""

    model: str
    values: Vector

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("an embedding needs the name of its model")
        object.__setattr__(self, "values", as_vector(self.values))

    @classmethod
    def of(cls, model: str, values: VectorLike) -> Embedding:
        """An embedding from any 1-D sequence of finite numbers."""
        return cls(model, as_vector(values))

    @property
    def dim(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        return f"Embedding(model={self.model!r}, dim={self.dim})"


class VectorSet(NamedTuple):
    """One model's vectors of the current versions: row i is ``version_ids[i]``'s."""

    memory_ids: list[str]
    version_ids: list[str]
    matrix: Vector  # float32, shape (n, dim)


def as_vector(values: VectorLike) -> Vector:
    """``values`` as a 1-D float32 array; ``ValueError`` if empty, not 1-D or not finite."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"a vector is a non-empty 1-D sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("a vector must hold finite numbers only")
    return array


def model_dimension(db: Database, model: str) -> int | None:
    """The dimension stored for ``model``, or None before its first vector."""
    row = db.fetchone("SELECT dim FROM embedding_models WHERE model = ?", [model])
    return None if row is None else int(row[0])


def store_vector(db: Database, version_id: str, embedding: Embedding, now: datetime) -> None:
    """Save (or replace) the model's vector of a version, checking its dimension."""
    known = model_dimension(db, embedding.model)
    if known is None:
        db.execute(
            "INSERT INTO embedding_models (model, dim, created_at) VALUES (?, ?, ?)",
            [embedding.model, embedding.dim, to_db_time(now)],
        )
    elif known != embedding.dim:
        raise VectorDimensionError(embedding.model, known, embedding.dim)
    db.execute(
        """
        INSERT INTO memory_vectors (version_id, model, dim, vector, created_at)
        VALUES (?, ?, ?, ?::FLOAT[], ?)
        ON CONFLICT (version_id, model) DO UPDATE
            SET vector = excluded.vector, created_at = excluded.created_at
        """,
        [version_id, embedding.model, embedding.dim, embedding.values.tolist(), to_db_time(now)],
    )


def copy_vectors(db: Database, from_version: str, to_version: str, now: datetime) -> None:
    """Give ``to_version`` every vector of ``from_version`` (same text, same vectors)."""
    db.execute(
        """
        INSERT INTO memory_vectors (version_id, model, dim, vector, created_at)
        SELECT ?, model, dim, vector, ? FROM memory_vectors WHERE version_id = ?
        """,
        [to_version, to_db_time(now), from_version],
    )


def load_vectors(db: Database, model: str) -> VectorSet:
    """The model's vectors of every current, live version, in one consistent read.

    The rows come back as Python lists through ``Database.fetchall``, about
    0.2 ms per 384-dimensional row; a NumPy fetch on ``Database`` would make
    rebuilding a large index far faster.
    """
    with db.transaction():
        dim = model_dimension(db, model)
        rows = db.fetchall(
            """
            SELECT v.memory_id, v.id, x.vector
            FROM memory_versions v
            JOIN memory_vectors x ON x.version_id = v.id AND x.model = ?
            WHERE v.valid_to IS NULL AND NOT v.tombstone
            ORDER BY v.id
            """,
            [model],
        )
    matrix = np.array([row[2] for row in rows], dtype=np.float32)
    return VectorSet(
        [row[0] for row in rows],
        [row[1] for row in rows],
        matrix.reshape(len(rows), dim or 0),
    )
