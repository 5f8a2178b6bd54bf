"""The >>> examples in native/: pytest's --doctest-modules never collects that folder, because it
must be imported as vecstore._native (native/kernels.py refuses any other name), so they run here,
under the shipped names, Numba kernels included (doctest's finder skips compiled dispatchers)."""

from __future__ import annotations

import doctest
import importlib

import pytest


def native_doctests(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    found = finder.find(module)
    for attr, value in sorted(vars(module).items()):
        py_func = getattr(value, "py_func", None)  # a Numba dispatcher: its Python function
        if py_func is not None and getattr(py_func, "__module__", None) == name:
            found.extend(finder.find(py_func, f"{name}.{attr}", module=False, globs=vars(module)))
    return [t for t in found if t.examples]


@pytest.mark.parametrize("name", ["vecstore._native.kernels", "vecstore._native.reference"])
def test_native_examples_pass(name: str) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in native_doctests(name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_native_examples_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The finder above sees an example in a Numba kernel's docstring."""
    from vecstore._native import kernels

    monkeypatch.setattr(kernels.topk_scores.py_func, "__doc__", ">>> 1 + 1\n2\n")
    assert [t.name for t in native_doctests(kernels.__name__)] == ["vecstore._native.kernels.topk_scores"]
