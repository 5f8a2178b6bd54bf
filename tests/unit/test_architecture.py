"""The layers import downward only (docs/architecture.md): a test fails the moment a module
imports upward, so the structure cannot erode one convenient import at a time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "vecstore"
NATIVE = Path(__file__).resolve().parents[2] / "native"

# layer -> vecstore modules/packages it must never import (directly or from a function body)
FORBIDDEN = {
    "storage": {"query", "table", "db", "index", "ingest", "inputs", "cli", "integrations", "server"},
    "index": {"query", "table", "db", "storage", "ingest", "inputs", "cli", "integrations", "server"},
    "ingest": {"query", "table", "db", "index", "cli", "integrations", "server"},
    "query": {"table", "db", "cli", "integrations", "server"},
    "inputs": {"query", "table", "db", "cli", "index", "ingest", "integrations", "server"},
    "evaluation": {"query", "table", "db", "storage", "index", "ingest", "cli", "server"},
    # the server is a thin layer over the public API; the client never touches storage
    "server": {"storage", "index", "ingest", "inputs", "query", "cli", "remote", "integrations"},
    "remote": {"storage", "index", "ingest", "db", "cli", "server", "integrations"},
    "wire": {"storage", "index", "ingest", "table", "db", "cli", "server", "remote"},
    "text": {"query", "table", "db", "storage", "index", "ingest", "inputs", "cli", "integrations",
             "server"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def _imported_layers(path: Path) -> set[tuple[str, int]]:
    """Top-level vecstore subpackages/modules imported by ``path``, with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel_pkg = path.relative_to(PACKAGE).parts[:-1]  # the package the module sits in
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(rel_pkg[: len(rel_pkg) - (node.level - 1)])
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from .. import x" at the top: x is a module
                    out.update((alias.name, node.lineno) for alias in node.names)
                else:
                    out.add((target[0], node.lineno))
            elif node.module and node.module.split(".")[0] == "vecstore":
                parts = node.module.split(".")
                out.add((parts[1] if len(parts) > 1 else node.names[0].name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "vecstore" and len(parts) > 1:
                    out.add((parts[1], node.lineno))
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) in FORBIDDEN)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_upward(path):
    layer = _layer(path)
    bad = sorted((name, line) for name, line in _imported_layers(path)
                 if name in FORBIDDEN[layer] and name != layer)
    assert not bad, f"{path.relative_to(PACKAGE)} ({layer}) imports upward: {bad}"


def test_native_kernels_import_nothing_of_vecstore():
    for path in NATIVE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not node.level and (node.module or "").split(".")[0] != "vecstore", (path, node.lineno)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The rule above can fail: a storage module importing the query layer is caught."""
    fake = PACKAGE / "storage" / "segments.py"
    source = "from ..query.executor import Executor\nimport vecstore.table\n"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    names = {name for name, _ in _imported_layers(fake)}
    assert {"query", "table"} <= names


def test_no_module_is_over_800_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 800}
    assert not long, f"split these modules: {long}"
