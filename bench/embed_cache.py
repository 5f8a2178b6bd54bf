"""An embedder that remembers every vector it computed, on disk, keyed by the model's input.

The chunk-embedding benchmarks ingest the same documents once per chunking mode, and most modes
share their model inputs (``"naive|late"`` embeds exactly what ``"naive"`` and ``"late"`` do).
:class:`CachedEmbedder` wraps the default sentence-transformers embedder and stores each result
under the SHA-256 of what the model was asked (the prompt and text; for late chunking the window
text and the chunk spans), so every mode still goes through ``Table.add_documents`` while the
model runs once per distinct input, across processes. Vectors are the model's own: a cached
vector is the one ``encode`` returned for that input.

Files: ``<cache>/embed-<model>/<pid>-<n>.npz`` shards (keys and a flat float32 matrix), appended
by :meth:`CachedEmbedder.flush`, read at start. Never a rewrite: shards of concurrent processes
cannot clobber each other.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class CachedEmbedder:
    """A :class:`~vecstore.ingest.embedders.TokenEmbedder` over ``inner`` with a disk cache."""

    def __init__(self, inner: Any, cache_dir: Path) -> None:
        self.inner = inner
        self.model_id: str = inner.model_id
        self.dim: int = inner.dim
        self.max_tokens: int = inner.max_tokens
        self.dir = Path(cache_dir) / ("embed-" + re.sub(r"[^A-Za-z0-9_.-]", "_", self.model_id))
        self._store: dict[str, Vectors] = {}
        self._new: dict[str, Vectors] = {}
        self._shards = 0
        self.hits = 0
        self.misses = 0
        self._load()

    # ------------------------------------------------------------------ storage

    def _load(self) -> None:
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.npz")):
            with np.load(path, allow_pickle=False) as z:
                keys, rows, flat = z["keys"], z["rows"], z["vectors"]
            starts = np.concatenate([[0], np.cumsum(rows)])
            for i, key in enumerate(keys.tolist()):
                self._store[key] = flat[starts[i]:starts[i + 1]]

    def flush(self) -> None:
        """Write the vectors computed since the last flush as one new shard."""
        if not self._new:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        keys = list(self._new)
        mats = [self._new[k].reshape(-1, self.dim) for k in keys]
        path = self.dir / f"{os.getpid()}-{self._shards:05d}-{len(self._store)}.npz"
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.asarray(keys), rows=np.asarray([len(m) for m in mats], np.int64),
                     vectors=np.concatenate(mats).astype(np.float32))
        os.replace(tmp, path)
        self._shards += 1
        self._new.clear()

    def __len__(self) -> int:
        return len(self._store)

    def _key(self, *parts: str) -> str:
        h = hashlib.sha256()
        for p in (self.model_id, *parts):
            h.update(p.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()

    def put(self, key: str, value: Vectors) -> None:
        value = np.asarray(value, dtype=np.float32)
        self._store[key] = value
        self._new[key] = value

    # ------------------------------------------------------------------ the Embedder protocol

    def _embed(self, texts: Sequence[str], kind: str, compute: Any) -> Vectors:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        keys = [self._key(kind, t) for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in self._store]
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = compute([texts[i] for i in todo])
            for i, vec in zip(todo, fresh, strict=True):
                self.put(keys[i], vec.reshape(1, -1))
        for i, k in enumerate(keys):
            out[i] = self._store[k][0]
        return out

    def document_key(self, text: str) -> str:
        return self._key("document", text)

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, "document", self.inner.embed_documents)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, "query", self.inner.embed_queries)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.inner.token_offsets(text)  # type: ignore[no-any-return]

    def window_budget(self, prefix: str = "") -> int:
        return self.inner.window_budget(prefix)  # type: ignore[no-any-return]

    def embed_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]) -> list[Vectors]:
        keys = [self._key("spans", t, repr([tuple(map(int, s)) for s in sp]))
                for t, sp in zip(texts, spans, strict=True)]
        todo = [i for i, k in enumerate(keys) if k not in self._store]
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.inner.embed_spans([texts[i] for i in todo], [spans[i] for i in todo])
            for i, vecs in zip(todo, fresh, strict=True):
                self.put(keys[i], np.asarray(vecs, np.float32).reshape(-1, self.dim))
        return [self._store[k].reshape(-1, self.dim).copy() for k in keys]
