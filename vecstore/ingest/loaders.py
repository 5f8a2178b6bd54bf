"""Load documents from files: text, Markdown, HTML, PDF, and tables of documents.

:func:`load_documents` expands globs and directories and returns every document it could read
together with a :class:`LoadError` for every file (or row) it could not: a file that cannot be
read, is empty, is binary, or has a type vecstore does not read is reported with its path and
the reason, never dropped in silence and never fatal to the run.

Each document is a dict ``{"id", "text", <attributes>..., "source"}``. For a text-like file the
id is its path relative to ``root`` (by default the directory named, or the file's own
directory: see :func:`load_documents`), and ``title`` is set
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

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst", ".html", ".htm")
TABLE_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")
PDF_SUFFIXES = (".pdf",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + TABLE_SUFFIXES + PDF_SUFFIXES
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")
"""A file ``name.txt.gz`` (``.bz2``, ``.xz``) is read as ``name.txt``; ``NEWS.gz`` as ``NEWS``."""
BINARY_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .bmp .tif .tiff .webp .ico .svgz .mp3 .mp4 .m4a .wav .flac .ogg .avi "
    ".mov .mkv .webm .zip .tar .tgz .7z .rar .jar .whl .deb .rpm .iso .exe .dll .so .dylib .a .o "
    ".pyc .class .bin .dat .db .sqlite .arrow .npy .npz .pkl .onnx .pt .safetensors .woff .woff2 "
    ".ttf .otf .doc .docx .xls .xlsx .ppt .pptx .odt".split())
"""Refused by name. Any other file without a known suffix (``README``, ``README.Debian``,
``ls.1``, ``copyright``) is read as plain text when its bytes are text: no NUL byte, and
decodable (see ``encoding``)."""

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
    notes: list[LoadError] = field(default_factory=list)
    """Files that were read, with something to say: decoded with a fallback encoding, a PDF
    reader's warnings, files no ``attributes_from_path`` pattern matched."""


# --------------------------------------------------------------------------- path expansion


def _root_of(text: str, path: Path) -> Path:
    """The directory ids are relative to when no root is given: a directory named on the
    command line is its own root, a file's root is its directory, a glob's is the directory
    before its first wildcard. The same folder then gives the same ids from any working
    directory."""
    if glob.has_magic(text):
        parts = Path(os.path.expanduser(text)).parts
        fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]]
        return Path(*fixed) if fixed else Path(".")
    return path if path.is_dir() else path.parent


def _expand(paths: Iterable[str | os.PathLike[str]], errors: list[LoadError]) -> list[tuple[Path, Path]]:
    """``(file, its default root)`` for every file the arguments name, each file once."""
    found: list[tuple[Path, Path]] = []
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
            root = _root_of(text, path)
            if path.is_dir():
                found.extend((f, root) for f in _walk(path, errors))
            elif path.exists():  # a FIFO or device too: _read_capped reports it without opening it
                found.append((path, root))
            elif not glob.has_magic(text):
                errors.append(LoadError(text, "no such file or directory"))
    seen: set[Path] = set()
    unique = []
    for path, root in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, root))
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


FALLBACK_ENCODINGS = ("cp1252", "latin-1")
"""Tried in turn when a file is not UTF-8 and no encoding was given: Windows-1252 (Latin-1 with
printable characters in 0x80-0x9f, what most "Latin-1" files really are), then Latin-1, which
decodes any bytes. The file is read and a note says which encoding was used."""


class _Decoder:
    """Bytes to text for one file: UTF-8 (a BOM is dropped), or ``encoding`` when given (a
    failure is then an error), else a fallback of :data:`FALLBACK_ENCODINGS` with a note."""

    def __init__(self, encoding: str | None, source: str, notes: list[LoadError]) -> None:
        self.encoding, self.source, self.notes = encoding, source, notes

    def __call__(self, data: bytes) -> str:
        if self.encoding is not None:
            try:
                return data.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raise _Skip(f"not valid {self.encoding} (byte 0x{data[exc.start]:02x} at offset "
                            f"{exc.start}); pass the file's encoding (--encoding)") from exc
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            for name in FALLBACK_ENCODINGS:
                try:
                    text = data.decode(name)
                except UnicodeDecodeError:
                    continue
                self.notes.append(LoadError(self.source, (
                    f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); read as "
                    f"{name}; pass --encoding (encoding=) to choose")))
                return text
            raise _Skip("not valid UTF-8") from exc  # pragma: no cover - latin-1 decodes anything


