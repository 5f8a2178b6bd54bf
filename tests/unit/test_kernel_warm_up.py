"""The kernels' ``warm_up()`` loads every variant a query reaches.

Numba compiles a kernel once per combination of argument types, and an array's type includes
whether it is writeable: a memory-mapped segment's norms are read-only, several segments'
norms concatenated are not. A combination ``warm_up()`` leaves out is loaded on the query's own
thread the first time one needs it: ~0.2 s from Numba's on-disk cache in every new process,
and seconds of compiling on a fresh install. (Three had been left out: the rescoring of
``hnsw-int8`` candidates and the batch scan over a single segment, both with that segment's
read-only norms, and ``ivf-binary``'s filtered list scan with the index's read-only labels.)

The workload runs in a fresh process, so that what other tests called does not count, and
compares each kernel's variants with those ``compile_all()`` loads in another fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

VARIANTS = textwrap.dedent('''
    import importlib
    from numba.core.registry import CPUDispatcher

    def variants():
        out = {}
        for name in ("kernels", "graph"):
            module = importlib.import_module(f"vecstore._native.{name}")
            for attr in dir(module):
                kernel = getattr(module, attr)
                if isinstance(kernel, CPUDispatcher):
                    out[f"{name}.{attr}"] = sorted(str(s) for s in kernel.signatures)
        return out
''')

WARMED = VARIANTS + textwrap.dedent('''
    import json
    from vecstore._native import loader
    loader.compile_all()
    print(json.dumps(variants()))
''')

WORKLOAD = VARIANTS + textwrap.dedent('''
    import json, sys, tempfile
    import numpy as np
    import vecstore
    from vecstore._native import loader

    rng = np.random.default_rng(0)
    path = tempfile.mkdtemp()
    planner = vecstore.PlannerSettings(exact_scan_rows=0)  # the staged scans, not the exact one
    db = vecstore.connect(path, planner=planner)
    for kind in ("", "ivf-binary"):
        for metric in ("cosine", "l2") if not kind else ("cosine",):
            for segments in (1, 3):
                tbl = db.create_table(f"t{kind.replace('-', '_')}_{metric}_{segments}", dim=64,
                                      metric=metric)
                for s in range(segments):
                    tbl.add([{"id": f"{s}-{i}", "vector": rng.normal(size=64).astype(np.float32),
                              "n": i} for i in range(1200 // segments)])
                queries = rng.normal(size=(3, 64)).astype(np.float32)

                def run(tbl):
                    for where in (None, "n < 8", "n < 300"):
                        for q in queries:
                            one = tbl.search(q).limit(10)
                            one = one.where(where) if where else one
                            one.to_list()
                        for threads in (None, 2):
                            batch = tbl.search_batch(queries, threads=threads).limit(10)
                            batch = batch.where(where) if where else batch
                            batch.to_list()

                run(tbl)
                tbl.create_index(kind) if kind else tbl.create_index()
                run(tbl)
                tbl.delete("n = 3")
                run(tbl)
                run(vecstore.connect(path, planner=planner).open_table(tbl.name))  # as loaded
    assert loader.settle(), "kernels asked for were not loaded"
    print(json.dumps({"variants": variants(), "loaded": sorted(map(list, loader.loaded()))}))
''')


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_queries_reach_no_kernel_variant_that_warm_up_leaves_out():
    pytest.importorskip("numba")
    if os.environ.get("VECSTORE_KERNELS", "").lower() == "numpy":
        pytest.skip("VECSTORE_KERNELS=numpy: the NumPy twins, no compiled kernels")
    warmed = _run(WARMED)
    work = _run(WORKLOAD)
    left_out = {k: sorted(set(v) - set(warmed.get(k, ()))) for k, v in work["variants"].items()}
    left_out = {k: v for k, v in left_out.items() if v}
    assert left_out == {}, f"variants loaded on a query's thread: {json.dumps(left_out, indent=1)}"
    # a process keeps only the kernels its queries ran
    loaded = {tuple(k) for k in work["loaded"]}
    assert ("graph", "graph_search") in loaded and ("kernels", "rescore_labels_batch") in loaded
    assert ("kernels", "read_rows") not in loaded  # tables over ON_DISK_BYTES only
