"""The JSON codec both ends of the HTTP API use (vecstore/wire.py)."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

import numpy as np
import pytest

from vecstore import InvalidArgumentError
from vecstore.query.results import Plan, Stage, Strategy
from vecstore.wire import dumps, loads, plan_from_json, plan_to_json


def test_values_round_trip_and_the_output_is_strict_json():
    value = {
        "when": dt.datetime(2024, 1, 31, 12, 0, 0, 5),
        "aware": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        "day": dt.date(2024, 2, 29),
        "price": Decimal("-12.50"),
        "nan": math.nan,
        "inf": [1.0, -math.inf],
        "i": np.int64(2**62),
        "f": np.float64(0.1),
        "b": np.bool_(True),
        "s": "naïve ☃ \u0000",
        "vec": np.array([0.1, math.nan, 3], np.float32),
        "mat": np.ones((2, 3), np.float32),
        "f64": np.array([1.5, math.inf]),
        "t": ("a", 1),
    }
    raw = dumps(value)
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"{c} in the output"))  # no bare NaN
    back = loads(raw)
    assert back["when"] == value["when"] and back["aware"] == value["aware"] and back["day"] == value["day"]
    assert back["price"] == Decimal("-12.50") and math.isnan(back["nan"]) and back["inf"] == [1.0, -math.inf]
    assert back["i"] == 2**62 and back["f"] == 0.1 and back["b"] is True and back["s"] == value["s"]
    assert back["vec"].dtype == np.float32 and np.array_equal(back["vec"], value["vec"], equal_nan=True)
    assert [list(r) for r in back["mat"]] == [[1.0] * 3] * 2 and back["f64"] == [1.5, math.inf]
    assert back["t"] == ["a", 1]
    assert loads(b'{"$other": 1, "x": {"$plain": "kept"}}') == {"$other": 1, "x": {"$plain": "kept"}}


@pytest.mark.parametrize(
    "raw,match",
    [
        (b'{"$datetime": "yesterday"}', "datetime"),
        (b'{"$date": 5}', "takes a string"),
        (b'{"$decimal": "1.2.3"}', "decimal"),
        (b'{"$float": "NaN!"}', "float"),
        (b'{"$f32": "AAA="}', "f32"),
        (b'{"$f32": "not base64!"}', "f32"),
        (b"[NaN]", "not a JSON value"),
        (b"\xc3\x28", "not UTF-8"),
        (b"{", "invalid JSON"),
    ],
)
def test_bad_input_is_an_invalid_argument(raw, match):
    with pytest.raises(InvalidArgumentError, match=match):
        loads(raw)


def test_plans_round_trip():
    plan = Plan(
        strategy=Strategy.INDEX_FILTERED,
        reason="r",
        table_rows=10,
        k=3,
        oversample=16,
        filter="x > 1",
        matches=4,
        estimated_selectivity=0.5,
        index="hnsw",
        stages=(Stage("filter", 10, 4, 0.001), Stage("hnsw", 4, 3, 0.002)),
        notes=("n",),
        fallback_from=Strategy.INDEX,
    )
    d = loads(dumps(plan_to_json(plan)))
    assert plan_from_json(d) == plan and d["text"] == str(plan) and d["candidates"] == plan.candidates
