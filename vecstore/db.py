"""A database: a directory of tables.

A table appears and disappears whole. ``create_table`` builds the table (its first version, with
any initial rows) in a hidden ``.creating-*`` directory, holding that directory's write lock, and
renames it into place: the rename
succeeds for exactly one of several processes creating the same table, and a crash leaves either
no table or the complete one. ``drop_table`` takes the table's write lock, renames the directory
to a hidden ``.dropped-*`` name and then removes it. Hidden directories are never tables; ones
that a crash left behind are removed at the next ``connect`` or ``drop_table``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .config import KeywordConfig, Metric, PlannerSettings, TableConfig, check_timeout
from .errors import AlreadyExistsError, CorruptStoreError, InvalidArgumentError, NotFoundError
from .inputs import declared_schema, infer_dim, prepare_batch, rows_or_dim
from .storage.files import ensure_dir
from .storage.locks import DEFAULT_TIMEOUT_S
from .storage.manifest import VERSIONS_DIR, latest_version
from .storage.writer import create_table_dir, drop_table_dir, remove_leftovers
from .table import Table, check_keyword_columns

if TYPE_CHECKING:
    from .remote import RemoteDatabase

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}$")


def check_table_name(name: object) -> str:
    """Table names are plain names: letters, digits, ``_``, ``-``, ``.``; no path separators,
    no ``..``, not starting with ``.`` or ``-``. They can never reach outside the store."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidArgumentError(
            f"invalid table name {name!r}: use 1-255 letters, digits, '_', '-' or '.', starting "
            f"with a letter, digit or '_', without '..'"
        )
    return name


