"""Each Numba kernel in vecstore._native.kernels agrees with its NumPy twin in reference.

Integer results (distances, positions) must match exactly, entry for entry; float scores must match
up to float32 rounding, since the two sides add the terms in different orders.
"""

from __future__ import annotations

import ast
import os
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vecstore._native import kernels, reference

# Deterministic Hypothesis runs that write nothing into the working directory.
SETTINGS = settings(deadline=None, database=None, derandomize=True, max_examples=150)

# (rows, words per row): empty, zero-width, a single word, widths that are not multiples of 4 words
# (the vector width), and 4 and 6 words, which have their own compiled scan (6: 384-bit codes, the
# engine's default).
CODE_SHAPES = [(0, 6), (1, 1), (3, 0), (7, 3), (64, 2), (300, 4), (100, 6), (257, 5), (500, 12)]
KS = [0, 1, 2, 10, 499, 10_000]


def random_codes(seed: int, n: int, words: int, *, tie_heavy: bool = False) -> npt.NDArray[np.uint64]:
    """``uint64[n, words]``; with ``tie_heavy`` each word is one of four values, so many rows tie."""
    rng = np.random.default_rng(seed)
    if tie_heavy:
        palette = np.array([0, 1, 0xFF00FF00FF00FF00, 2**64 - 1], dtype=np.uint64)
        return palette[rng.integers(0, len(palette), size=(n, words))]
    return rng.integers(0, 2**64, size=(n, words), dtype=np.uint64, endpoint=False)


def random_rows(seed: int, n: int, m: int, *, sort: bool) -> npt.NDArray[np.int64]:
    """``m`` row positions in ``[0, n)``, with repeats; ascending when ``sort``."""
    rows = np.random.default_rng(seed).integers(0, max(n, 1), size=m if n else 0, dtype=np.int64)
    return np.sort(rows) if sort else rows


def assert_same(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    """Same arrays, same dtypes, same shapes, same values."""
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def assert_scores_close(
    got: npt.NDArray[np.float32], want: npt.NDArray[np.float32], terms: np.ndarray
) -> None:
    """Float32 sums agree within the rounding bound for adding ``terms`` (``float64[m, d]``).

    Summing d float32 terms in any order is off by at most about ``d * eps * sum_j |term_j|``.
    """
    assert got.dtype == want.dtype == np.float32
    assert got.shape == want.shape
    dim = terms.shape[1]
    tolerance = 2 * max(dim, 1) * np.finfo(np.float32).eps * np.abs(terms).sum(axis=1)
    np.testing.assert_array_less(np.abs(got.astype(np.float64) - want), tolerance + 1e-30)


# Hamming distances ----------------------------------------------------------------------------


@pytest.mark.parametrize("n, words", CODE_SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_hamming_distances_agree(n: int, words: int, seed: int) -> None:
    codes = random_codes(seed, n, words)
    query = random_codes(seed + 100, 1, words)[0]
    got = kernels.hamming_distances(codes, query)
    assert_same((got,), (reference.hamming_distances(codes, query),))
    assert got.min(initial=0) >= 0 and got.max(initial=0) <= 64 * words


def test_hamming_distances_known_values() -> None:
    codes = np.array([[0, 0], [1, 0], [2**64 - 1, 2**64 - 1], [0b1011, 1 << 63]], dtype=np.uint64)
    query = np.zeros(2, dtype=np.uint64)
    for module in (kernels, reference):
        np.testing.assert_array_equal(module.hamming_distances(codes, query), [0, 1, 128, 4])


@pytest.mark.parametrize("n, words", CODE_SHAPES)
@pytest.mark.parametrize("sort", [True, False])
def test_hamming_distances_rows_agree(n: int, words: int, sort: bool) -> None:
    codes = random_codes(2, n, words)
    query = random_codes(3, 1, words)[0]
    rows = random_rows(4, n, 2 * n, sort=sort)
    assert_same(
        (kernels.hamming_distances_rows(codes, rows, query),),
        (reference.hamming_distances_rows(codes, rows, query),),
    )


# Hamming top-k ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n, words", CODE_SHAPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("tie_heavy", [False, True])
def test_hamming_topk_agrees(n: int, words: int, k: int, tie_heavy: bool) -> None:
    codes = random_codes(5, n, words, tie_heavy=tie_heavy)
    query = random_codes(6, 1, words, tie_heavy=tie_heavy)[0]
    got = kernels.hamming_topk(codes, query, k)
    assert_same(got, reference.hamming_topk(codes, query, k))
    assert got[0].shape == (min(k, n),)


def test_hamming_topk_breaks_ties_by_position() -> None:
    codes = np.array([[3], [1], [0], [1], [0], [7]], dtype=np.uint64)
    query = np.zeros(1, dtype=np.uint64)
    for module in (kernels, reference):
        positions, distances = module.hamming_topk(codes, query, 4)
        np.testing.assert_array_equal(positions, [2, 4, 1, 3])
        np.testing.assert_array_equal(distances, [0, 0, 1, 1])


def test_hamming_topk_many_queries_on_engine_width() -> None:
    """The 384-bit case the engine runs, with the query sometimes one of the rows."""
    codes = random_codes(7, 3000, 6)
    queries = np.concatenate([random_codes(8, 20, 6), codes[[0, 1234, 2999]]])
    for query in queries:
        assert_same(kernels.hamming_topk(codes, query, 160), reference.hamming_topk(codes, query, 160))


@pytest.mark.parametrize("n, words", CODE_SHAPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("tie_heavy", [False, True])
def test_hamming_topk_rows_agrees(n: int, words: int, k: int, sort: bool, tie_heavy: bool) -> None:
    codes = random_codes(9, n, words, tie_heavy=tie_heavy)
    query = random_codes(10, 1, words, tie_heavy=tie_heavy)[0]
    rows = random_rows(11, n, n // 2 + 3, sort=sort)
    got = kernels.hamming_topk_rows(codes, rows, query, k)
    assert_same(got, reference.hamming_topk_rows(codes, rows, query, k))
    assert got[0].shape == (min(k, rows.shape[0]),)
    assert np.isin(got[0], rows).all()


@pytest.mark.parametrize("n, words", CODE_SHAPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("tie_heavy", [False, True])
def test_hamming_topk_spans_agree(n: int, words: int, k: int, tie_heavy: bool) -> None:
    codes = random_codes(11, n, words, tie_heavy=tie_heavy)
    query = random_codes(12, 1, words)[0]
    cuts = np.sort(np.random.default_rng(13).integers(0, n + 1, size=8)).astype(np.int64)
    starts, stops = cuts[0::2], cuts[1::2]  # four spans with gaps (some empty)
    rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)]).astype(np.int64)
    got = kernels.hamming_topk_spans(codes, starts, stops, query, k)
    assert_same(got, reference.hamming_topk_spans(codes, starts, stops, query, k))
    assert_same(got, kernels.hamming_topk_rows(codes, rows, query, k))


@pytest.mark.parametrize("n, words", CODE_SHAPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("label_type", [np.int32, np.int64])
def test_hamming_topk_spans_allowed_agree(n: int, words: int, k: int, label_type: type) -> None:
    rng = np.random.default_rng(14)
    codes = random_codes(11, n, words, tie_heavy=True)
    query = random_codes(12, 1, words)[0]
    cuts = np.sort(rng.integers(0, n + 1, size=8)).astype(np.int64)
    starts, stops = cuts[0::2], cuts[1::2]
    labels = rng.permutation(n).astype(label_type)  # code position -> row, as an index keeps them
    allow = rng.random(n) < 0.4
    rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)]).astype(np.int64)
    got = kernels.hamming_topk_spans_allowed(codes, starts, stops, labels, allow, query, k)
    assert_same(got, reference.hamming_topk_spans_allowed(codes, starts, stops, labels, allow, query, k))
    assert_same(got, kernels.hamming_topk_rows(codes, rows[allow[labels[rows]]], query, k))


