"""Filters and queries bounded in time and memory (docs/guarantees.md, section 5).

What a filter costs per row is checked before it runs (vecstore/query/bounds.py): quadratic
functions and backtracking patterns on long values, values built from many copies of a column,
large constants and parameters, functions with too many arguments. A query that still runs too
long is stopped by its timeout: DuckDB is interrupted, vecstore's own stages check between them.
No test here measures time: each asserts what is refused, what is answered and the error type.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import textwrap

import pytest

import vecstore
from vecstore import FilterError, InvalidArgumentError, QueryTimeoutError
from vecstore.query.bounds import MAX_ARGUMENTS, MAX_BUILT_BYTES_PER_ROW, MAX_CELLS_PER_ROW, MAX_COPIES


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_costly_filters_on_megabyte_values_are_refused_not_run(tmp_path):
    """The issue's filters on two 1 MB rows: before the bounds, ``levenshtein`` had not answered
    after 60 s and a backtracking LIKE pattern ran for minutes. In a child process with an
    alarm, so that a regression fails instead of hanging the suite."""
    child = textwrap.dedent(f"""
        import signal, vecstore
        tbl = vecstore.connect({str(tmp_path / "store")!r}).create_table("t", dim=2)
        tbl.add([{{"id": str(i), "vector": [1, i + 1], "s": "ab" * 500_000 + str(i)}} for i in range(2)])
        signal.alarm(30)  # default action: the process dies if a filter is still running
        for f in ["levenshtein(s, s || 'x') > 0", "damerau_levenshtein(s, 'abc') > 0",
                  "jaro_winkler_similarity(s, reverse(s)) > 0.5", "editdist3(s, ?) > 0",
                  "s LIKE '%_%_b'", "s LIKE ?", "s ~~~ '*?*?c'"]:
            try:
                tbl.count(f, "a%_%_b" if f == "s LIKE ?" else "abc")
                print("ANSWERED", f)
            except vecstore.FilterError as exc:
                print("REFUSED", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert proc.returncode != -signal.SIGALRM, "a filter was still running after 30 s"
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 7 and all(line.startswith("REFUSED") for line in lines), proc.stdout
    for name in ("levenshtein()", "damerau_levenshtein()", "jaro_winkler_similarity()", "editdist3()"):
        assert any(name in line and "1,000,001" in line and f"{MAX_CELLS_PER_ROW:,}" in line
                   for line in lines), (name, proc.stdout)
    assert sum("quadratic" in line and "regexp_matches" in line for line in lines) == 3


def test_costly_functions_answer_on_short_values(tmp_db):
    rng = random.Random(7)
    rows = [{"id": str(i), "vector": [1, i + 1],
             "s": "".join(rng.choice("abc") for _ in range(rng.randint(0, 40)))} for i in range(60)]
    tbl = tmp_db.create_table("t", dim=2)
    tbl.add(rows)
    for q in ("abcab", "", "cccccccccc"):
        want = {r["id"] for r in rows if _levenshtein(r["s"], q) <= 3}
        for f in ("levenshtein(s, ?) <= 3", "editdist3(s, ?) <= 3"):
            got = {h["id"] for h in tbl.search([1, 1]).where(f, q).limit(100).to_list()}
            assert got == want, (f, q)
    assert tbl.count("damerau_levenshtein(s, 'ab') >= 0 AND jaro_similarity(s, 'ab') >= 0") == 60
    assert tbl.count("s LIKE '%a_b%'") == sum(bool(re.search("a.b", r["s"])) for r in rows)
    # the same filters on values too long for the budget, and the fix the message suggests
    tbl.add([{"id": "long", "vector": [1, 0], "s": "ab" * 5_000}])
    with pytest.raises(FilterError, match=r"levenshtein\(\) compares values of up to 10,000 and 300"):
        tbl.count("levenshtein(s, ?) <= 3", "x" * 300)
    assert tbl.count("levenshtein(left(s, 200), ?) <= 3", "abcab") == \
        sum(_levenshtein(r["s"], "abcab") <= 3 for r in rows)
    with pytest.raises(FilterError, match="quadratic"):
        tbl.count("s LIKE '%a_b%'")
    assert tbl.count("regexp_matches(s, 'a.b')") == sum(bool(re.search("a.b", r["s"])) for r in rows)


def test_filters_that_build_values_are_bounded(tmp_db):
    """Strings and lists a filter builds per row: DuckDB's memory limit does not cover them.
    Before the bounds, ``list_value`` of 10,000 columns took 4.9 GB on 4 rows and a concat of
    10,000 copies 1.2 GB on 2,000 short rows."""
    tbl = tmp_db.create_table("t", dim=2)
    tbl.add([{"id": str(i), "vector": [1, i + 1], "s": f"value{i:05d}" * 5, "n": i} for i in range(2000)])
    many = ", ".join(["s"] * 10_000)
    for f in (f"len(list_value({many})) > 0", f"length(concat({many})) > 0",
              "greatest(" + ", ".join(["n"] * (MAX_ARGUMENTS + 1)) + ") > 0"):
        with pytest.raises(FilterError, match=f"arguments; the limit is {MAX_ARGUMENTS}"):
            tbl.count(f)
    with pytest.raises(FilterError, match=f"WHEN clauses; the limit is {MAX_ARGUMENTS}"):
        tbl.count("CASE " + " ".join(f"WHEN n = {i} THEN {i}" for i in range(300)) + " END > 0")
    # many copies of short values: bounded by their length (50 bytes x 200 copies)
    copies = ", ".join(["s"] * 200)
    assert tbl.count(f"length(concat({copies})) = 10000") == 2000
    # a long constant or parameter copied into every row
    with pytest.raises(FilterError, match=f"the limit is {MAX_BUILT_BYTES_PER_ROW:,} bytes per row"):
        tbl.count("length(s || ?) > 0", "x" * (MAX_BUILT_BYTES_PER_ROW + 1))
    assert tbl.count("length(s || ?) > 60", "x" * 20) == 2000
    # long values: a few copies are fine (memory grows with the data), many are not
    tbl.add([{"id": "big", "vector": [1, 0], "s": "x" * 1_000_000, "n": -1}])
    assert tbl.count("length(s || s) = 2000000") == 1
    with pytest.raises(FilterError, match=f"column 's' {MAX_COPIES + 1} times"):
        tbl.count("length(concat(" + ", ".join(["s"] * (MAX_COPIES + 1)) + ")) > 0")
    with pytest.raises(FilterError, match="column 's' 20 times"):  # 2 + 3 + 4 + 5 + 6 copies
        tbl.count("length(s || s || s || s || s || s) > 0")
    with pytest.raises(FilterError, match="copies"):
        tbl.search([1, 1]).where("length(concat(" + ", ".join(["s"] * 20) + ")) > 0")
    with pytest.raises(FilterError, match="copies"):
        tbl.delete("length(" + "||".join(["upper(s)"] * 9) + ") > 0")
    assert len(tbl) == 2001


@pytest.fixture(scope="module")
def slow_tbl(tmp_path_factory):
    """16,384 rows of 100 characters: ``levenshtein(s, ?)`` with a 100-character parameter is
    within the per-row budget (10,000 steps) and takes about a second in all, a tenth of it per
    2,048-row vector (when DuckDB looks at the interrupt). Only read by the tests."""
    rng = random.Random(3)
    tbl = vecstore.connect(tmp_path_factory.mktemp("slow") / "store").create_table("t", dim=2)
    tbl.add([{"id": str(i), "vector": [1, i + 1], "s": "".join(rng.choice("abc") for _ in range(100))}
             for i in range(16_384)])
    return tbl, "".join(rng.choice("abc") for _ in range(100))


SLOW = "levenshtein(s, ?) < 5"


def test_a_slow_filter_is_interrupted_by_the_timeout(slow_tbl):
    tbl, q = slow_tbl
    tbl.search([1, 1]).where(SLOW, q)  # the filter checked (and its engine built) beforehand
    with pytest.raises(QueryTimeoutError) as err:
        tbl.search([1, 1]).where(SLOW, q).timeout(0.2).to_list()
    assert isinstance(err.value, TimeoutError) and isinstance(err.value, vecstore.VecstoreError)
    # stopped inside DuckDB by the interrupt, not after the filter had finished
    assert f"the filter {SLOW!r}, interrupted in DuckDB" in str(err.value), str(err.value)
    assert "0.2 s" in str(err.value)
    with pytest.raises(QueryTimeoutError, match="interrupted in DuckDB"):
        tbl.search_batch([[1, 1], [1, 2]]).where(SLOW, q).timeout(0.2).to_list()
    other = vecstore.connect(tbl.path.parent, query_timeout=0.2).open_table("t")
    other.search([1, 1]).where(SLOW, q)
    with pytest.raises(QueryTimeoutError, match="interrupted in DuckDB"):
        other.count(SLOW, q)
    # the connection still answers, and a query under its timeout is unaffected
    assert tbl.count("levenshtein(s, ?) < 5", "abc") == 0
    assert tbl.search([1, 1]).where("s LIKE 'a%'").timeout(60).limit(3).to_list() != []


def test_timeouts_stop_vecstore_stages_and_are_checked(tmp_db):
    tbl = tmp_db.create_table("t", dim=2)
    tbl.add([{"id": str(i), "vector": [1, i + 1], "n": i, "text": f"word{i % 7} other"} for i in range(300)])
    tbl.set_keyword_columns(["text"])
    eager = vecstore.connect(tmp_db.path, query_timeout=1e-9).open_table("t")
    for q in (eager.search([1, 1]).where("n > 3"),  # the fast path, then the stage check
              eager.search_batch([[1, 1], [1, 2]]).where("n > 3"),
              eager.search("word3", mode="keyword"),
              eager.search("word3", mode="keyword").group_by("n")):
        with pytest.raises(QueryTimeoutError):
            q.to_list()
    with pytest.raises(QueryTimeoutError):
        eager.count("n > 3")
    # .timeout(None) lifts the database's default; a longer one replaces it
    assert len(eager.search([1, 1]).where("n > 3").timeout(None).limit(5).to_list()) == 5
    assert len(eager.search("word3", mode="keyword").timeout(30).limit(5).to_list()) == 5
    for bad in (0, -1, float("nan"), float("inf"), "5", True, [1]):
        with pytest.raises(InvalidArgumentError, match="timeout"):
            tbl.search([1, 1]).timeout(bad)
        with pytest.raises(InvalidArgumentError, match="query_timeout"):
            vecstore.connect(tmp_db.path, query_timeout=bad)


def test_the_duckdb_connection_is_limited_and_locked():
    from vecstore.query.filters import MEMORY_LIMIT_BYTES, connect_sandboxed

    con = connect_sandboxed(rows=10_000_000)
    limit, temp, threads, progress = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory'), "
        "current_setting('threads'), current_setting('enable_progress_bar')").fetchone()
    assert temp == "" and threads == 1 and progress is False
    number, unit = limit.split()
    assert float(number) * {"MiB": 2 ** 20, "GiB": 2 ** 30}[unit] == pytest.approx(
        MEMORY_LIMIT_BYTES + 32 * 10_000_000, rel=0.1)  # DuckDB shows one decimal, truncated
    for setting in ("SET memory_limit = '100GB'", "SET temp_directory = '/tmp'", "SET threads = 8"):
        with pytest.raises(Exception, match="locked"):
            con.execute(setting)