def _decompress(data: bytes, suffix: str, limit: int) -> bytes:
    """The bytes of a ``.gz``/``.bz2``/``.xz`` file, at most ``limit`` of them: a larger result
    is refused once ``limit + 1`` bytes are out, never held whole (a small archive can expand
    enormously)."""
    import bz2
    import lzma
    import zlib

    out = bytearray()
    rest = data
    try:
        while rest:  # concatenated members are one file, as gzip -d reads them
            room = limit + 1 - len(out)
            if suffix == ".gz":
                z = zlib.decompressobj(wbits=47)  # a gzip or zlib header
                out += z.decompress(rest, room)
                done, rest = z.eof, z.unused_data
            else:
                d = bz2.BZ2Decompressor() if suffix == ".bz2" else lzma.LZMADecompressor()
                out += d.decompress(rest, max_length=room)
                done, rest = d.eof, d.unused_data
            if len(out) > limit:
                raise _Skip(f"it expands to more than {limit:,} bytes, the limit; raise "
                            f"max_file_bytes (--max-file-size) to read it")
            if not done:
                raise _Skip(f"the {suffix} file is truncated")
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise _Skip(f"not a readable {suffix} file: {exc}") from exc
    return bytes(out)


def _looks_binary(data: bytes) -> bool:
    """Text has no NUL bytes (UTF-16 files and binaries do); only the start is checked."""
    return b"\x00" in data[:8192]


_MD_TITLE = re.compile(r"\A\s*#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_BLOCK_TAGS = (
    "address article aside blockquote body dd details div dl dt fieldset figcaption figure "
    "footer form header hr li main nav ol p pre section summary table tbody td tfoot th "
    "thead tr ul br"
).split()
_DROP_TAGS = ("script", "style", "noscript", "template", "head", "svg")


def _markdown(data: bytes, decode: _Decoder) -> tuple[str, dict[str, Any]]:
    text = decode(data)
    m = _MD_TITLE.match(text)
    return text, ({"title": m.group(1).strip()} if m else {})


def _html(data: bytes, decode: _Decoder) -> tuple[str, dict[str, Any]]:
    try:
        from bs4 import BeautifulSoup
    except ImportError as exc:
        raise missing_extra("bs4", "embed") from exc
    soup = BeautifulSoup(decode(data), "html.parser")
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


def _rows(data: bytes, suffix: str, source: str, errors: list[LoadError],
          decode: _Decoder) -> list[tuple[str, dict[str, Any]]]:
    """``(row label, row)`` for every readable row of a table file's bytes."""
    if suffix in (".jsonl", ".ndjson"):
        out = []
        for lineno, line in enumerate(decode(data).splitlines(), start=1):
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

            text = decode(data)  # the file's encoding, as for text files
            table = pacsv.read_csv(pa.BufferReader(text.encode("utf-8")))
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
    decode: _Decoder,
) -> list[Document]:
    rows = _rows(data, suffix, source, errors, decode)
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


