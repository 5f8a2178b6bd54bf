"""Storage layer: immutable Arrow IPC segments, vector codes, versioned manifests, locks.

Nothing here knows about queries, indexes or embedding.
"""
