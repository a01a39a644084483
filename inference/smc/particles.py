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
from ppl.errors import ArgumentError
from inference._lapack import map_batch

__all__ = ["Particles", "ess", "log_mean_exp", "map_particles", "index_particles", "shared_key_draws"]


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
            raise ArgumentError(
                f"Particles.from_states: states must have at least one array leaf (a leading particle axis); "
                f"got {type(states).__name__} with no array leaves."
            )
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


def map_particles(fn: Any, key: Any, *stacked: Any, shared_key: bool = False) -> Any:
    """``fn(key_i, *particle_i)`` for every particle, stacked along a leading axis.

    Vectorised with ``jax.vmap`` in production; a Python loop over particles when an eager
    interpreter is installed (the exact enumerator must see every particle's draws), or when the
    particle states differ in structure.

    With ``shared_key=True`` (for ``fn`` whose only randomness is ``ppl.randomness.draw``, e.g.
    model operations), ``fn`` gets the *same* key for every particle and each draw is made for the
    whole population at once (see :func:`shared_key_draws`): the particles' draws are still
    independent, at the cost of one ``jax.random`` call per site instead of N key splits.
    """
    leaves = jax.tree_util.tree_leaves(stacked)
    N = int(np.shape(leaves[0])[0])
    if shared_key and not randomness.requires_eager() and randomness.current_interpreter() is None:
        it = _SharedKeyDraws()

        def one(anchor, *s):
            it.anchor = anchor  # a batched value: every draw is batched over the particles
            return fn(key, *s)

        with randomness.interpreter(it):
            return jax.vmap(one)(jnp.arange(N, dtype=jnp.int32), *stacked)
    keys = jax.random.split(key, N)
    if randomness.requires_eager():
        # eager: concrete values; slice and stack on the host (cheaper than N eager gathers)
        host = jax.tree.map(np.asarray, stacked)
        keys = list(keys)
        outs = [fn(keys[i], *jax.tree.map(lambda v: jnp.asarray(v[i]), host)) for i in range(N)]
        return jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])), *outs)
    return map_batch(fn, keys, *stacked)  # vmap, or a loop where batched LAPACK could deadlock


def _concrete(x: Any) -> bool:
    return is_concrete(x)


# ---------------------------------------------------------------------------------------------
# one random call per site for the whole population

_ELEMENTWISE = (
    "Normal", "StudentT", "Cauchy", "Laplace", "Logistic", "Uniform", "Exponential", "Gamma",
    "Beta", "BernoulliProbs", "BernoulliLogits", "CategoricalProbs", "CategoricalLogits",
    "Poisson", "MultivariateNormal", "Gumbel", "HalfNormal", "HalfCauchy", "Dirichlet",
)


def _batchable(d: Any) -> bool:
    """Whether ``d.sample(key, (N,))`` with every parameter given a leading axis N draws the N
    particles' values independently, parameter row i for particle i (NumPyro's right-aligned
    broadcasting of parameters against ``sample_shape + batch_shape``)."""
    from numpyro.distributions import Independent

    if isinstance(d, Independent):
        return _batchable(d.base_dist)
    return type(d).__name__ in _ELEMENTWISE


def shared_key_draws(key: Any, d: Any, sample_shape: tuple = (), anchor: Any = None) -> Any:
    """``d.sample(key, sample_shape)`` whose ``vmap`` over the distribution's parameters, with an
    unbatched key, draws the whole batch with that one key (independent across the batch).

    ``anchor`` is any value batched along the ``vmap``-ed axis (e.g. the member's index): it
    makes the draw batched even when neither the key nor the parameters are (a site whose law
    does not depend on the particle), so the members never share a draw.

    Under ``vmap`` with a batched key, or for a family not known to broadcast its parameters
    elementwise, the batch falls back to one key per member (split from ``key``).  Either way
    the batch members' draws are independent with the laws of their own distributions.
    """
    from jax.custom_batching import custom_vmap

    leaves, treedef = jax.tree_util.tree_flatten(d)
    sample_shape = tuple(sample_shape)

    def plain(k, _anchor, ls):
        return jax.tree_util.tree_unflatten(treedef, ls).sample(k, sample_shape)

    f = custom_vmap(plain)

    @f.def_vmap
    def rule(axis_size, in_batched, k, anchor, ls):
        key_b, anchor_b, leaves_b = in_batched
        if not key_b and not sample_shape and _batchable(d):
            full = [v if b else jnp.broadcast_to(v, (axis_size,) + jnp.shape(v)) for v, b in zip(ls, leaves_b)]
            one = jax.eval_shape(plain, k, None, [jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for v in full])
            try:
                out = jax.tree_util.tree_unflatten(treedef, full).sample(k, (axis_size,))
            except (TypeError, ValueError):
                out = None
            if out is not None and out.shape == (axis_size,) + one.shape:
                return out, True
        keys = k if key_b else jax.random.split(k, axis_size)
        out = jax.vmap(plain, in_axes=(0, None, [0 if b else None for b in leaves_b]))(keys, None, ls)
        return out, True

    return f(key, jnp.zeros((), jnp.int32) if anchor is None else anchor, leaves)


class _SharedKeyDraws:
    """A production interpreter: every ``draw`` under the particle ``vmap`` is one batched call."""

    eager = False
    anchor: Any = None

    def draw(self, key: Any, d: Any, sample_shape: tuple, name: Any) -> Any:
        return shared_key_draws(key, d, sample_shape, self.anchor)
