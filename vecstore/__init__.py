"""vecstore: embedded vector search with Arrow storage, DuckDB filters and filtered ANN.

>>> import vecstore, tempfile
>>> tmp = tempfile.TemporaryDirectory()
>>> db = vecstore.connect(tmp.name)
>>> tbl = db.create_table("papers", dim=2)
>>> tbl.add([{"id": "p1", "vector": [1.0, 0.0], "year": 2021}])
['p1']
>>> tbl.search([1.0, 0.1]).limit(1).to_list()[0]["id"]
'p1'
>>> tmp.cleanup()
"""

from .config import Metric, PlannerSettings, TableConfig
from .db import Database, connect
from .documents import IngestReport
from .errors import (
    AlreadyExistsError,
    AuthenticationError,
    ConcurrencyError,
    CorruptStoreError,
    DuplicateIdError,
    FilterError,
    InvalidArgumentError,
    MissingDependencyError,
    NotFoundError,
    QueryTimeoutError,
    ReadOnlyError,
    RemoteError,
    SchemaError,
    VecstoreError,
)
from .query.builder import BatchQuery, Query
from .query.results import Hits, Plan, Strategy
from .table import CleanupReport, Table

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "BatchQuery",
    "CleanupReport",
    "ConcurrencyError",
    "CorruptStoreError",
    "Database",
    "DuplicateIdError",
    "FilterError",
    "Hits",
    "IngestReport",
    "InvalidArgumentError",
    "Metric",
    "MissingDependencyError",
    "NotFoundError",
    "Plan",
    "PlannerSettings",
    "Query",
    "QueryTimeoutError",
    "ReadOnlyError",
    "RemoteError",
    "SchemaError",
    "Strategy",
    "Table",
    "TableConfig",
    "VecstoreError",
    "__version__",
    "connect",
]
