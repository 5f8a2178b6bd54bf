"""The command line end to end, with the tiny model: ingest files, list, inspect, search."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

import vecstore
from vecstore.cli import cli


def run(*args, ok=(0,)):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code in ok, (result.exit_code, result.output, result.exception)
    return result


def lines(result):
    return [json.loads(x) for x in result.stdout.splitlines() if x.strip()]


def test_ingest_search_tables_info(tmp_path, tiny_model_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The remote control has big buttons. " * 40)
    (docs / "b.md").write_text(
        "# Budget\n\nSchools need more funding next year.\n\n## Details\n\nTeachers.\n")
    (docs / "bad.txt").write_bytes(b"\xff\xfe\x00 not utf-8 \xc3")
    (docs / "empty.txt").write_text("   ")
    store = tmp_path / "store"
    r = run("ingest", store, "docs", str(docs), "--model", tiny_model_dir, "--attr", "team=blue",
            "--chunk-tokens", "32", "--overlap", "4", "--chunking", "naive", ok=(2,))
    summary = lines(r)[0]
    assert summary["documents"] == 2 and summary["files_skipped"] == 2 and summary["chunks"] >= 2
    assert "bad.txt" in r.stderr and "empty.txt" in r.stderr

    tables = lines(run("tables", store))
    assert tables[0]["table"] == "docs" and tables[0]["rows"] == summary["chunks"]
    info = lines(run("info", store, "docs"))[0]
    assert info["columns"]["team"] == "string" and "doc_id" in info["columns"]

    hits = lines(run("search", store, "docs", "funding for schools", "-k", "3", "--where", "team = 'blue'"))
    assert 1 <= len(hits) <= 3
    assert {"id", "score", "doc_id", "char_start", "char_end", "text"} <= set(hits[0])
    text = (docs / "b.md").read_text() if hits[0]["doc_id"].endswith("b.md") else (docs / "a.txt").read_text()
    assert text[hits[0]["char_start"]:hits[0]["char_end"]] == hits[0]["text"]
    plain = run("search", store, "docs", "buttons", "--plain", "--explain")
    assert "score" in plain.stdout.splitlines()[0] and "strategy" in plain.stderr

    # ingesting the same file again replaces its chunks instead of duplicating them
    run("ingest", store, "docs", str(docs / "a.txt"), "--chunk-tokens", "32", "--overlap", "4",
        "--chunking", "naive")
    assert lines(run("tables", store))[0]["rows"] == summary["chunks"]


def test_errors_are_one_line_messages(tmp_path):
    store = tmp_path / "s"
    r = run("info", store, "missing", ok=(1,))
    assert r.stderr.startswith("error: ") and "Traceback" not in r.output
    vecstore.connect(store).create_table("v", dim=2).add([{"id": "a", "vector": [1, 0]}])
    r = run("search", store, "v", "a text", ok=(1,))
    assert "embedder" in r.stderr
    r = run("search", store, "v", "[1, 0]", "--vector", "--where", "nope > 1", ok=(1,))
    assert "unknown column" in r.stderr
    hits = lines(run("search", store, "v", "[1, 0.1]", "--vector"))
    assert hits[0]["id"] == "a" and np.isclose(hits[0]["score"], 1 / np.sqrt(1.01), atol=1e-5)
    r = run("ingest", store, "v", str(tmp_path / "nothing-here"), ok=(1,))
    assert "no documents" in r.stderr


def test_every_command_is_documented():
    readme = (__import__("pathlib").Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in cli.commands:
        assert f"vecstore {name}" in readme, f"README does not document `vecstore {name}`"
