"""Run every ``benchmarks/bench_*.py`` module and print their tables.

Usage: ``python -m benchmarks.run [--quick] [name-filter ...]`` (``--quick``: one short round,
a smoke test whose numbers are too noisy to report). Each module exposes
``main(quick: bool) -> benchmarks.runner.Suite``.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import jax

from benchmarks.runner import machine_info


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    filters = [a for a in argv if not a.startswith("-")]
    if "--x64" in argv:
        jax.config.update("jax_enable_x64", True)
    here = Path(__file__).resolve().parent
    modules = sorted(p.stem for p in here.glob("bench_*.py"))
    if filters:
        modules = [m for m in modules if any(f in m for f in filters)]
    info = machine_info()
    print("# Benchmarks\n")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    failures = 0
    for name in modules:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            module.main(quick=quick).report()
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the rest
            failures += 1
            print(f"\n## {name}: FAILED ({type(exc).__name__}: {exc})")
        print(f"\n({name} took {time.perf_counter() - t0:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
