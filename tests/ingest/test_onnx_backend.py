"""The ONNX Runtime backends on the tiny model: float32 ONNX gives torch's vectors, int8 close
ones; the export is made once and cached beside the model, or in VECSTORE_CACHE when the model's
directory is read-only; every embedding path (late chunking included) runs through it."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from vecstore.errors import InvalidArgumentError
from vecstore.ingest import chunk_documents
from vecstore.ingest.embedders import SentenceTransformerEmbedder, resolve_spec

pytest.importorskip("onnxruntime")

TEXTS = ["the meeting about the remote control", "budget and market report", "a short one"]


def test_onnx_backends_match_torch(tiny_model_dir, tmp_path, make_text, seeded):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    torch_emb = SentenceTransformerEmbedder(model, device="cpu")
    fp32 = SentenceTransformerEmbedder(model, device="cpu", backend="onnx")
    int8 = SentenceTransformerEmbedder(f"{model}@onnx-int8", device="cpu")
    ids = (torch_emb.model_id, fp32.model_id, int8.model_id)
    assert ids == (str(model), str(model), f"{model}@onnx-int8")
    want = torch_emb.embed_documents(TEXTS)
    np.testing.assert_allclose(fp32.embed_documents(TEXTS), want, atol=1e-5)
    cos = np.sum(int8.embed_documents(TEXTS) * want, axis=1)
    assert cos.min() > 0.9
    assert int8.model[0].model.path.name.endswith("-int8.onnx")  # ONNX Runtime runs the int8 file
    assert fp32.model[0].model.path.name.endswith(".onnx")
    assert type(torch_emb.model[0].model).__name__ == "BertModel"
    files = sorted(p.name for p in (model / "onnx").iterdir())
    assert len(files) == 2 and all(f.endswith(".onnx") for f in files)
    stamp = {p.name: p.stat().st_mtime_ns for p in (model / "onnx").iterdir()}
    SentenceTransformerEmbedder(model, device="cpu", backend="onnx-int8")  # cached: not exported again
    assert {p.name: p.stat().st_mtime_ns for p in (model / "onnx").iterdir()} == stamp
    doc = {"id": "d", "text": make_text(seeded, 300)}
    a = chunk_documents([doc], torch_emb, chunking="late", chunk_tokens=32, progress=False).table
    b = chunk_documents([doc], fp32, chunking="late", chunk_tokens=32, progress=False).table
    np.testing.assert_allclose(np.asarray(b.column("vector").to_pylist()),
                               np.asarray(a.column("vector").to_pylist()), atol=1e-5)


def test_read_only_model_directory_exports_into_the_cache(tiny_model_dir, tmp_path, monkeypatch):
    """Where the model's directory cannot be written (site-packages of a system Python), the
    export goes to $VECSTORE_CACHE. (os.access is patched: the tests may run as root.)"""
    from vecstore.ingest import onnx_backend

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    monkeypatch.setenv("VECSTORE_CACHE", str(tmp_path / "cache"))
    real_access = os.access
    monkeypatch.setattr(onnx_backend.os, "access", lambda p, mode: False if str(p).startswith(str(model))
                        else real_access(p, mode))
    emb = SentenceTransformerEmbedder(model, device="cpu", backend="onnx")
    assert not (model / "onnx").exists()
    assert emb.model[0].model.path.parent.parent == tmp_path / "cache" / "onnx"


def test_backend_names_are_checked(tiny_model_dir):
    with pytest.raises(InvalidArgumentError, match="expected one of torch, onnx, onnx-int8"):
        resolve_spec(tiny_model_dir, backend="tensorrt")
    with pytest.raises(InvalidArgumentError, match="names backend"):
        resolve_spec(f"{tiny_model_dir}@onnx", backend="torch")
    assert resolve_spec(tiny_model_dir, device="cpu").backend == "torch"  # only "default" is int8
