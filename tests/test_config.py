"""``ppl.config``: importing the packages changes nothing in the process; the persistent
compilation cache is turned on at first use (``ensure_compilation_cache``), only where the user
has configured none and has not turned it off; ``trace_key`` holds every value read at trace
time."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest

import ppl
from inference import sharding
from ppl import config
from ppl.config import cache_dir, compilation_cache, ensure_compilation_cache, gc_paused, in_ci, sharding_requested, trace_key

ROOT = Path(__file__).resolve().parents[1]


def _probe(code: str, env: dict) -> dict:
    """Run `code` (which prints one JSON line last) in a fresh interpreter with a clean
    ppl/JAX-cache environment plus `env`."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PPL_", "JAX_COMPILATION_CACHE", "XDG_CACHE"))}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT) + os.pathsep + full.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True,
                         timeout=300, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


IMPORT_THEN_ENSURE = """
    import gc, json
    import jax
    def snapshot():
        return {k: repr(v) for k, v in jax.config.values.items()}
    before, frozen = snapshot(), gc.get_freeze_count()
    import ppl, inference, inference.mcmc, inference.smc, inference.vi, inference.causal, inference.sharding, semantics
    after, frozen_after = snapshot(), gc.get_freeze_count()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    first = ppl.config.ensure_compilation_cache()
    again = ppl.config.ensure_compilation_cache()
    print(json.dumps({"changed": changed, "frozen": [frozen, frozen_after], "gc": gc.isenabled(),
                      "first": first, "again": again, "jax_dir": jax.config.jax_compilation_cache_dir}))
"""


def test_import_changes_nothing_and_first_use_turns_the_cache_on(tmp_path):
    out = _probe(IMPORT_THEN_ENSURE, {"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert out["changed"] == [], f"importing the packages changed JAX's configuration: {out['changed']}"
    assert out["frozen"] == [0, 0] and out["gc"] is True
    assert not (tmp_path / "xdg").exists() or out["first"] is not None  # nothing created at import
    want = str(tmp_path / "xdg" / "ppl-jax" / "xla")
    assert out["first"] == out["again"] == out["jax_dir"] == want
    assert Path(want).is_dir()


DRIVER_FIRST = """
    import json
    import jax, jax.numpy as jnp
    import ppl
    from inference import smc
    before = jax.config.jax_compilation_cache_dir
    def step(x, y):
        x = ppl.sample("x", ppl.dist.Normal(x, 1.0))
        ppl.sample("y", ppl.dist.Normal(x, 1.0), obs=y)
        return x, None
    smc.particle_filter(jax.random.key(0), step, 0.0, jnp.zeros(2), 4)
    print(json.dumps({"before": before, "after": jax.config.jax_compilation_cache_dir}))
"""


def test_a_driver_turns_the_cache_on_before_it_compiles(tmp_path):
    out = _probe(DRIVER_FIRST, {"PPL_CACHE_DIR": str(tmp_path / "c")})
    assert out["before"] in (None, "") and out["after"] == str(tmp_path / "c")


def test_cache_off_by_env_and_user_cache_left_alone(tmp_path):
    off = _probe(IMPORT_THEN_ENSURE, {"PPL_COMPILATION_CACHE": "0", "XDG_CACHE_HOME": str(tmp_path / "d")})
    assert off["first"] is None and off["jax_dir"] in (None, "")
    assert not (tmp_path / "d").exists()
    mine = str(tmp_path / "mine")
    user = _probe(IMPORT_THEN_ENSURE, {"JAX_COMPILATION_CACHE_DIR": mine, "PPL_CACHE_DIR": str(tmp_path / "p")})
    assert user["first"] == user["jax_dir"] == mine
    assert not (tmp_path / "p").exists()
    env_dir = _probe(IMPORT_THEN_ENSURE, {"PPL_CACHE_DIR": str(tmp_path / "p")})
    assert env_dir["first"] == str(tmp_path / "p") and (tmp_path / "p").is_dir()


def test_compilation_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PPL_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PPL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "ppl-jax" / "xla"
    assert not (tmp_path / "x").exists()  # cache_dir only reads


@pytest.fixture
def restore_cache_state(monkeypatch):
    monkeypatch.setattr(config, "_requested", config._requested)
    monkeypatch.setattr(config, "_applied", config._applied)
    monkeypatch.setattr(config, "_result", config._result)
    monkeypatch.setattr(config, "_ours", config._ours)
    saved = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    yield
    jax.config.update("jax_compilation_cache_dir", saved[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", saved[1])


def test_compilation_cache_choices(tmp_path, monkeypatch, restore_cache_state):
    jax.config.update("jax_compilation_cache_dir", None)
    d = tmp_path / "explicit"
    assert compilation_cache(d) == str(d) and d.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(d)
    assert ensure_compilation_cache() == str(d)  # the explicit choice stands
    assert compilation_cache(None) is None and ensure_compilation_cache() is None  # ppl's own dir undone
    assert jax.config.jax_compilation_cache_dir is None  # None never turns it on
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "user"))
    assert compilation_cache(None) == str(tmp_path / "user")  # a user's directory stays
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("PPL_COMPILATION_CACHE", "off")
    assert compilation_cache("auto") is None and jax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv("PPL_COMPILATION_CACHE", "1")
    monkeypatch.setenv("PPL_CACHE_DIR", str(tmp_path / "auto"))
    assert compilation_cache() == str(tmp_path / "auto")
    with pytest.raises(ppl.ArgumentTypeError, match="path"):
        compilation_cache(3)


def test_trace_key_holds_every_trace_time_value(monkeypatch):
    key = trace_key()
    hash(key)
    names = [n for n, _ in key]
    assert names[0] == "PPL_SHARDING" and "jax_enable_x64" in names and "jax_default_prng_impl" in names
    assert dict(key)["jax_enable_x64"] is True  # the suite runs in x64 (conftest)
    monkeypatch.setenv("PPL_SHARDING", "0")
    assert not sharding_requested() and not sharding.enabled()
    assert dict(trace_key())["PPL_SHARDING"] is False and trace_key() != key
    monkeypatch.setenv("PPL_SHARDING", "1")
    assert sharding_requested() and trace_key() == key
    jax.config.update("jax_enable_x64", False)
    try:
        assert dict(trace_key())["jax_enable_x64"] is False
    finally:
        jax.config.update("jax_enable_x64", True)


def test_in_ci_reads_ci(monkeypatch):
    for value, want in [("", False), ("0", False), ("false", False), ("no", False), ("1", True), ("true", True)]:
        monkeypatch.setenv("CI", value)
        assert in_ci() is want
    monkeypatch.delenv("CI")
    assert in_ci() is False


def test_gc_paused_restores_the_collector():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(KeyError):
        with gc_paused():
            raise KeyError("x")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a collector the caller turned off stays off
    finally:
        gc.enable()
