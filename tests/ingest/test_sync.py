"""Incremental ingest through the Python API: unchanged documents are not embedded again (the
model is not even loaded), changed ones are replaced, missing ones pruned; an interrupt keeps
the finished documents and the same call resumes; documents() and delete_documents()."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import vecstore
from vecstore.errors import IngestInterrupted
from vecstore.ingest import embedders

OPTS: dict[str, Any] = dict(chunking="context", chunk_tokens=24, overlap=4, progress=False)


@pytest.fixture
def corpus(make_text, seeded) -> list[dict[str, Any]]:
    return [{"id": f"doc{i:02d}", "text": make_text(seeded, 60 + 25 * i, paragraphs=2), "n": i}
            for i in range(10)]


@pytest.fixture
def calls(monkeypatch, tiny_embedder) -> list[int]:
    """The number of texts of every call into the tiny model's embed_documents."""
    seen: list[int] = []
    real = tiny_embedder.embed_documents

    def counting(texts):
        seen.append(len(texts))
        return real(texts)

    monkeypatch.setattr(tiny_embedder, "embed_documents", counting)
    return seen


def content(tbl) -> dict[str, tuple]:
    rows = tbl.to_arrow(["id", "doc_id", "text", "n", "content_hash"], with_vectors=True).to_pylist()
    out = {r["id"]: (r["doc_id"], r["text"], r["n"], r["content_hash"], tuple(r["vector"])) for r in rows}
    assert len(out) == len(rows), "duplicate chunk ids"
    return out


def fresh(tmp_path, name, tiny_embedder, docs) -> dict[str, tuple]:
    t = vecstore.connect(tmp_path / name).create_table("t", embedder=tiny_embedder)
    t.add_documents(docs, **OPTS)
    return content(t)


def test_unchanged_documents_are_skipped_without_the_model(tmp_path, tiny_embedder, tiny_model_dir,
                                                            corpus, calls, monkeypatch):
    db = vecstore.connect(tmp_path / "s")
    tbl = db.create_table("t", embedder=str(tiny_model_dir))
    tbl = db.open_table("t", embedder=tiny_embedder)
    first = tbl.add_documents(corpus, **OPTS)
    assert first.documents == 10 and first.unchanged == 0 and sum(calls) == first.chunks
    version = tbl.version

    def no_model(spec):
        raise AssertionError(f"the model was loaded ({spec!r}) though nothing changed")

    monkeypatch.setattr(embedders, "get_embedder", no_model)
    calls.clear()
    again = db.open_table("t").add_documents(corpus, **OPTS)  # stored spec: would load the model
    assert (again.documents, again.unchanged, again.chunks, again.commits) == (0, 10, 0, 0)
    assert calls == [] and db.open_table("t").version == version


