"""Query layer: filters (DuckDB, sandboxed), the immutable Query builder, the planner, results."""
