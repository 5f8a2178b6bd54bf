"""Load documents from files: text, Markdown, HTML, PDF, and tables of documents.

:func:`load_documents` expands globs and directories and returns every document it could read
together with a :class:`LoadError` for every file (or row) it could not: a file that is not
UTF-8, cannot be read, is empty, or has a type vecstore does not read is reported with its path
and the reason, never dropped in silence and never fatal to the run.

Each document is a dict ``{"id", "text", <attributes>..., "source"}``. For a text-like file the
id is its path relative to ``root`` (the current directory by default), and ``title`` is set
when the file has one (a Markdown ``# heading`` at the top, an HTML ``<title>``, PDF metadata).
For ``.jsonl``, ``.csv`` and ``.parquet`` each row is a document: ``text_column`` holds its
text, ``id_column`` its id (``"<path>:<row>"`` when the table has no such column), and every
other column becomes an attribute.

Only regular files are read (after following symbolic links): a FIFO, a device, a socket is
reported and never opened for reading, so a folder holding one cannot block the run or feed it
endless bytes (``/dev/zero``). A file over ``max_file_bytes`` (100 MiB by default) is reported
too; the read itself stops one byte past the limit, so a file that grows while it is read, or
that reports a wrong size (``/proc``), cannot exhaust memory either.

>>> import pathlib, tempfile
>>> tmp = tempfile.TemporaryDirectory()
>>> root = pathlib.Path(tmp.name)
>>> (root / "notes").mkdir()
>>> _ = (root / "notes" / "a.md").write_text("# Design notes\\n\\nWhy the manifest is renamed.")
>>> _ = (root / "notes" / "empty.md").write_text("")
>>> result = load_documents([root / "notes" / "*.md"], root=root)
>>> [(d["id"], d["title"]) for d in result.documents]
[('notes/a.md', 'Design notes')]
>>> [(e.path, e.reason) for e in result.errors]
[('notes/empty.md', 'empty file: no text')]
>>> tmp.cleanup()
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, missing_extra

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".html", ".htm")
TABLE_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")
PDF_SUFFIXES = (".pdf",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + TABLE_SUFFIXES + PDF_SUFFIXES

Document = dict[str, Any]

DEFAULT_MAX_FILE_BYTES = 100 * 2**20
"""The largest file :func:`load_documents` reads unless told otherwise (100 MiB): several times
the longest book-length text or PDF, and well below what one process should hold in memory to
load a single document."""


@dataclass(frozen=True)
class LoadError:
    """A file, or a row of one (``path:line``), that could not be loaded, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class LoadResult:
    """The documents read and the errors met; nothing is left out of both."""

    documents: list[Document] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)


# --------------------------------------------------------------------------- path expansion


