"""Helpers for the framework adapters' tests: a deterministic bag-of-words embedding."""

from __future__ import annotations

import hashlib
import re

import numpy as np

DIM = 32


def bag_of_words(text: str, dim: int = DIM) -> list[float]:
    """A unit vector counting the words of ``text`` into ``dim`` hashed buckets: texts sharing
    words are close, the same text gives the same vector on every machine."""
    vec = np.zeros(dim)
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vec[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    if not vec.any():
        vec[0] = 1.0
    return (vec / np.linalg.norm(vec)).tolist()
