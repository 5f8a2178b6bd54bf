"""vecstore's benchmarks: ``python -m bench <scenario>`` (``python -m bench --list``).

One module per scenario, registered in :mod:`bench.cli`; shared helpers in :mod:`bench.common`
and :mod:`bench.data`; the side-by-side peers in :mod:`bench.peers`. Never collected by pytest.
"""
