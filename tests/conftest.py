"""Suite-wide test configuration.

- float64 everywhere: exact tests compare to 1e-12, which float32 cannot meet.
- Hypothesis profiles: ``ci`` is derandomised and bounded so the suite is repeatable and fits
  its time, and is what every run uses (``make test`` and CI alike); ``dev`` explores more
  and is opt-in (``HYPOTHESIS_PROFILE=dev``).
- Markers: ``slow`` and ``statistical`` tests are deselected by ``make test-fast``.
- The suite's false-alarm budget (``tests/_budget.py``) is printed at the end of every run.
- No persistent compilation cache (``PPL_COMPILATION_CACHE=0`` unless set): JAX 0.10's CPU
  backend segfaulted twice in a long-lived xdist worker while *deserializing* a cached
  executable (``compilation_cache.get_executable_and_time``, an intact entry; the same entry
  loads fine in a fresh process), which crashes the worker and fails the run.  Measured on a
  fresh cache (as CI starts), the cache's hits inside one run saved next to nothing (732 hits
  in the first 18%, almost all eager primitives compiled in milliseconds), so the suite does not
  read it.  The subprocesses the tests start inherit the setting; ``tests/test_config.py``
  checks the cache itself in probes with their own environment.  ``PPL_COMPILATION_CACHE=1
  make test`` turns it back on.
- A test whose xdist worker dies (XLA has segfaulted inside its own code in this suite) runs
  once more on a fresh worker and must pass there; see ``tests/_crash_rerun.py``.
- The worker crashes had one cause: a long-lived process's compiled executables reaching the
  kernel's limit on memory mappings (``vm.max_map_count``).  ``tests/_maps_guard.py`` drops
  JAX's caches at a module boundary when a process holds more than 40% of that limit.
- Long tests start first: in a run that is not shuffled (``-p no:randomly``, as ``make test``),
  the modules that hold a ``slow`` test run before the others, each module whole and in file
  order (module fixtures are built once, the maps guard still sees module boundaries).  With
  xdist's ``worksteal`` scheduler (``make test``) an idle worker takes half of the other's queue
  from its end, so the run ends on short tests instead of a long one started last (the docs
  build alone takes minutes).  A shuffled run keeps pytest-randomly's order.
- ``make test`` deselects the ``extended`` tests (``make test-all`` runs them): each must be listed
  in ``docs/design/testing.md`` with the default-run tests that still check its law
  (``tests/_targets.py``); an unlisted one stops the collection.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PPL_COMPILATION_CACHE", "0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
settings.register_profile(
    "dev",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


from _crash_rerun import (  # noqa: E402,F401
    crash_summary,
    pytest_handlecrashitem,
    pytest_report_teststatus,
    pytest_runtest_logreport,
)
from _maps_guard import pytest_runtest_teardown  # noqa: E402,F401


def long_modules_first(items: list) -> list:
    """``items`` with the modules that hold a ``slow`` test first, each module whole, file order
    kept within both groups (a stable sort on one key)."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    return sorted(items, key=lambda item: item.path not in slow)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the registry check sees every test
def pytest_collection_modifyitems(session, config, items):
    from _targets import unlisted

    wrong = unlisted(items)  # before -m deselects them: an extended test must say what still covers it
    if wrong:
        raise pytest.UsageError("\n".join(wrong))
    if config.pluginmanager.hasplugin("randomly"):
        return  # a shuffled run (make test-shuffled, plain pytest): pytest-randomly's order
    items[:] = long_modules_first(items)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from _budget import BUDGET

    crash_summary(terminalreporter)

    terminalreporter.write_line(BUDGET.report(top=5))
