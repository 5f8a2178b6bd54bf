"""Commands that write a store: ingest files, and the demo."""

from __future__ import annotations

import re
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import click

from ..db import Database
from ..documents import open_or_create_table
from ..errors import IngestInterrupted, InvalidArgumentError
from . import cli, emit
from .commands import plain_option

CHUNKINGS = ["naive|late", "context", "late", "naive", "late+naive", "context+naive", "naive|context",
             "naive|context|late"]

_SIZE = re.compile(r"\s*(\d+)\s*([a-z]*)\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30,
          "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_size(text: str) -> int:
    """A size in bytes from ``1000``, ``2K``/``2KiB`` (2,048), ``3M``, ``1G`` (powers of 1,024) or
    ``5KB``/``2MB``/``1GB`` (powers of 1,000), as ``head -c`` reads them. Raises ValueError for
    anything else, or a size below 1 byte."""
    m = _SIZE.fullmatch(text)
    if m is None or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r} is not a size; give bytes, or a whole number with K, M or G "
                         f"(powers of 1,024) or KB, MB or GB (powers of 1,000)")
    size = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if size < 1:
        raise ValueError(f"the size must be at least 1 byte, got {text!r}")
    return size


class _SizeType(click.ParamType):
    name = "SIZE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _attrs(pairs: tuple[str, ...]) -> dict[str, Any]:
    from ..ingest.attributes import parse_attribute

    return dict(parse_attribute(pair) for pair in pairs)


@cli.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("table")
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", default=None, help="Embedding model: 'default' (all-MiniLM-L6-v2; ONNX int8 "
              "on a CPU), a sentence-transformers model directory, optionally with @torch, @onnx or "
              "@onnx-int8. Fixed when the table is created.")
@click.option("--chunking", type=click.Choice(CHUNKINGS), default=None,
              help="How chunks are embedded: alone (naive), with their surrounding text (late, "
              "context), averaged (+) or kept side by side (|). Default: naive|late (naive for "
              "a model without token embeddings).")
@click.option("--chunker", type=click.Choice(["tokens", "sentences", "markdown"]), default="tokens",
              show_default=True, help="Where chunks are cut.")
@click.option("--chunk-tokens", default=128, show_default=True, help="Chunk size in model tokens.")
@click.option("--overlap", default=16, show_default=True, help="Tokens shared by neighbouring chunks.")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Document ids are file paths relative to this directory (default: each PATH "
              "that is a directory, or a file's own directory).")
@click.option("--prune", is_flag=True, help="Delete the table's documents that PATHS no longer "
              "hold (a sync). Files that could not be read this time are kept.")
@click.option("--attr", "attrs", multiple=True, metavar="NAME[:TYPE]=VALUE",
              help="An attribute added to every document (repeatable); 2021 is an int, 2021-03-04 "
              "a date, true a bool; TYPE (str, int, float, bool, date, datetime) forces one.")
@click.option("--attr-from-path", "attr_from_path", default=None, metavar="PATTERN",
              help="Attributes from each file's path, e.g. '{team}/{year}/*' ({name:type} forces a type).")
@click.option("--encoding", default=None, help="Encoding of the text files (default: UTF-8, and "
              "Windows-1252 for files that are not UTF-8, with a note).")
@click.option("--text-column", default="text", show_default=True, help="Text column of .jsonl/.csv/.parquet.")
@click.option("--id-column", default="id", show_default=True, help="Id column of .jsonl/.csv/.parquet.")
@click.option("--max-file-size", "max_file_bytes", type=_SizeType(), default="100M",
              show_default=True, help="Skip (and report) files larger than this: bytes, or with "
              "K, M, G (powers of 1,024) or KB, MB, GB (powers of 1,000).")
@click.option("--commit-every", default=5.0, show_default=True,
              help="Commit the finished documents at least this often (seconds).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              metavar="[ADDRESS]", help="Chunk and embed on Ray (the ray extra): on the cluster at "
              "ADDRESS (e.g. ray://head:10001 or auto), or, without one, on a local Ray started "
              "for the command; everything is written in one commit.")
