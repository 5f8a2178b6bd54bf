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
from ..errors import InvalidArgumentError, VecstoreError, missing_extra
from ..table import Table

log = logging.getLogger("vecstore.server")
DEFAULT_EMBEDDERS = frozenset({"default"})


class Store:
    """What every request shares. ``models`` are the model directories (besides ``"default"``)
    that a client may name when it creates a table."""

    def __init__(self, path: str | os.PathLike[str], models: tuple[str, ...] = (),
                 rerankers: tuple[str, ...] = (), query_timeout: float | None = None) -> None:
        self.db = Database(path, query_timeout=query_timeout)
        self._tables: dict[str, Table] = {}
        self._lock = threading.Lock()
        self._models = {str(Path(m).expanduser().resolve()) for m in models}
        # CrossEncoder directories a search may name (by the directory's name), loaded once
        self._reranker_dirs = {Path(m).name: Path(m).expanduser() for m in rerankers}
        self._rerankers: dict[str, Any] = {}
        self._reranker_lock = threading.Lock()
        self.warm_state = "idle"  # idle -> loading -> ready | failed: <reason>

    @property
    def reranker_names(self) -> list[str]:
        """What a search's ``rerank`` may name: ``"feedback"`` and the allowed CrossEncoders."""
        return ["feedback", *sorted(self._reranker_dirs)]

    def reranker(self, name: str) -> Any:
        """What ``Query.rerank`` takes for ``name``: ``"feedback"``, or the loaded CrossEncoder of
        an allowed directory (loaded on first use, then shared). Any other name is refused: a
        request never makes the server open a path of its choosing."""
        key = name.strip()
        if key.lower() in ("feedback", "prf"):
            return "feedback"
        if key not in self._reranker_dirs:
            allowed = ", ".join(repr(n) for n in self.reranker_names)
            raise InvalidArgumentError(
                f"reranker {name!r} is not one this server runs; use one of: {allowed} (the operator "
                f"allows CrossEncoder directories with `vecstore serve --reranker DIR`)")
        with self._reranker_lock:
            model = self._rerankers.get(key)
            if model is None:
                model = self._rerankers[key] = _load_cross_encoder(self._reranker_dirs[key])
            return model

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
            for name in self._reranker_dirs:
                self.reranker(name)
                log.info("reranker %s ready", name)
            self.warm_state = "ready"
        except Exception as exc:  # a broken model must not stop the server; requests will say why
            self.warm_state = f"failed: {type(exc).__name__}: {exc}"
            log.warning("could not warm the embedding models: %s", exc)


def _load_cross_encoder(path: Path) -> Any:
    """A sentence-transformers CrossEncoder from a local directory (nothing is downloaded)."""
    try:
        from sentence_transformers import CrossEncoder
    except ImportError as exc:
        raise missing_extra("sentence_transformers", "embed") from exc
    try:
        model = CrossEncoder(str(path), device="cpu", local_files_only=True)
    except Exception as exc:  # the library raises OSError, ValueError, ... for a bad directory
        raise VecstoreError(f"cannot load the reranker {path.name!r} from {path} (the server's "
                            f"--reranker directory): {exc}") from exc
    model._vecstore_path = path.name  # named so in plans: rerank: cross-encoder (NAME)
    return model


__all__ = ["Store"]