def _expand(paths: Iterable[str | os.PathLike[str]], errors: list[LoadError]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        text = os.fspath(raw)
        if glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                errors.append(LoadError(text, "no file matches this pattern"))
            candidates = [Path(m) for m in matches]
        else:
            candidates = [Path(text).expanduser()]
        for path in candidates:
            if path.is_dir():
                found.extend(_walk(path, errors))
            elif path.exists():  # a FIFO or device too: _read_capped reports it without opening it
                found.append(path)
            elif not glob.has_magic(text):
                errors.append(LoadError(text, "no such file or directory"))
    seen: set[Path] = set()
    unique = []
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _walk(directory: Path, errors: list[LoadError]) -> list[Path]:
    files: list[Path] = []

    def report(exc: OSError) -> None:
        errors.append(LoadError(str(exc.filename), f"cannot read the directory: {exc.strerror}"))

    for dirpath, dirnames, filenames in os.walk(directory, onerror=report):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue  # hidden files (.DS_Store, .gitignore) are not documents
            files.append(Path(dirpath) / name)
    return files


def _doc_id(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


# --------------------------------------------------------------------------- readers


class _Skip(Exception):
    """A file (or row) to report as a LoadError."""


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def _check_regular(mode: int) -> None:
    """Raise _Skip unless ``mode`` (from stat) is a regular file's."""
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "a special file")
    raise _Skip(f"not a regular file ({kind}); only regular files are read")


def _too_big(limit: int, size: int | None = None) -> _Skip:
    has = f"has {size:,} bytes, more than the limit of {limit:,}" if size is not None else (
        f"has more than {limit:,} bytes, the limit")
    return _Skip(f"the file {has}; raise max_file_bytes (--max-file-size) to read it")


def _read_capped(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else _Skip.

    ``os.stat`` follows links and never opens the file, so a FIFO (whose open blocks until a
    writer comes) or a device is refused unopened. The file is then opened non-blocking and
    checked again with ``fstat``, in case it was replaced meanwhile, and at most ``limit + 1``
    bytes are read: a file that grows, or whose size stat misreports, is refused all the same.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _Skip(f"cannot read: {exc.strerror or exc}") from exc
    _check_regular(st.st_mode)
    if st.st_size > limit:
        raise _too_big(limit, st.st_size)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _Skip(f"cannot read: {exc.strerror or exc}") from exc
    try:
        with open(fd, "rb", closefd=True) as fh:
            _check_regular(os.fstat(fh.fileno()).st_mode)
            data = fh.read(limit + 1)
    except OSError as exc:
        raise _Skip(f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise _too_big(limit)
    return data


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Skip(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); convert the file to UTF-8"
        ) from exc


_MD_TITLE = re.compile(r"\A\s*#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_BLOCK_TAGS = (
    "address article aside blockquote body dd details div dl dt fieldset figcaption figure "
    "footer form header hr li main nav ol p pre section summary table tbody td tfoot th "
    "thead tr ul br"
).split()
_DROP_TAGS = ("script", "style", "noscript", "template", "head", "svg")


def _markdown(data: bytes) -> tuple[str, dict[str, Any]]:
    text = _utf8(data)
    m = _MD_TITLE.match(text)
    return text, ({"title": m.group(1).strip()} if m else {})


def _html(data: bytes) -> tuple[str, dict[str, Any]]:
    try:
        from bs4 import BeautifulSoup
    except ImportError as exc:
        raise missing_extra("bs4", "embed") from exc
    soup = BeautifulSoup(_utf8(data), "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    for tag in soup.find_all(list(_DROP_TAGS)):
        tag.decompose()
    # Headings become Markdown headings, so the Markdown chunker can keep them as context.
    for level in range(1, 7):
        for tag in soup.find_all(f"h{level}"):
            tag.insert_before("\n\n" + "#" * level + " ")
            tag.insert_after("\n\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    raw = soup.get_text()
    lines = [re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip() for line in raw.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, ({"title": title} if title else {})


def _pdf(data: bytes) -> tuple[str, dict[str, Any]]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:
        raise missing_extra("pypdf", "pdf") from exc
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise _Skip("the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta = reader.metadata
        title = str(meta.title).strip() if meta is not None and meta.title else ""
    except _Skip:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError) as exc:
        raise _Skip(f"not a readable PDF: {exc}") from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    return text, ({"title": title} if title else {})


def _rows(data: bytes, suffix: str, source: str, errors: list[LoadError]) -> list[tuple[str, dict[str, Any]]]:
    """``(row label, row)`` for every readable row of a table file's bytes."""
    if suffix in (".jsonl", ".ndjson"):
        out = []
        for lineno, line in enumerate(_utf8(data).splitlines(), start=1):
            if not line.strip():
                continue
            label = f"{source}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(LoadError(label, f"invalid JSON: {exc.msg}"))
                continue
            if not isinstance(row, dict):
                errors.append(LoadError(label, f"expected a JSON object, got {type(row).__name__}"))
                continue
            out.append((label, row))
        return out
    import pyarrow as pa

    try:
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            _utf8(data)  # report non-UTF-8 files with the same message as text files
            table = pacsv.read_csv(pa.BufferReader(data))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise _Skip(f"cannot read the table: {exc}") from exc
    return [(f"{source}:{i + 1}", row) for i, row in enumerate(table.to_pylist())]


def _table_docs(
    data: bytes,
    suffix: str,
    source: str,
    text_column: str,
    id_column: str,
    errors: list[LoadError],
) -> list[Document]:
    rows = _rows(data, suffix, source, errors)
    if rows and all(text_column not in row for _, row in rows):
        columns = sorted({k for _, row in rows for k in row})
        raise _Skip(
            f"no {text_column!r} column (columns: {', '.join(columns)}); "
            "name the text column with text_column="
        )
    docs = []
    for label, row in rows:
        text = row.get(text_column)
        if not isinstance(text, str):
            kind = "missing" if text is None else f"a {type(text).__name__}, not a string"
            errors.append(LoadError(label, f"the {text_column!r} value is {kind}"))
            continue
        doc_id = row.get(id_column)
        if doc_id is None or doc_id == "":
            doc_id = label  # "<path>:<row>": stable as long as the file is
        attrs = {k: v for k, v in row.items() if k not in (text_column, id_column)}
        attrs.setdefault("source", source)  # a row's own "source" column wins
        docs.append({"id": str(doc_id), "text": text, **attrs})
    if not docs and not any(e.path.startswith(source + ":") for e in errors):
        raise _Skip("empty file: no rows")
    return docs


def load_documents(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    text_column: str = "text",
    id_column: str = "id",
    attributes: Mapping[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> LoadResult:
    """Read every file named by ``paths`` (files, directories, globs such as ``docs/**/*.md``).

    ``attributes`` are added to every document (e.g. ``{"corpus": "manuals"}``); ``root`` is
    the directory file ids are relative to. Unsupported, unreadable, non-UTF-8 and empty files,
    files that are not regular files (FIFOs, devices, sockets) and files over ``max_file_bytes``
    (default :data:`DEFAULT_MAX_FILE_BYTES`, 100 MiB) are returned in
    :attr:`LoadResult.errors`. A ``.pdf`` needs the ``pdf`` extra (pypdf).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not isinstance(max_file_bytes, int) or isinstance(max_file_bytes, bool) or max_file_bytes < 1:
        raise InvalidArgumentError(
            f"max_file_bytes must be a positive integer (bytes), got {max_file_bytes!r}; "
            f"the default is {DEFAULT_MAX_FILE_BYTES:,}")
    base = Path(root) if root is not None else Path.cwd()
    extra = dict(attributes or {})
    result = LoadResult()
    errors = result.errors
    for path in _expand(paths, errors):
        suffix = path.suffix.lower()
        source = _doc_id(path, base)
        try:
            if suffix not in SUPPORTED_SUFFIXES:
                allowed = " ".join(SUPPORTED_SUFFIXES)
                raise _Skip(f"unsupported file type {suffix or '(none)'!r}; vecstore reads {allowed}")
            data = _read_capped(path, max_file_bytes)
            if suffix in TABLE_SUFFIXES:
                for doc in _table_docs(data, suffix, source, text_column, id_column, errors):
                    result.documents.append({**doc, **extra} if extra else doc)
                continue
            if suffix in (".md", ".markdown"):
                text, attrs = _markdown(data)
            elif suffix in (".html", ".htm"):
                text, attrs = _html(data)
            elif suffix in PDF_SUFFIXES:
                text, attrs = _pdf(data)
            else:
                text, attrs = _utf8(data), {}
            if not text.strip():
                raise _Skip("empty file: no text")
            result.documents.append({"id": source, "text": text, **attrs, **extra, "source": source})
        except _Skip as exc:
            errors.append(LoadError(source, str(exc)))
    return result


__all__ = ["DEFAULT_MAX_FILE_BYTES", "SUPPORTED_SUFFIXES", "LoadError", "LoadResult", "load_documents"]
