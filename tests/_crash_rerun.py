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

import pytest

CRASHED: dict[str, str] = {}  # test id -> the crash message (controller process)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
    if crashitem in CRASHED:
        return  # crashed again on a fresh worker: it fails
    try:
        sched.mark_test_pending(crashitem)
    except NotImplementedError:  # a scheduler that cannot requeue: the crash fails the run
        return
    CRASHED[crashitem] = str(report.longrepr)
    report.outcome = "rerun"


def pytest_report_teststatus(report):
    if report.outcome == "rerun":
        return "rerun", "R", ("RERUN (its worker crashed)", {"yellow": True})
    return None


def crash_summary(terminalreporter) -> None:
    for nodeid, msg in CRASHED.items():
        terminalreporter.write_line(f"RERUN after a worker crash: {nodeid} ({msg})", yellow=True)
