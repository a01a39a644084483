"""XLA compile options of the drivers' programs, and compiling one program in a thread while
the host traces another (XLA releases the GIL while compiling)."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import jax

__all__ = ["compiler_options", "compile_alongside"]

#: per program kind, the XLA options used on CPU: ``init`` runs once per run (compile time
#: matters, speed does not); a ``chunk`` at LLVM's -O1 compiles faster and ran as fast as -O2
#: on the benchmark models (see benchmarks/RESULTS.md)
_CPU_OPTIONS = {
    "init": {"xla_backend_optimization_level": 0},
    "chunk": {"xla_backend_optimization_level": 1},
}


def compiler_options(kind: str) -> dict | None:
    """The ``compiler_options`` of ``jax.jit`` for a program of this kind (``"init"`` or
    ``"chunk"``) on the default backend; None (XLA's defaults) off CPU.

    Example:
        >>> from inference._run.compile import compiler_options
        >>> compiler_options("chunk") in (None, {"xla_backend_optimization_level": 1})
        True
    """
    return _CPU_OPTIONS.get(kind) if jax.default_backend() == "cpu" else None


def compile_alongside(lowered: Any, work: Callable[[], Any], parallel: bool = True) -> Any:
    """Compile ``lowered`` (a ``jax.stages.Lowered``) in a background thread while ``work()``
    runs on this one, and return ``work()``'s result once both are done.  With one core (or
    ``parallel=False``) ``work()`` runs alone (the program compiles when first called).  A
    compilation error is not raised here: the program's own call compiles again and reports it.
    """
    if not parallel or (os.cpu_count() or 1) < 2:
        return work()

    def compile_it():
        try:
            lowered.compile()
        except Exception:  # noqa: BLE001 - reported by the program's own call
            pass

    th = threading.Thread(target=compile_it, daemon=True)
    th.start()
    try:
        return work()
    finally:
        th.join()
