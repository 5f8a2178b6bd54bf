"""Reuters-21578 for the benchmarks: 21,577 dated news stories with topics, embedded once and cached.

Every story (``title`` + a blank line + ``text``, cut at :data:`MAX_TOKENS` tokens: the headline
and lead, which say what a story is about) is embedded with all-MiniLM-L6-v2, the default model,
and the vectors are written to the bench cache
(:func:`bench.data.default_cache_dir`) under a key made of the data file's SHA-256, the model and
the cache format; later calls memory-map them. The split into base rows and held-out query
stories is made at load time from a seeded permutation, so one embedding serves every split.

Attributes of the base rows: ``id`` (the story's id), ``date`` (timestamp[s], all in 1987),
``topics`` and ``places`` (``list<string>``, often empty). Filters the hot-path benchmark uses:
date ranges keeping about 50%, 10% and 1% of rows, ``list_contains(topics, ...)`` and a
conjunction of both.

``python -m bench reuters`` builds (or checks) the cache; embedding takes several minutes on two
cores. At the model's own 256 tokens it ran at ~6 stories/s on the shared cores (an hour for the
corpus), hence the shorter cut.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.feather as feather

from bench.common import DEFAULT_DATA_DIR, BenchError, ScenarioParser, log, write_json
from bench.data import DIM, MODEL_ID, _atomic_write, default_cache_dir, embed, load_model, read_jsonl

REUTERS_FILE = Path("reuters21578") / "corpus.jsonl"
# Bump when the text embedded or the file layout changes, so that old caches are not reused.
CACHE_FORMAT = 1
MAX_TOKENS = 64
"""Word pieces embedded per story (the model allows 256): the headline and the first lines."""

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class ReutersSample:
    """Base and held-out query vectors of Reuters-21578; row ``i`` of ``base`` is row ``i`` of
    ``attrs``. Arrays are read-only (memory-mapped)."""

    base: F32
    queries: F32
    attrs: pa.Table
    """``id``, ``date`` (timestamp[s]), ``topics``, ``places`` of the base rows."""
    source: str


def story_text(story: dict[str, Any]) -> str:
    """What is embedded for one story: its title and body."""
    title = (story.get("title") or "").strip()
    body = (story.get("text") or "").strip()
    return f"{title}\n\n{body}" if title else body


def _read_corpus(data_file: Path) -> tuple[list[str], pa.Table]:
    texts: list[str] = []
    ids: list[str] = []
    dates: list[Any] = []
    topics: list[list[str]] = []
    places: list[list[str]] = []
    for story in read_jsonl(data_file):
        texts.append(story_text(story))
        ids.append(str(story["id"]))
        dates.append(np.datetime64(story["date"], "s") if story.get("date") else None)
        topics.append(list(story.get("topics") or []))
        places.append(list(story.get("places") or []))
    attrs = pa.table({
        "id": pa.array(ids, pa.string()),
        "date": pa.array(dates, pa.timestamp("s")),
        "topics": pa.array(topics, pa.list_(pa.string())),
        "places": pa.array(places, pa.list_(pa.string())),
    })
    return texts, attrs


def _cache_prefix(cache_dir: Path, data_file: Path) -> Path:
    digest = hashlib.sha256(data_file.read_bytes()).hexdigest()
    key = json.dumps({"format": CACHE_FORMAT, "model": MODEL_ID, "data_sha256": digest,
                      "max_tokens": MAX_TOKENS}, sort_keys=True)
    return cache_dir / f"reuters-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def embed_all(data_dir: Path = DEFAULT_DATA_DIR, cache_dir: Path | None = None) -> tuple[F32, pa.Table]:
    """Every story's vector (``[21577, 384]``, unit length) and attributes, embedding on the first
    call and reading the cache after that."""
    data_file = Path(data_dir) / REUTERS_FILE
    if not data_file.is_file():
        raise BenchError(f"{data_file} not found: pass --data pointing at the shared data directory")
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    prefix = _cache_prefix(cache_dir, data_file)
    vec_path, attr_path, meta_path = (prefix.with_name(prefix.name + s)
                                      for s in (".vectors.npy", ".attrs.arrow", ".meta.json"))
    if not meta_path.is_file():  # the meta file is written last: its presence marks a complete entry
        texts, attrs = _read_corpus(data_file)
        log(f"embedding {len(texts):,} Reuters stories with {MODEL_ID} (cached for later runs)")
        model = load_model()
        model.max_seq_length = MAX_TOKENS
        started = time.perf_counter()
        vectors = embed(texts, model=model)
        seconds = time.perf_counter() - started
        cache_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(vec_path, lambda f: np.save(f, vectors))
        _atomic_write(attr_path, lambda f: feather.write_feather(attrs, f, compression="uncompressed"))
        meta = {"model": MODEL_ID, "max_tokens": MAX_TOKENS, "data_file": str(data_file),
                "stories": len(texts),
                "embed_seconds": round(seconds, 1), "stories_per_second": round(len(texts) / seconds, 1),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=2).encode()))
    vectors = np.asarray(np.load(vec_path, mmap_mode="r"))
    attrs = feather.read_table(attr_path, memory_map=True)
    if vectors.shape != (attrs.num_rows, DIM):
        raise BenchError(f"cache entry {prefix}.* holds vectors {vectors.shape} for {attrs.num_rows} "
                         "stories: delete its files and run again")
    return vectors, attrs


def load_reuters(
    data_dir: Path = DEFAULT_DATA_DIR,
    n: int | None = None,
    n_queries: int = 500,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> ReutersSample:
    """Held-out stories as queries: a seeded permutation's first ``n_queries`` stories are the
    queries, the next ``n`` (all the rest when None) the base rows."""
    vectors, attrs = embed_all(data_dir, cache_dir)
    total = vectors.shape[0]
    n = total - n_queries if n is None else n
    if n < 1 or n_queries < 1 or n + n_queries > total:
        raise BenchError(f"n={n}, queries={n_queries}: Reuters-21578 has {total:,} stories; "
                         f"expected n + queries <= {total:,}")
    perm = np.random.default_rng(seed).permutation(total)
    q_rows, b_rows = np.sort(perm[:n_queries]), np.sort(perm[n_queries:n_queries + n])
    base = np.ascontiguousarray(vectors[b_rows])
    queries = np.ascontiguousarray(vectors[q_rows])
    source = (f"{n:,} all-MiniLM-L6-v2 vectors of Reuters-21578 stories (title + body, {MAX_TOKENS} tokens), "
              f"{n_queries:,} held-out stories as queries")
    return ReutersSample(base, queries, attrs.take(pa.array(b_rows)).combine_chunks(), source)


def configure(parser: ScenarioParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $VECSTORE_BENCH_CACHE")
    parser.set_defaults(threads=2)


def run(args: argparse.Namespace) -> int:
    """Build (embedding on the first call) or check the cache entry, and print what it holds."""
    started = time.perf_counter()
    vectors, attrs = embed_all(args.data, args.cache_dir)
    print(f"loaded in {time.perf_counter() - started:.1f} s: vectors {vectors.shape}, "
          f"attributes {attrs.column_names}")
    write_json(args.json, {"stories": int(vectors.shape[0])})
    return 0
