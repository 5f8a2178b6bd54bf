"""Text analysis for keyword search: a leaf package (it imports only :mod:`vecstore.config` and
:mod:`vecstore.errors`), used by the storage layer to write postings and by the query layer to
read queries the same way."""

from .analyzer import ANALYZER_VERSION, Analyzer

__all__ = ["ANALYZER_VERSION", "Analyzer"]
