"""The one door through which models *and inference blocks* draw randomness.

Every random draw made by the language (a latent `sample` site under `seed`) and by an inference
block built on it (a proposal, an accept/reject coin, a resampler's ancestor vector) goes through
:func:`draw`.  In production, `draw(key, d)` is `d.sample(key)`: a pure `jax.random` draw that
works under `jit` and `vmap`.  In tests, an *interpreter* can be installed with
:func:`interpreter`; it receives every draw in execution order and may return any value it likes,
with the key ignored.  The exact enumerator of `semantics` installs one that walks every branch
of a block's finite random choices, so the *shipped* block is checked as an equality of measures.

Rules for block authors: draw every random quantity with ``ppl.randomness.draw`` from a
distribution whose support is the set of outcomes (e.g. an accept step draws
``Bernoulli(probs=alpha)``, not a uniform compared with ``alpha``), so that its probabilities are
known to an interpreter.

Randomness that bypasses :func:`draw` (a direct ``jax.random.normal(key)``, ``d.sample(key)``)
is invisible to an interpreter.  The exact enumerator therefore hands blocks a *guarded key*
(:func:`guarded_key`): a typed key of its own PRNG implementation whose ``split`` and
``fold_in`` are threefry's (so keys derive exactly as in production) but from which no random
bits can be drawn: any ``jax.random`` sampling from it, or from a key derived from it, raises
:class:`RandomnessBypassError` (eagerly and under ``jit``/``vmap``/``lax`` loops alike).

Example:
    >>> import jax, ppl
    >>> from ppl import dist
    >>> x = ppl.randomness.draw(jax.random.key(0), dist.Bernoulli(probs=0.5))
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator, Protocol

import jax
import jax.numpy as jnp

from .errors import ModelError, PPLError

__all__ = [
    "check_key",
    "draw",
    "interpreter",
    "current_interpreter",
    "requires_eager",
    "Interpreter",
    "guarded_key",
    "is_guarded",
    "RandomnessBypassError",
]


class Interpreter(Protocol):
    """What an installed interpreter provides."""

    #: True when the interpreter needs concrete values (no `lax` loops, no tracing).
    eager: bool

    def draw(self, key: Any, d: Any, sample_shape: tuple, name: str | None) -> Any: ...


_INTERPRETERS: list[Interpreter] = []


def current_interpreter() -> Interpreter | None:
    """The innermost installed interpreter, or None (plain `jax.random`)."""
    return _INTERPRETERS[-1] if _INTERPRETERS else None


def requires_eager() -> bool:
    """Whether combinators must run as Python loops/branches (an eager interpreter is installed)."""
    it = current_interpreter()
    return bool(it is not None and getattr(it, "eager", False))


@contextlib.contextmanager
def interpreter(it: Interpreter) -> Iterator[Interpreter]:
    """Install `it` to receive every :func:`draw` made inside the block."""
    _INTERPRETERS.append(it)
    try:
        yield it
    finally:
        _INTERPRETERS.pop()


def draw(key: Any, d: Any, sample_shape: tuple = (), name: str | None = None) -> Any:
    """Draw from distribution `d` with `key` (or from the installed interpreter).

    Computes a sample of ``d`` of shape ``sample_shape + d.batch_shape + d.event_shape``.
    `name` is a label for interpreters and error messages (e.g. the site's address).
    """
    it = current_interpreter()
    if it is not None:
        return it.draw(key, d, tuple(sample_shape), name)
    return d.sample(key, tuple(sample_shape))


def check_key(key: Any, who: str) -> jax.Array:
    """Validate a random key argument, with an error that says what was expected."""
    if key is None:
        raise ModelError(f"{who}: a random key is required, e.g. jax.random.key(0); got None.")
    if isinstance(key, (int, float)) or not hasattr(key, "dtype"):
        raise ModelError(
            f"{who}: expected a JAX random key such as jax.random.key(0), got "
            f"{type(key).__name__} {key!r}."
        )
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype == jnp.uint32 and key.shape[-1:] == (2,):
        return key
    raise ModelError(
        f"{who}: expected a JAX random key such as jax.random.key(0), got an array of dtype "
        f"{key.dtype} and shape {key.shape}."
    )


# ---------------------------------------------------------------------------------------------
# guarded keys: split and fold_in work, sampling raises


class RandomnessBypassError(PPLError, RuntimeError):
    """``jax.random`` sampled from a guarded key: a random draw that bypassed :func:`draw`."""


def _guarded_bits(keys: Any, bit_width: int, shape: tuple) -> Any:
    raise RandomnessBypassError(
        f"a random draw bypassed ppl.randomness.draw: jax.random was asked for {bit_width}-bit "
        f"random bits of shape {tuple(shape)} from a key handed out by an interpreter (the exact "
        "enumerator), which would silently make it a fixed, unenumerated value. Draw every random "
        "quantity of a model or inference block through ppl.randomness.draw(key, distribution, "
        "name=...) (for a uniform compared with a probability, draw Bernoulli(probs=p) instead); "
        "splitting and folding the key is fine."
    )


@functools.lru_cache(maxsize=None)
def _guarded_impl() -> Any:
    """The guarded PRNG implementation, defined on first use (importing ppl registers nothing)."""
    from jax.extend import random as jxr

    t = jxr.threefry_prng_impl
    return jxr.define_prng_impl(
        key_shape=t.key_shape,
        seed=t.seed,
        split=t.split,
        random_bits=_guarded_bits,
        fold_in=t.fold_in,
        name="ppl_guarded_threefry",
        tag="ppl_guarded",
    )


def guarded_key(seed: int = 0) -> jax.Array:
    """A typed key that splits and folds like ``jax.random.key(seed)`` but cannot be sampled from.

    Its key data equals ``jax.random.key_data(jax.random.key(seed))`` and every key derived from
    it by ``jax.random.split``/``fold_in`` has the same data as in production; ``jax.random``
    sampling from any of them raises :class:`RandomnessBypassError`.

    Example:
        >>> k1, k2 = jax.random.split(ppl.randomness.guarded_key(0))      # fine
        >>> try:
        ...     jax.random.normal(k1)
        ... except ppl.randomness.RandomnessBypassError:
        ...     print("refused")
        refused
    """
    return jax.random.key(seed, impl=_guarded_impl())


def is_guarded(key: Any) -> bool:
    """Whether `key` is (an array of) guarded keys."""
    dt = getattr(key, "dtype", None)
    return dt is not None and jax.dtypes.issubdtype(dt, jax.dtypes.prng_key) and str(dt) == "key<ppl_guarded>"
