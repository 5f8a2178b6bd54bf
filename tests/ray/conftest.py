"""One local Ray session for every test in tests/ray/ (Ray takes seconds to start on two busy
cores), with its temporary directory, its spill directory and $HOME redirected into pytest's
temporary directories; shut down, and its files removed, when the session ends. Every test here
is marked ``ray`` (``pytestmark`` in each module; deselect them with ``-m 'not ray'``); they
are skipped where Ray is not installed."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'vecstore[ray]'")


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """``ray.init(num_cpus=2)`` once for the session, isolated from the user's Ray files."""
    home = tmp_path_factory.mktemp("ray-home")
    # Ray's socket paths live under its temp dir and must stay under ~100 characters: a short
    # directory under the system temp dir, removed at the end, when pytest's would be too long
    base = tmp_path_factory.getbasetemp()
    temp = base / "r" if len(str(base)) < 40 else None
    if temp is not None:
        temp.mkdir()
    else:
        temp = tempfile.mkdtemp(prefix="vsray-")
    saved = {k: os.environ.get(k) for k in ("HOME", "RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(HOME=str(home), RAY_TMPDIR=str(temp), RAY_USAGE_STATS_ENABLED="0")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), log_to_driver=False,
             configure_logging=False, object_store_memory=200 * 2**20)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_tiny_model(tmp_path_factory):
    """The ingestion tests' tiny random sentence-transformers model (built in code, no
    download), for the Ray ingestion tests."""
    pytest.importorskip("sentence_transformers", reason="the embed extra is not installed")
    from ingest.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("ray_tiny_model"),
                            prompts={"query": "query: ", "document": "passage: "})
