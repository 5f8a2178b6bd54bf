"""Configuration: metrics and table settings as small frozen values, normalised in one place."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from .errors import InvalidArgumentError


class Metric(str, enum.Enum):
    """How vectors are compared. Scores are always higher-is-better.

    - ``cosine``: cosine similarity in [-1, 1].
    - ``dot``: inner product.
    - ``l2``: negative squared Euclidean distance.
    """

    COSINE = "cosine"
    DOT = "dot"
    L2 = "l2"

    @classmethod
    def parse(cls, value: str | Metric) -> Metric:
        if isinstance(value, Metric):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            aliases = {"cos": "cosine", "ip": "dot", "inner_product": "dot", "euclidean": "l2"}
            key = aliases.get(key, key)
            for m in cls:
                if m.value == key:
                    return m
        allowed = ", ".join(repr(m.value) for m in cls)
        raise InvalidArgumentError(f"unknown metric {value!r}; expected one of {allowed}")


KEYWORD_LANGUAGES = (
    "arabic", "armenian", "basque", "catalan", "czech", "danish", "dutch", "english", "esperanto",
    "estonian", "finnish", "french", "german", "greek", "hindi", "hungarian", "indonesian", "irish",
    "italian", "lithuanian", "nepali", "norwegian", "persian", "polish", "portuguese", "romanian",
    "russian", "serbian", "spanish", "swedish", "tamil", "turkish", "yiddish",
)
"""Languages the keyword analyzer stems (Snowball, through PyStemmer); ``"none"`` stems nothing."""


@dataclass(frozen=True)
class KeywordConfig:
    """What a table's keyword (BM25) index covers and how it splits text into terms.

    Attributes:
        columns: the string columns whose text is indexed, as one field (a row's terms are
            those of each column in turn, so ``("title", "text")`` indexes the title and the
            body together, as BEIR does). Columns the table does not hold yet are indexed when
            rows bring them.
        language: the Snowball stemmer and stopword list (``"english"``); ``"none"`` only
            splits words and casefolds them.
    """

    columns: tuple[str, ...] = ("text",)
    language: str = "english"

    def __post_init__(self) -> None:
        cols = self.columns
        if isinstance(cols, str) or not isinstance(cols, (tuple, list)) or not cols \
                or not all(isinstance(c, str) and c for c in cols):
            raise InvalidArgumentError(
                f"keyword_columns must be a non-empty list of column names, got {cols!r}")
        if len(set(cols)) != len(cols):
            raise InvalidArgumentError(f"keyword_columns names a column twice: {list(cols)!r}")
        reserved = [c for c in cols if c in ("id", "vector", "score") or c.startswith("_")]
        if reserved:
            raise InvalidArgumentError(
                f"keyword_columns must name attribute columns, not {reserved[0]!r}")
        object.__setattr__(self, "columns", tuple(cols))
        lang = self.language.strip().lower() if isinstance(self.language, str) else self.language
        if lang not in (*KEYWORD_LANGUAGES, "none"):
            raise InvalidArgumentError(
                f"unknown keyword language {self.language!r}; expected one of "
                f"{', '.join(repr(x) for x in (*KEYWORD_LANGUAGES, 'none'))}")
        object.__setattr__(self, "language", lang)

    def to_json(self) -> dict[str, object]:
        return {"columns": list(self.columns), "language": self.language}

    @classmethod
    def from_json(cls, data: object) -> KeywordConfig:
        if not isinstance(data, dict):
            return cls()
        return cls(columns=tuple(data.get("columns") or ("text",)),
                   language=str(data.get("language") or "english"))


DEFAULT_OVERSAMPLE = 16
"""Binary-stage candidates per requested hit (k x oversample); see :class:`PlannerSettings`."""


PRIMARY_VECTOR = "vector"
"""The vector column every table has; a multi-vector table keeps more beside it."""


@dataclass(frozen=True)
class Combine:
    """How a row with several vectors is scored against one query: ``max`` of its vectors'
    scores, or the ``sum`` of their scores times ``weights``. ``columns`` are the vector columns
    that take part (a query may score by a subset: ``.using("vector_late")``).

    Build one with :meth:`parse`: ``"max"``, a column name, a list of names (max over them), or
    a mapping ``{"vector": 0.75, "vector_context": 0.25}`` (a weighted sum of scores).
    """

    mode: str  # "max" or "sum"
    columns: tuple[str, ...]
    weights: tuple[float, ...] = ()

    @property
    def single(self) -> str | None:
        """The one column scored, when there is one (with weight 1 under ``sum``)."""
        if len(self.columns) == 1 and (self.mode == "max" or self.weights == (1.0,)):
            return self.columns[0]
        return None

    @classmethod
    def parse(cls, value: object, vectors: Sequence[str]) -> Combine:
        """``value`` for a table whose vector columns are ``vectors``; an unknown column or a
        malformed value raises an error naming what is allowed."""
        if isinstance(value, Combine):
            _check_columns(value.columns, vectors)
            return value
        if value is None or value == "max":
            return cls("max", tuple(vectors))
        if isinstance(value, str):
            _check_columns((value,), vectors)
            return cls("max", (value,))
        if isinstance(value, Mapping):
            if not value:
                raise InvalidArgumentError("combine weights are empty; give at least one column")
            names = tuple(str(k) for k in value)
            _check_columns(names, vectors)
            weights = []
            for name, w in value.items():
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
                    raise InvalidArgumentError(
                        f"combine weight of {name!r} must be a positive finite number, got {w!r}")
                weights.append(float(w))
            return cls("sum", names, tuple(weights))
        if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
            names = tuple(dict.fromkeys(value))
            _check_columns(names, vectors)
            return cls("max", names)
        raise InvalidArgumentError(
            f"combine must be 'max', a vector column name, a list of them or a mapping "
            f"{{column: weight}}, got {value!r}")

    def to_json(self) -> object:
        if self.mode == "max":
            return "max" if len(self.columns) > 1 else self.columns[0]
        return dict(zip(self.columns, self.weights, strict=True))


def _check_columns(names: Sequence[str], vectors: Sequence[str]) -> None:
    for name in names:
        if name not in vectors:
            raise InvalidArgumentError(
                f"unknown vector column {name!r}; the table's vector columns are: "
                f"{', '.join(map(repr, vectors))}")


def check_vector_names(vectors: object) -> tuple[str, ...]:
    """The vector columns of a table: ``"vector"`` first, then distinct names of the form
    ``vector_<suffix>`` (letters, digits, ``_``)."""
    if isinstance(vectors, str) or not isinstance(vectors, Sequence) or not vectors:
        raise InvalidArgumentError(
            f"vectors must be a list of column names starting with 'vector', got {vectors!r}")
    names = tuple(vectors)
    if names[0] != PRIMARY_VECTOR:
        raise InvalidArgumentError(
            f"the first vector column must be 'vector' (the one every table has), got {names!r}")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"vector column names repeat: {names!r}")
    for name in names[1:]:
        if not isinstance(name, str) or not _VECTOR_NAME.match(name):
            raise InvalidArgumentError(
                f"vector column {name!r} must be named 'vector_<suffix>' (letters, digits, '_'; "
                f"at most 64 characters)")
    if len(names) > 8:
        raise InvalidArgumentError(f"a table keeps at most 8 vectors per row, got {len(names)}")
    return names


_VECTOR_NAME = re.compile(r"^vector_[A-Za-z0-9_]{1,57}$")


@dataclass(frozen=True)
class TableConfig:
    """The settings a table is created with; stored in every manifest of the table.

    ``vectors``: the vector columns each row keeps (``("vector",)``, or several: a multi-vector
    table, all of dimension ``dim``); ``combine``: how a row with several is scored unless a
    query says otherwise (:class:`Combine`; the max of its vectors' scores by default).
    """

    dim: int
    metric: Metric = Metric.COSINE
    embedder: str | None = None
    keyword: KeywordConfig = KeywordConfig()
    vectors: tuple[str, ...] = (PRIMARY_VECTOR,)
    combine: Combine | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.keyword, KeywordConfig):
            raise InvalidArgumentError(f"keyword must be a KeywordConfig, got {self.keyword!r}")
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim <= 0:
            shown = repr(self.dim) if isinstance(self.dim, (int, float)) else f"a {type(self.dim).__name__}"
            raise InvalidArgumentError(f"dim must be a positive integer, got {shown}")
        if self.dim > 65536:
            raise InvalidArgumentError(f"dim must be at most 65536, got {self.dim}")
        object.__setattr__(self, "metric", Metric.parse(self.metric))
        if self.vectors != (PRIMARY_VECTOR,):
            object.__setattr__(self, "vectors", check_vector_names(self.vectors))
        object.__setattr__(self, "combine", Combine.parse(self.combine, self.vectors))

    @property
    def multi(self) -> bool:
        """Whether rows keep more than one vector."""
        return len(self.vectors) > 1

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"dim": self.dim, "metric": self.metric.value, "embedder": self.embedder,
                                  "keyword": self.keyword.to_json()}
        if self.multi:  # a single-vector table's settings read as before (format 1)
            out["vectors"] = list(self.vectors)
            assert self.combine is not None
            out["combine"] = self.combine.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TableConfig:
        raw = data.get("vectors") or (PRIMARY_VECTOR,)
        vectors = tuple(str(v) for v in raw)  # type: ignore[attr-defined]
        return cls(
            dim=int(data["dim"]),  # type: ignore[call-overload]
            metric=Metric.parse(str(data["metric"])),
            embedder=data.get("embedder"),  # type: ignore[arg-type]
            keyword=KeywordConfig.from_json(data.get("keyword")),  # absent from older manifests: the default
            vectors=vectors,
            combine=Combine.parse(data.get("combine"), vectors),
        )


@dataclass(frozen=True)
class PlannerSettings:
    """The query planner's thresholds. Pass one to :func:`vecstore.connect` (``planner=``) or
    to ``db.open_table`` to change them, e.g. to force a strategy in a test or a benchmark::

        vecstore.connect(path, planner=PlannerSettings(scan_max_matches=0))   # never scan filtered

    Attributes:
        oversample: binary-stage candidates per requested hit (``k x oversample``) of a scan.
            16: recall@10 0.961 on 200,000 MiniLM vectors (docs/benchmarks.md, "Exact search").
        filtered_oversample: the same for a filtered scan, unless the query sets ``.rescore()``.
            The best rows inside a filter are usually less similar to the query than the best
            of the whole table, and sign codes rank weak neighbours less reliably: month filters
            keeping 2-50% gave recall@10 0.947-0.951 at 16 and 0.970-0.986 at 32.
        scan_max_matches: at or below this many matches a filtered query scans them instead of
            searching an index (the scan's cost grows with the matches, the index's with the
            table). 150,000: the crossover on 200,000 MiniLM vectors lay between 100,000 and
            200,000 matches (docs/benchmarks.md, "Planner strategies, forced").
        postfilter_min_selectivity: when a filter keeps at least this fraction of the indexed
            rows, the index is searched unfiltered for ``k / selectivity`` candidates which are
            filtered afterwards; below it the filter is passed into the index search.
        postfilter_scan_max_matches: ``scan_max_matches`` for a filter that broad: such a
            search costs about an unfiltered one whatever the matches, while a scan's cost grows
            with them. 30,000: on the 64,000-row PyPI table (13 adds) a month filter keeping
            32,549 rows (50.9%) ran at the same speed either way, at recall 0.97 post-filtered
            against 0.94 scanned (docs/benchmarks.md, "Hot path").
        max_widenings: how often a post-filtered index search that came back short is retried
            with four times the candidates before the planner falls back to the scan.
        min_binary_dim: below this many dimensions sign codes hold too few bits to rank
            candidates (most rows tie), so a scan starts from the int8 codes instead.
        exact_scan_rows: a table with fewer rows whose scan was never measured (the scan's
            oversample is measured from 5,000 rows on: ``vecstore.query.calibrate``) scores every
            row exactly: a fraction of a millisecond, where the default oversample is a guess
            (on 1,000 random 384-d rows, 16 found 0.81 of the true top 10). 0: the defaults
            above apply.
        mapped_rescore_bytes: a table whose float32 vectors take at most this many bytes
            rescores an index's candidates with the rows read through the memory map; a larger
            one reads them with ``pread``. 0 (every table reads them): a serving process keeps
            its index in memory, not the vectors file, which mapped reads map into it a folio
            at a time (64,000 384-d rows: 268 -> 174 MiB of RSS growth), at ~1 µs a row (10-20
            rows a query: 0.86x the q/s of mapped reads unfiltered on those rows,
            docs/benchmarks.md, "Hot path"). Raise it to trade that memory for that speed.
    """

    oversample: int = 16
    filtered_oversample: int = 32
    scan_max_matches: int = 150_000
    postfilter_min_selectivity: float = 0.5
    postfilter_scan_max_matches: int = 30_000
    max_widenings: int = 3
    min_binary_dim: int = 64
    exact_scan_rows: int = 5_000
    mapped_rescore_bytes: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "postfilter_min_selectivity":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and not math.isnan(value)
            else:
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= (
                    1 if "oversample" in f.name else 0)
            if not ok:
                want = "a number" if f.name == "postfilter_min_selectivity" else "a non-negative integer"
                raise InvalidArgumentError(f"PlannerSettings.{f.name} must be {want}, got {value!r}")


def check_timeout(value: object, name: str = "timeout") -> float | None:
    """``value`` as seconds (a positive finite number), or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise InvalidArgumentError(
            f"{name} must be a positive number of seconds or None (no limit), got {value!r}; "
            f"e.g. {name}=5")
    return float(value)
