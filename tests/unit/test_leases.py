"""A lease's temporary file left by a killed writer goes at the next look; a live writer's stays."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from vecstore.storage.leases import LEASES_DIR, TMP_PREFIX, held_paths, take_lease

SEGMENT = f"data/{'ab' * 16}.arrow"


def test_a_dead_writers_temporary_lease_goes_and_a_live_ones_stays(tmp_path: Path) -> None:
    leases = tmp_path / LEASES_DIR
    leases.mkdir()
    dead = leases / f"{TMP_PREFIX}dead.lease"
    dead.write_text('{"pid": 1, "what": "x", "paths": []}')  # a writer killed before its rename
    live = leases / f"{TMP_PREFIX}live.lease"
    fd = os.open(live, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a writer between its lock and its rename
    try:
        assert held_paths(tmp_path) == (set(), 0)
        assert not dead.exists() and live.exists()
    finally:
        os.close(fd)
    lease = take_lease(tmp_path, [SEGMENT], "test")
    assert lease is not None and held_paths(tmp_path) == ({SEGMENT}, 1)
    lease.release()
