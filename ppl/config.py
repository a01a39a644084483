"""Configuration of ppl: the persistent compilation cache and every setting read from the
environment.  Importing ``ppl`` (or ``inference``) changes nothing in the process: no JAX
configuration is written and the garbage collector is left alone; the drivers call
:func:`ensure_compilation_cache` just before their first compile.

Environment variables read by the packages (each read through this module):

=========================  ===================  ===================================================
variable                   read when            meaning
=========================  ===================  ===================================================
``PPL_COMPILATION_CACHE``  first compile        ``0``/``false``/``no``/``off``: ppl never turns
                                                JAX's persistent compilation cache on
``PPL_CACHE_DIR``          first compile        directory of that cache (default below)
``XDG_CACHE_HOME``         first compile        default cache is ``$XDG_CACHE_HOME/ppl-jax/xla``
                                                (``~/.cache/ppl-jax/xla`` when unset)
``PPL_SHARDING``           trace time           ``0``/``false``/``no``/``off``: batch axes are
                                                not sharded across devices
                                                (:mod:`inference.sharding`); part of
                                                :func:`trace_key`
``CI``                     each run             set (not ``0``/``false``/``no``): progress
                                                output is off by default (:func:`in_ci`)
=========================  ===================  ===================================================

Every value read at trace time, from the environment or from JAX's configuration, is in
:func:`trace_key`; every compiled-program cache of the drivers includes it, so changing one
of them never reuses a program traced under the old value.

Example:
    >>> from ppl import config
    >>> isinstance(hash(config.trace_key()), int)
    True
    >>> dict(config.trace_key())["jax_enable_x64"] in (False, True)
    True
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "cache_dir",
    "compilation_cache",
    "ensure_compilation_cache",
    "trace_key",
    "sharding_requested",
    "in_ci",
    "gc_paused",
]

_OFF = ("0", "false", "no", "off")

#: what :func:`compilation_cache` asked for ("auto" until it is called)
_requested: Any = "auto"
#: whether :func:`ensure_compilation_cache` has applied the choice, and what it returned
_applied = False
_result: str | None = None
#: the directory ppl itself set in JAX's configuration (None: ppl set none)
_ours: str | None = None


def _flag(name: str, default: str = "1") -> bool:
    return os.environ.get(name, default).strip().lower() not in _OFF


def cache_dir() -> Path:
    """The default directory of the persistent compilation cache: ``$PPL_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/ppl-jax/xla`` (``~/.cache/ppl-jax/xla``).  Reads only; creates nothing.

    Example:
        >>> from ppl import config
        >>> import os
        >>> bool(os.environ.get("PPL_CACHE_DIR")) or config.cache_dir().parts[-2:] == ("ppl-jax", "xla")
        True
    """
    env = os.environ.get("PPL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ppl-jax" / "xla"


def _set_jax_cache(path: Path) -> str | None:
    import jax

    global _ours
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    _ours = str(path)
    return _ours


def _apply(requested: Any) -> str | None:
    import jax

    global _ours
    if requested is None:
        if _ours is not None and jax.config.jax_compilation_cache_dir == _ours:  # undo ppl's own choice
            jax.config.update("jax_compilation_cache_dir", None)
        _ours = None
        return jax.config.jax_compilation_cache_dir or None
    if requested == "auto":
        if not _flag("PPL_COMPILATION_CACHE"):
            return None
        if jax.config.jax_compilation_cache_dir:  # the user configured JAX's cache: leave it
            return jax.config.jax_compilation_cache_dir
        return _set_jax_cache(cache_dir())
    return _set_jax_cache(Path(requested))


def compilation_cache(path: str | os.PathLike | None = "auto") -> str | None:
    """Choose ppl's persistent compilation cache, apply the choice now, and return the directory
    JAX's cache uses afterwards (``None``: no persistent cache).

    * ``"auto"`` (the default choice): :func:`cache_dir`, unless JAX's cache directory is
      already configured (then it is left as it is) or ``PPL_COMPILATION_CACHE=0``;
    * a directory: JAX's cache is set to it (created if needed);
    * ``None``: ppl does not use a cache in this process: a directory ppl set is unset, one the
      user set in JAX stays.

    Example:
        >>> import tempfile, jax
        >>> from ppl import config
        >>> before = jax.config.jax_compilation_cache_dir
        >>> d = tempfile.mkdtemp()
        >>> config.compilation_cache(d) == d == jax.config.jax_compilation_cache_dir
        True
        >>> config.compilation_cache(None) is None                   # ppl's own choice undone
        True
        >>> _ = config.compilation_cache(before)   # (the doctest's process as it was)
    """
    global _requested, _applied, _result
    if path is not None and path != "auto" and not isinstance(path, (str, os.PathLike)):
        from .errors import ArgumentTypeError

        raise ArgumentTypeError(
            f"ppl.config.compilation_cache: path must be a directory (str or os.PathLike), 'auto' "
            f"or None; got {type(path).__name__}"
        )
    _requested = path
    _result = _apply(path)
    _applied = True
    return _result


def ensure_compilation_cache() -> str | None:
    """Apply the compilation-cache choice (:func:`compilation_cache`, ``"auto"`` by default)
    once per process, and return the directory in use (``None``: none).  The drivers call it
    before they compile; later calls only return the first answer.  Never overrides a cache
    the user configured in JAX, never turns one on when ``PPL_COMPILATION_CACHE=0``.

    Example:
        >>> from ppl import config
        >>> config.ensure_compilation_cache() == config.ensure_compilation_cache()
        True
    """
    global _applied, _result
    if not _applied:
        _result = _apply(_requested)
        _applied = True
    return _result


def sharding_requested() -> bool:
    """Whether ``PPL_SHARDING`` allows sharding batch axes (anything but ``0``/``false``/
    ``no``/``off``; on by default).  :func:`inference.sharding.enabled` also needs more than
    one device.

    Example:
        >>> from ppl import config
        >>> config.sharding_requested() in (False, True)
        True
    """
    return _flag("PPL_SHARDING")


def in_ci() -> bool:
    """Whether the ``CI`` environment variable is set to a true value (the drivers' progress
    output is then off by default).

    Example:
        >>> from ppl import config
        >>> config.in_ci() in (False, True)
        True
    """
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


#: JAX configuration values that change what a traced program computes
_JAX_TRACE_OPTIONS = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_numpy_dtype_promotion",
    "jax_numpy_rank_promotion",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
)


def trace_key() -> tuple:
    """A hashable tuple of ``(name, value)`` for every environment or configuration value read
    while a program is traced: ``PPL_SHARDING`` (as :func:`sharding_requested` reads it) and
    JAX's x64 mode (hence the default dtype), matmul precision, dtype and rank promotion, PRNG
    implementation and threefry partitioning.  Equal keys mean a cached program may be reused.

    Example:
        >>> from ppl import config
        >>> config.trace_key() == config.trace_key()
        True
        >>> ("PPL_SHARDING", config.sharding_requested()) in config.trace_key()
        True
    """
    import jax

    values = tuple((name, getattr(jax.config, name, None)) for name in _JAX_TRACE_OPTIONS)
    return (("PPL_SHARDING", sharding_requested()),) + values


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Turn Python's cyclic garbage collector off for the block (tracing allocates many
    short-lived containers and full collections would walk every object alive); the previous
    state is restored on exit, whatever happens.  Nothing else about the collector changes.

    Example:
        >>> import gc
        >>> from ppl import config
        >>> was = gc.isenabled()
        >>> with config.gc_paused():
        ...     gc.isenabled()
        False
        >>> gc.isenabled() == was
        True
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
