"""The in-RAM vector index: exactness, recall of the two-pass search, writes, filters, threads.

No timing is asserted. Recall is measured on a seeded Gaussian mixture, so
it is a fixed number for a given numpy, not a flaky one.
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import pytest

from app.memory.vector_index import VectorIndex, stack_vectors

DIM = 32

Matrix = npt.NDArray[np.float32]


def _unit(rows: Matrix) -> Matrix:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _random(n: int, dim: int = DIM, seed: int = 0) -> Matrix:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _mixture(n: int, queries: int, dim: int, seed: int) -> tuple[Matrix, Matrix]:
    """Clusters of ~100 with noise as large as the centre, and a shared direction."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), dim)).astype(np.float32)
    shared = 0.5 * rng.standard_normal(dim).astype(np.float32)

    def draw(count: int) -> Matrix:
        rows = centres[rng.integers(0, len(centres), count)] + shared
        return rows + 1.5 * rng.standard_normal((count, dim)).astype(np.float32)

    return draw(n), draw(queries)


def _brute_force(ids: list[int], vectors: Matrix, query: Matrix, k: int) -> list[tuple[int, float]]:
    scores = _unit(vectors) @ _unit(query)
    order = np.argsort(-scores, kind="stable")[:k]
    return [(ids[i], float(scores[i])) for i in order]


def _assert_same_hits(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5)


# -- exact search ---------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 5, 10, 300])
def test_exact_search_matches_brute_force(k: int) -> None:
    vectors = _random(300)
    ids = list(range(1000, 1300))
    index = VectorIndex(DIM)
    index.build_from(ids, vectors)
    assert not index.quantised
    for query in _random(5, seed=1):
        _assert_same_hits(index.search(query, k), _brute_force(ids, vectors, query, k))


def test_search_of_an_empty_index_and_of_k_zero() -> None:
    index = VectorIndex(DIM)
    assert index.search(_random(1)[0]) == []
    index.add(1, _random(1)[0])
    assert index.search(_random(1)[0], 0) == []
    assert len(index.search(_random(1)[0], 10)) == 1


def test_scores_are_cosines_whatever_the_vector_lengths() -> None:
    index = VectorIndex(3)
    index.add(1, [3.0, 0.0, 0.0])
    index.add(2, [1.0, 1.0, 0.0])
    hits = index.search([10.0, 0.0, 0.0], 2)
    assert hits == [(1, pytest.approx(1.0)), (2, pytest.approx(2**-0.5))]
    assert np.linalg.norm(index.vector(2)) == pytest.approx(1.0)


# -- the quantised two-pass search -------------------------------------------------
def test_two_pass_recall_at_10_on_30k_clustered_vectors() -> None:
    vectors, queries = _mixture(30_000, 60, 384, seed=7)
    index = VectorIndex(384)  # the default threshold: 30,000 rows are quantised
    index.build_from(np.arange(30_000), vectors)
    assert index.quantised
    recalls = []
    for query in queries:
        fast = {i for i, _ in index.search(query, 10)}
        exact = {i for i, _ in index.search(query, 10, exact=True)}
        recalls.append(len(fast & exact) / 10)
    assert np.mean(recalls) >= 0.98


def test_two_pass_scores_are_exact_cosines() -> None:
    vectors, queries = _mixture(3_000, 5, DIM, seed=3)
    index = VectorIndex(DIM, quantise_above=1_000, min_candidates=50, rerank_factor=5)
    index.build_from(np.arange(3_000), vectors)
    assert index.quantised
    for query in queries:
        for item_id, score in index.search(query, 10):
            assert score == pytest.approx(float(_unit(vectors[item_id]) @ _unit(query)), abs=1e-5)


def test_the_exact_reference_agrees_with_brute_force_when_quantised() -> None:
    vectors, queries = _mixture(3_000, 3, DIM, seed=4)
    ids = list(range(3_000))
    index = VectorIndex(DIM, quantise_above=1_000)
    index.build_from(ids, vectors)
    for query in queries:
        _assert_same_hits(
            index.search(query, 10, exact=True), _brute_force(ids, vectors, query, 10)
        )


# -- writes --------------------------------------------------------------------------
@pytest.mark.parametrize("quantise_above", [10**9, 64])
def test_random_writes_keep_the_index_equal_to_a_model(quantise_above: int) -> None:
    """add / upsert / remove in random order, growing past the capacity and the threshold."""
    rng = np.random.default_rng(11)
    index = VectorIndex(DIM, quantise_above=quantise_above, min_candidates=10_000)
    model: dict[int, Matrix] = {}
    for step in range(3_000):
        item_id = int(rng.integers(0, 1_500))
        vector = rng.standard_normal(DIM).astype(np.float32)
        action = rng.integers(0, 3)
        if action == 0 and item_id not in model:
            index.add(item_id, vector)
            model[item_id] = vector
        elif action == 1:
            index.upsert(item_id, vector)
            model[item_id] = vector
        else:
            assert index.remove(item_id) is (model.pop(item_id, None) is not None)
        if step % 500 == 0:
            _assert_equal_to_model(index, model)
    _assert_equal_to_model(index, model)
    if quantise_above == 64:
        _assert_sketch_consistent(index)


def _assert_equal_to_model(index: VectorIndex, model: dict[int, Matrix]) -> None:
    assert len(index) == len(model)
    assert sorted(index.ids().tolist()) == sorted(model)
    ids = list(model)
    vectors = np.array([model[i] for i in ids])
    query = _random(1, seed=len(model))[0]
    # min_candidates covers every row, so the two-pass route is exact too
    _assert_same_hits(index.search(query, 7), _brute_force(ids, vectors, query, 7))
    for item_id in ids[:20]:
        np.testing.assert_allclose(index.vector(item_id), _unit(model[item_id]), atol=1e-6)


