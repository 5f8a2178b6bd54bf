"""The adapters import their framework lazily: vecstore alone imports neither, and an adapter
without its framework says which extra to install. (Subprocesses: this process has both.)"""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_vecstore_imports_no_framework():
    out = _run("import sys, vecstore, vecstore.integrations; "
               "print(sorted(m for m in sys.modules if m.startswith(('langchain', 'llama_index'))))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_missing_framework_names_the_extra():
    out = _run("import sys\n"
               "sys.modules['langchain_core'] = sys.modules['llama_index'] = None\n"
               "import vecstore\n"
               "for module in ('langchain', 'llama_index'):\n"
               "    try:\n"
               "        __import__('vecstore.integrations.' + module)\n"
               "    except vecstore.MissingDependencyError as e:\n"
               "        print(e)\n")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    assert "'langchain_core" in lines[0] and "pip install 'vecstore[langchain]'" in lines[0]
    assert "'llama_index" in lines[1] and "pip install 'vecstore[llama-index]'" in lines[1]
