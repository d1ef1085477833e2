"""Reciprocal rank fusion, as tables: ranked lists in, fused ids and per-source ranks out."""

from __future__ import annotations

import pytest

from app.memory.fusion import DEFAULT_K, Fused, reciprocal_rank_fusion

Lists = dict[str, list[tuple[str, float]]]


def _hits(*ids: str) -> list[tuple[str, float]]:
    """A ranked list with made-up descending scores."""
    return [(item_id, 1.0 - i / 10) for i, item_id in enumerate(ids)]


@pytest.mark.parametrize(
    ("ranked", "expected"),
    [
        # both lists agree on the first
        ({"vector": _hits("a", "b"), "keyword": _hits("a", "c")}, ["a", "b", "c"]),
        # in both lists beats first in one: 1/62 + 1/62 > 1/61
        ({"vector": _hits("a", "x"), "keyword": _hits("b", "x")}, ["x", "a", "b"]),
        # a tie on score: the better single rank first, then the first seen
        ({"vector": _hits("a", "b"), "keyword": _hits("b", "a")}, ["a", "b"]),
        ({"vector": _hits("a"), "keyword": _hits("b")}, ["a", "b"]),
        # one list only: its own order
        ({"vector": _hits("c", "b", "a")}, ["c", "b", "a"]),
        # an empty list changes nothing
        ({"vector": _hits("a", "b"), "keyword": []}, ["a", "b"]),
        ({}, []),
    ],
)
def test_fused_order(ranked: Lists, expected: list[str]) -> None:
    assert [f.id for f in reciprocal_rank_fusion(ranked)] == expected


def test_scores_ranks_and_source_scores_are_kept() -> None:
    fused = reciprocal_rank_fusion(
        {"vector": [("a", 0.9), ("b", 0.8)], "keyword": [("b", 12.5), ("c", 3.0)]}
    )
    by_id = {f.id: f for f in fused}
    assert by_id["b"] == Fused(
        "b",
        1 / (DEFAULT_K + 2) + 1 / (DEFAULT_K + 1),
        {"vector": 2, "keyword": 1},
        {"vector": 0.8, "keyword": 12.5},
    )
    assert by_id["a"].ranks == {"vector": 1} and by_id["a"].scores == {"vector": 0.9}
    assert by_id["c"].score == pytest.approx(1 / (DEFAULT_K + 2))
    assert by_id["b"].best_rank == 1


@pytest.mark.parametrize(
    ("k", "weights", "expected"),
    [
        (60, None, ["x", "a", "b"]),
        # with k = 0 one first place equals two second places (1 = 1/2 + 1/2):
        # the tie goes to the better single rank
        (0, None, ["a", "b", "x"]),
        # weighting keywords up puts their first place above the vector's
        (60, {"keyword": 3.0}, ["x", "b", "a"]),
        # weighting a source to zero leaves its ids at the end
        (60, {"keyword": 0.0}, ["a", "x", "b"]),
    ],
)
def test_k_and_weights(k: int, weights: dict[str, float] | None, expected: list[str]) -> None:
    ranked = {"vector": _hits("a", "x"), "keyword": _hits("b", "x")}
    fused = reciprocal_rank_fusion(ranked, k=k, weights=weights)
    assert [f.id for f in fused] == expected


def test_a_repeated_id_keeps_its_best_place_in_a_list() -> None:
    fused = reciprocal_rank_fusion({"vector": [("a", 0.9), ("b", 0.8), ("a", 0.1)]})
    assert [(f.id, f.ranks["vector"], f.scores["vector"]) for f in fused] == [
        ("a", 1, 0.9),
        ("b", 2, 0.8),
    ]
    assert fused[0].score == pytest.approx(1 / 61)


def test_limit_and_refusing_a_negative_k() -> None:
    ranked = {"vector": _hits("a", "b", "c")}
    assert [f.id for f in reciprocal_rank_fusion(ranked, limit=2)] == ["a", "b"]
    with pytest.raises(ValueError, match="k"):
        reciprocal_rank_fusion(ranked, k=-1)


def test_integer_ids_fuse_too() -> None:
    fused = reciprocal_rank_fusion({"vector": [(7, 0.5), (3, 0.4)], "keyword": [(3, 9.0)]})
    assert [f.id for f in fused] == [3, 7]
