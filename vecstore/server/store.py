"""The one store a server serves: one :class:`~vecstore.Database`, one shared
:class:`~vecstore.Table` per table (tables are thread-safe), and the embedding models kept warm."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..db import Database
from ..errors import InvalidArgumentError
from ..table import Table

log = logging.getLogger("vecstore.server")
DEFAULT_EMBEDDERS = frozenset({"default"})


class Store:
    """What every request shares. ``models`` are the model directories (besides ``"default"``)
    that a client may name when it creates a table."""

    def __init__(self, path: str | os.PathLike[str], models: tuple[str, ...] = ()) -> None:
        self.db = Database(path)
        self._tables: dict[str, Table] = {}
        self._lock = threading.Lock()
        self._models = {str(Path(m).expanduser().resolve()) for m in models}
        self.warm_state = "idle"  # idle -> loading -> ready | failed: <reason>

    def table(self, name: str) -> Table:
        """The shared Table object of ``name`` (NotFoundError if there is no such table)."""
        with self._lock:
            tbl = self._tables.get(name)
        if tbl is None:
            tbl = self.db.open_table(name)
            with self._lock:
                tbl = self._tables.setdefault(name, tbl)
        return tbl

    def create_table(self, name: str, **kwargs: Any) -> Table:
        self.check_embedder(kwargs.get("embedder"))
        tbl = self.db.create_table(name, **kwargs)
        with self._lock:
            return self._tables.setdefault(name, tbl)

    def drop_table(self, name: str) -> None:
        self.db.drop_table(name)
        with self._lock:
            self._tables.pop(name, None)

    def check_embedder(self, spec: str | None) -> None:
        """A client may create tables with the default model or a model the operator allowed."""
        if spec is None or spec.strip().lower() in DEFAULT_EMBEDDERS:
            return
        if str(Path(spec).expanduser().resolve()) in self._models:
            return
        allowed = ", ".join(["'default'", *sorted(repr(m) for m in self._models)])
        raise InvalidArgumentError(f"embedder {spec!r} is not one this server loads; use one of: {allowed} "
                                   f"(the operator allows more with `vecstore serve --model DIR`)")

    def warm(self) -> None:
        """Load the embedding model of every table that has one (models are shared between
        tables) and run a search on each table, so that the first request pays neither for
        loading the model nor for compiling the scan kernels."""
        self.warm_state = "loading"
        try:
            for name in self.db.table_names():
                tbl = self.table(name)
                if tbl.config.embedder is not None:
                    tbl.search("warm up").limit(1).to_list()
                    log.info("model %s ready for table %s", tbl.config.embedder, name)
                if len(tbl):
                    probe = np.ones(tbl.dim, dtype=np.float32)
                    tbl.search(probe).limit(1).to_list()
                    tbl.search(probe).limit(1).exact().to_list()
            self.warm_state = "ready"
        except Exception as exc:  # a broken model must not stop the server; requests will say why
            self.warm_state = f"failed: {type(exc).__name__}: {exc}"
            log.warning("could not warm the embedding models: %s", exc)


__all__ = ["Store"]
