"""The kernel configuration base class, the driver's step, and the pieces every MH-type kernel uses.

A *kernel* is a small immutable configuration (a frozen dataclass, hashable, so the driver can
cache one compiled program per (model, kernel, shapes)).  ``kernel.bind(model, args, kwargs,
num_warmup)`` returns a *bound kernel* with the protocol of :mod:`inference.mcmc.protocol`
(``init``, ``step(key, state, params=None)``, ``samples``, ``log_density``, ``explain``);
kernels with tuning return an :class:`~inference.mcmc.protocol.Adapted` pairing the bound kernel
with its adaptation.  :class:`BoundBase` is the shared implementation of the bound kernels
without adaptation (each provides ``init``, ``step`` and the read-outs it needs).

The driver steps a bound kernel only through :func:`phase_step`.

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

__all__ = ["Kernel", "BoundBase", "MCMCInitError", "metropolis_accept", "select", "phase_step"]


class MCMCInitError(ModelError):
    """No initial point with a finite log density was found; the message names the site."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    """Base class of kernel configurations (see the module docstring for the protocol)."""

    def bind(self, model: Any, args: tuple = (), kwargs: dict | None = None, num_warmup: int = 0):
        raise NotImplementedError

    #: whether the driver should run a warmup (adaptation/burn-in) phase by default
    adaptive = False


class BoundBase:
    """Shared implementation of a bound kernel without adaptation: the warmup step is the plain
    step, and :func:`phase_step` uses the one transition for both phases.  Subclasses provide
    ``init``, ``step(key, state, params=None)``, ``samples``, ``log_density`` and ``explain``.
    """

    def step(self, key: Any, state: Any, params: Any = None) -> tuple[Any, dict]:
        raise NotImplementedError

    def warmup_step(self, key: Any, state: Any, t: Any) -> tuple[Any, dict]:
        """The plain step (nothing to adapt)."""
        return self.step(key, state)

    def phase_step(self, key: Any, state: Any, t: Any, warm: Any) -> tuple[Any, dict]:
        """The same step in both phases, unless a subclass overrides ``warmup_step``: then
        ``warmup_step`` or ``step`` by ``warm``."""
        if type(self).warmup_step is BoundBase.warmup_step:
            return self.step(key, state)
        return jax.lax.cond(warm, lambda s: self.warmup_step(key, s, t), lambda s: self.step(key, s), state)


def phase_step(bound: Any, key: Any, state: Any, t: Any, warm: Any) -> tuple[Any, dict]:
    """One step of the driver: ``bound.warmup_step(key, state, t)`` if ``warm`` else
    ``bound.step(key, state)``.

    ``warm`` may be traced (the driver's one compiled program serves both phases).  A bound
    kernel with a ``phase_step`` method (every shipped one: :class:`BoundBase`,
    :class:`~inference.mcmc.protocol.Adapted`) does this itself, with the transition compiled
    once; a kernel with only the protocol (no ``warmup_step``: nothing to adapt) is stepped with
    its own params; otherwise both are put under ``lax.cond`` (correct, but the step is compiled
    twice).  With a concrete ``warm`` (a Python bool, e.g. eager execution under the exact
    enumerator) it is a Python choice.
    """
    warmup = getattr(bound, "warmup_step", None)
    if warmup is None:
        return bound.step(key, state)
    if is_concrete(warm):
        return warmup(key, state, t) if bool(warm) else bound.step(key, state)
    own = getattr(bound, "phase_step", None)
    if own is not None:
        return own(key, state, t, warm)
    return jax.lax.cond(warm, lambda s: warmup(key, s, t), lambda s: bound.step(key, s), state)


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
