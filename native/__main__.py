"""``python -m vecstore._native``: compile the Numba kernels into their on-disk cache now."""

import time

from vecstore._native import loader

t0 = time.perf_counter()
loader.compile_all()
print(f"vecstore kernels ready ({time.perf_counter() - t0:.1f} s)")