@click.option("--ray-workers", default=2, show_default=True, help="Embedding actors with --ray.")
@plain_option
def ingest(store: str, table: str, paths: tuple[str, ...], model: str | None, chunking: str | None,
           chunker: str, chunk_tokens: int, overlap: int, root: str | None, prune: bool,
           attrs: tuple[str, ...], attr_from_path: str | None, encoding: str | None, text_column: str,
           id_column: str, max_file_bytes: int, commit_every: float, progress: bool | None,
           ray_address: str | None, ray_workers: int, plain: bool) -> None:
    """Load PATHS (files, directories, globs), chunk and embed them into TABLE of STORE.

    Incremental: a document whose text, attributes and settings are those stored is skipped
    (nothing changed: the model is not even loaded); a changed one is replaced. Finished
    documents are committed every few seconds, so Ctrl-C (exit status 130) or a crash keeps them
    and the same command resumes. Reads .txt, .md, .rst, .html, .jsonl, .csv, .parquet, .pdf
    (with the pdf extra), any of them .gz/.bz2/.xz, and text files of any other name. Files that
    cannot be read (binary, empty, over --max-file-size, not regular files: FIFOs, devices,
    sockets) are reported on stderr and counted; the exit status is 2 when some were skipped, 1
    on an error.
    """
    from ..ingest.loaders import load_documents

    extra = _attrs(attrs)
    if ray_address is not None:
        if prune:
            raise InvalidArgumentError("--prune is not supported with --ray (a Ray ingest writes its "
                                       "documents in one commit); run the sync without --ray")
        _ingest_on_ray(ray_address, ray_workers, paths, store, table, model=model, chunking=chunking,
                       chunker=chunker, chunk_tokens=chunk_tokens, overlap=overlap,
                       attributes=extra or None, text_column=text_column, id_column=id_column,
                       max_file_bytes=max_file_bytes, root=root, encoding=encoding,
                       attributes_from_path=attr_from_path, plain=plain)
        return
    try:
        loaded = load_documents(list(paths), text_column=text_column, id_column=id_column,
                                attributes=extra or None, root=root, max_file_bytes=max_file_bytes,
                                encoding=encoding, attributes_from_path=attr_from_path)
        for err in loaded.errors:
            click.echo(f"skipped {err.path}: {err.reason}", err=True)
        for note in loaded.notes:
            click.echo(f"note: {note.path}: {note.reason}", err=True)
        if not loaded.documents:
            raise InvalidArgumentError(f"no documents to ingest from {' '.join(paths)} "
                                       f"({len(loaded.errors)} files skipped)")
        tbl = open_or_create_table(store, table, model)
        report = tbl.add_documents(loaded.documents, chunking=chunking, chunker=chunker,
                                   chunk_tokens=chunk_tokens, overlap=overlap, progress=progress,
                                   prune=prune, keep=[e.path for e in loaded.errors],
                                   commit_every=commit_every)
    except IngestInterrupted as stop:
        done = stop.report
        click.echo(f"interrupted: {done.documents} documents ({done.chunks} chunks) committed in "
                   f"{done.commits} commits, {done.unchanged} were unchanged, {done.remaining} not "
                   f"ingested; run the same command again to finish", err=True)
        emit([{"table": table, "interrupted": True, "documents": done.documents, "chunks": done.chunks,
               "unchanged": done.unchanged, "remaining": done.remaining}], plain)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted before anything was committed", err=True)
        sys.exit(130)
    for doc_id, reason in report.skipped:
        click.echo(f"skipped document {doc_id}: {reason}", err=True)
    record = {"table": table, "documents": report.documents, "unchanged": report.unchanged,
              "chunks": report.chunks, "pruned": report.pruned, "commits": report.commits,
              "files_skipped": len(loaded.errors), "documents_skipped": len(report.skipped),
              "rows": len(tbl), "seconds": round(report.seconds, 2),
              "chunks_per_s": round(report.chunks / report.seconds, 1) if report.chunks else None}
    emit([record], plain)
    if loaded.errors or report.skipped:
        sys.exit(2)


