"""Hypothesis: the int8 and binary codes round-trip within their stated error."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vecstore.storage.codes import Quantizer, binary_bytes

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def matrices(draw):
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 130))
    return draw(arrays(np.float32, (n, d), elements=finite))


@settings(max_examples=150, deadline=None)
@given(matrices())
def test_int8_round_trip_within_half_a_step(x):
    qz = Quantizer.fit(x)
    decoded = qz.decode_int8(qz.encode_int8(x))
    # each value decodes to within half a quantization step (plus float32 rounding)
    tol = qz.scale / 2 + 1e-6 * (np.abs(x).max(axis=0) + 1)
    assert np.all(np.abs(decoded - x) <= tol + 1e-3 * qz.scale)


@settings(max_examples=150, deadline=None)
@given(matrices())
def test_binary_codes_are_the_signs_padded_to_words(x):
    qz = Quantizer.fit(x)
    codes = qz.encode_binary(x)
    assert codes.shape == (x.shape[0], binary_bytes(x.shape[1]))
    assert codes.shape[1] % 8 == 0
    bits = np.unpackbits(codes, axis=1, bitorder="little")
    np.testing.assert_array_equal(bits[:, : x.shape[1]].astype(bool), x > qz.center)
    assert not bits[:, x.shape[1]:].any()


@settings(max_examples=100, deadline=None)
@given(matrices(), st.data())
def test_query_folding_equals_dot_with_decoded(x, data):
    qz = Quantizer.fit(x)
    q = data.draw(arrays(np.float32, (x.shape[1],), elements=st.floats(-10, 10, width=32)))
    codes = qz.encode_int8(x)
    qscaled, const = qz.query_int8(q)
    folded = codes.astype(np.float64) @ qscaled.astype(np.float64) + const
    direct = qz.decode_int8(codes).astype(np.float64) @ q.astype(np.float64)
    np.testing.assert_allclose(folded, direct, rtol=1e-3, atol=1e-2 * (1 + np.abs(direct).max()))


@settings(max_examples=50, deadline=None)
@given(matrices())
def test_calibration_survives_json(x):
    qz = Quantizer.fit(x)
    back = Quantizer.from_json(qz.to_json(), x.shape[1])
    np.testing.assert_array_equal(back.encode_int8(x), qz.encode_int8(x))
    np.testing.assert_array_equal(back.encode_binary(x), qz.encode_binary(x))
