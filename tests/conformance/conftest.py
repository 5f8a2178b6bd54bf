"""Fixtures of the conformance suite: FAISS on one thread, and indexes built once per session.

Building is most of the suite's time, so indexes are cached by (kind, data set, metric).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from vecstore.index import build_index
from vecstore.index.base import IndexBase

from .helpers import DATA


@pytest.fixture(scope="session", autouse=True)
def _single_thread() -> Iterator[None]:
    try:
        import faiss
    except ImportError:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


_CACHE: dict[tuple[str, str, str], IndexBase] = {}


@pytest.fixture(scope="session")
def built() -> Callable[..., IndexBase]:
    """``built(kind, data_name, metric="cosine")``: a cached index over that data set."""

    def get(kind: str, data: str, metric: str = "cosine") -> IndexBase:
        key = (kind, data, metric)
        if key not in _CACHE:
            _CACHE[key] = build_index(kind, DATA[data].base, metric, threads=1)
        return _CACHE[key]

    return get
