"""The kernels' ``warm_up()`` loads every variant a query reaches.

Numba compiles a kernel once per combination of argument types, and an array's type includes
whether it is writeable: a memory-mapped segment's norms are read-only, several segments'
norms concatenated are not. A combination ``warm_up()`` leaves out is loaded on the query's own
thread the first time one needs it: ~0.2 s from Numba's on-disk cache in every new process,
and seconds of compiling on a fresh install. (Two had been left out: the rescoring of
``hnsw-int8`` candidates and the batch scan over a single segment, both with that segment's
read-only norms.)

The workload runs in a fresh process, so that what other tests called does not count, and
compares each kernel's loaded variants before and after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

WORKLOAD = textwrap.dedent('''
    import json, sys, tempfile
    import numpy as np
    import vecstore
    from numba.core.registry import CPUDispatcher
    from vecstore._native import loader

    def variants():
        out = {}
        for name in ("kernels", "graph"):
            module = loader.get(name, wait=True)
            for attr in dir(module):
                kernel = getattr(module, attr)
                if isinstance(kernel, CPUDispatcher):
                    out[f"{name}.{attr}"] = {str(s) for s in kernel.signatures}
        return out

    before = variants()
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
    after = variants()
    print(json.dumps({k: sorted(after[k] - before.get(k, set()))
                      for k in after if after[k] - before.get(k, set())}))
''')


def test_queries_reach_no_kernel_variant_that_warm_up_leaves_out():
    pytest.importorskip("numba")
    if os.environ.get("VECSTORE_KERNELS", "").lower() == "numpy":
        pytest.skip("VECSTORE_KERNELS=numpy: the NumPy twins, no compiled kernels")
    out = subprocess.run([sys.executable, "-c", WORKLOAD], capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    left_out = json.loads(out.stdout.strip().splitlines()[-1])
    assert left_out == {}, f"variants loaded on a query's thread: {json.dumps(left_out, indent=1)}"
