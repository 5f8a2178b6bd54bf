"""A database: a directory of tables."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from .config import Metric, PlannerSettings, TableConfig
from .errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from .inputs import declared_schema, prepare_batch
from .storage.files import fsync_dir
from .storage.locks import DEFAULT_TIMEOUT_S
from .storage.manifest import latest_version
from .storage.writer import create_table_version
from .table import Table

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
                 planner: PlannerSettings | None = None, create: bool = True) -> None:
        if isinstance(path, str) and "\x00" in path:
            raise InvalidArgumentError("the store path contains a NUL character")
        self.path = Path(path).expanduser().absolute()
        if self.path.exists() and not self.path.is_dir():
            raise InvalidArgumentError(f"{self.path} is not a vecstore store: it is a file, not a directory")
        if not create and not self.path.is_dir():
            raise NotFoundError(f"no store at {self.path}: the directory does not exist "
                                f"(connect(path) creates one; read-only commands never do)")
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        self.lock_timeout = float(lock_timeout)
        if planner is not None and not isinstance(planner, PlannerSettings):
            raise InvalidArgumentError(f"planner must be a PlannerSettings, got {type(planner).__name__}")
        self.planner = planner or PlannerSettings()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    def _table_dir(self, name: str) -> Path:
        return self.path / check_table_name(name)

    def table_names(self) -> list[str]:
        """Names of the tables in the store, sorted."""
        names = []
        for entry in os.scandir(self.path):
            if entry.is_dir() and _NAME.match(entry.name) and latest_version(Path(entry.path)) > 0:
                names.append(entry.name)
        return sorted(names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.table_names()

    def create_table(self, name: str, dim: int | None = None, *, metric: str | Metric = "cosine",
                     embedder: Any = None, schema: pa.Schema | None = None, exist_ok: bool = False,
                     data: Any = None) -> Table:
        """Create an empty table of ``dim``-dimensional vectors compared by ``metric``
        (``"cosine"``, ``"dot"`` or ``"l2"``). ``schema`` declares attribute columns up front
        (otherwise the first rows define them). With ``exist_ok=True`` an existing table of the
        same settings is opened instead. ``data`` (rows) is added right away if given."""
        path = self._table_dir(name)
        embedder_id = None
        emb: Any = None
        if embedder is not None:
            from .ingest.embedders import get_embedder

            emb = get_embedder(embedder)
            embedder_id = emb.model_id
            if dim is None:
                dim = emb.dim
            elif dim != emb.dim:
                raise InvalidArgumentError(f"dim={dim} but the embedder makes {emb.dim}-d vectors")
        if dim is None:
            raise InvalidArgumentError("create_table needs dim= (or an embedder that sets it)")
        config = TableConfig(dim=dim, metric=Metric.parse(metric), embedder=embedder_id)
        attributes = declared_schema(schema)
        if latest_version(path) > 0:
            return self._existing(name, config, exist_ok, embedder)
        batch = None
        if data is not None:
            if emb is not None:
                from .ingest.rows import embed_missing

                data = embed_missing(data, emb)
            batch = prepare_batch(data, config, attributes)
        try:
            create_table_version(path, config, attributes, batch)
        except FileExistsError:
            return self._existing(name, config, exist_ok, embedder)
        fsync_dir(self.path)
        return self.open_table(name, embedder=None if embedder is None or isinstance(embedder, str)
                               else embedder)

    def _existing(self, name: str, config: TableConfig, exist_ok: bool, embedder: Any) -> Table:
        """The table ``name`` that exists already: opened when ``exist_ok`` and its settings are
        those asked for, else an AlreadyExistsError."""
        if not exist_ok:
            raise AlreadyExistsError(f"table {name!r} already exists in {self.path}")
        tbl = self.open_table(name, embedder=None if embedder is None or isinstance(embedder, str)
                              else embedder)
        if tbl.config != config:
            raise AlreadyExistsError(
                f"table {name!r} exists with different settings ({tbl.config}); asked for {config}")
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
        """Delete a table and all its files. The table disappears atomically (a rename), then
        its files are removed."""
        path = self._table_dir(name)
        if latest_version(path) == 0:
            if missing_ok:
                return
            raise NotFoundError(f"table {name!r} does not exist in {self.path}")
        trash = self.path / f".dropped-{name}-{uuid.uuid4().hex}"
        os.rename(path, trash)
        fsync_dir(self.path)
        shutil.rmtree(trash, ignore_errors=True)


def connect(path: str | os.PathLike[str], **kwargs: Any) -> Database:
    """Open (or create) the store in directory ``path``. With ``create=False`` the directory
    must exist already (a :class:`~vecstore.NotFoundError` otherwise) and nothing is created.

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
    return Database(path, **kwargs)
