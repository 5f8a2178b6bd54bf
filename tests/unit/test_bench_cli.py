"""``python -m bench``: every scenario is registered once, builds its options, is documented in
bench/README.md and reachable from the Makefile. Nothing here runs a benchmark."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is not installed: it is imported from the checkout
    sys.path.insert(0, str(REPO))

from bench import cli  # noqa: E402
from bench.common import ScenarioParser  # noqa: E402

NAMES = [s.name for s in cli.SCENARIOS]


def test_names_and_modules_are_unique() -> None:
    assert len(set(NAMES)) == len(NAMES)
    assert len({s.module for s in cli.SCENARIOS}) == len(NAMES)
    assert all(re.fullmatch(r"[a-z][a-z0-9-]*", n) for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_scenario_builds_its_options(name: str) -> None:
    module = importlib.import_module(cli.scenario(name).module)
    assert callable(module.run) and module.__doc__
    parser = ScenarioParser(prog=f"python -m bench {name}", description=module.__doc__)
    module.configure(parser)
    full, quick = parser.parse_args([]), parser.parse_args(["--quick"])
    assert full.data == quick.data and full.threads >= 1
    assert full.json is None and not full.quick and quick.quick
    for dest, (full_default, quick_default) in parser._sized.items():
        assert getattr(full, dest) == full_default and getattr(quick, dest) == quick_default
    if parser._sized:  # an explicit value wins over the quick default
        dest = next(iter(parser._sized))
        flag = "--" + dest.replace("_", "-")
        value = parser._sized[dest][0]
        if value is not None:
            assert getattr(parser.parse_args(["--quick", flag, str(value)]), dest) == value


def test_list_shows_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for s in cli.SCENARIOS:
        assert re.search(rf"^  {re.escape(s.name)} .*\[{re.escape(s.runtime)}\]$", out, re.M)


def test_unknown_scenario_and_no_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["annn"]) == 2
    assert "unknown scenario 'annn'" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_every_scenario_is_documented_in_the_readme() -> None:
    readme = (REPO / "bench" / "README.md").read_text()
    for name in NAMES:
        assert re.search(rf"^## `{re.escape(name)}`", readme, re.M), f"no section for {name}"
        assert f"python -m bench {name}" in readme, f"no command for {name}"


def test_makefile_calls_registered_scenarios() -> None:
    makefile = (REPO / "Makefile").read_text()
    called = re.findall(r"^\t.*-m bench (\S+)", makefile, re.M)  # recipe lines, not comments
    assert called and set(called) <= set(NAMES), called
