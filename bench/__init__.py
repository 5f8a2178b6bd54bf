"""Benchmarks for vecstore: one module per scenario; never collected by pytest."""
