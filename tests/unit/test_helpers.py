"""tests/helpers.py's comparison of results from two code paths: it must tolerate the last bits
and ties, and still catch every real difference."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_same_hits


def hits(*pairs: tuple[str, float], **fields: object) -> list[dict[str, object]]:
    return [{"id": i, "score": s, "year": 2020, **fields} for i, s in pairs]


def test_last_bits_and_ties_are_tolerated():
    want = hits(("a", -0.13441600), ("b", -0.2), ("c", -0.5))
    assert_same_hits(hits(("a", -0.13441598), ("b", -0.2), ("c", -0.5)), want)
    # b and c tie within the tolerance: either order is right
    assert_same_hits(hits(("a", 0.9), ("c", 0.5000001), ("b", 0.5)), hits(("a", 0.9), ("b", 0.5), ("c", 0.5)))
    # a tie at the cut-off lets either row in
    assert_same_hits(hits(("a", 0.9), ("x", 0.3)), hits(("a", 0.9), ("y", 0.3000001)))
    assert_same_hits([], [])
    assert_same_hits((["a", "b"], np.float32([0.5, 0.25])), (["a", "b"], [0.5, 0.25]))


@pytest.mark.parametrize(("got", "want", "message"), [
    (hits(("a", 0.9), ("b", 0.5)), hits(("b", 0.9), ("a", 0.5)), "scored"),
    (hits(("a", 0.9), ("b", 0.5)), hits(("a", 0.9), ("b", 0.501)), "scores by position"),
    (hits(("a", 0.9), ("x", 0.5)), hits(("a", 0.9), ("b", 0.5), ("c", 0.4)), "2 hits, expected 3"),
    (hits(("a", 0.9), ("x", 0.5), ("c", 0.4)), hits(("a", 0.9), ("y", 0.5), ("c", 0.4)), "'x'.*missing"),
    (hits(("a", 0.9), ("x", 0.5), ("c", 0.4)), hits(("a", 0.9), ("y", 0.5), ("c", 0.4)), "'y'.*not found"),
    (hits(("a", 0.9), ("x", 0.5)), hits(("x", 0.9), ("y", 0.5)), "scored"),
    (hits(("a", 0.9), ("a", 0.9)), hits(("a", 0.9), ("b", 0.9)), "twice"),
    (hits(("a", 0.9), year=1999), hits(("a", 0.9)), "fields"),
])
def test_real_differences_are_caught(got, want, message):
    with pytest.raises(AssertionError, match=message):
        assert_same_hits(got, want)

