"""Files that are not files (issue 10, item 7): the loader reads regular files only, and at most
``max_file_bytes`` of each; FIFOs, devices, sockets and oversized files are reported as skipped.

A regression here would hang (a FIFO blocks ``open`` until a writer comes) or read until memory
runs out (``/dev/zero``), so those cases run in a child process with a timeout and a memory cap:
a failure fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from vecstore import InvalidArgumentError
from vecstore.cli import cli
from vecstore.ingest import loaders
from vecstore.ingest.loaders import load_documents

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")

CHILD_TIMEOUT_S = 60  # generous: the child only imports vecstore and lists a few files
CHILD_MEMORY_BYTES = 3 << 30  # reading /dev/zero stops here, with a MemoryError


def _in_child(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter whose address space is capped, killed after a timeout."""
    prelude = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({CHILD_MEMORY_BYTES}, {CHILD_MEMORY_BYTES}))
    """)
    try:
        return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the loader did not return within {CHILD_TIMEOUT_S} s (blocked on a FIFO?)")


def _make_special(d: Path, kind: str) -> str | None:
    """Create a special file of ``kind`` in ``d``; returns its name (None if unsupported here)."""
    if kind == "fifo":
        os.mkfifo(d / "pipe.txt")
        return "pipe.txt"
    if kind == "device":
        os.symlink("/dev/zero", d / "zero.txt")  # endless: reading it never reaches an end
        return "/dev/zero"  # a link's document id (and error path) is where it points
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(d / "sock.txt"))
    except OSError:  # a path too long for AF_UNIX on this system
        return None
    finally:
        sock.close()
    return "sock.txt"


@pytest.fixture
def special_dir(tmp_path: Path) -> Path:
    """A folder with a good text file, a FIFO, a link to /dev/zero and a UNIX socket."""
    d = tmp_path / "docs"
    d.mkdir()
    (d / "good.txt").write_text("A good document.")
    for kind in ("fifo", "device", "socket"):
        _make_special(d, kind)
    return d


SPECIAL = [("fifo", "a FIFO"), ("device", "a character device"), ("socket", "a socket")]


@pytest.mark.parametrize("kind,described", SPECIAL)
def test_special_files_in_a_folder_are_skipped_not_read(tmp_path: Path, kind: str,
                                                         described: str) -> None:
    (tmp_path / "good.txt").write_text("A good document.")
    name = _make_special(tmp_path, kind)
    if name is None:
        pytest.skip(f"cannot create a {kind} here")
    proc = _in_child(f"""
        import json
        from vecstore.ingest.loaders import load_documents
        r = load_documents([{str(tmp_path)!r}], root={str(tmp_path)!r})
        print(json.dumps({{"docs": [d["id"] for d in r.documents],
                           "errors": [[e.path, e.reason] for e in r.errors]}}))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["docs"] == ["good.txt"]
    assert out["errors"] == [[name, f"not a regular file ({described}); only regular files are read"]]


def test_a_fifo_named_on_the_command_line_is_skipped_with_its_reason(special_dir: Path) -> None:
    proc = _in_child(f"""
        import json
        from vecstore.ingest.loaders import load_documents
        r = load_documents([{str(special_dir / "pipe.txt")!r}, {str(special_dir / "zero.txt")!r}],
                           root={str(special_dir)!r})
        print(json.dumps([[e.path, e.reason] for e in r.errors]))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [p for p, _ in json.loads(proc.stdout)] == ["pipe.txt", "/dev/zero"]
    assert all("not a regular file" in reason for _, reason in json.loads(proc.stdout))


def test_cli_ingest_skips_special_files_and_reports_them(special_dir: Path, tmp_path: Path) -> None:
    (special_dir / "good.txt").unlink()  # nothing to ingest: no model is needed to get the report
    proc = _in_child(f"""
        import sys
        from vecstore.cli import main
        sys.argv = ["vecstore", "ingest", {str(tmp_path / "store")!r}, "docs", {str(special_dir)!r}]
        main()
    """, cwd=special_dir)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "skipped pipe.txt: not a regular file (a FIFO)" in proc.stderr
    assert "skipped /dev/zero: not a regular file (a character device)" in proc.stderr
    assert "no documents to ingest" in proc.stderr


def test_files_over_max_file_bytes_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "small.txt").write_text("x" * 100)
    (tmp_path / "big.txt").write_text("y" * 1001)
    (tmp_path / "big.csv").write_text("text\n" + "z" * 1000 + "\n")
    (tmp_path / "exact.md").write_text("w" * 1000)
    r = load_documents(tmp_path, root=tmp_path, max_file_bytes=1000)
    assert sorted(d["id"] for d in r.documents) == ["exact.md", "small.txt"]
    reasons = {e.path: e.reason for e in r.errors}
    assert set(reasons) == {"big.csv", "big.txt"}
    assert reasons["big.txt"] == ("the file has 1,001 bytes, more than the limit of 1,000; raise "
                                  "max_file_bytes (--max-file-size) to read it")
    r = load_documents(tmp_path, root=tmp_path)  # the default limit is far above these
    assert len(r.documents) == 4 and loaders.DEFAULT_MAX_FILE_BYTES == 100 * 2**20


@pytest.mark.parametrize("bad", [0, -1, 1.5, "100", True, None])
def test_max_file_bytes_must_be_a_positive_integer(tmp_path: Path, bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="max_file_bytes must be a positive integer"):
        load_documents(tmp_path, max_file_bytes=bad)  # type: ignore[arg-type]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux procfs")
def test_a_file_longer_than_its_stat_size_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    # procfs files are regular files that stat as 0 bytes yet read as more: like a file that
    # grows while it is read, the size from stat cannot be trusted, so the read itself is capped
    link = tmp_path / "maps.txt"
    os.symlink("/proc/self/maps", link)
    r = load_documents(tmp_path, root=tmp_path, max_file_bytes=64)
    assert r.documents == []
    assert [(e.path, e.reason) for e in r.errors] == [
        (link.resolve().as_posix(), "the file has more than 64 bytes, the limit; raise max_file_bytes "
                     "(--max-file-size) to read it")]


@pytest.mark.parametrize("size,want", [("1000", 1000), ("2K", 2048), ("3M", 3 * 2**20),
                                       ("1G", 2**30), ("5KB", 5000), ("2MB", 2_000_000),
                                       ("7k", 7168), ("4B", 4), (" 12 mb ", 12_000_000)])
def test_max_file_size_takes_bytes_and_units(size: str, want: int) -> None:
    from vecstore.cli.ingest import parse_size

    assert parse_size(size) == want


@pytest.mark.parametrize("size", ["", "0", "-5", "abc", "1.5M", "10X", "K"])
def test_max_file_size_refuses_bad_values(tmp_path: Path, size: str) -> None:
    (tmp_path / "a.txt").write_text("a")
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "s"), "t", str(tmp_path / "a.txt"),
                                      "--max-file-size", size])
    assert result.exit_code == 2 and "--max-file-size" in result.stderr, result.output


def test_cli_max_file_size_skips_larger_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a" * 2049)
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "s"), "t", str(tmp_path / "a.txt"),
                                      "--max-file-size", "2K"])
    assert result.exit_code == 1, result.output
    assert "a.txt: the file has 2,049 bytes, more than the limit of 2,048" in result.stderr
    assert "no documents to ingest" in result.stderr
