"""vecstore.ray.ingest and ``vecstore ingest --ray`` give the rows ``vecstore ingest`` gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import vecstore
from vecstore.cli import cli

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")
vray = pytest.importorskip("vecstore.ray")


def _folder(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(9):
        (docs / f"note{i}.txt").write_text(
            f"Meeting {i}. The remote control has {i} big buttons. " * (10 + 7 * i))
    (docs / "plan.md").write_text("# Budget\n\nSchools need more funding.\n\n## Details\n\nTeachers.\n")
    (docs / "rows.jsonl").write_text("\n".join(json.dumps({"id": f"j{i}", "text": f"row text {i} " * 30,
                                                           "year": 2000 + i}) for i in range(5)))
    (docs / "empty.txt").write_text("  ")
    return docs


def _run(*args, ok=(0,)):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code in ok, (result.exit_code, result.output, result.exception)
    return result


def _rows(store):
    return vecstore.connect(store).open_table("docs").to_arrow(with_vectors=True).sort_by("id")


def test_ray_ingest_equals_vecstore_ingest(ray_session, tmp_path, ray_tiny_model):
    docs = _folder(tmp_path)
    opts = ["--model", ray_tiny_model, "--chunk-tokens", "32", "--overlap", "4", "--attr", "team=blue"]
    plain = json.loads(_run("ingest", tmp_path / "a", "docs", docs, *opts, ok=(2,)).stdout)
    on_ray = _run("ingest", tmp_path / "b", "docs", docs, *opts, "--ray", "--ray-workers", "1", ok=(2,))
    # the record is the last line: Ray's raylet may print a warning of its own to stdout
    # under heavy load, which is Ray's, not vecstore's output
    record = json.loads(on_ray.stdout.strip().splitlines()[-1])
    assert "empty.txt" in on_ray.stderr
    assert record["version"] == 3  # created (1), vector columns laid out (2), every chunk in one commit
    for key in ("documents", "chunks", "rows", "files_skipped"):
        assert record[key] == plain[key], key
    want, got = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert got.column_names == want.column_names
    vectors = [c for c in want.column_names if c.startswith("vector")]  # the default: two per chunk
    assert vectors == ["vector", "vector_late"]
    assert got.drop(vectors + ["ingested_at"]).equals(want.drop(vectors + ["ingested_at"]))  # hashes too
    for column in vectors:  # embedded in another process: equal within float tolerance
        np.testing.assert_allclose(np.stack(got.column(column).to_numpy(zero_copy_only=False)),
                                   np.stack(want.column(column).to_numpy(zero_copy_only=False)),
                                   rtol=1e-4, atol=1e-5)



@pytest.mark.slow  # two pools of embedding actors: ~60 s on two busy cores
def test_ray_ingest_replaces_documents_in_one_commit(ray_session, tmp_path, ray_tiny_model):
    docs = _folder(tmp_path)
    first = vray.ingest([docs], tmp_path / "b", "docs", model=str(ray_tiny_model), chunk_tokens=32,
                        overlap=4, attributes={"team": "blue"}, concurrency=2, docs_per_batch=3)
    assert first.documents == 15 and first.version == 3 and first.files_skipped
    want = _rows(tmp_path / "b")
    assert want.num_rows == first.chunks
    # ingesting a changed file again replaces its document's chunks, in one more commit
    (docs / "note3.txt").write_text("Now a short note.")
    report = vray.ingest([docs / "note3.txt"], tmp_path / "b", "docs", chunk_tokens=32, overlap=4,
                         attributes={"team": "blue"})
    tbl = vecstore.connect(tmp_path / "b").open_table("docs")
    assert report.version == 4 and tbl.version == 4
    note3 = next(d for d in want.column("doc_id").to_pylist() if d.endswith("note3.txt"))
    assert tbl.to_arrow(["text"], where="doc_id = ?", params=(note3,)).column("text").to_pylist() \
        == ["Now a short note."]
    old_chunks = want.column("doc_id").to_pylist().count(note3)
    assert old_chunks > 1 and len(tbl) == first.chunks - old_chunks + 1
