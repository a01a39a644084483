"""`Particles`: a weighted population, and what it denotes.

A population of N particles with states x_i and log weights ℓ_i denotes the measure

    μ̂ = (1/N) Σ_i exp(ℓ_i) δ_{x_i},

an unbiased estimate of the target's *unnormalised* measure γ.  Its total mass
Ẑ = (1/N) Σ_i exp(ℓ_i) estimates the evidence Z = γ(1), so the weights are never renormalised:
they carry log Ẑ with them (resampling sets every weight to the average, which keeps Ẑ).
A block is *valid* when E[μ̂_out] = (its change of target applied to) E[μ̂_in].
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppl import randomness
from ppl.core import is_concrete

__all__ = ["Particles", "ess", "log_mean_exp", "map_particles", "index_particles"]


def log_mean_exp(lw: Any, axis: int = -1) -> jax.Array:
    """log((1/N) Σ exp(lw)) along `axis` (−inf when every weight is zero)."""
    lw = jnp.asarray(lw)
    N = lw.shape[axis]
    return jax.scipy.special.logsumexp(lw, axis=axis) - math.log(N)


def ess(log_weights: Any) -> jax.Array:
    """Effective sample size (Σ w)² / Σ w², between 1 and N."""
    lw = jnp.asarray(log_weights)
    return jnp.exp(2 * jax.scipy.special.logsumexp(lw, axis=-1) - jax.scipy.special.logsumexp(2 * lw, axis=-1))


class Particles(eqx.Module):
    """N weighted particles: stacked states, log weights, and the ancestors of the last resampling.

    Attributes:
        states: any pytree whose leaves have a leading particle axis N (stacked ``ppl.Trace``s,
            a model's carry, flat unconstrained vectors, MCMC kernel states).
        log_weights: (N,) unnormalised log weights ℓ_i; the population denotes
            (1/N) Σ exp(ℓ_i) δ_{x_i}.
        ancestors: (N,) index of each particle's parent at the last resampling (identity before).

    Properties: :attr:`log_evidence` (log Ẑ), :attr:`ess`, :attr:`weights` (normalised),
    :attr:`num_particles`.  Draw posterior samples with :meth:`sample`.
    """

    states: Any
    log_weights: jax.Array
    ancestors: jax.Array

    @classmethod
    def from_states(cls, states: Any, log_weights: Any = None) -> "Particles":
        """Particles with the given stacked states (and log weights, default 0: weight 1 each)."""
        leaves = jax.tree_util.tree_leaves(states)
        if not leaves:
            raise ValueError("Particles need states with at least one array leaf (a leading particle axis).")
        N = int(np.shape(leaves[0])[0])
        lw = jnp.zeros((N,)) if log_weights is None else jnp.asarray(log_weights)
        return cls(states, lw, jnp.arange(N, dtype=jnp.int32))

    @property
    def num_particles(self) -> int:
        return int(self.log_weights.shape[-1])

    @property
    def log_evidence(self) -> jax.Array:
        """log Ẑ = log((1/N) Σ exp(ℓ_i)): the log of an unbiased estimate of the evidence."""
        return log_mean_exp(self.log_weights)

    @property
    def weights(self) -> jax.Array:
        """Normalised weights W_i = w_i / Σ w (for self-normalised estimates)."""
        return jax.nn.softmax(self.log_weights, axis=-1)

    @property
    def ess(self) -> jax.Array:
        """Effective sample size of the weights."""
        return ess(self.log_weights)

    def mean(self, f: Any = None) -> Any:
        """Self-normalised estimate Σ W_i f(x_i) (f defaults to the identity on the states)."""
        vals = self.states if f is None else jax.vmap(f)(self.states)
        W = self.weights
        return jax.tree.map(lambda v: jnp.tensordot(W, v, axes=(0, 0)), vals)

    def sample(self, key: Any, num_samples: int | None = None) -> Any:
        """Posterior draws: states picked with probability W_i (``num_samples`` of them, or one)."""
        shape = () if num_samples is None else (int(num_samples),)
        idx = jax.random.categorical(key, self.log_weights, shape=shape)
        return jax.tree.map(lambda v: v[idx], self.states)


def index_particles(states: Any, idx: Any) -> Any:
    """The states of the particles ``idx`` (a gather along the particle axis)."""
    return jax.tree.map(lambda v: jnp.asarray(v)[idx], states)


def map_particles(fn: Any, key: Any, *stacked: Any) -> Any:
    """``fn(key_i, *particle_i)`` for every particle, stacked along a leading axis.

    Vectorised with ``jax.vmap`` in production; a Python loop over particles when an eager
    interpreter is installed (the exact enumerator must see every particle's draws), or when the
    particle states differ in structure.
    """
    leaves = jax.tree_util.tree_leaves(stacked)
    N = int(np.shape(leaves[0])[0])
    keys = jax.random.split(key, N)
    if randomness.requires_eager():
        # eager: concrete values; slice and stack on the host (cheaper than N eager gathers)
        host = jax.tree.map(np.asarray, stacked)
        keys = list(keys)
        outs = [fn(keys[i], *jax.tree.map(lambda v: jnp.asarray(v[i]), host)) for i in range(N)]
        return jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])), *outs)
    return jax.vmap(fn)(keys, *stacked)


def _concrete(x: Any) -> bool:
    return is_concrete(x)
