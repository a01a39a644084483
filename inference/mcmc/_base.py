"""The kernel protocol shared by every MCMC block, and the pieces every MH-type kernel uses.

A *kernel* is a small immutable configuration (a frozen dataclass, hashable, so the driver can
cache one compiled program per (model, kernel, shapes)).  ``kernel.bind(model, args, kwargs)``
returns a *bound kernel* with the two pure functions of the protocol

    init(key, init=None)  -> state               state: an ``equinox.Module`` (a pytree)
    step(key, state)      -> (state, info)       info: a flat dict of scalar arrays

plus ``warmup_step(key, state, t)`` (adaptation; the plain step for kernels without tuning),
optionally ``phase_step(key, state, t, warm)`` (``warmup_step`` where the traced boolean
``warm`` is true, ``step`` otherwise, computing the transition once; see :func:`phase_step`),
``samples(state)`` (address -> constrained value, what the driver records),
``log_density(state)`` (the target's log density at the state, to check an initial point) and
``explain(state)`` (an eager, human-readable reason why that log density is not finite).

A kernel K is *valid* for its target π when it leaves π invariant: ∫ π(dx) K(x, dy) = π(dy).
Each kernel's docstring states its target.  Chains are a leading axis added by ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import distributions as dist

from ppl import randomness
from ppl.core import is_concrete
from ppl.errors import ModelError

__all__ = ["Kernel", "MCMCInitError", "metropolis_accept", "select", "phase_step"]


class MCMCInitError(ModelError):
    """No initial point with a finite log density was found; the message names the site."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    """Base class of kernel configurations (see the module docstring for the protocol)."""

    def bind(self, model: Any, args: tuple = (), kwargs: dict | None = None, num_warmup: int = 0):
        raise NotImplementedError

    #: whether the driver should run a warmup (adaptation/burn-in) phase by default
    adaptive = False


def phase_step(bound: Any, key: Any, state: Any, t: Any, warm: Any) -> tuple[Any, dict]:
    """``bound.warmup_step(key, state, t)`` if ``warm`` else ``bound.step(key, state)``.

    ``warm`` may be traced (the driver's one compiled program serves both phases).  A bound
    kernel with a ``phase_step`` method does this itself, with the transition compiled once
    and only the adaptation switched by ``warm``; otherwise both are put under ``lax.cond``
    (correct, but the step is compiled twice).  With a concrete ``warm`` (a Python bool, e.g.
    eager execution under the exact enumerator) it is a Python choice.
    """
    if is_concrete(warm):
        return bound.warmup_step(key, state, t) if bool(warm) else bound.step(key, state)
    own = getattr(bound, "phase_step", None)
    if own is not None:
        return own(key, state, t, warm)
    return jax.lax.cond(warm, lambda s: bound.warmup_step(key, s, t), lambda s: bound.step(key, s), state)


def metropolis_accept(key: Any, log_alpha: jax.Array, name: str = "mcmc/accept") -> tuple[jax.Array, jax.Array]:
    """Draw the accept coin ``Bernoulli(min(1, exp(log_alpha)))`` through ``ppl.randomness``.

    A NaN ratio (e.g. a proposal outside the support) is treated as a rejection.  Returns
    ``(accepted, accept_prob)``.  Drawing the coin as a Bernoulli (not as a uniform compared with
    the ratio) lets an exact interpreter enumerate both outcomes with their probabilities.
    """
    log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
    p = jnp.minimum(1.0, jnp.exp(log_alpha))
    acc = randomness.draw(key, dist.Bernoulli(probs=p), (), name)
    return jnp.asarray(acc).astype(bool), p


def select(pred: Any, on_true: Any, on_false: Any) -> Any:
    """``on_true`` where ``pred`` else ``on_false``, leaf by leaf.

    With a concrete ``pred`` (eager execution, e.g. under the exact enumerator) this is a Python
    choice, so the two sides may have different structures (a trace whose set of addresses
    changed).  Under ``jit``/``vmap`` the two sides must have the same structure.
    """
    if is_concrete(pred):
        return on_true if bool(pred) else on_false
    try:
        return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
    except ValueError as e:  # structures differ
        raise ModelError(
            "an MCMC move changed the set of addresses of the trace under jit; use ppl.cond / "
            "ppl.switch for stochastic control flow so traces keep a fixed structure "
            f"({e})."
        ) from None


def split(key: Any, n: int) -> list:
    """``n`` independent keys (a list)."""
    return list(jax.random.split(key, n))