def check_lock_timeout(value: object) -> float:
    """Seconds a writer waits for a table's lock: a finite number >= 0 (0: try once)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(
            f"lock_timeout must be a finite number of seconds >= 0, got {value!r}; "
            f"e.g. lock_timeout=30 (the default is {DEFAULT_TIMEOUT_S:g})"
        )
    return float(value)


def _settings_differ(tbl: Table, config: TableConfig, attributes: pa.Schema) -> list[str]:
    """What an existing table has other than asked: settings and declared columns."""
    have = tbl.config
    out = [f"{k}={getattr(have, k)!r} (asked {getattr(config, k)!r})"
           for k in ("dim", "metric", "embedder", "vectors", "combine")
           if getattr(have, k) != getattr(config, k)]
    schema = tbl.schema
    for f in attributes:
        if f.name not in schema.names:
            out.append(f"no column {f.name!r}")
        elif schema.field(f.name).type != f.type:
            out.append(f"column {f.name!r} is {schema.field(f.name).type} (asked {f.type})")
    return out


class Database:
    """A directory holding tables. Use :func:`vecstore.connect` to get one.

    >>> import vecstore, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> db = vecstore.connect(tmp.name)
    >>> tbl = db.create_table("papers", dim=3)
    >>> db.table_names()
    ['papers']
    >>> tmp.cleanup()
    """

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_TIMEOUT_S,
                 planner: PlannerSettings | None = None, create: bool = True,
                 query_timeout: float | None = None) -> None:
        if isinstance(path, str) and "\x00" in path:
            raise InvalidArgumentError("the store path contains a NUL character")
        self.lock_timeout = check_lock_timeout(lock_timeout)
        self.query_timeout = check_timeout(query_timeout, "query_timeout")
        """Seconds a query (``search``, ``search_batch``, ``count``) may run unless it says
        otherwise with ``Query.timeout``; None: no limit."""
        self.path = Path(path).expanduser().absolute()
        if self.path.exists() and not self.path.is_dir():
            raise InvalidArgumentError(f"{self.path} is not a vecstore store: it is a file, not a directory")
        if not create and not self.path.is_dir():
            raise NotFoundError(f"no store at {self.path}: the directory does not exist "
                                f"(connect(path) creates one; read-only commands never do)")
        if planner is not None and not isinstance(planner, PlannerSettings):
            raise InvalidArgumentError(f"planner must be a PlannerSettings, got {type(planner).__name__}")
        self.planner = planner or PlannerSettings()
        if create:
            ensure_dir(self.path)
        remove_leftovers(self.path)

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    def _table_dir(self, name: str) -> Path:
        return self.path / check_table_name(name)

    def table_names(self) -> list[str]:
        """Names of the tables in the store, sorted. A damaged table is listed (opening it
        says what is wrong); links and hidden directories are not tables."""
        names = []
        for entry in os.scandir(self.path):
            if not entry.is_dir(follow_symlinks=False) or not _NAME.match(entry.name):
                continue
            try:
                if latest_version(Path(entry.path)) > 0:
                    names.append(entry.name)
            except CorruptStoreError:
                names.append(entry.name)
            except FileNotFoundError:
                pass  # dropped while we looked
        return sorted(names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.table_names()

    def create_table(self, name: str, dim: int | None = None, *, metric: str | Metric = "cosine",
                     embedder: Any = None, schema: pa.Schema | None = None, exist_ok: bool = False,
                     data: Any = None, keyword_columns: Sequence[str] | None = None,
                     language: str | None = None, vectors: Any = None, combine: Any = None
                     ) -> Table:
        """Create a table of ``dim``-dimensional vectors compared by ``metric`` (``"cosine"``,
        ``"dot"`` or ``"l2"``). ``schema`` declares attribute columns up front (otherwise the
        first rows define them). ``data`` (rows, as for :meth:`Table.add`) is stored in the
        table's first version: the table appears with its rows or not at all. Without ``dim``
        (or an embedder), the first row's vector gives it; rows may be passed in ``dim``'s
        place, as in ``db.create_table("docs", rows)``.

        If the table exists, or another process creates it at the same moment, this raises
        :class:`AlreadyExistsError`; with ``exist_ok=True`` the existing table is opened instead
        if its dim, metric, embedder, vectors and declared columns are those asked (``data`` is
        then not added), and AlreadyExistsError names the difference otherwise.

        Keyword search (``tbl.search(text, mode="keyword")``) indexes the string columns
        ``keyword_columns`` (default ``["text"]``) as one field, analyzed for ``language``
        (default ``"english"``; ``"none"``: no stemming, no stopwords); the index is kept up to
        date by every write. ``tbl.set_keyword_columns`` changes them later.

        ``vectors`` makes a multi-vector table: the vector columns every row keeps, ``"vector"``
        first (e.g. ``["vector", "vector_late"]``, all of dimension ``dim``), each with its own
        codes. A query scores a row by ``combine`` of its vectors' scores: ``"max"`` (the
        default), or ``{column: weight}`` for a weighted sum; ``Query.using`` and
        ``Query.combine`` choose otherwise per query.
        """
        dim, data = rows_or_dim(dim, data)
        path = self._table_dir(name)
        emb = None
        embedder_id = None
        if embedder is not None:
            from .ingest.embedders import get_embedder

            emb = get_embedder(embedder)
            embedder_id = emb.model_id
            if dim is None:
                dim = emb.dim
            elif dim != emb.dim:
                raise InvalidArgumentError(f"dim={dim} but the embedder makes {emb.dim}-d vectors")
        if dim is None and data is not None:
            dim = infer_dim(data)  # the length of the rows' first vector
        if dim is None:
            raise InvalidArgumentError("create_table needs dim= (or an embedder that sets it, or "
                                       "data= whose rows have a 'vector')")
        if isinstance(keyword_columns, str):
            keyword_columns = [keyword_columns]
        keyword = KeywordConfig(
            columns=("text",) if keyword_columns is None else tuple(keyword_columns),
            language="english" if language is None else language)
        names = ("vector",) if vectors is None else vectors if isinstance(vectors, str) else tuple(vectors)
        config = TableConfig(dim=dim, metric=Metric.parse(metric), embedder=embedder_id,
                             keyword=keyword, vectors=names, combine=combine)  # type: ignore[arg-type]
        attributes = declared_schema(schema)
        check_keyword_columns(keyword, attributes)
        custom = None if embedder is None or isinstance(embedder, str) else embedder
        existing = self._existing(name, path, config, attributes, exist_ok, custom)
        if existing is not None:
            return existing
        batch = None
        if data is not None:
            if emb is not None:
                from .ingest.rows import embed_missing

                data = embed_missing(data, emb, config.vectors)
            batch = prepare_batch(data, config, attributes)  # validated before anything is written
        if not create_table_dir(self.path, path, config, attributes, batch, self.lock_timeout):
            existing = self._existing(name, path, config, attributes, exist_ok, custom, raced=True)
            assert existing is not None
            return existing
        return Table(self, name, path, lock_timeout=self.lock_timeout, embedder=custom,
                     planner=self.planner)

    def _existing(self, name: str, path: Path, config: TableConfig, attributes: pa.Schema,
                  exist_ok: bool, embedder: Any, raced: bool = False) -> Table | None:
        """The table already at ``path`` if ``exist_ok`` and its settings match; None if there
        is none; AlreadyExistsError otherwise."""
        try:
            present = latest_version(path) > 0
        except CorruptStoreError:
            if not exist_ok:
                raise AlreadyExistsError(f"table {name!r} already exists in {self.path} "
                                         f"(and is damaged: open_table says how)") from None
            raise
        if not present and (raced or os.path.lexists(path)):
            # a table another thread or process renamed into place between the two looks is
            # whole by now (a table appears with its first version): look again before refusing
            present = latest_version(path) > 0
            if not present:
                raise AlreadyExistsError(
                    f"{path} exists and is not a vecstore table (no {VERSIONS_DIR}/ with a "
                    f"version); move it away or remove it, then create the table again")
        if not present:
            return None
        if not exist_ok:
            raise AlreadyExistsError(
                f"table {name!r} already exists in {self.path}; open it with open_table(), or "
                f"pass exist_ok=True to open it when its settings match")
        tbl = Table(self, name, path, lock_timeout=self.lock_timeout, embedder=embedder,
                    planner=self.planner)
        differences = _settings_differ(tbl, config, attributes)
        if differences:
            raise AlreadyExistsError(
                f"table {name!r} exists with other settings: {'; '.join(differences)}; open it "
                f"with open_table(), or drop it first to create it anew")
        return tbl

    def open_table(self, name: str, *, version: int | None = None, embedder: Any = None) -> Table:
        """Open an existing table (at its newest version, or at ``version``, read-only).
        ``embedder`` overrides the table's stored embedder (e.g. a custom Embedder object)."""
        path = self._table_dir(name)
        if latest_version(path) == 0:
            raise NotFoundError(f"table {name!r} does not exist in {self.path}; "
                                f"tables: {', '.join(self.table_names()) or '(none)'}")
        return Table(self, name, path, version=version, lock_timeout=self.lock_timeout,
                     embedder=embedder, planner=self.planner)

    def drop_table(self, name: str, *, missing_ok: bool = False) -> None:
        """Delete a table and all its files. It waits for the table's write lock (so no commit
        is cut in half), disappears atomically (a rename), then its files are removed. Writers
        and readers still holding the table get NotFoundError on their next operation."""
        path = self._table_dir(name)
        try:
            present = latest_version(path) > 0
        except CorruptStoreError:
            present = True  # a damaged table can still be dropped
        try:
            if not present:
                raise NotFoundError(f"table {name!r} does not exist in {self.path}")
            drop_table_dir(self.path, path, self.lock_timeout)
        except NotFoundError:
            if not missing_ok:
                raise
        remove_leftovers(self.path)


