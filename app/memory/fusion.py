"""Reciprocal rank fusion: several ranked lists of ids made into one ranking.

Each list (vector hits, keyword hits, ...) votes ``weight / (k + rank)`` for
each id it holds, ranks counted from 1; an id's fused score is the sum of
its votes (Cormack, Clarke and Büttcher, SIGIR 2009, where k = 60). Only
ranks matter, so a cosine and a BM25 score never have to be put on one
scale; each source's own rank and score are kept on the result for the
Memory window and the trace.

Ties are broken by the best rank any list gave the id, then by first
appearance (the order of the lists, then of their items), so equal inputs
always fuse the same way.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["DEFAULT_K", "Fused", "reciprocal_rank_fusion"]

DEFAULT_K = 60

IdT = TypeVar("IdT", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Fused(Generic[IdT]):
    """One id of the fused ranking, with what each source said of it."""

    id: IdT
    score: float
    ranks: Mapping[str, int] = field(default_factory=dict)  # source -> rank, from 1
    scores: Mapping[str, float] = field(default_factory=dict)  # source -> its own score

    @property
    def best_rank(self) -> int:
        return min(self.ranks.values())


def reciprocal_rank_fusion(
    ranked: Mapping[str, Sequence[tuple[IdT, float]]],
    *,
    k: int = DEFAULT_K,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[Fused[IdT]]:
    """Fuse ``ranked`` (source -> its (id, score) list, best first), best first.

    An id listed twice by one source keeps its first (best) place there.
    ``weights`` scales a source's votes (1 when absent); ``limit`` cuts the result.
    """
    if k < 0:
        raise ValueError("k must not be negative")
    votes: dict[IdT, float] = {}
    ranks: dict[IdT, dict[str, int]] = {}
    scores: dict[IdT, dict[str, float]] = {}
    for source, hits in ranked.items():
        weight = 1.0 if weights is None else weights.get(source, 1.0)
        for rank, (item_id, score) in enumerate(hits, 1):
            seen = ranks.setdefault(item_id, {})
            if source in seen:
                continue
            seen[source] = rank
            scores.setdefault(item_id, {})[source] = score
            votes[item_id] = votes.get(item_id, 0.0) + weight / (k + rank)
    order = {item_id: position for position, item_id in enumerate(votes)}
    fused = [Fused(i, votes[i], ranks[i], scores[i]) for i in votes]
    fused.sort(key=lambda f: (-f.score, f.best_rank, order[f.id]))
    return fused if limit is None else fused[:limit]