def _ingest_on_ray(address: str, workers: int, paths: tuple[str, ...], store: str, table: str,
                   *, plain: bool, **options: object) -> None:
    try:
        import ray

        from .. import ray as vray
    except ImportError as exc:
        raise InvalidArgumentError(
            f"--ray needs the ray extra: pip install 'vecstore[ray]' ({exc})") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False)
    try:
        report = vray.ingest(list(paths), store, table, concurrency=workers, **options)  # type: ignore[arg-type]
    finally:
        if started:
            ray.shutdown()
    for path, reason in report.files_skipped:
        click.echo(f"skipped {path}: {reason}", err=True)
    for doc_id in report.documents_skipped:
        click.echo(f"skipped document {doc_id}: nothing to embed", err=True)
    record = {"table": table, "documents": report.documents, "chunks": report.chunks,
              "files_skipped": len(report.files_skipped),
              "documents_skipped": len(report.documents_skipped),
              "rows": len(Database(store).open_table(table)), "version": report.version,
              "seconds": round(report.seconds, 2),
              "chunks_per_s": round(report.chunks / report.seconds, 1) if report.seconds else None}
    emit([record], plain)
    if report.files_skipped or report.documents_skipped:
        sys.exit(2)


DEMO_QUERIES = [
    ("What did the team decide about the remote control's buttons?", None),
    ("How should schools be funded?", ("domain = ?", "Committee")),
    ("speech recognition features and noise", ("domain = ? AND chunk_index < ?", "Academic", 40)),
]


@cli.command()
@click.option("--store", default="demo_store", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo store is written (replaced if it exists).")
@click.option("--chunking", type=click.Choice(CHUNKINGS), default=None,
              help="Default: naive|late.")
@click.option("-k", "--limit", "k", default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
def demo(store: str, chunking: str | None, k: int, as_json: bool) -> None:
    """Ingest the bundled sample (four QMSum meeting transcripts, MIT licensed) with the default
    model, then search it with and without filters, printing hits with their source offsets."""
    from ..ingest.loaders import load_documents

    sample = resources.files("vecstore") / "demo_data" / "qmsum_sample.jsonl"
    with resources.as_file(sample) as path:
        docs = load_documents([Path(path)]).documents
    target = Path(store)
    if target.exists():
        db = Database(target)
        db.drop_table("meetings", missing_ok=True)
    else:
        db = Database(target)
    click.echo(f"loading the default model and ingesting {len(docs)} transcripts into {target}/meetings ...",
               err=True)
    tbl = db.create_table("meetings", embedder="default")
    report = tbl.add_documents(docs, chunking=chunking, progress=None)
    click.echo(f"ingested {report.documents} documents as {report.chunks} chunks in "
               f"{report.seconds:.1f} s ({chunking or 'default'} chunking)", err=True)
    texts = {d["id"]: d["text"] for d in docs}
    for query, where in DEMO_QUERIES:
        q = tbl.search(query).limit(k).select("doc_id", "chunk_index", "char_start", "char_end", "domain")
        label = query
        if where is not None:
            q = q.where(where[0], *where[1:])
            label += f"   [where {where[0]} with {list(where[1:])}]"
        hits = q.to_list()
        if as_json:
            emit([{"query": query, "where": where[0] if where else None, **h} for h in hits], plain=False)
            continue
        click.echo(f"\n> {label}")
        for h in hits:
            snippet = " ".join(texts[h["doc_id"]][h["char_start"]:h["char_end"]].split())[:160]
            click.echo(f"  {h['score']:.3f}  {h['doc_id']} chunk {h['chunk_index']} "
                       f"[{h['char_start']}:{h['char_end']}] ({h['domain']})")
            click.echo(f"         {snippet}...")
    width = shutil.get_terminal_size((100, 20)).columns
    click.echo("\n" + "-" * min(width, 60), err=True)
    click.echo(f"try: vecstore search {target} meetings \"your question\" "
               f"--where \"domain = 'Product'\" --plain", err=True)
