"""A test whose xdist worker *dies* (a segfault, not a failure) runs once more on a fresh worker.

Why: JAX 0.10's CPU backend has crashed long-lived xdist workers inside XLA itself, in no test's
code and at no fixed test: twice while deserializing a cached executable (hence no persistent
cache in the suite, see ``conftest.py``) and once in ``backend_compile_and_load`` compiling a
small program that compiles fine in every other run.  A crash takes the worker down and fails
the run without saying anything about our code.  What this does, and only this: when xdist
reports that a worker crashed while running a test, the test is put back in the queue once (a
fresh worker runs it) and the crash is reported as ``R`` / "rerun" with the crash message, and
listed at the end of the run.  The rerun must *pass*: a second crash, and any ordinary failure
(an assertion, an exception), fails as before; nothing is retried for a test that merely fails.
``tests/test_crash_rerun.py`` checks both ways in a subprocess.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

CRASHED: dict[str, str] = {}  # test id -> the crash message (controller process)
RAN: dict[str, list[str]] = {}  # worker id -> the tests it reported, in order (controller process)


def pytest_runtest_logreport(report):
    """Remember which worker ran what, so that a crash names the sequence that led to it (replay
    it in one process: ``pytest -p no:randomly <ids...>``)."""
    node = getattr(report, "node", None)
    gateway = getattr(node, "gateway", None)
    if gateway is not None and report.when == "call":
        RAN.setdefault(str(gateway.id), []).append(report.nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
    if crashitem in CRASHED:
        return  # crashed again on a fresh worker: it fails
    try:
        sched.mark_test_pending(crashitem)
    except NotImplementedError:  # a scheduler that cannot requeue: the crash fails the run
        return
    worker = str(getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "?"))
    before = RAN.get(worker, [])
    seq = Path(tempfile.gettempdir()) / f"ppl-crash-sequence-{worker}-{len(CRASHED)}.txt"
    seq.write_text("\n".join([*before, crashitem]) + "\n")  # replay: pytest -p no:randomly $(cat seq)
    CRASHED[crashitem] = f"{report.longrepr}; after {len(before)} tests on that worker, listed in {seq}"
    RAN[worker] = []  # the worker is replaced by a fresh one under the same id
    report.outcome = "rerun"


def pytest_report_teststatus(report):
    if report.outcome == "rerun":
        return "rerun", "R", ("RERUN (its worker crashed)", {"yellow": True})
    return None


def crash_summary(terminalreporter) -> None:
    for nodeid, msg in CRASHED.items():
        terminalreporter.write_line(f"RERUN after a worker crash: {nodeid} ({msg})", yellow=True)
