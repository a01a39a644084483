"""Keep a long-lived test process under the kernel's limit on memory mappings.

Why: every executable XLA's CPU backend compiles is JIT code in memory mappings of its own
(about three per live executable), and JAX keeps compiled executables alive in its caches for
as long as the function they belong to lives (module-level models, doctests' globals, eager
primitives by shape).  An xdist worker that runs a few hundred tests of this suite accumulates
tens of thousands of them; at the kernel's ``vm.max_map_count`` (65,530 by default) the next
mapping fails and XLA segfaults inside ``backend_compile_and_load`` (or while deserializing a
cached executable).  That was the "random" worker crash of earlier runs: replayed in one
process, the same sequence of tests grew ``/proc/self/maps`` to the limit and crashed at the
same place, with no test at fault.

What this does: after the last test of each module, if the process holds more than
``FRACTION`` of the limit's mappings, it drops JAX's caches (``jax.clear_caches()``) so the
executables no later test needs are freed; later tests recompile what they use.  Only at module
boundaries, so no test that counts compilations across its own calls is disturbed.  A no-op
where ``/proc`` does not exist.
"""

from __future__ import annotations

import gc
import os

FRACTION = 0.4
CLEARED = []  # (module, mappings before, after): how often it fired, for the run's summary


def _read_int(path: str, default: int) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


def num_mappings() -> int:
    """The number of memory mappings of this process (0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


LIMIT = _read_int("/proc/sys/vm/max_map_count", 65530)


def pytest_runtest_teardown(item, nextitem):
    if nextitem is not None and nextitem.path == item.path:
        return
    before = num_mappings()
    if before <= FRACTION * LIMIT:
        return
    import jax

    jax.clear_caches()
    gc.collect()
    CLEARED.append((os.path.basename(str(item.path)), before, num_mappings()))
