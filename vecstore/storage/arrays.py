"""Arrow arrays as NumPy arrays without pyarrow's conversion layer.

``pyarrow.Array.to_numpy`` imports pandas on its first call (half a second, and 60 MB of
resident memory, in a process that never uses pandas), which would land on the first query of
a freshly opened table. Primitive arrays (integers, floats, booleans, timestamps and dates as
their integer ticks) are read here straight from their buffers: a zero-copy view for numbers,
an unpacked copy for booleans. Anything else falls back to ``to_numpy``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def to_numpy(arr: pa.Array | pa.ChunkedArray, *, fill: Any = None) -> np.ndarray:
    """``arr``'s values as NumPy (read-only when a view). Nulls, when there are any, are
    replaced by ``fill`` (required then), or the conversion falls back to ``to_numpy``."""
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks == 1:
            arr = arr.chunk(0)
        elif arr.num_chunks == 0:
            return np.empty(0, dtype=_dtype(arr.type) or object)
        else:
            arr = arr.combine_chunks()
    t = arr.type
    if arr.null_count:
        if fill is None:
            return arr.to_numpy(zero_copy_only=False)
        import pyarrow.compute as pc

        arr = pc.fill_null(arr, fill)
    n, offset = len(arr), arr.offset
    if pa.types.is_boolean(t):
        buf = arr.buffers()[1]
        if buf is None:
            return np.zeros(n, dtype=bool)
        bits = np.frombuffer(buf, dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little", count=offset + n)[offset:].astype(bool)
    dtype = _dtype(t)
    if dtype is None:
        return arr.to_numpy(zero_copy_only=False)
    buf = arr.buffers()[1]
    if buf is None:
        return np.zeros(n, dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=n, offset=offset * dtype.itemsize)


def _dtype(t: pa.DataType) -> np.dtype | None:
    if pa.types.is_integer(t):
        return np.dtype(f"{'i' if pa.types.is_signed_integer(t) else 'u'}{t.bit_width // 8}")
    if pa.types.is_floating(t):
        return np.dtype(f"f{t.bit_width // 8}")
    if pa.types.is_timestamp(t) or pa.types.is_time64(t) or pa.types.is_duration(t) or pa.types.is_date64(t):
        return np.dtype(np.int64)
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        return np.dtype(np.int32)
    return None
