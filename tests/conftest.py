"""Shared fixtures: a fresh store per test and a seeded random generator."""

from __future__ import annotations

import os

import numpy as np
import pytest

import vecstore

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def tmp_db(tmp_path) -> vecstore.Database:
    return vecstore.connect(tmp_path / "store")


def pytest_collection_modifyitems(config, items):
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
