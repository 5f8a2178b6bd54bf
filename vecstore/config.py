"""Configuration: metrics and table settings as small frozen values, normalised in one place."""

from __future__ import annotations

import enum
from dataclasses import dataclass

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


DEFAULT_OVERSAMPLE = 16
"""Binary-stage candidates per requested hit (k x oversample). Set from bench/exact.py: see
docs/benchmarks.md for the recall this gives on 200,000 MiniLM vectors."""


@dataclass(frozen=True)
class TableConfig:
    """The settings a table is created with; stored in every manifest of the table."""

    dim: int
    metric: Metric = Metric.COSINE
    embedder: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim <= 0:
            raise InvalidArgumentError(f"dim must be a positive integer, got {self.dim!r}")
        if self.dim > 65536:
            raise InvalidArgumentError(f"dim must be at most 65536, got {self.dim}")
        object.__setattr__(self, "metric", Metric.parse(self.metric))

    def to_json(self) -> dict[str, object]:
        return {"dim": self.dim, "metric": self.metric.value, "embedder": self.embedder}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TableConfig:
        return cls(
            dim=int(data["dim"]),  # type: ignore[call-overload]
            metric=Metric.parse(str(data["metric"])),
            embedder=data.get("embedder"),  # type: ignore[arg-type]
        )
