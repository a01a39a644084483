"""The suite's guard against the kernel's mapping limit (``tests/_maps_guard.py``): each live
compiled executable holds memory mappings; past a fraction of ``vm.max_map_count`` the guard
drops JAX's caches at a module boundary, which frees them.  Where ``/proc`` is missing the
guard reads 0 mappings and never fires (checked too)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import jax
import jax.numpy as jnp

import _maps_guard

HAS_PROC = os.path.exists("/proc/self/maps")


def _item(path):
    return SimpleNamespace(path=path)


def test_the_guard_fires_only_at_a_module_boundary_and_over_the_threshold(monkeypatch):
    cleared = []
    monkeypatch.setattr(jax, "clear_caches", lambda: cleared.append(1))
    monkeypatch.setattr(_maps_guard, "LIMIT", 1000)
    monkeypatch.setattr(_maps_guard, "num_mappings", lambda: 500)
    n = len(_maps_guard.CLEARED)
    _maps_guard.pytest_runtest_teardown(_item("a.py"), _item("a.py"))  # same module: nothing
    assert cleared == []
    _maps_guard.pytest_runtest_teardown(_item("a.py"), _item("b.py"))  # boundary, 500 > 400
    _maps_guard.pytest_runtest_teardown(_item("b.py"), None)  # last test of the run
    assert cleared == [1, 1] and len(_maps_guard.CLEARED) == n + 2
    monkeypatch.setattr(_maps_guard, "num_mappings", lambda: 400)  # at the threshold: no
    _maps_guard.pytest_runtest_teardown(_item("c.py"), _item("d.py"))
    assert cleared == [1, 1]


def test_live_executables_hold_mappings_and_the_guard_frees_them(monkeypatch):
    fs = [jax.jit(lambda x, i=i: jnp.sin(x) * i + i) for i in range(200)]
    for f in fs:  # the functions stay alive: their executables stay in JAX's caches
        f(jnp.ones(2)).block_until_ready()
    before = _maps_guard.num_mappings()
    if not HAS_PROC:
        assert before == 0  # no /proc: the guard reads nothing and never fires
        return
    assert before > 600  # ~3 mappings per live executable
    monkeypatch.setattr(_maps_guard, "FRACTION", 0.0)
    n = len(_maps_guard.CLEARED)
    _maps_guard.pytest_runtest_teardown(_item(_maps_guard.__file__), _item(__file__))
    assert len(_maps_guard.CLEARED) == n + 1
    _, b, a = _maps_guard.CLEARED[-1]
    assert a < b - 300, (before, b, a)  # the 200 executables' mappings are gone
    assert fs[0](jnp.ones(2)).shape == (2,)  # and a function still runs (it compiles again)
