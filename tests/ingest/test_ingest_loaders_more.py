"""Loaders for the documents a system actually has (Debian's /usr/share/doc): compressed files,
extension-less and .rst text, other encodings; ids that do not depend on the working
directory; typed attributes from paths."""

from __future__ import annotations

import bz2
import datetime
import gzip
import lzma
import os
from pathlib import Path

import pytest

from vecstore.errors import InvalidArgumentError
from vecstore.ingest.attributes import PathPattern, parse_attribute, type_columns
from vecstore.ingest.loaders import load_documents


def test_compressed_extensionless_and_rst(tmp_path: Path) -> None:
    (tmp_path / "changelog.Debian.gz").write_bytes(gzip.compress(b"pkg (1.0) unstable; urgency=low\n"))
    (tmp_path / "notes.md.gz").write_bytes(gzip.compress(b"# Notes\n\nGzipped markdown.\n"))
    (tmp_path / "a.txt.bz2").write_bytes(bz2.compress("bzip2 text é".encode()))
    (tmp_path / "b.txt.xz").write_bytes(lzma.compress(b"xz text"))
    (tmp_path / "README").write_text("Plain README without a suffix.\n")
    (tmp_path / "README.Debian").write_text("Debian notes.\n")
    (tmp_path / "guide.rst").write_text("Guide\n=====\n\nreStructuredText.\n")
    (tmp_path / "ls.1").write_text('.TH LS 1\n.SH NAME\nls \\- list directory contents\n')
    (tmp_path / "blob").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00 binary")
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    result = load_documents(tmp_path)
    docs = {d["id"]: d for d in result.documents}
    assert docs["changelog.Debian.gz"]["text"].startswith("pkg (1.0)")
    assert docs["notes.md.gz"]["title"] == "Notes"  # read as the Markdown inside
    assert docs["a.txt.bz2"]["text"] == "bzip2 text é" and docs["b.txt.xz"]["text"] == "xz text"
    assert {"README", "README.Debian", "guide.rst", "ls.1"} <= set(docs)
    errors = {e.path: e.reason for e in result.errors}
    assert set(errors) == {"blob", "broken.gz"}
    assert "binary" in errors["blob"] and "not a readable .gz" in errors["broken.gz"]


def test_a_compressed_file_may_not_expand_past_the_limit(tmp_path: Path) -> None:
    (tmp_path / "bomb.txt.gz").write_bytes(gzip.compress(b"a" * 50_000))
    (tmp_path / "ok.txt.gz").write_bytes(gzip.compress(b"b" * 10_000))
    result = load_documents(tmp_path, max_file_bytes=20_000)
    assert [d["id"] for d in result.documents] == ["ok.txt.gz"]
    assert "expands to more than 20,000 bytes" in result.errors[0].reason


def test_encodings(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes("Größe: 5 €".encode("cp1252"))
    (tmp_path / "koi.txt").write_bytes("привет".encode("koi8-r"))
    fallback = load_documents(tmp_path)
    assert {d["id"]: d["text"] for d in fallback.documents}["latin.txt"] == "Größe: 5 €"
    assert sorted(n.path for n in fallback.notes) == ["koi.txt", "latin.txt"]
    koi = load_documents(tmp_path / "koi.txt", encoding="koi8-r")
    assert koi.documents[0]["text"] == "привет" and koi.notes == []
    strict = load_documents(tmp_path / "latin.txt", encoding="utf-8")
    assert strict.documents == [] and "not valid utf-8" in strict.errors[0].reason
    with pytest.raises(InvalidArgumentError, match="unknown encoding"):
        load_documents(tmp_path, encoding="klingon")


def test_ids_do_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("A")
    (folder / "sub" / "b.txt").write_text("B")
    ids = []
    for cwd in (tmp_path, folder / "sub", Path("/")):
        monkeypatch.chdir(cwd)
        ids.append(sorted(d["id"] for d in load_documents(str(folder)).documents))
        assert sorted(d["id"] for d in load_documents(os.path.relpath(folder)).documents) == ids[-1]
    assert ids == [["a.txt", "sub/b.txt"]] * 3
    # a file named directly is relative to its own directory; a glob to the part before '*'
    assert load_documents(folder / "a.txt").documents[0]["id"] == "a.txt"
    globbed = load_documents(str(folder) + "/**/*.txt").documents
    assert sorted(d["id"] for d in globbed) == ["a.txt", "sub/b.txt"]
    assert load_documents(folder, root=tmp_path).documents[0]["id"] == "docs/a.txt"


def test_two_files_with_one_id_are_an_error(tmp_path: Path) -> None:
    for team in ("red", "blue"):
        (tmp_path / team).mkdir()
        (tmp_path / team / "README").write_text(f"{team} readme")
    result = load_documents([tmp_path / "red", tmp_path / "blue"])
    assert [d["text"] for d in result.documents] == ["red readme"]
    assert "already" in result.errors[0].reason and "--root" in result.errors[0].reason
    both = load_documents([tmp_path / "red", tmp_path / "blue"], root=tmp_path)
    assert sorted(d["id"] for d in both.documents) == ["blue/README", "red/README"]


def test_attributes_from_path(tmp_path: Path) -> None:
    for team, year in (("red", "2021"), ("blue", "2022")):
        (tmp_path / team / year).mkdir(parents=True)
        (tmp_path / team / year / "notes.txt").write_text(f"{team} {year}")
    (tmp_path / "stray.txt").write_text("no team")
    result = load_documents(tmp_path, attributes_from_path="{team}/{year}/*", attributes={"n": 1})
    docs = {d["id"]: d for d in result.documents}
    assert docs["red/2021/notes.txt"]["team"] == "red" and docs["red/2021/notes.txt"]["year"] == 2021
    assert docs["blue/2022/notes.txt"]["year"] == 2022 and docs["stray.txt"].get("year") is None
    assert docs["stray.txt"]["n"] == 1
    assert "1 file(s) do not match" in result.notes[0].reason
    typed = load_documents(tmp_path, attributes_from_path="{team}/{year:str}/*").documents
    assert {d.get("year") for d in typed} == {"2021", "2022", None}


def test_typed_attribute_values() -> None:
    assert parse_attribute("year=2021") == ("year", 2021)
    assert parse_attribute("w=0.5") == ("w", 0.5)
    assert parse_attribute("d=2021-03-04") == ("d", datetime.date(2021, 3, 4))
    assert parse_attribute("t=2021-03-04T10:30:00") == ("t", datetime.datetime(2021, 3, 4, 10, 30))
    assert parse_attribute("flag=false") == ("flag", False)
    assert parse_attribute("team=blue") == ("team", "blue")
    assert parse_attribute("zip=0042") == ("zip", "0042") and parse_attribute("y:str=2021") == ("y", "2021")
    assert parse_attribute("n:float=3") == ("n", 3.0) and parse_attribute("e=") == ("e", "")
    for bad, match in (("noequals", "name=value"), ("n:int=x", "cannot read 'x' as int"),
                       ("n:complex=1", "unknown attribute type")):
        with pytest.raises(InvalidArgumentError, match=match):
            parse_attribute(bad)
    assert type_columns([{"v": "1"}, {"v": "x"}]) == [{"v": "1"}, {"v": "x"}]  # mixed: strings
    assert type_columns([{"v": "1"}, {"v": "2.5"}]) == [{"v": 1.0}, {"v": 2.5}]
    with pytest.raises(InvalidArgumentError, match="names no"):
        PathPattern("docs/*")