def connect(path: str | os.PathLike[str], **kwargs: Any) -> Database | RemoteDatabase:
    """Open (or create) the store in directory ``path``; or, when ``path`` is a URL
    (``http://host:port``), connect to a ``vecstore serve`` server (keyword arguments
    ``api_key``, by default ``$VECSTORE_API_KEY``, and ``timeout``; see :mod:`vecstore.remote`).
    ``lock_timeout`` (seconds, default 30) bounds how long a writer waits for a table's write
    lock; ``planner`` (a :class:`~vecstore.PlannerSettings`) changes the planner's thresholds;
    ``query_timeout`` (seconds, default None: no limit) stops a query that runs longer with a
    :class:`~vecstore.QueryTimeoutError` (``Query.timeout`` overrides it per query).
    With ``create=False`` the directory must exist already (a :class:`~vecstore.NotFoundError`
    otherwise) and nothing is created.

    >>> import vecstore, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> db = vecstore.connect(tmp.name)
    >>> tbl = db.create_table("docs", dim=4, metric="cosine")
    >>> tbl.add([{"id": "a", "vector": [1, 0, 0, 0], "year": 2021}])
    ['a']
    >>> tbl.search([1, 0, 0, 0]).where("year > ?", 2020).limit(1).to_list()[0]["id"]
    'a'
    >>> tmp.cleanup()
    """
    if isinstance(path, str) and path.lower().startswith(("http://", "https://")):
        from .remote import RemoteDatabase

        return RemoteDatabase(path, **kwargs)
    return Database(path, **kwargs)
