"""Run a check in a fresh Python process that sees several (CPU) devices.

JAX fixes its device count when it starts, so multi-device tests cannot run in the pytest
process itself.  ``run_on_devices(code)`` runs ``code`` in a subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` and float64 enabled, and fails the
calling test with the subprocess's output when it exits non-zero.  Inside ``code``,
``PPL_SHARDING`` (see :mod:`inference.sharding`) can be toggled through ``os.environ`` to
compute the same thing sharded and unsharded in one process, for the same key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import os
import jax
jax.config.update("jax_enable_x64", True)
assert jax.device_count() == {n}, jax.devices()
"""


def run_on_devices(code: str, n: int = 8, timeout: float = 600.0) -> str:
    """Run ``code`` with ``n`` host devices; return its stdout (raises AssertionError on failure)."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("PPL_SHARDING", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    script = textwrap.dedent(PRELUDE.format(n=n)) + textwrap.dedent(code)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(f"multi-device check failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
