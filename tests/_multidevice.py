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


def _env(n: int) -> dict:
    """This process's environment with ``n`` CPU devices, sharding on, and the repo importable."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("PPL_SHARDING", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run_on_devices(code: str, n: int = 8, timeout: float = 600.0) -> str:
    """Run ``code`` with ``n`` host devices; return its stdout (raises AssertionError on failure)."""
    env = _env(n)
    script = textwrap.dedent(PRELUDE.format(n=n)) + textwrap.dedent(code)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:  # a hang (e.g. issue 15's LAPACK deadlock) is a failure
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise AssertionError(f"multi-device check did not finish in {timeout:g} s (killed):\n{out}") from None
    if proc.returncode != 0:
        raise AssertionError(f"multi-device check failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


MULTIHOST_PRELUDE = """
import os, sys
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address="localhost:{port}", num_processes={p}, process_id=int(sys.argv[1]))
assert jax.process_count() == {p} and jax.device_count() == {p} * {n}, (jax.process_count(), jax.devices())
"""


def run_on_processes(code: str, num_processes: int = 2, devices_per_process: int = 4, timeout: float = 600.0) -> list[str]:
    """Run ``code`` as ``num_processes`` cooperating JAX processes on this machine (as on several
    hosts: ``jax.distributed.initialize`` over localhost, CPU collectives by gloo), each with
    ``devices_per_process`` CPU devices; return each process's stdout."""
    env = _env(devices_per_process)
    script = textwrap.dedent(MULTIHOST_PRELUDE.format(port=_free_port(), p=num_processes, n=devices_per_process))
    script += textwrap.dedent(code)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(i)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(num_processes)
    ]
    outs = []
    failed = []
    for i, proc in enumerate(procs):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise AssertionError(f"process {i} of the multi-process check timed out") from None
        outs.append(out)
        if proc.returncode != 0:
            failed.append(f"process {i} (exit {proc.returncode}):\n{out}\n{err[-5000:]}")
    if failed:
        raise AssertionError("multi-process check failed:\n" + "\n".join(failed))
    return outs
