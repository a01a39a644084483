"""Persistent JAX compilation cache, on by default, so a second process does not recompile
(and :func:`freeze_gc`, called at the end of ``import ppl``).

The cache lives in ``$PPL_CACHE_DIR`` or the user cache directory (``$XDG_CACHE_HOME/ppl-jax/xla``,
default ``~/.cache/ppl-jax/xla``).  Set ``PPL_COMPILATION_CACHE=0`` to turn it off.  A cache
directory the user already configured in JAX is left alone.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import jax


def cache_dir() -> Path:
    env = os.environ.get("PPL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ppl-jax" / "xla"


def configure() -> str | None:
    """Turn the cache on (unless disabled); returns the directory used, or None."""
    if os.environ.get("PPL_COMPILATION_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return str(path)


def freeze_gc() -> None:
    """Move the objects alive now (after importing jax, numpyro and ppl: ~136,000 container
    objects, nearly all of them living as long as the process) to the garbage collector's
    permanent generation (``gc.freeze``), so that full collections during tracing and the
    collection at interpreter exit do not walk them again.  Measured: about 0.2 s less tracing
    and 0.2-0.3 s less process exit on eight schools (2-core CPU).  Set ``PPL_GC_FREEZE=0`` to
    turn it off.  Objects created later are collected as usual;
    objects alive now are freed by reference counting only (a cycle among them is never
    reclaimed)."""
    if os.environ.get("PPL_GC_FREEZE", "1").strip().lower() in ("0", "false", "no", "off"):
        return
    gc.freeze()