@pytest.mark.parametrize("module", [kernels, reference])
def test_hamming_topk_spans_rejects_overlapping_spans(module) -> None:
    codes = random_codes(1, 10, 2)
    with pytest.raises(ValueError, match="spans must be"):
        module.hamming_topk_spans(codes, np.array([0, 3], dtype=np.int64),
                                  np.array([5, 8], dtype=np.int64), codes[0], 2)


def test_hamming_topk_rows_breaks_ties_by_row_value_not_by_order_given() -> None:
    codes = np.array([[0], [1], [0], [1], [0]], dtype=np.uint64)
    rows = np.array([4, 3, 1, 2, 0], dtype=np.int64)
    query = np.zeros(1, dtype=np.uint64)
    for module in (kernels, reference):
        ids, distances = module.hamming_topk_rows(codes, rows, query, 3)
        np.testing.assert_array_equal(ids, [0, 2, 4])
        np.testing.assert_array_equal(distances, [0, 0, 0])
        ids, distances = module.hamming_topk_rows(codes, rows, query, 4)
        np.testing.assert_array_equal(ids, [0, 2, 4, 1])
        np.testing.assert_array_equal(distances, [0, 0, 0, 1])


def test_hamming_topk_rows_empty_rows() -> None:
    codes = random_codes(12, 10, 2)
    rows = np.empty(0, dtype=np.int64)
    for module in (kernels, reference):
        ids, distances = module.hamming_topk_rows(codes, rows, codes[0], 5)
        assert ids.shape == distances.shape == (0,)


@pytest.mark.parametrize("n, words", CODE_SHAPES)
@pytest.mark.parametrize("n_queries", [0, 1, 5])
@pytest.mark.parametrize("k", [0, 3, 10_000])
def test_hamming_topk_batch_agrees(n: int, words: int, n_queries: int, k: int) -> None:
    codes = random_codes(13, n, words, tie_heavy=True)
    queries = random_codes(14, n_queries, words, tie_heavy=True)
    got = kernels.hamming_topk_batch(codes, queries, k)
    assert_same(got, reference.hamming_topk_batch(codes, queries, k))
    assert got[0].shape == (n_queries, min(k, n))
    for qi in range(n_queries):
        assert_same((got[0][qi], got[1][qi]), kernels.hamming_topk(codes, queries[qi], k))


def random_cuts(seed: int, count: int, parts: int) -> npt.NDArray[np.int64]:
    """``parts + 1`` non-decreasing cuts from 0 to ``count`` (some ranges empty)."""
    inner = np.sort(np.random.default_rng(seed).integers(0, count + 1, size=max(parts - 1, 0)))
    return np.concatenate([[0], inner, [count]]).astype(np.int64)


