"""The suite's guard against the kernel's mapping limit (``tests/_maps_guard.py``): each live
compiled executable holds memory mappings; past a fraction of ``vm.max_map_count`` the guard
drops JAX's caches at a module boundary, which frees them."""

from __future__ import annotations

import os
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest

import _maps_guard

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")


def _compile_many(n):
    fs = [jax.jit(lambda x, i=i: jnp.sin(x) * i + i) for i in range(n)]
    for f in fs:
        f(jnp.ones(2)).block_until_ready()
    return fs


def test_live_executables_hold_mappings_and_the_guard_frees_them(monkeypatch):
    fs = _compile_many(200)  # the functions stay alive: their executables stay in JAX's caches
    before = _maps_guard.num_mappings()
    assert before > 200  # ~3 mappings per executable
    here = SimpleNamespace(path=_maps_guard.__file__)
    other = SimpleNamespace(path=__file__)
    monkeypatch.setattr(_maps_guard, "FRACTION", 0.0)
    n = len(_maps_guard.CLEARED)
    _maps_guard.pytest_runtest_teardown(SimpleNamespace(path=__file__), SimpleNamespace(path=__file__))
    assert len(_maps_guard.CLEARED) == n  # not at a module boundary: nothing happens
    _maps_guard.pytest_runtest_teardown(here, other)
    assert len(_maps_guard.CLEARED) == n + 1
    _, b, a = _maps_guard.CLEARED[-1]
    assert b >= before - 50 and a < b - 300, (before, b, a)  # the 200 executables' mappings are gone
    assert fs[0](jnp.ones(2)).shape == (2,)  # and a function still runs (it compiles again)


def test_under_the_threshold_the_guard_does_nothing(monkeypatch):
    monkeypatch.setattr(_maps_guard, "FRACTION", 1.0)
    n = len(_maps_guard.CLEARED)
    _maps_guard.pytest_runtest_teardown(SimpleNamespace(path="a.py"), None)
    assert len(_maps_guard.CLEARED) == n
