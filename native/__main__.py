"""``python -m vecstore._native``: compile the Numba kernels into their on-disk cache now."""

import importlib
import time

# by the package's own name, as the loader imports the kernels: native/ imports nothing of vecstore
loader = importlib.import_module(f"{__package__}.loader")

t0 = time.perf_counter()
loader.compile_all()
print(f"vecstore kernels ready ({time.perf_counter() - t0:.1f} s)")
