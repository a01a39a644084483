"""Suite-wide test configuration.

- float64 everywhere: exact tests compare to 1e-12, which float32 cannot meet.
- Hypothesis profiles: ``ci`` is derandomised and bounded so the suite is repeatable and fits
  its time, and is what every run uses (``make test`` and CI alike); ``dev`` explores more
  and is opt-in (``HYPOTHESIS_PROFILE=dev``).
- Markers: ``slow`` and ``statistical`` tests are deselected by ``make test-fast``.
- The suite's false-alarm budget (``tests/_budget.py``) is printed at the end of every run.
"""

from __future__ import annotations

import os

import jax

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


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from _budget import BUDGET

    terminalreporter.write_line(BUDGET.report(top=5))
