"""`vecstore ingest` keeps a store in sync: the same folder from two working directories gives
the same rows; a changed file is replaced, a deleted one pruned, unchanged ones never embedded;
an ingest interrupted by SIGINT or killed by SIGKILL after some commits keeps them, and the
re-run finishes with nothing twice and nothing missing. Read-only commands create nothing."""

from __future__ import annotations

import gzip
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import vecstore
from vecstore.cli import cli
from vecstore.ingest import embedders

ARGS = ["--chunk-tokens", "24", "--overlap", "4", "--no-progress"]


def run(*args, ok=(0,)):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code in ok, (result.exit_code, result.output, result.exception)
    return result


def record(result) -> dict:
    return json.loads(result.stdout.splitlines()[-1])


def rows(store: Path) -> dict[str, tuple]:
    tbl = vecstore.connect(store).open_table("t")
    got = tbl.to_arrow(["id", "doc_id", "text", "content_hash"]).to_pylist()
    out = {r["id"]: (r["doc_id"], r["text"], r["content_hash"]) for r in got}
    assert len(out) == len(got), "duplicate chunk ids"
    return out


@pytest.fixture
def folder(tmp_path, make_text, seeded) -> Path:
    docs = tmp_path / "work" / "docs"
    (docs / "sub").mkdir(parents=True)
    for i in range(8):
        name = f"sub/n{i}.md" if i % 3 == 0 else f"d{i}.txt"
        (docs / name).write_text(make_text(seeded, 80 + 20 * i, paragraphs=2))
    (docs / "NEWS.gz").write_bytes(gzip.compress(make_text(seeded, 50).encode()))
    (docs / "README").write_text(make_text(seeded, 40))
    (docs / "latin1.txt").write_bytes("Caf\xe9 et cr\xe8me, the meeting.".encode("latin-1"))
    return docs


def test_sync_through_the_cli(tmp_path, folder, tiny_model_dir, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.chdir(folder.parent)
    first = record(run("ingest", store, "t", "docs", "--model", tiny_model_dir, "--attr", "year=2021",
                       *ARGS))
    assert first["documents"] == 11 and first["unchanged"] == 0  # .gz, README, Latin-1 included
    ids = {d["doc_id"] for d in vecstore.connect(store).open_table("t").list_documents()}
    assert {"NEWS.gz", "README", "latin1.txt", "sub/n0.md", "d1.txt"} <= ids
    info = json.loads(run("info", store, "t").stdout)
    assert info["columns"]["year"] == "int64" and info["documents"] == 11
    before = rows(store)

    # the same folder from another working directory: nothing changes, the model is not loaded
    def no_model(spec):
        raise AssertionError("the model was loaded for an unchanged folder")

    monkeypatch.setattr(embedders, "get_embedder", no_model)
    monkeypatch.chdir(folder / "sub")
    again = record(run("ingest", store, "t", "..", "--attr", "year=2021", *ARGS))
    assert (again["documents"], again["unchanged"], again["commits"]) == (0, 11, 0)
    assert rows(store) == before
    monkeypatch.undo()

    # one file changed, one deleted: the changed one replaced, the deleted one pruned
    monkeypatch.chdir(tmp_path)
    new_text = "A short new text about the remote control."
    (folder / "d1.txt").write_text(new_text)
    (folder / "d2.txt").unlink()
    synced = record(run("ingest", store, "t", folder, "--attr", "year=2021", "--prune", *ARGS))
    assert (synced["documents"], synced["unchanged"], synced["pruned"]) == (1, 9, 1)
    after = rows(store)
    assert {k: v for k, v in after.items() if v[0] not in ("d1.txt", "d2.txt")} == {
        k: v for k, v in before.items() if v[0] not in ("d1.txt", "d2.txt")}
    assert [v[1] for v in after.values() if v[0] == "d1.txt"] == [new_text]
    assert not any(v[0] == "d2.txt" for v in after.values())


def test_read_only_commands_create_nothing(tmp_path):
    missing = tmp_path / "no" / "such" / "store"
    for args in (["tables", missing], ["info", missing, "t"], ["search", missing, "t", "q"],
                 ["documents", missing, "t"]):
        r = run(*args, ok=(1,))
        assert "no store at" in r.stderr and not missing.exists() and not missing.parent.exists()
    (tmp_path / "file").write_text("x")
    assert "not a vecstore store: it is a file" in run("tables", tmp_path / "file", ok=(1,)).stderr
    with pytest.raises(vecstore.InvalidArgumentError, match="not a vecstore store"):
        vecstore.connect(tmp_path / "file", create=False)
    with pytest.raises(vecstore.NotFoundError, match="no store at"):
        vecstore.connect(missing, create=False)
    assert not missing.parent.exists()


def _create_same_table(store: str, name: str, barrier, out) -> None:
    barrier.wait()
    try:
        vecstore.connect(store).create_table(name, dim=4, exist_ok=True)
        out.put("ok")
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        out.put(repr(exc))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_processes_creating_one_table_both_get_it(tmp_path):
    ctx = mp.get_context("fork")
    for k in range(6):
        barrier, out = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_create_same_table, args=(str(tmp_path / "s"), f"t{k}", barrier, out))
                 for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert sorted(out.get(timeout=5) for _ in procs) == ["ok", "ok"]
        assert vecstore.connect(tmp_path / "s").open_table(f"t{k}").version == 1


SLOW_CLI = """
import signal, sys, time
# Ctrl-C as a terminal delivers it, whatever this test was started under (a shell's background
# job, `nohup`, starts its commands with SIGINT ignored, and a child inherits that)
signal.signal(signal.SIGINT, signal.default_int_handler)
import vecstore.documents
from vecstore.ingest import embedders
vecstore.documents.GROUP_CHUNKS = 6              # a commit chance every few chunks
real = embedders.SentenceTransformerEmbedder.embed_documents
def slow(self, texts):
    time.sleep(0.3)
    return real(self, texts)
embedders.SentenceTransformerEmbedder.embed_documents = slow
from vecstore.cli import main
sys.argv = ["vecstore"] + sys.argv[1:]
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_ingest_keeps_its_commits_and_the_rerun_finishes(tmp_path, folder, tiny_model_dir, sig):
    store = tmp_path / "store"
    script = tmp_path / "slow_cli.py"
    script.write_text(SLOW_CLI)
    cmd = [sys.executable, str(script), "ingest", str(store), "t", str(folder), "--model",
           str(tiny_model_dir), "--commit-every", "0", *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(vecstore.__file__).parents[1])})
    versions = store / "t" / "_versions"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if versions.is_dir() and len(os.listdir(versions)) >= 3:  # created, then 2 commits
            break
        time.sleep(0.05)
    assert proc.poll() is None, ("the ingest ended before it could be interrupted", proc.communicate())
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    kept = vecstore.connect(store).open_table("t").list_documents()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "interrupted:" in err and "run the same command again" in err and "Traceback" not in err
        assert json.loads(out.splitlines()[-1])["documents"] == len(kept)
    else:
        assert proc.returncode == -signal.SIGKILL
    assert 2 <= len(kept) < 11
    resumed = record(run("ingest", store, "t", folder, *ARGS))
    assert resumed["unchanged"] == len(kept) and resumed["documents"] == 11 - len(kept)
    reference = tmp_path / "reference"
    run("ingest", reference, "t", folder, "--model", tiny_model_dir, *ARGS)
    got, want = rows(store), rows(reference)
    assert got == want  # nothing missing, nothing twice, the same chunks and hashes
