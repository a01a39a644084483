"""Suite-wide test configuration.

- float64 everywhere: exact tests compare to 1e-12, which float32 cannot meet.
- Hypothesis profiles: ``ci`` is derandomised and bounded so the suite is repeatable and fits
  its time; ``dev`` explores more. ``ci`` is loaded whenever the ``CI`` environment variable
  is set (override with ``HYPOTHESIS_PROFILE=<name>``).
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

_default_profile = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default_profile))
