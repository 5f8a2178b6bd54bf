"""Fixtures of the server tests: the tiny in-code sentence-transformers model of the ingest tests
(loaded from tests/ingest/conftest.py by path, so there is one definition of it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _ingest_fixtures():
    path = Path(__file__).resolve().parents[1] / "ingest" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_ingest_fixture_code", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def server_model_dir(tmp_path_factory) -> Path:
    """A tiny random 24-d model with query/document prompts (see tests/ingest/conftest.py)."""
    pytest.importorskip("sentence_transformers")
    return _ingest_fixtures().build_tiny_model(tmp_path_factory.mktemp("server_model"),
                                               prompts={"query": "query: ", "document": "passage: "})
