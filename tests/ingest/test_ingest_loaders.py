"""Loaders: every file becomes documents or a reported error, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vecstore.ingest.loaders import LoadResult, load_documents


def minimal_pdf(text: str, title: str) -> bytes:
    """A one-page PDF with ``text`` in Helvetica and ``title`` in its metadata."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title ({title}) >>".encode(),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "notes" / "deep").mkdir(parents=True)
    (root / "notes" / "a.txt").write_text("Plain text about batteries.", encoding="utf-8")
    (root / "notes" / "deep" / "b.md").write_text("# Design notes\n\nThe remote.\n", encoding="utf-8")
    (root / "notes" / ".hidden.txt").write_text("secret", encoding="utf-8")
    (root / "page.html").write_text(
        "<html><head><title>The Page</title><style>p {color: red}</style>"
        "<script>var x = 1;</script></head><body><h1>Heading</h1><p>First <b>bold</b> para."
        "</p><p>Second&nbsp;para.</p><ul><li>one</li><li>two</li></ul></body></html>",
        encoding="utf-8",
    )
    (root / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (root / "empty.txt").write_text("  \n\t", encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG\r\n")
    return root


def test_text_markdown_html_and_errors(corpus: Path) -> None:
    result = load_documents([corpus], root=corpus)
    docs = {d["id"]: d for d in result.documents}
    assert set(docs) == {"notes/a.txt", "notes/deep/b.md", "page.html", "latin1.txt"}
    assert docs["notes/a.txt"] == {
        "id": "notes/a.txt",
        "text": "Plain text about batteries.",
        "source": "notes/a.txt",
    }
    assert docs["notes/deep/b.md"]["title"] == "Design notes"
    html = docs["page.html"]
    assert html["title"] == "The Page"
    assert "color" not in html["text"] and "var x" not in html["text"]
    assert html["text"] == "# Heading\n\nFirst bold para.\n\nSecond para.\n\none\n\ntwo"
    errors = {e.path: e.reason for e in result.errors}
    assert set(errors) == {"empty.txt", "image.png"}
    assert "empty" in errors["empty.txt"]
    assert "unsupported file type '.png'" in errors["image.png"]
    # not UTF-8, no encoding given: read as Windows-1252, and a note says so
    assert docs["latin1.txt"]["text"] == "café au lait"
    assert [(n.path, "0xe9" in n.reason and "read as cp1252" in n.reason) for n in result.notes] == [
        ("latin1.txt", True)]


def test_globs_missing_paths_and_attributes(corpus: Path) -> None:
    result = load_documents(
        [str(corpus / "notes" / "**" / "*.md"), str(corpus / "nope.txt"), str(corpus / "*.csv")],
        root=corpus,
        attributes={"corpus": "test"},
    )
    assert [d["id"] for d in result.documents] == ["notes/deep/b.md"]
    assert result.documents[0]["corpus"] == "test"
    reasons = sorted(e.reason for e in result.errors)
    assert reasons == ["no file matches this pattern", "no such file or directory"]


def test_tables_jsonl_csv_parquet(tmp_path: Path) -> None:
    rows = [
        {"id": "d1", "text": "First.", "year": 2020},
        {"id": "d2", "text": "Second.", "year": 2021},
    ]
    lines = [json.dumps(r) for r in rows] + ["{not json", json.dumps({"id": "d3", "text": None}), "[1]"]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "docs.csv").write_text("id,body,year\nc1,Hello there,1999\n", encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "docs.parquet")
    pq.write_table(pa.table({"other": ["x"]}), tmp_path / "notext.parquet")

    result = load_documents(sorted(tmp_path.iterdir()), root=tmp_path)
    ids = [d["id"] for d in result.documents]
    assert ids == ["d1", "d2", "d1", "d2"]  # jsonl then parquet; the csv has no 'text' column
    assert result.documents[0] == {"id": "d1", "text": "First.", "year": 2020, "source": "docs.jsonl"}
    assert result.documents[2]["source"] == "docs.parquet"
    errors = {e.path: e.reason for e in result.errors}
    assert errors["docs.jsonl:3"].startswith("invalid JSON")
    assert errors["docs.jsonl:4"] == "the 'text' value is missing"
    assert "expected a JSON object" in errors["docs.jsonl:5"]
    assert "no 'text' column" in errors["docs.csv"] and "body" in errors["docs.csv"]
    assert "no 'text' column" in errors["notext.parquet"]

    csv = load_documents(tmp_path / "docs.csv", text_column="body", root=tmp_path)
    assert csv.documents == [{"id": "c1", "text": "Hello there", "year": 1999, "source": "docs.csv"}]


def test_rows_without_an_id_get_a_stable_one(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    result = load_documents(tmp_path / "t.jsonl", root=tmp_path)
    assert [d["id"] for d in result.documents] == ["t.jsonl:1", "t.jsonl:2"]


def test_pdf(tmp_path: Path) -> None:
    (tmp_path / "paper.pdf").write_bytes(minimal_pdf("Hello from a PDF", "A Paper"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    result = load_documents(tmp_path, root=tmp_path)
    assert result.documents == [
        {"id": "paper.pdf", "text": "Hello from a PDF", "title": "A Paper", "source": "paper.pdf"}
    ]
    assert [e.path for e in result.errors] == ["broken.pdf"]


def test_unreadable_and_corrupt_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "bad.csv").write_bytes(b"text\n\xff\xfe\n")
    result = load_documents(tmp_path, root=tmp_path, encoding="utf-8")  # strict: refused
    assert isinstance(result, LoadResult)
    assert result.documents == []
    assert sorted(e.path for e in result.errors) == ["bad.csv", "bad.parquet"]
    assert "not valid utf-8 (byte 0xff at offset 5)" in result.errors[0].reason
