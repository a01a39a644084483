"""The suite's crash policy (``tests/_crash_rerun.py``): a test whose xdist worker dies runs once
more on a fresh worker and must pass there; a test that crashes twice, or fails, fails the run.
Run under the scheduler `make test` uses (`--dist worksteal`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from _crash_rerun import crash_summary, pytest_handlecrashitem, pytest_report_teststatus, pytest_runtest_logreport

def pytest_terminal_summary(terminalreporter):
    crash_summary(terminalreporter)
"""

BODY = """
import os, signal
from pathlib import Path

def test_dies(tmp_path):
    flag = Path(os.environ["CRASH_FLAG"])
    if {always} or not flag.exists():
        flag.write_text("crashed")
        os.kill(os.getpid(), signal.SIGSEGV)

def test_fine():
    pass
"""


def _run(tmp_path: Path, always: bool) -> subprocess.CompletedProcess:
    tmp_path.mkdir()
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_x.py").write_text(BODY.format(always=always))
    env = {**os.environ, "CRASH_FLAG": str(tmp_path / "flag")}
    return subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "worksteal", "-q", "-p", "no:randomly",
                           "-p", "no:cacheprovider", "-p", "no:faulthandler", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_crash_once_is_rerun_and_a_crash_twice_fails(tmp_path):
    pytest.importorskip("xdist")
    once = _run(tmp_path / "once", always=False)
    assert once.returncode == 0, once.stdout[-3000:] + once.stderr[-3000:]
    assert "2 passed, 1 rerun" in once.stdout and "RERUN after a worker crash" in once.stdout
    listed = once.stdout.split("listed in ")[1].split(")")[0]  # the crashed worker's sequence, to replay
    assert Path(listed).read_text().splitlines()[-1].endswith("test_x.py::test_dies")
    twice = _run(tmp_path / "twice", always=True)
    assert twice.returncode != 0  # the twin: crashing again on the fresh worker fails the run
    assert "1 failed" in twice.stdout and "crashed while running" in twice.stdout, twice.stdout[-3000:]
