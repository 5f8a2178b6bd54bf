"""SIGKILL at random moments during writes: the store is always at a committed version.

A child process (forked, so it starts in milliseconds) applies a seeded sequence of writes and
records each one after it returned. The parent kills it after a random delay, reopens the store
with no repair step and checks that it holds exactly the model after the recorded writes, or
after one more (killed between the commit and the record), and that search agrees with the
model. Then a new child continues from there.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

import vecstore

from .crash_harness import (
    DIM,
    apply,
    check_keyword,
    check_search,
    child,
    make_ops,
    new_model,
    partial_models,
    same,
    table_content,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def crash_run(tmp_path, seed: int, kills: int, max_delay: float) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    ops = make_ops(seed, 4000)
    store = tmp_path / "store"
    vecstore.connect(store).create_table("t", dim=DIM)
    done_file = str(tmp_path / "done")
    models = [new_model()]
    ctx = mp.get_context("fork")
    start = 0
    stats = {"kills": 0, "ops_committed": 0, "between_commit_and_record": 0,
             "between_commits_of_a_sync": 0, "rows_lost": 0}
    for _ in range(kills):
        p = ctx.Process(target=child, args=(str(store), ops, start, done_file))
        p.start()
        time.sleep(float(rng.uniform(0.0, max_delay)))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        stats["kills"] += 1
        with open(done_file) as fh:
            done = [int(x) for x in fh.read().split()]
        last = done[-1] if done else -1
        while len(models) <= last + 2 and len(models) <= len(ops):
            models.append(apply(models[-1], ops[len(models) - 1]))
        content = table_content(store)
        partial = [m for m in partial_models(models[last + 1], ops[last + 1]) if same(content, m)] \
            if last + 1 < len(ops) else []
        if same(content, models[last + 1]):
            start = last + 1
            now = models[start]
        elif last + 2 < len(models) and same(content, models[last + 2]):
            start = last + 2  # the commit landed, the child died before recording it
            now = models[start]
            stats["between_commit_and_record"] += 1
            with open(done_file, "a") as fh:
                fh.write(f"{last + 1}\n")
        elif partial:  # killed between two commits of an incremental ingest: run it again
            start = last + 1
            now = partial[0]
            stats["between_commits_of_a_sync"] += 1
        else:
            want = models[last + 1]
            lost = set(want) - set(content)
            extra = set(content) - set(want)
            raise AssertionError(f"after kill {stats['kills']}: store matches no committed state "
                                 f"(last recorded op {last}; missing {sorted(lost)[:5]}, "
                                 f"unexpected {sorted(extra)[:5]})")
        check_search(store, now, rng)
        check_keyword(store, now, rng)
        if start >= len(ops):
            break
    stats["ops_committed"] = start
    return stats


def test_sigkill_during_writes_never_leaves_a_partial_state(tmp_path):
    stats = crash_run(tmp_path, seed=7, kills=200, max_delay=0.4)
    assert stats["kills"] == 200
    assert stats["ops_committed"] > 50  # the kills landed across many writes, not only at start
    kinds = {op.kind for op in make_ops(7, 4000)[:stats["ops_committed"]]}
    assert {"update", "sync", "ingest"} <= kinds  # the writes of issue 14 were among them
    print(stats)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_many_more(tmp_path, seed):
    stats = crash_run(tmp_path, seed=seed, kills=400, max_delay=0.4)
    assert stats["kills"] == 400