def _assert_sketch_consistent(index: VectorIndex) -> None:
    """White box: every live row's sketch column is the sketch of its vector."""
    from app.memory.vector_index import _sketch_rows

    n = len(index)
    assert index._sketch is not None and index._centre is not None
    expected = _sketch_rows(index._matrix[:n] - index._centre)
    np.testing.assert_array_equal(index._sketch[:, :n], expected)


def test_add_refuses_a_present_id_and_changes_nothing() -> None:
    index = VectorIndex(DIM)
    index.add_many([1, 2], _random(2))
    with pytest.raises(ValueError, match="already"):
        index.add_many([3, 2], _random(2, seed=5))
    assert sorted(index.ids().tolist()) == [1, 2]


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        ([1], np.zeros((1, DIM), np.float32), "zero"),
        ([1], np.full((1, DIM), np.nan, np.float32), "not finite"),
        ([1], np.ones((1, DIM + 1), np.float32), "dimension"),
        ([1, 2], np.ones((1, DIM), np.float32), "2 ids for 1 vectors"),
        ([1, 1], np.ones((2, DIM), np.float32), "twice"),
    ],
)
def test_bad_vectors_are_refused(ids: list[int], vectors: Matrix, message: str) -> None:
    index = VectorIndex(DIM)
    with pytest.raises(ValueError, match=message):
        index.upsert_many(ids, vectors)
    with pytest.raises(ValueError, match=message):
        index.build_from(ids, vectors)
    assert len(index) == 0


def test_a_query_of_the_wrong_dimension_is_refused() -> None:
    index = VectorIndex(DIM)
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.ones(DIM + 1))


def test_remove_of_an_absent_id_and_clear() -> None:
    index = VectorIndex(DIM)
    index.add_many([5, 6, 7], _random(3))
    assert index.remove(6) is True
    assert index.remove(6) is False
    assert 6 not in index and 5 in index and 7 in index
    index.clear()
    assert len(index) == 0 and index.search(_random(1)[0]) == []


def test_build_from_replaces_everything_and_sketches_a_large_set() -> None:
    index = VectorIndex(DIM, quantise_above=100)
    index.add_many([1, 2], _random(2))
    index.build_from(np.arange(10, 210), _random(200, seed=2))
    assert 1 not in index and len(index) == 200
    assert index.quantised
    _assert_sketch_consistent(index)


def test_stack_vectors_reads_duckdb_columns() -> None:
    column = np.empty(2, dtype=object)
    column[0], column[1] = np.ones(3, np.float32), np.arange(3, dtype=np.float32)
    assert stack_vectors(column, 3).tolist() == [[1, 1, 1], [0, 1, 2]]
    assert stack_vectors(np.empty(0, dtype=object), 3).shape == (0, 3)


# -- filters --------------------------------------------------------------------------
@pytest.mark.parametrize("quantise_above", [10**9, 500])
@pytest.mark.parametrize("share", [0.01, 0.5])
@pytest.mark.parametrize("form", ["mask by id", "id set", "id array"])
def test_filters_return_the_best_allowed_rows(quantise_above: int, share: float, form: str) -> None:
    vectors, queries = _mixture(4_000, 3, DIM, seed=9)
    ids = list(range(0, 8_000, 2))  # even ids, so a mask by id has holes
    index = VectorIndex(DIM, quantise_above=quantise_above, min_candidates=4_000)
    index.build_from(ids, vectors)
    rng = np.random.default_rng(1)
    chosen = [i for i in ids if rng.random() < share]
    allowed: object
    if form == "mask by id":
        mask = np.zeros(max(ids) - 100, np.bool_)  # shorter: the last ids are excluded
        mask[[i for i in chosen if i < len(mask)]] = True
        allowed, chosen = mask, [i for i in chosen if i < len(mask)]
    elif form == "id set":
        allowed = {*chosen, 99_999}  # an unknown id is ignored
    else:
        allowed = np.array(chosen, np.int64)
    rows = [ids.index(i) for i in chosen]
    for query in queries:
        got = index.search(query, 10, allowed)  # type: ignore[arg-type]
        _assert_same_hits(got, _brute_force(chosen, vectors[rows], query, 10))


def test_a_filter_allowing_nothing_finds_nothing() -> None:
    index = VectorIndex(DIM)
    index.build_from([1, 2, 3], _random(3))
    assert index.search(_random(1)[0], 5, set()) == []
    assert index.search(_random(1)[0], 5, np.zeros(10, np.bool_)) == []


# -- threads ----------------------------------------------------------------------------
def _vector_of(item_id: int) -> Matrix:
    return np.random.default_rng(item_id).standard_normal(DIM).astype(np.float32)


def test_readers_see_consistent_rows_while_a_writer_adds_and_removes() -> None:
    """Each hit's score must be the cosine of that id's (fixed) vector, whatever moved."""
    index = VectorIndex(DIM, quantise_above=256, min_candidates=64, rerank_factor=4)
    index.add_many(np.arange(200), np.array([_vector_of(i) for i in range(200)]))
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for item_id in range(200, 3_000):
                index.add(item_id, _vector_of(item_id))
                if item_id % 3 == 0:
                    index.remove(item_id - 150)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def read(seed: int) -> None:
        query = _unit(_random(1, seed=seed)[0])
        try:
            while not done.is_set():
                for item_id, score in index.search(query, 5):
                    assert score == pytest.approx(
                        float(_unit(_vector_of(item_id)) @ query), abs=1e-5
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [
        threading.Thread(target=read, args=(s,)) for s in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[0]
    assert len(index) == 3_000 - len(range(201, 3_000, 3))  # each removed its id - 150
    _assert_sketch_consistent(index)
