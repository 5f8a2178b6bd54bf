"""Whole-file checksums read a window at a time (vecstore.checksums)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import xxhash

from vecstore import checksums
from vecstore.errors import CorruptStoreError

WHOLE = {"crc32": zlib.crc32, "xxh3": xxhash.xxh3_64_intdigest}  # each algorithm, in one call


@pytest.mark.parametrize("algorithm", sorted(checksums.ALGORITHMS))
@pytest.mark.parametrize("size", [0, 1, 8192, 8193, 50_000])
def test_windowed_checksum_equals_the_whole_file_checksum(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, algorithm: str) -> None:
    monkeypatch.setattr(checksums, "WINDOW", 8192)  # several windows, and a partial last one
    data = os.urandom(size)
    want = WHOLE[algorithm](data)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert checksums.checksum_of_fd(fd, algorithm) == want
        assert checksums.checksum_pread(fd, algorithm, chunk=4096) == want
        checksums.checksum_check(fd, algorithm, want, lambda v: CorruptStoreError(str(v))).wait()
        bad = checksums.checksum_check(fd, algorithm, want ^ 1, lambda v: CorruptStoreError("bad"))
    finally:
        os.close(fd)  # the check reads its own descriptor
    with pytest.raises(CorruptStoreError, match="bad"):
        bad.wait()


@pytest.mark.parametrize("algorithm", sorted(checksums.ALGORITHMS))
def test_a_digest_fed_in_pieces_equals_one_call(algorithm: str) -> None:
    data = os.urandom(10_000)
    digest = checksums.Digest(algorithm)
    for start in range(0, len(data), 777):
        digest.update(memoryview(data)[start:start + 777])
    assert digest.value() == WHOLE[algorithm](data)
    assert 0 <= digest.value() <= checksums.ALGORITHMS[algorithm]


def test_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown checksum algorithm 'md5'"):
        checksums.Digest("md5")