@pytest.mark.parametrize("n, words", CODE_SHAPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("parts", [1, 3])
@pytest.mark.parametrize("tie_heavy", [False, True])
def test_hamming_topk_ranges_agree(n: int, words: int, k: int, parts: int, tie_heavy: bool) -> None:
    codes = random_codes(40, n, words, tie_heavy=tie_heavy)
    queries = random_codes(41, parts, words, tie_heavy=tie_heavy)
    cuts = random_cuts(42, n, parts)
    got = kernels.hamming_topk_ranges(codes, cuts, queries, k)
    assert_same(got, reference.hamming_topk_ranges(codes, cuts, queries, k))
    assert got[0].shape == (min(k, n),)
    # each range against its own query, merged by (distance, position): the same rows
    if n:
        seg_of = np.searchsorted(cuts, np.arange(n), side="right") - 1
        distances = np.array([reference.hamming_distances(codes[i:i + 1], queries[seg_of[i]])[0]
                              for i in range(n)], dtype=np.int32)
        want = np.lexsort((np.arange(n), distances))[:k]
        np.testing.assert_array_equal(got[0], want)


@pytest.mark.parametrize("n, words", CODE_SHAPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("tie_heavy", [False, True])
def test_hamming_topk_rows_ranges_agree(n: int, words: int, k: int, sort: bool, tie_heavy: bool) -> None:
    codes = random_codes(43, n, words, tie_heavy=tie_heavy)
    queries = random_codes(44, 3, words, tie_heavy=tie_heavy)
    rows = random_rows(45, n, n // 2 + 3, sort=sort)
    cuts = random_cuts(46, rows.size, 3)
    got = kernels.hamming_topk_rows_ranges(codes, rows, cuts, queries, k)
    assert_same(got, reference.hamming_topk_rows_ranges(codes, rows, cuts, queries, k))
    assert got[0].shape == (min(k, rows.shape[0]),)


def test_hamming_topk_ranges_refuse_cuts_that_do_not_cover() -> None:
    codes = random_codes(47, 10, 2)
    queries = random_codes(48, 2, 2)
    for module in (kernels, reference):
        with pytest.raises(ValueError, match="cuts"):
            module.hamming_topk_ranges(codes, np.array([0, 4, 9], dtype=np.int64), queries, 3)
        with pytest.raises(ValueError, match="cuts"):
            module.hamming_topk_ranges(codes, np.array([0, 10], dtype=np.int64), queries, 3)


@pytest.mark.parametrize("words", [4, 6, 12])  # the two widths with their own build, and one without
@pytest.mark.parametrize("k", [1, 160, 7000])
@pytest.mark.parametrize("tie_heavy", [False, True])
def test_hamming_topk_batch_spans_chunks_and_query_groups(words: int, k: int, tie_heavy: bool) -> None:
    """Enough rows for three cache-sized chunks and enough queries for three groups."""
    n = 2 * kernels._CHUNK_BYTES // (8 * words) + 17
    codes = random_codes(21, n, words, tie_heavy=tie_heavy)
    n_queries = 2 * kernels._QUERY_GROUP + 5
    queries = np.concatenate([random_codes(22, n_queries, words, tie_heavy=tie_heavy), codes[:3]])
    assert_same(
        kernels.hamming_topk_batch(codes, queries, k), reference.hamming_topk_batch(codes, queries, k)
    )


# Row scoring -----------------------------------------------------------------------------------

DIMS = [0, 1, 3, 63, 100, 384, 385]


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("m", [0, 1, 50])
def test_int8_scores_rows_agree(dim: int, m: int) -> None:
    rng = np.random.default_rng(15)
    codes = rng.integers(-128, 128, size=(40, dim), dtype=np.int8)
    rows = rng.integers(0, 40, size=m, dtype=np.int64)
    qscaled = rng.standard_normal(dim).astype(np.float32)
    got = kernels.int8_scores_rows(codes, rows, qscaled)
    want = reference.int8_scores_rows(codes, rows, qscaled)
    assert_scores_close(got, want, codes[rows].astype(np.float64) * qscaled)


def test_int8_scores_rows_extremes_are_exact() -> None:
    codes = np.array([[-128, 127, 0], [1, -1, 2]], dtype=np.int8)
    qscaled = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    rows = np.array([1, 0, 0], dtype=np.int64)
    for module in (kernels, reference):
        np.testing.assert_array_equal(module.int8_scores_rows(codes, rows, qscaled), [0, 126, 126])


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("m", [0, 1, 50])
def test_float_scores_rows_agree(dim: int, m: int) -> None:
    rng = np.random.default_rng(16)
    vectors = rng.standard_normal((40, dim)).astype(np.float32)
    rows = rng.integers(0, 40, size=m, dtype=np.int64)
    query = rng.standard_normal(dim).astype(np.float32)
    got = kernels.float_scores_rows(vectors, rows, query)
    want = reference.float_scores_rows(vectors, rows, query)
    assert_scores_close(got, want, vectors[rows].astype(np.float64) * query)


@pytest.mark.parametrize("dim", [1, 63, 96, 384, 385])
@pytest.mark.parametrize("m", [0, 1, 50])
def test_sign_scores_rows_agree(dim: int, m: int) -> None:
    from vecstore.index.ivf_binary import centred_codes, code_words, sign_score_table

    rng = np.random.default_rng(17)
    x = rng.standard_normal((40, dim)).astype(np.float32)
    codes = centred_codes(x, np.zeros(dim, dtype=np.float32))
    rows = rng.integers(0, 40, size=m, dtype=np.int64)
    query = rng.standard_normal(dim).astype(np.float32)
    table = sign_score_table(query, code_words(dim))
    got = kernels.sign_scores_rows(codes, rows, table)
    want = reference.sign_scores_rows(codes, rows, table)
    # the definition: the query summed over each code's set bits (the signs of x)
    terms = np.where(x[rows] > 0, query, 0).astype(np.float64)
    assert_scores_close(got, want, terms)
    assert_scores_close(want, terms.sum(axis=1).astype(np.float32), terms)


def test_sign_scores_rows_rejects_a_table_of_another_width() -> None:
    codes = np.zeros((3, 2), dtype=np.uint64)
    for module in (kernels, reference):
        with pytest.raises(ValueError, match="table must be"):
            module.sign_scores_rows(codes, np.arange(3, dtype=np.int64),
                                    np.zeros((8, 256), dtype=np.float32))


# Reading rows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [kernels, reference])
def test_read_rows_reads_runs_in_any_order_and_stops_where_the_file_ends(module, tmp_path) -> None:
    table = np.arange(50 * 12, dtype=np.uint8).reshape(50, 12)
    path = tmp_path / "rows.bin"
    path.write_bytes(b"header!" + table.tobytes())
    rows = np.array([3, 4, 5, 9, 0, 1, 49, 7], dtype=np.int64)  # runs, out of order, the last row
    fd = os.open(path, os.O_RDONLY)
    try:
        out = np.zeros(rows.size * 12, dtype=np.uint8)
        assert module.read_rows(fd, 7, 12, rows, out) == rows.size
        np.testing.assert_array_equal(out.reshape(-1, 12), table[rows])
        # a row past the end: the rows before it are read, and the count says where it stopped
        past = np.array([2, 50, 51], dtype=np.int64)
        out = np.zeros(past.size * 12, dtype=np.uint8)
        assert module.read_rows(fd, 7, 12, past, out) == 1
        np.testing.assert_array_equal(out[:12], table[2])
        assert module.read_rows(fd, 7, 12, np.zeros(0, dtype=np.int64), out[:0]) == 0
        with pytest.raises(ValueError, match="out must hold"):
            module.read_rows(fd, 7, 12, rows, out)
    finally:
        os.close(fd)


# Top-k over scores -----------------------------------------------------------------------------


@pytest.mark.parametrize("m", [0, 1, 7, 1000, 3000])
@pytest.mark.parametrize("k", [0, 1, 5, 300, 999, 1000, 5000])
@pytest.mark.parametrize("seed", [0, 1])
def test_topk_scores_agree(m: int, k: int, seed: int) -> None:
    """Both of the kernel's ways (a heap below 256 results, a partition from there) agree."""
    rng = np.random.default_rng(seed)
    # Rounded to few values so ties are common; infinities and both zeros among them
    scores = np.round(rng.standard_normal(m), 1).astype(np.float32)
    scores[::97] = np.inf
    scores[1::89] = -np.inf
    scores[2::13] = -0.0
    got = kernels.topk_scores(scores, k)
    assert got.dtype == np.int64 and got.shape == (min(k, m),)
    np.testing.assert_array_equal(got, reference.topk_scores(scores, k))


def test_topk_scores_special_values() -> None:
    nan, inf = np.nan, np.inf
    scores = np.array([nan, 1.0, -inf, 0.0, -0.0, inf, nan, 1.0, -1.0], dtype=np.float32)
    expected = [5, 1, 7, 3, 4, 8, 2, 0, 6]  # inf, the 1.0s, both zeros in index order, ..., NaNs
    for module in (kernels, reference):
        np.testing.assert_array_equal(module.topk_scores(scores, 9), expected)
        np.testing.assert_array_equal(module.topk_scores(scores, 4), expected[:4])


# Inputs as the engine passes them -------------------------------------------------------------


def read_only(array: np.ndarray) -> np.ndarray:
    """A read-only copy, like the memory-mapped segment columns the engine scans."""
    array = array.copy()
    array.setflags(write=False)
    return array


def test_read_only_inputs() -> None:
    rng = np.random.default_rng(19)
    codes = read_only(random_codes(20, 300, 6))
    query = read_only(codes[7])
    rows = read_only(np.sort(rng.choice(300, 120, replace=False)).astype(np.int64))
    int8_codes = read_only(rng.integers(-128, 128, size=(300, 33), dtype=np.int8))
    vectors = read_only(rng.standard_normal((300, 33)).astype(np.float32))
    q33 = read_only(rng.standard_normal(33).astype(np.float32))
    scores = read_only(rng.standard_normal(300).astype(np.float32))

    assert_same(kernels.hamming_topk(codes, query, 20), reference.hamming_topk(codes, query, 20))
    assert_same(
        kernels.hamming_topk_rows(codes, rows, query, 20),
        reference.hamming_topk_rows(codes, rows, query, 20),
    )
    assert_same(
        kernels.hamming_topk_batch(codes, codes[:4], 20),
        reference.hamming_topk_batch(codes, codes[:4], 20),
    )
    assert_scores_close(
        kernels.int8_scores_rows(int8_codes, rows, q33),
        reference.int8_scores_rows(int8_codes, rows, q33),
        int8_codes[rows].astype(np.float64) * q33,
    )
    assert_scores_close(
        kernels.float_scores_rows(vectors, rows, q33),
        reference.float_scores_rows(vectors, rows, q33),
        vectors[rows].astype(np.float64) * q33,
    )
    np.testing.assert_array_equal(kernels.topk_scores(scores, 9), reference.topk_scores(scores, 9))


def test_native_imports_nothing_from_vecstore() -> None:
    """native/ sits below every other layer (it ships as vecstore._native but must not use it)."""
    for module in (kernels, reference):
        tree = ast.parse(Path(module.__file__ or "").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                # `from .. import x` climbs out of native/ into vecstore.
                names = [node.module or ""] if node.level == 0 else ["vecstore"] * (node.level > 1)
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(name.split(".")[0] == "vecstore" for name in names), (
                f"{module.__name__} imports {names}"
            )


# Errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [kernels, reference], ids=["kernels", "reference"])
def test_negative_k_raises(module: object) -> None:
    codes = random_codes(17, 4, 2)
    rows = np.arange(4, dtype=np.int64)
    with pytest.raises(ValueError, match="k must be >= 0"):
        module.hamming_topk(codes, codes[0], -1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="k must be >= 0"):
        module.hamming_topk_rows(codes, rows, codes[0], -1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="k must be >= 0"):
        module.hamming_topk_batch(codes, codes, -1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="k must be >= 0"):
        module.topk_scores(np.zeros(3, dtype=np.float32), -1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", [kernels, reference], ids=["kernels", "reference"])
def test_query_width_mismatch_raises(module: object) -> None:
    codes = random_codes(18, 4, 3)
    short = codes[0, :1].copy()
    rows = np.arange(4, dtype=np.int64)
    floats = np.zeros((4, 3), dtype=np.float32)
    calls = [
        lambda: module.hamming_distances(codes, short),  # type: ignore[attr-defined]
        lambda: module.hamming_distances_rows(codes, rows, short),  # type: ignore[attr-defined]
        lambda: module.hamming_topk(codes, short, 2),  # type: ignore[attr-defined]
        lambda: module.hamming_topk_rows(codes, rows, short, 2),  # type: ignore[attr-defined]
        lambda: module.hamming_topk_batch(codes, short[None, :], 2),  # type: ignore[attr-defined]
        lambda: module.int8_scores_rows(  # type: ignore[attr-defined]
            floats.astype(np.int8), rows, np.zeros(2, dtype=np.float32)
        ),
        lambda: module.float_scores_rows(  # type: ignore[attr-defined]
            floats, rows, np.zeros(2, dtype=np.float32)
        ),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="query length"):
            call()


# Properties ------------------------------------------------------------------------------------

# Few distinct words, so distances tie often; the extremes of the word range are included.
WORDS = st.sampled_from([0, 1, 3, 2**63, 0x00FF00FF00FF00FF, 2**64 - 1])


@st.composite
def code_arrays(draw: st.DrawFn) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """A ``uint64[n, w]`` code array and a ``uint64[w]`` query."""
    words = draw(st.integers(0, 3))
    n = draw(st.integers(0, 40))
    flat = draw(st.lists(WORDS, min_size=n * words, max_size=n * words))
    query = draw(st.lists(WORDS, min_size=words, max_size=words))
    codes = np.array(flat, dtype=np.uint64).reshape(n, words)
    return codes, np.array(query, dtype=np.uint64)


@SETTINGS
@given(data=code_arrays(), k=st.integers(0, 50), row_picks=st.lists(st.integers(0, 10**6)))
def test_hamming_topk_property(
    data: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]], k: int, row_picks: list[int]
) -> None:
    codes, query = data
    assert_same(kernels.hamming_topk(codes, query, k), reference.hamming_topk(codes, query, k))
    n = codes.shape[0]
    rows = np.array([p % n for p in row_picks] if n else [], dtype=np.int64)
    assert_same(
        kernels.hamming_topk_rows(codes, rows, query, k),
        reference.hamming_topk_rows(codes, rows, query, k),
    )


@SETTINGS
@given(
    scores=st.lists(
        st.floats(width=32, allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.0]),
        max_size=60,
    ),
    k=st.integers(0, 70),
)
def test_topk_scores_property(scores: list[float], k: int) -> None:
    array = np.array(scores, dtype=np.float32)
    np.testing.assert_array_equal(kernels.topk_scores(array, k), reference.topk_scores(array, k))


@pytest.mark.parametrize("dim", [0, 3, 96, 384])
@pytest.mark.parametrize("sizes", [(0,), (5,), (7, 0, 12), (1, 30, 4, 9)])
def test_int8_scores_rows_ranges_agree(dim: int, sizes: tuple[int, ...]) -> None:
    rng = np.random.default_rng(16)
    codes = rng.integers(-128, 128, size=(60, dim), dtype=np.int8)
    cuts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows = np.sort(rng.integers(0, 60, size=int(cuts[-1]), dtype=np.int64))
    qscaled = rng.standard_normal((len(sizes), dim)).astype(np.float32)
    consts = rng.standard_normal(len(sizes)).astype(np.float32)
    got = kernels.int8_scores_rows_ranges(codes, rows, cuts, qscaled, consts)
    want = reference.int8_scores_rows_ranges(codes, rows, cuts, qscaled, consts)
    # each range against its own query: the same sums as one int8_scores_rows call per range
    seg = np.repeat(np.arange(len(sizes)), np.diff(cuts))
    terms = np.column_stack([codes[rows].astype(np.float64) * qscaled[seg], consts[seg]])
    assert_scores_close(got, want, terms)
    for s in range(len(sizes)):
        a, b = cuts[s], cuts[s + 1]
        one = reference.int8_scores_rows(codes, rows[a:b], qscaled[s]) + consts[s]
        assert_scores_close(got[a:b], one, terms[a:b])


@pytest.mark.parametrize("module", [kernels, reference])
@pytest.mark.parametrize("cuts", [[0, 2], [0, 3, 2], [1, 3], [0, 1]])
def test_int8_scores_rows_ranges_rejects_bad_cuts(module, cuts: list[int]) -> None:
    codes = np.zeros((4, 8), dtype=np.int8)
    rows = np.arange(3, dtype=np.int64)
    qscaled = np.zeros((len(cuts) - 1, 8), dtype=np.float32)
    consts = np.zeros(len(cuts) - 1, dtype=np.float32)
    with pytest.raises(ValueError, match="cuts"):
        module.int8_scores_rows_ranges(codes, rows, np.array(cuts, dtype=np.int64), qscaled, consts)


def _segment_bases(sizes: tuple[int, ...]) -> npt.NDArray[np.int64]:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@pytest.mark.parametrize("dim", [0, 3, 96, 384])
@pytest.mark.parametrize("sizes", [(5,), (7, 0, 12), (1, 30, 4, 9)])
@pytest.mark.parametrize("sort", [True, False])
def test_int8_scores_rows_segments_agree(dim: int, sizes: tuple[int, ...], sort: bool) -> None:
    rng = np.random.default_rng(17)
    bases = _segment_bases(sizes)
    n = int(bases[-1])
    codes = rng.integers(-128, 128, size=(n, dim), dtype=np.int8)
    rows = random_rows(18, n, 40, sort=sort)
    query = rng.standard_normal(dim).astype(np.float32)
    scales = rng.uniform(0.001, 0.1, size=(len(sizes), dim)).astype(np.float32)
    origins = rng.standard_normal((len(sizes), dim))
    got = kernels.int8_scores_rows_segments(codes, rows, bases, query, scales, origins)
    want = reference.int8_scores_rows_segments(codes, rows, bases, query, scales, origins)
    seg = np.searchsorted(bases, rows, side="right") - 1
    qscaled = (query * scales).astype(np.float32)
    terms = np.column_stack([codes[rows].astype(np.float64) * qscaled[seg],
                             origins[seg] * query.astype(np.float64)])
    assert_scores_close(got, want, terms)
    # what the per-segment fold (Quantizer.query_int8 + int8_scores_rows) gives, row by row
    for i, (row, s) in enumerate(zip(rows.tolist(), seg.tolist(), strict=True)):
        one = reference.int8_scores_rows(codes, np.array([row]), qscaled[s])[0] + np.float32(
            np.dot(query.astype(np.float64), origins[s]))
        assert_scores_close(got[i:i + 1], np.array([one], np.float32), terms[i:i + 1])


@pytest.mark.parametrize("dim", [1, 96, 384])
@pytest.mark.parametrize("sizes", [(5,), (7, 0, 12), (1, 30, 4, 9)])
@pytest.mark.parametrize("sort", [True, False])
def test_float_scores_rows_segments_agree(dim: int, sizes: tuple[int, ...], sort: bool) -> None:
    rng = np.random.default_rng(19)
    bases = _segment_bases(sizes)
    # each segment its own array (as the memory-mapped segments are), read-only
    segments = [rng.standard_normal((size, dim)).astype(np.float32) for size in sizes]
    for v in segments:
        v.flags.writeable = False
    addresses = np.array([v.ctypes.data for v in segments], dtype=np.int64)
    rows = random_rows(20, int(bases[-1]), 40, sort=sort)
    query = rng.standard_normal(dim).astype(np.float32)
    got = kernels.float_scores_rows_segments(addresses, bases, rows, query)
    want = reference.float_scores_rows_segments(addresses, bases, rows, query)
    every = np.concatenate(segments)
    terms = every[rows].astype(np.float64) * query
    assert_scores_close(got, want, terms)
    assert_scores_close(got, reference.float_scores_rows(every, rows, query), terms)


def test_rows_read_from_files_survive_threads_rescoring_at_once(tmp_path: Path) -> None:
    """Two threads rescoring from the files at once find what one thread finds: the rows a
    query read stay its own until they are scored (an array freed before the scoring read it
    through its address was overwritten by the other thread's next allocation)."""
    rng = np.random.default_rng(37)
    dim, sizes = 64, (500, 700)
    bases = _segment_bases(sizes)
    segments = [rng.standard_normal((size, dim)).astype(np.float32) for size in sizes]
    fds, offsets = segment_files(tmp_path, segments)
    n = int(bases[-1])
    norms = np.linalg.norm(np.concatenate(segments), axis=1).astype(np.float32)
    labels = rng.integers(0, n, size=(8, 40)).astype(np.int64)
    queries = rng.standard_normal((8, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    args = (labels, np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.bool_), queries,
            np.ones(8), offsets, fds, bases, norms, 0, 10)
    want = kernels.rescore_labels_batch(*args)
    failures: list[int] = []

    def run() -> None:
        for _ in range(600):
            got = kernels.rescore_labels_batch(*args)
            failures.append(int(not all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for fd in fds.tolist():
        os.close(fd)
    assert len(failures) == 1200 and sum(failures) == 0, f"{sum(failures)} of 1,200 calls differed"


@pytest.mark.parametrize("dim", [1, 96, 384])
@pytest.mark.parametrize("sizes", [(5,), (7, 0, 12), (1, 30, 4, 9)])
def test_float_scores_rows_files_score_as_the_mapped_rows(dim: int, sizes: tuple[int, ...],
                                                          tmp_path: Path) -> None:
    """Rows read from the segments' files score as the same rows read through memory, bit for
    bit (one summation for both); the twin within rounding. A file that ends before a row
    stops the read there, and the count of rows read says where."""
    rng = np.random.default_rng(23)
    bases = _segment_bases(sizes)
    segments = [rng.standard_normal((size, dim)).astype(np.float32) for size in sizes]
    addresses = np.array([v.ctypes.data for v in segments], dtype=np.int64)
    fds, offsets = segment_files(tmp_path, segments)
    rows = random_rows(20, int(bases[-1]), 40, sort=False)
    query = rng.standard_normal(dim).astype(np.float32)
    want = kernels.float_scores_rows_segments(addresses, bases, rows, query)
    for module in (kernels, reference):
        out = np.full(rows.size, np.nan, dtype=np.float32)
        assert module.float_scores_rows_files(fds, offsets, bases, rows, query, out) == rows.size
        if module is kernels:
            np.testing.assert_array_equal(out, want)
        else:
            assert_scores_close(out, want, np.concatenate(segments)[rows].astype(np.float64) * query)
    last = len(sizes) - 1  # the last segment's file cut short by one row
    os.truncate(tmp_path / f"segment{last}.bin", int(offsets[last]) + (sizes[last] - 1) * dim * 4)
    cut = np.array([int(bases[0]), int(bases[-1]) - 1, int(bases[0])], dtype=np.int64)
    for module in (kernels, reference):
        assert module.float_scores_rows_files(fds, offsets, bases, cut, query,
                                              np.empty(3, dtype=np.float32)) == 1
    for fd in fds.tolist():
        os.close(fd)


@pytest.mark.parametrize("module", [kernels, reference])
def test_segment_kernels_refuse_rows_outside_the_segments(module) -> None:
    bases = np.array([0, 2, 4], dtype=np.int64)
    vectors = np.zeros((4, 8), dtype=np.float32)
    addresses = np.array([vectors.ctypes.data, vectors[2:].ctypes.data], dtype=np.int64)
    for bad in (4, -1):
        rows = np.array([0, bad], dtype=np.int64)
        with pytest.raises(IndexError, match="out of range"):
            module.float_scores_rows_segments(addresses, bases, rows, np.zeros(8, np.float32))
        with pytest.raises(IndexError, match="out of range"):
            # (no file behind these descriptors: the row is refused before anything is read)
            module.float_scores_rows_files(np.full(2, -1, np.int64), np.zeros(2, np.int64), bases,
                                           rows[1:], np.zeros(8, np.float32), np.empty(1, np.float32))
        with pytest.raises(IndexError, match="out of range"):
            module.int8_scores_rows_segments(np.zeros((4, 8), np.int8), rows, bases,
                                             np.zeros(8, np.float32), np.ones((2, 8), np.float32),
                                             np.zeros((2, 8)))


@pytest.mark.parametrize("words", [4, 6, 12])
@pytest.mark.parametrize("k", [0, 1, 60, 5000])
@pytest.mark.parametrize("tie_heavy", [False, True])
def test_hamming_topk_batch_ranges_is_each_querys_rows_ranges(words: int, k: int, tie_heavy: bool) -> None:
    n = 3000  # several chunks of codes, two query groups
    codes = random_codes(49, n, words, tie_heavy=tie_heavy)
    rows = random_rows(50, n, 2000, sort=True)
    cuts = random_cuts(51, rows.size, 4)
    queries = random_codes(52, 40 * 4, words, tie_heavy=tie_heavy).reshape(40, 4, words)
    got = kernels.hamming_topk_batch_ranges(codes, rows, cuts, queries, k)
    assert_same(got, reference.hamming_topk_batch_ranges(codes, rows, cuts, queries, k))
    assert got[0].shape == (40, min(k, rows.size))
    for qi in (0, 17, 39):
        one = kernels.hamming_topk_rows_ranges(codes, rows, cuts, queries[qi], k)
        assert_same((got[0][qi], got[1][qi]), one)
    # every row (rows None): positions, as hamming_topk_ranges
    cuts = random_cuts(55, n, 4)
    got = kernels.hamming_topk_batch_ranges(codes, None, cuts, queries, k)
    assert_same(got, reference.hamming_topk_batch_ranges(codes, None, cuts, queries, k))
    for qi in (0, 17, 39):
        assert_same((got[0][qi], got[1][qi]), kernels.hamming_topk_ranges(codes, cuts, queries[qi], k))


@pytest.mark.parametrize("module", [kernels, reference])
def test_hamming_topk_batch_ranges_refuses_unsorted_rows_and_bad_cuts(module) -> None:
    codes = random_codes(53, 10, 2)
    queries = random_codes(54, 4, 2).reshape(2, 2, 2)
    with pytest.raises(ValueError, match="sorted"):
        module.hamming_topk_batch_ranges(codes, np.array([3, 1, 2], dtype=np.int64),
                                         np.array([0, 1, 3], dtype=np.int64), queries, 2)
    with pytest.raises(ValueError, match="cuts"):
        module.hamming_topk_batch_ranges(codes, np.array([1, 2, 3], dtype=np.int64),
                                         np.array([0, 3], dtype=np.int64), queries, 2)


def test_parallel_threads_caps_numba_on_the_calling_thread_and_restores_it() -> None:
    import numba
    from vecstore._native import loader

    loader.compile_all()
    before = numba.get_num_threads()
    with loader.parallel_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with loader.parallel_threads(10_000):  # more than Numba has: all it has
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    with loader.parallel_threads(None):
        assert numba.get_num_threads() == before


def _rescoring_inputs(rng: np.random.Generator, sizes: tuple[int, ...], dim: int) -> tuple:
    """A table version's int8 codes, float32 segments (kept alive: the kernels read them through
    ``addresses``), their norms, and each segment's int8 scales and origins."""
    n = sum(sizes)
    codes = rng.integers(-128, 128, size=(n, dim), dtype=np.int8)
    segments = [rng.standard_normal((size, dim)).astype(np.float32) for size in sizes]
    addresses = np.array([v.ctypes.data for v in segments], dtype=np.int64)
    norms = np.linalg.norm(np.concatenate(segments), axis=1).astype(np.float32)
    scales = rng.uniform(0.001, 0.1, size=(len(sizes), dim)).astype(np.float32)
    origins = rng.standard_normal((len(sizes), dim))
    return codes, segments, addresses, norms, scales, origins


@pytest.mark.parametrize("sizes", [(300,), (120, 0, 200, 90)])
@pytest.mark.parametrize(("n2", "k"), [(40, 10), (500, 10), (3, 10)])
def test_two_stage_cosine_batch_is_each_querys_stages(sizes: tuple[int, ...], n2: int, k: int) -> None:
    """The batch kernel finds, query by query, what the scan's int8 and float32 stages find
    with the per-query kernels (the scan's own path), and agrees with its twin."""
    rng = np.random.default_rng(23)
    dim = 48
    bases = _segment_bases(sizes)
    n = int(bases[-1])
    codes, _segments, addresses, norms, scales, origins = _rescoring_inputs(rng, sizes, dim)
    queries = rng.standard_normal((6, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    candidates = np.sort(np.stack([rng.choice(n, 160, replace=False) for _ in queries]), axis=1)
    got_rows, got_scores = kernels.two_stage_cosine_batch(codes, candidates, bases, queries, scales,
                                                          origins, addresses, norms, n2, k)
    twin_rows, twin_scores = reference.two_stage_cosine_batch(codes, candidates, bases, queries, scales,
                                                              origins, addresses, norms, n2, k)
    assert got_rows.shape == (len(queries), min(k, n2))
    np.testing.assert_array_equal(got_rows, twin_rows)
    np.testing.assert_allclose(got_scores, twin_scores, rtol=1e-5, atol=1e-6)
    for q, rows1 in enumerate(candidates):
        approx = kernels.int8_scores_rows_segments(codes, rows1, bases, queries[q], scales, origins)
        keep = np.sort(rows1[kernels.topk_scores(approx, n2)])
        dots = kernels.float_scores_rows_segments(addresses, bases, keep, queries[q])
        exact = (dots / np.maximum(norms[keep], np.float32(2.0 ** -60))).astype(np.float32)
        order = kernels.topk_scores(exact, k)
        np.testing.assert_array_equal(got_rows[q], keep[order])
        np.testing.assert_array_equal(got_scores[q], exact[order])


@pytest.mark.parametrize("dim", [64, 70, 384])
def test_sign_bits_segments_are_packbits_of_each_segments_signs(dim: int) -> None:
    rng = np.random.default_rng(29)
    centers = rng.standard_normal((3, dim)).astype(np.float32)
    query = rng.standard_normal(dim).astype(np.float32)
    query[:4] = centers[0, :4]  # equal to the centre: not above it, bit clear
    words = -(-dim // 64)
    got = kernels.sign_bits_segments(query, centers, words)
    for s in range(3):
        packed = np.packbits(query > centers[s], bitorder="little")
        want = np.pad(packed, (0, 8 * words - packed.size)).view(np.uint64)
        np.testing.assert_array_equal(got[s], want)
    np.testing.assert_array_equal(reference.sign_bits_segments(query, centers, words), got)
    with pytest.raises(ValueError):
        kernels.sign_bits_segments(query, centers, words - 1 if dim > 64 else 0)


@pytest.mark.parametrize("sizes", [(300,), (120, 0, 200, 90)])
@pytest.mark.parametrize("live", [False, True])
@pytest.mark.parametrize(("n1", "n2", "k"), [(160, 40, 10), (40, 40, 10), (1000, 250, 25)])
def test_two_stage_cosine_scan_is_the_three_stages_in_one_call(
        sizes: tuple[int, ...], live: bool, n1: int, n2: int, k: int) -> None:
    """One call finds what the scan's stages find one kernel at a time: the query's sign bits
    per segment, the Hamming top ``n1`` (of all rows, or of the live ones), then the int8 and
    float32 stages of ``two_stage_cosine_batch``; and agrees with its twin."""
    rng = np.random.default_rng(31)
    dim = 96
    bases = _segment_bases(sizes)
    n = int(bases[-1])
    codes, _segments, addresses, norms, scales, origins = _rescoring_inputs(rng, sizes, dim)
    binary = rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64)
    centers = (0.1 * rng.standard_normal((len(sizes), dim))).astype(np.float32)
    rows = np.sort(rng.choice(n, n // 2, replace=False)) if live else np.empty(0, dtype=np.int64)
    for _ in range(4):
        query = rng.standard_normal(dim).astype(np.float32)
        query /= np.linalg.norm(query)
        args = (query, centers, binary, rows, not live, codes, bases, scales, origins, addresses,
                norms, n1, n2, k)
        got_rows, got_scores = kernels.two_stage_cosine_scan(*args)
        twin_rows, twin_scores = reference.two_stage_cosine_scan(*args)
        np.testing.assert_array_equal(got_rows, twin_rows)
        np.testing.assert_allclose(got_scores, twin_scores, rtol=1e-5, atol=1e-6)
        bits = kernels.sign_bits_segments(query, centers, 2)
        if live:
            cand, _ = kernels.hamming_topk_rows_ranges(binary, rows, np.searchsorted(rows, bases), bits, n1)
        else:
            cand, _ = kernels.hamming_topk_ranges(binary, bases, bits, n1)
        want_rows, want_scores = kernels.two_stage_cosine_batch(
            codes, np.sort(cand)[None, :], bases, query[None, :], scales, origins, addresses, norms, n2, k)
        np.testing.assert_array_equal(got_rows, want_rows[0])
        np.testing.assert_array_equal(got_scores, want_scores[0])
        assert got_rows.size == min(k, n2, n1, rows.size if live else n)
        if live:
            assert np.isin(got_rows, rows).all()


def segment_files(tmp_path: Path, segments: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``segments`` written to one file each behind a header of a few bytes (as a segment's
    vectors lie inside its Arrow file): the open descriptors and the vectors' offsets."""
    fds, offsets = [], []
    for i, v in enumerate(segments):
        path = tmp_path / f"segment{i}.bin"
        path.write_bytes(b"header" * (i + 1) + v.tobytes())
        fds.append(os.open(path, os.O_RDONLY))
        offsets.append(6 * (i + 1))
    return np.array(fds, dtype=np.int64), np.array(offsets, dtype=np.int64)


@pytest.mark.parametrize("metric", reference.METRICS)
@pytest.mark.parametrize("sizes", [(300,), (120, 0, 200, 90)])
@pytest.mark.parametrize("filtered", [False, True])
@pytest.mark.parametrize("k", [1, 10, 50])
def test_rescore_labels_batch_is_each_querys_rescoring(metric: str, sizes: tuple[int, ...],
                                                       filtered: bool, k: int, tmp_path: Path) -> None:
    """The batch rescoring finds, query by query, what an index query's own rescoring finds
    with the per-query kernels (its labels' live or allowed rows, deduplicated and sorted,
    scored exactly, the best k), and agrees with its twin; labels repeat, miss (-1) and point
    at deleted rows; k = 50 is more than some queries' candidates. Reading the rows from the
    segments' files (``fds``) finds the same rows and scores, bit for bit."""
    rng = np.random.default_rng(31)
    dim = 40
    bases = _segment_bases(sizes)
    n = int(bases[-1])
    segments = [rng.standard_normal((size, dim)).astype(np.float32) for size in sizes]
    addresses = np.array([v.ctypes.data for v in segments], dtype=np.int64)
    fds, offsets = segment_files(tmp_path, segments)
    norms = np.linalg.norm(np.concatenate(segments), axis=1).astype(np.float32)
    label_rows = rng.permutation(n).astype(np.int64)
    label_rows[::11] = -1  # deleted rows
    allow = (rng.random(n) < 0.6) & (label_rows >= 0) if filtered else np.zeros(0, dtype=np.bool_)
    labels = rng.integers(-1, n, size=(9, 60)).astype(np.int64)
    labels[:, 50:] = -1  # misses, padded at the end
    labels[0, 10:20] = labels[0, :10]  # repeats
    queries = rng.standard_normal((9, dim)).astype(np.float32)
    if metric == "cosine":
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    q_norm2 = np.einsum("ij,ij->i", queries.astype(np.float64), queries.astype(np.float64))
    code = reference.METRICS.index(metric)
    args = (labels, label_rows, allow, queries, q_norm2, addresses, np.zeros(0, dtype=np.int64),
            bases, norms, code, k)
    rows, scores, kept, scored = kernels.rescore_labels_batch(*args)
    twin = reference.rescore_labels_batch(*args)
    assert rows.shape == scores.shape == (len(queries), k) and rows.dtype == np.int64
    for got, want in zip((rows, kept, scored), (twin[0], twin[2], twin[3]), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, twin[1], rtol=1e-5, atol=1e-4)
    from_files = (*args[:5], offsets, fds, *args[7:])
    for got, want in zip(kernels.rescore_labels_batch(*from_files), (rows, scores, kept, scored),
                         strict=True):
        np.testing.assert_array_equal(got, want)
    # the twin scores a block of rows read from the files by BLAS: rows, kept and scored the
    # same, scores within rounding
    twin_files = reference.rescore_labels_batch(*from_files)
    for i in (0, 2, 3):
        np.testing.assert_array_equal(twin_files[i], twin[i])
    np.testing.assert_allclose(twin_files[1], twin[1], rtol=1e-5, atol=1e-6)
    for fd in fds.tolist():
        os.close(fd)
    for q in range(len(queries)):
        found = labels[q][labels[q] >= 0]
        found = found[allow[found]] if filtered else found[label_rows[found] >= 0]
        assert kept[q] == found.size
        alive = np.unique(label_rows[found])
        assert scored[q] == alive.size
        dots = kernels.float_scores_rows_segments(addresses, bases, alive, queries[q])
        if metric == "cosine":
            exact = (dots / np.maximum(norms[alive], np.float32(2.0 ** -60))).astype(np.float32)
        elif metric == "l2":
            # a Python float, as the Scorer's q_norm2: the arithmetic stays float32
            exact = (2.0 * dots - norms[alive] * norms[alive] - float(q_norm2[q])).astype(np.float32)
        else:
            exact = dots
        order = kernels.topk_scores(exact, k)
        np.testing.assert_array_equal(rows[q, :order.size], alive[order])
        np.testing.assert_array_equal(scores[q, :order.size], exact[order])
        assert (rows[q, order.size:] == -1).all() and np.isneginf(scores[q, order.size:]).all()
    assert (scored < k).any() if k == 50 else (scored >= k).all()