def test_the_server_answers_a_timeout_with_504_and_caps_the_request(slow_tbl):
    from server.harness import KEY, ThreadServer, request

    from vecstore.server import ServerSettings

    tbl, q = slow_tbl
    srv = ThreadServer(tbl.path.parent, ServerSettings(api_key=KEY, warm=False, query_timeout=0.2)).start()
    try:
        for route, body in (("count", {}), ("search", {"vector": [1, 1], "timeout": 100.0}),
                            ("search_batch", {"vectors": [[1, 1]]})):
            status, headers, payload = request(srv.url, "POST", f"/tables/t/{route}",
                                               {**body, "where": SLOW, "params": [q]}, key=KEY)
            assert status == 504 and payload["error"]["type"] == "QueryTimeoutError", (route, payload)
            assert "levenshtein" in payload["error"]["message"]
        status, _, payload = request(srv.url, "POST", "/tables/t/search",
                                     {"vector": [1, 1], "timeout": 0}, key=KEY)
        assert status == 400 and "timeout" in payload["error"]["message"]
        assert request(srv.url, "GET", "/healthz")[2]["limits"]["query_timeout"] == 0.2
        remote = vecstore.connect(srv.url, api_key=KEY).open_table("t")
        with pytest.raises(QueryTimeoutError):
            remote.search([1, 1]).where(SLOW, q).to_list()
        assert len(remote.search([1, 1]).where("s LIKE 'a%'").timeout(30).limit(2).to_list()) == 2
    finally:
        srv.stop()