def test_changed_replaced_missing_pruned_others_untouched(tmp_path, tiny_embedder, corpus, calls):
    tbl = vecstore.connect(tmp_path / "s").create_table("t", embedder=tiny_embedder)
    tbl.add_documents(corpus, **OPTS)
    before = content(tbl)
    docs = [dict(d) for d in corpus if d["id"] != "doc03"]
    docs[0]["text"] = docs[0]["text"][: len(docs[0]["text"]) // 2]  # doc00 shrinks
    docs[5]["n"] = 99  # an attribute changes: the document is embedded again (title could differ)
    calls.clear()
    report = tbl.add_documents(docs, prune=True, **OPTS)
    assert (report.documents, report.unchanged, report.pruned) == (2, 7, 1)
    embedded = sum(calls)
    after = content(tbl)
    want = fresh(tmp_path, "ref", tiny_embedder, docs)
    assert after.keys() == want.keys()
    for key, (doc_id, text, n, h, vec) in after.items():
        w = want[key]
        assert (doc_id, text, n, h) == w[:4]
        np.testing.assert_allclose(vec, w[4], rtol=1e-5, atol=1e-6)
        if doc_id not in ("doc00", "doc06"):
            assert before[key] == after[key]  # untouched rows, hash and vector included
    assert embedded == sum(1 for v in after.values() if v[0] in ("doc00", "doc06"))
    docs_listed = {d["doc_id"]: d for d in tbl.list_documents()}
    assert "doc03" not in docs_listed and docs_listed["doc00"]["chunks"] == sum(
        1 for v in after.values() if v[0] == "doc00")


def test_settings_change_embeds_again(tmp_path, tiny_embedder, corpus, calls):
    tbl = vecstore.connect(tmp_path / "s").create_table("t", embedder=tiny_embedder)
    tbl.add_documents(corpus[:2], **OPTS)
    calls.clear()
    report = tbl.add_documents(corpus[:2], **{**OPTS, "chunk_tokens": 40})
    assert report.documents == 2 and report.unchanged == 0 and calls
    assert {v[0] for v in content(tbl).values()} == {"doc00", "doc01"}


@pytest.mark.parametrize("commit_every", [0, 3600], ids=["commit-each-group", "commit-on-interrupt"])
def test_interrupt_keeps_finished_documents_and_the_rerun_resumes(tmp_path, tiny_embedder, corpus,
                                                                   monkeypatch, commit_every):
    real = tiny_embedder.embed_documents
    n_calls = [0]

    def counted(texts):
        n_calls[0] += 1
        return real(texts)

    monkeypatch.setattr(vecstore.documents, "GROUP_CHUNKS", 24)  # 115 chunks: several groups
    monkeypatch.setattr(tiny_embedder, "embed_documents", counted)
    want = fresh(tmp_path, "ref", tiny_embedder, corpus)
    stop_at, n_calls[0] = int(n_calls[0] * 0.8), 0  # in the last group of documents

    def interrupted(texts):
        n_calls[0] += 1
        if n_calls[0] == stop_at:
            raise KeyboardInterrupt
        return real(texts)

    tbl = vecstore.connect(tmp_path / "s").create_table("t", embedder=tiny_embedder)

    monkeypatch.setattr(tiny_embedder, "embed_documents", interrupted)
    with pytest.raises(IngestInterrupted) as info:
        tbl.add_documents(corpus, commit_every=commit_every, **OPTS)
    report = info.value.report
    assert isinstance(info.value, KeyboardInterrupt) and not isinstance(info.value, Exception)
    assert 0 < report.documents < 10 and report.remaining == 10 - report.documents
    assert report.commits >= 1 if commit_every == 0 else report.commits == 1
    kept = {d["doc_id"]: d["chunks"] for d in tbl.list_documents()}
    assert len(kept) == report.documents
    monkeypatch.setattr(tiny_embedder, "embed_documents", real)
    for doc_id, chunks in kept.items():  # every committed document is whole
        assert chunks == sum(1 for v in want.values() if v[0] == doc_id)
    resumed = tbl.add_documents(corpus, **OPTS)
    assert resumed.unchanged == report.documents and resumed.documents == 10 - report.documents
    got = content(tbl)
    assert got.keys() == want.keys()  # nothing missing, nothing twice
    for key in got:
        assert got[key][:4] == want[key][:4]


def test_documents_and_delete_documents(tmp_path, tiny_embedder, corpus):
    tbl = vecstore.connect(tmp_path / "s").create_table("t", embedder=tiny_embedder)
    assert tbl.documents().num_rows == 0 and tbl.list_documents() == []
    tbl.add_documents([{**d, "source": f"files/{d['id']}.txt"} for d in corpus[:3]], **OPTS)
    tbl.add([{"id": "loose", "text": "a row without a document"}])
    docs = tbl.documents()
    assert docs.schema.names == ["doc_id", "source", "chunks", "content_hash", "ingested_at"]
    listed = tbl.list_documents()
    assert [d["doc_id"] for d in listed] == ["doc00", "doc01", "doc02"]
    assert [d["source"] for d in listed] == ["files/doc00.txt", "files/doc01.txt", "files/doc02.txt"]
    assert sum(d["chunks"] for d in listed) == len(tbl) - 1
    assert all(len(d["content_hash"]) == 64 and d["ingested_at"] is not None for d in listed)
    version = tbl.version
    assert tbl.delete_documents(["doc01", "nope"]) == 1 and tbl.version == version + 1
    assert [d["doc_id"] for d in tbl.list_documents()] == ["doc00", "doc02"]
    assert tbl.delete_documents(["nope"]) == 0 and tbl.version == version + 1
    assert tbl.count("doc_id = 'doc01'") == 0 and tbl.get(["loose"])
    assert tbl.delete(ids=["doc00"]) == 0  # chunk ids are doc#n: delete_documents is the way



def test_the_ingest_target_is_opened_or_created_once_without_loading_the_model(
        tmp_path, tiny_model_dir, short_model_dir, monkeypatch):
    """`vecstore ingest` and vecstore.ray open their table with one helper: created when missing
    (by one of several processes at once), opened when it exists, refused when it holds plain
    vectors or was built with another model; opening never loads the model (creating does: it
    gives the table its dimension)."""
    from concurrent.futures import ThreadPoolExecutor

    from vecstore.documents import open_or_create_table

    def no_model(spec):
        raise AssertionError(f"the model was loaded ({spec!r})")

    store = tmp_path / "s"
    with ThreadPoolExecutor(4) as pool:  # four ingests creating the same new table at once
        made = list(pool.map(lambda _: open_or_create_table(store, "t", str(tiny_model_dir)), range(4)))
    assert {t.name for t in made} == {"t"} and vecstore.connect(store).table_names() == ["t"]
    assert len({t.version for t in made}) == 1
    monkeypatch.setattr(embedders, "get_embedder", no_model)
    assert open_or_create_table(store, "t", None).config.embedder == made[0].config.embedder
    assert open_or_create_table(store, "t", str(tiny_model_dir)).version == made[0].version
    with pytest.raises(vecstore.InvalidArgumentError, match="was built with model .* not"):
        open_or_create_table(store, "t", str(short_model_dir))
    vecstore.connect(store).create_table("plain", dim=2)
    with pytest.raises(vecstore.InvalidArgumentError, match="'plain' has no embedder"):
        open_or_create_table(store, "plain", None)
