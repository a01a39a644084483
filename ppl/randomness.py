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

Example:
    >>> import jax, ppl
    >>> from ppl import dist
    >>> x = ppl.randomness.draw(jax.random.key(0), dist.Bernoulli(probs=0.5))
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Protocol

__all__ = ["draw", "interpreter", "current_interpreter", "requires_eager", "Interpreter"]


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
