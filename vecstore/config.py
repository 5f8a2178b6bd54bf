"""Configuration: metrics and table settings as small frozen values, normalised in one place."""

from __future__ import annotations

import enum
import math
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


@dataclass(frozen=True)
class TableConfig:
    """The settings a table is created with; stored in every manifest of the table."""

    dim: int
    metric: Metric = Metric.COSINE
    embedder: str | None = None
    keyword: KeywordConfig = KeywordConfig()

    def __post_init__(self) -> None:
        if not isinstance(self.keyword, KeywordConfig):
            raise InvalidArgumentError(f"keyword must be a KeywordConfig, got {self.keyword!r}")
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim <= 0:
            raise InvalidArgumentError(f"dim must be a positive integer, got {self.dim!r}")
        if self.dim > 65536:
            raise InvalidArgumentError(f"dim must be at most 65536, got {self.dim}")
        object.__setattr__(self, "metric", Metric.parse(self.metric))

    def to_json(self) -> dict[str, object]:
        return {"dim": self.dim, "metric": self.metric.value, "embedder": self.embedder,
                "keyword": self.keyword.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TableConfig:
        return cls(
            dim=int(data["dim"]),  # type: ignore[call-overload]
            metric=Metric.parse(str(data["metric"])),
            embedder=data.get("embedder"),  # type: ignore[arg-type]
            keyword=KeywordConfig.from_json(data.get("keyword")),  # absent from older manifests: the default
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
        max_widenings: how often a post-filtered index search that came back short is retried
            with four times the candidates before the planner falls back to the scan.
        min_binary_dim: below this many dimensions sign codes hold too few bits to rank
            candidates (most rows tie), so a scan starts from the int8 codes instead.
    """

    oversample: int = 16
    filtered_oversample: int = 32
    scan_max_matches: int = 150_000
    postfilter_min_selectivity: float = 0.5
    max_widenings: int = 3
    min_binary_dim: int = 64

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