def _pdf_quietly(data: bytes, source: str, notes: list[LoadError]) -> tuple[str, dict[str, Any]]:
    """:func:`_pdf` with pypdf's log warnings ("Ignoring wrong pointing object ...") kept out of
    the output and counted in one note for the file."""
    import logging

    class _Count(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    logger = logging.getLogger("pypdf")
    handler, propagate = _Count(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        result = _pdf(data)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if handler.messages:
        notes.append(LoadError(source, f"pypdf warned {len(handler.messages)} time(s) (e.g. "
                                       f"{handler.messages[0]!r}); the text may be incomplete"))
    return result


def _split_suffixes(name: str) -> tuple[str, str | None]:
    """``(type suffix, compression suffix or None)`` of a file name: ``a.txt.gz`` ->
    ``(".txt", ".gz")``, ``NEWS.gz`` -> ``("", ".gz")``, ``README`` -> ``("", None)``."""
    path = Path(name)
    compressed = path.suffix.lower() if path.suffix.lower() in COMPRESSED_SUFFIXES else None
    if compressed:
        path = Path(path.stem)
    return path.suffix.lower(), compressed


def load_documents(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    text_column: str = "text",
    id_column: str = "id",
    attributes: Mapping[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    encoding: str | None = None,
    attributes_from_path: str | None = None,
) -> LoadResult:
    """Read every file named by ``paths`` (files, directories, globs such as ``docs/**/*.md``).

    A file's id is its path relative to ``root``; without one, relative to the argument that
    named it (a directory: itself; a file: its directory; a glob: the directory before the
    first wildcard), so the same folder gives the same ids from any working directory. Two
    files that would get one id are an error for the second (pass a ``root`` above both).

    Reads .txt, .md, .rst, .html, .jsonl, .csv, .parquet, .pdf (the ``pdf`` extra), the same
    compressed as ``.gz``, ``.bz2`` or ``.xz``, and files of any other name whose bytes are text
    (``README``, ``ls.1``); known binary types are refused by name (:data:`BINARY_SUFFIXES`).
    Text is UTF-8 unless ``encoding`` names another; a file that is not UTF-8 when no encoding
    was given is read as Windows-1252 (then Latin-1), with a note in :attr:`LoadResult.notes`.

    ``attributes`` are added to every document (e.g. ``{"corpus": "manuals"}``).
    ``attributes_from_path`` reads more from each file's id, e.g. ``"{team}/{year}/*"``
    (:class:`~vecstore.ingest.attributes.PathPattern`; values typed column by column). A file
    that cannot be read (unsupported, binary, empty, undecodable with ``encoding``, not a
    regular file, over ``max_file_bytes``: default :data:`DEFAULT_MAX_FILE_BYTES`, 100 MiB,
    compressed or not) is returned in :attr:`LoadResult.errors`.
    """
    from .attributes import PathPattern, type_columns

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not isinstance(max_file_bytes, int) or isinstance(max_file_bytes, bool) or max_file_bytes < 1:
        raise InvalidArgumentError(
            f"max_file_bytes must be a positive integer (bytes), got {max_file_bytes!r}; "
            f"the default is {DEFAULT_MAX_FILE_BYTES:,}")
    if encoding is not None:
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InvalidArgumentError(f"unknown encoding {encoding!r}; e.g. 'utf-8', 'latin-1', "
                                       f"'cp1252'") from None
    pattern = PathPattern(attributes_from_path) if attributes_from_path is not None else None
    extra = dict(attributes or {})
    result = LoadResult()
    errors, notes = result.errors, result.notes
    owners: dict[str, Path] = {}
    unmatched: list[str] = []
    from_path: list[dict[str, Any]] = []
    for path, default_root in _expand(paths, errors):
        source = _doc_id(path, Path(root) if root is not None else default_root)
        kind, compressed = _split_suffixes(path.name)
        decode = _Decoder(encoding, source, notes)
        try:
            other = owners.setdefault(source, path)
            if other != path:
                raise _Skip(f"its id {source!r} is already {other}'s (both are {source!r} under the "
                            f"directories named); pass a root above both (--root)")
            if kind in BINARY_SUFFIXES:
                raise _Skip(f"unsupported file type {kind!r}; vecstore reads text files (any name), "
                            f"{' '.join(SUPPORTED_SUFFIXES)} and them compressed (.gz .bz2 .xz)")
            data = _read_capped(path, max_file_bytes)
            if compressed:
                data = _decompress(data, compressed, max_file_bytes)
            if pattern is not None:
                fields = pattern.match(source)
                if fields is None:
                    unmatched.append(source)
                    fields = {}
            else:
                fields = {}
            docs: list[Document]
            if kind in TABLE_SUFFIXES:
                docs = _table_docs(data, kind, source, text_column, id_column, errors, decode)
                docs = [{**doc, **extra} for doc in docs]
            else:
                if kind in (".md", ".markdown"):
                    text, attrs = _markdown(data, decode)
                elif kind in (".html", ".htm"):
                    text, attrs = _html(data, decode)
                elif kind in PDF_SUFFIXES:
                    text, attrs = _pdf_quietly(data, source, notes)
                else:
                    if encoding is None and _looks_binary(data):
                        raise _Skip(f"a binary file (NUL bytes; type {kind or '(none)'!r}); vecstore "
                                    f"reads text (UTF-16 text: pass --encoding utf-16)")
                    text, attrs = decode(data), {}
                if not text.strip():
                    raise _Skip("empty file: no text")
                docs = [{"id": source, "text": text, **attrs, **extra, "source": source}]
            for doc in docs:
                result.documents.append(doc)
                from_path.append(fields)
        except _Skip as exc:
            errors.append(LoadError(source, str(exc)))
    if pattern is not None:
        typed = type_columns(from_path, [k for k, t in pattern.types.items() if t is None])
        for doc, fields in zip(result.documents, typed, strict=True):
            for k, v in fields.items():
                doc.setdefault(k, v)  # a file's own column (a .csv's) wins over its path
        if unmatched:
            notes.append(LoadError(unmatched[0], (
                f"{len(unmatched)} file(s) do not match the path pattern {attributes_from_path!r} "
                f"(e.g. this one): no attributes taken from their paths")))
    return result


__all__ = ["BINARY_SUFFIXES", "COMPRESSED_SUFFIXES", "DEFAULT_MAX_FILE_BYTES", "SUPPORTED_SUFFIXES",
           "LoadError", "LoadResult", "load_documents"]
