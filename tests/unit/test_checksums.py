"""Whole-file checksums read a window at a time (vecstore.checksums)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from vecstore import checksums
from vecstore.errors import CorruptStoreError


@pytest.mark.parametrize("size", [0, 1, 8192, 8193, 50_000])
def test_windowed_crc_equals_the_whole_file_crc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                size: int) -> None:
    monkeypatch.setattr(checksums, "WINDOW", 8192)  # several windows, and a partial last one
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert checksums.crc32_of_fd(fd) == zlib.crc32(data)
        checksums.crc32_check(fd, zlib.crc32(data), lambda crc: CorruptStoreError(str(crc))).wait()
        bad = checksums.crc32_check(fd, zlib.crc32(data) ^ 1, lambda crc: CorruptStoreError("bad"))
    finally:
        os.close(fd)  # the check reads its own descriptor
    with pytest.raises(CorruptStoreError, match="bad"):
        bad.wait()
