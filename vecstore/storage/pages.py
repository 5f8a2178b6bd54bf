"""Reading a large table's rows where they lie, out of the process's resident memory.

A segment's file is memory-mapped read-only, and every page a query reads through the map stays
mapped in the process (counted in its RSS, as ``RssFile``) until the kernel needs the memory
back. A random read maps far more than the row: Linux's fault-around maps the aligned 64 KiB
around the faulting page, and a page-cache folio of up to megabytes is mapped whole (observed
on 6.18: 40 random 512-byte float32 rows mapped ~15 MB of a 20 MB column; ``MADV_RANDOM`` did
not change it). On a table much larger than what its index keeps in RAM (the one-box tier of
docs/scale.md: sign codes in RAM, int8 codes and float32 vectors on disk, read only for the
rows a query rescores) the process's RSS would grow with every query towards the size of its
files, although each query reads a few hundred rows.

So a table whose segment files add up to more than :data:`ON_DISK_BYTES` is *on disk*: the
rescoring stages read its int8 codes and float32 vectors with ``preadv`` into small arrays
(:meth:`RowReader.gather`), a run of consecutive rows in one call. The bytes come from the
kernel's page cache (shared and reclaimable) or the disk; nothing of them stays mapped. Nor is
such a table's column copied whole into memory (:attr:`RowReader.on_disk`). On every table,
whatever its size, an index's candidates (the 10-20 rows a query rescores) are read from the
files with ``pread`` (:meth:`RowReader.files_of`, ``Snapshot.vector_files``): a serving
process keeps its index in memory and not the vectors it rescores with.

The file read is the one that was verified when the segment was opened: it is reopened by path
inside the table's directory (no links followed) and must be the same inode, or the read is
refused.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from .._native import loader
from ..errors import CorruptStoreError
from .files import open_in_table

G = TypeVar("G", bound=np.generic)

ON_DISK_BYTES = 1 << 30
"""Segment files beyond which a table's rows are read with ``preadv`` rather than through the
memory map (see the module docstring). Below it a query's reads map pages of a table small
enough to stay resident (1 GiB: ~500,000 384-d rows), and a mapped read is cheaper than a
system call; above it RSS, not the call, is what a serving process pays for."""


@dataclass(frozen=True)
class FileMapping:
    """One memory-mapped segment file: its address range (page aligned, as ``mmap`` returns
    it), its path in the table's directory and the identity of the file mapped."""

    address: int
    length: int
    table_dir: Path
    path: str
    device: int
    inode: int

    def offset_of(self, array: npt.NDArray[np.generic]) -> int | None:
        """The file offset of ``array``'s first byte, or None when it does not lie in this
        mapping (a copy in memory)."""
        start = array.__array_interface__["data"][0]
        if self.address <= start and start + array.nbytes <= self.address + self.length:
            return int(start - self.address)
        return None


class RowReader:
    """Rows of an on-disk table's memory-mapped columns read with ``preadv`` (see the module
    docstring). One per snapshot; thread-safe. Its descriptors close with it."""

    def __init__(self, mappings: list[FileMapping]) -> None:
        self.mappings = tuple(mappings)
        self.on_disk = sum(m.length for m in self.mappings) > ON_DISK_BYTES
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close_all, self._fds)

    def gather(self, array: npt.NDArray[G], rows: npt.NDArray[np.int64]) -> npt.NDArray[G]:
        """``array[rows]`` for a C-contiguous array of one of the mapped files, read from the
        file (``rows`` ascending reads runs of consecutive rows in one call each); an array that
        is not in a mapped file is indexed in memory."""
        found = self._located(array)
        if found is None:
            return array[rows]
        mapping, base = found
        out = np.empty((rows.size, *array.shape[1:]), dtype=array.dtype)
        if rows.size == 0:
            return out
        if rows.min() < 0 or rows.max() >= array.shape[0]:
            raise IndexError(f"rows out of range 0..{array.shape[0] - 1}")
        row_bytes = array.itemsize * (array.size // max(array.shape[0], 1))
        fd = self._fd(mapping)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        # runs of consecutive rows: one read each, from compiled code once the kernels are in
        read = loader.get("kernels").read_rows(fd, base, row_bytes, rows, out.reshape(-1).view(np.uint8))
        if read < rows.size:
            size = os.fstat(fd).st_size
            raise CorruptStoreError(f"file {mapping.table_dir / mapping.path} ended at {size} bytes "
                                    f"while reading row {int(rows[read])} (bytes "
                                    f"{base + int(rows[read]) * row_bytes}..)")
        return out

    def files_of(self, arrays: Sequence[npt.NDArray[np.generic]]
                 ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
        """For C-contiguous ``arrays`` each in one of the mapped files: the descriptor of its
        file and the file offset of its first byte, one of each per array, for a kernel that
        reads their rows with ``pread`` (``float_scores_rows_files``); None when one lies
        elsewhere (a copy in memory)."""
        fds, offsets = [], []
        for array in arrays:
            found = self._located(array)
            if found is None:
                return None
            fds.append(self._fd(found[0]))
            offsets.append(found[1])
        return np.array(fds, dtype=np.int64), np.array(offsets, dtype=np.int64)

    def _located(self, array: npt.NDArray[np.generic]) -> tuple[FileMapping, int] | None:
        """The mapping a C-contiguous ``array`` lies in and the file offset of its first byte;
        None for an array elsewhere (a copy in memory) or not C-contiguous."""
        if not array.flags.c_contiguous:
            return None
        return next(((m, off) for m in self.mappings if (off := m.offset_of(array)) is not None), None)

    def _fd(self, mapping: FileMapping) -> int:
        fd = self._fds.get(mapping.address)
        if fd is not None:
            return fd
        with self._lock:
            fd = self._fds.get(mapping.address)
            if fd is None:
                fd = open_in_table(mapping.table_dir, mapping.path)
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != (mapping.device, mapping.inode):
                    os.close(fd)
                    raise CorruptStoreError(
                        f"file {mapping.table_dir / mapping.path} was replaced after it was "
                        f"opened and verified: reopen the table")
                self._fds[mapping.address] = fd
        return fd


def _close_all(fds: dict[int, int]) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()
