"""Particle filters for state-space models, built only from the blocks.

A state-space model is given as a ``ppl.scan`` step, ``step(carry, x_t) -> (carry, out)``, and an
initial carry (a value, or a ``ppl.Model`` whose return value is the initial carry, e.g. a draw
of x_0).  The model the filter targets is exactly ``ppl.scan(step, init, xs=xs, name=name)``:

    for t = 0..T-1:   [resample (t > 0, always or when ESS < ρN)]  →  extend(step, xs[t])

The whole time loop is one ``lax.scan`` (a Python loop over the same body under an eager
interpreter, so the exact enumerator sees every draw).  The final population's genealogies are
properly weighted for the joint smoothing measure p(x_{0:T-1}, y_{0:T-1}), and
Ẑ = (1/N) Σ w_i is an unbiased estimate of p(y_{0:T-1}).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import randomness

from . import blocks
from .particles import Particles, index_particles

__all__ = ["SMCResult", "particle_filter", "trajectories"]


class SMCResult(eqx.Module):
    """The output of an SMC driver.

    Attributes:
        particles: the final weighted population (states: final carries, or traces).
        log_evidence: log Ẑ, the log of an unbiased estimate of the evidence.
        log_evidence_history: (T,) log Ẑ after each step (an unbiased estimate of p(y_{0:t})).
        ess: (T,) effective sample size before each step's resampling decision.
        resampled: (T,) whether the population was resampled at the start of each step.
        ancestors: (T, N) parent indices chosen at the start of each step (identity if none).
        paths: address -> (N, T, ...) each final particle's trajectory of latent choices
            (its genealogy traced back through ``ancestors``), addresses ``"<name>/<site>"``.
        filter_means: (T, ...) self-normalised filtering mean of the carry after each step.
    """

    particles: Particles
    log_evidence: jax.Array
    log_evidence_history: jax.Array
    ess: jax.Array
    resampled: jax.Array
    ancestors: jax.Array
    paths: dict
    filter_means: Any

    def sample(self, key: Any, num_samples: int | None = None) -> dict:
        """Draws from the (approximate) posterior over paths: trajectories picked w.p. W_i."""
        shape = () if num_samples is None else (int(num_samples),)
        idx = jax.random.categorical(key, self.particles.log_weights, shape=shape)
        return jax.tree.map(lambda v: v[idx], self.paths)

    def weighted_paths(self) -> list:
        """[(path dict, log weight / N)] per particle: the population's weighted measure (eager)."""
        N = self.particles.num_particles
        lw = np.asarray(self.particles.log_weights) - np.log(N)
        return [({k: np.asarray(v[i]) for k, v in self.paths.items()}, float(lw[i])) for i in range(N)]


def trajectories(choices: dict, ancestors: jax.Array) -> dict:
    """Trace each final particle back through the ancestors: address -> (N, T, ...).

    ``choices[a]`` is (T, N, ...) (step t's choices of the particles at step t) and
    ``ancestors[t]`` maps particles at step t to their parents at step t − 1.
    """
    T, N = ancestors.shape
    last = jnp.arange(N, dtype=jnp.int32)

    def back(b, t):
        # b: indices at step t of the lineages of the final particles
        here = jax.tree.map(lambda v: v[t][b], choices)
        return ancestors[t][b], here

    if randomness.requires_eager() or T == 0:
        out, b = [], last
        for t in reversed(range(T)):
            b, here = back(b, t)
            out.append(here)
        out = out[::-1]
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *out) if out else choices
    else:
        _, stacked = jax.lax.scan(back, last, jnp.arange(T), reverse=True)
    return jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), stacked)


def _weighted_mean(particles: Particles, states: Any) -> Any:
    W = particles.weights
    return jax.tree.map(lambda v: jnp.tensordot(W, jnp.asarray(v, dtype=W.dtype), axes=(0, 0)), states)


def particle_filter(
    key: Any,
    step: Any,
    init: Any,
    xs: Any,
    num_particles: int,
    *,
    proposal: Any = None,
    scheme: Any = "systematic",
    ess_threshold: float | None = None,
    init_args: tuple = (),
    name: str | None = None,
) -> SMCResult:
    """Bootstrap (or guided) particle filter for ``ppl.scan(step, init, xs=xs, name=name)``.

    Args:
        key: a ``jax.random`` key.
        step: the step model ``step(carry, x_t) -> (carry, out)`` (plain function or Model).
        init: the initial carry (a pytree), or a ``ppl.Model`` called with ``init_args`` whose
            return value is the initial carry (its observations, if any, weight the particles).
        xs: the per-step inputs (observations), leading time axis T.
        num_particles: N.
        proposal: optional model ``proposal(carry, x_t)`` sampling the step's latent sites
            (default: the step's prior, the bootstrap filter).
        scheme: resampling scheme name or :class:`~inference.smc.ResamplingDistribution` class.
        ess_threshold: resample only when ESS < ρ N (default: resample at every step t > 0).
        name: the address prefix of the paths (default: the step function's name).

    Returns an :class:`SMCResult`.  Unbiased: E[Ẑ] = p(y); properly weighted: E[(1/N) Σ_i w_i
    δ_{path_i}] = p(x_{0:T-1}, y_{0:T-1}).
    """
    m = ppl.as_model(step)
    name = name or m.name
    N = int(num_particles)
    k_init, k_loop = jax.random.split(key)
    if isinstance(init, ppl.Model):
        p0 = blocks.init(k_init, init, N, *init_args)
        particles = Particles(p0.states.retval, p0.log_weights, p0.ancestors)
    else:
        particles = blocks.init_states(init, N)
    leaves = jax.tree_util.tree_leaves(xs)
    T = int(np.shape(leaves[0])[0])

    def body(p, inp):
        t, k, x = inp
        k_res, k_ext = jax.random.split(k)
        if randomness.requires_eager():
            # eager (exact enumeration): a Python branch, so only real resampling draws are seen
            if t == 0:
                e = p.ess
                p = Particles(p.states, p.log_weights, jnp.arange(N, dtype=jnp.int32))
                info = {"ancestors": p.ancestors, "resampled": jnp.asarray(False), "ess": e}
            else:
                p, info = blocks.resample(k_res, p, scheme, ess_threshold=ess_threshold)
        else:
            # no resampling at t = 0 (threshold 0); "always" is a threshold above any ESS / N
            thr = 2.0 if ess_threshold is None else ess_threshold
            p, info = blocks.resample(k_res, p, scheme, ess_threshold=jnp.where(t > 0, thr, 0.0))
        p, traces = blocks.extend(k_ext, p, m, x, proposal=proposal)
        rec = {
            "choices": dict(traces.latent),
            "ancestors": info["ancestors"],
            "resampled": info["resampled"],
            "ess": info["ess"],
            "log_evidence": p.log_evidence,
            "mean": _weighted_mean(p, p.states),
        }
        return p, rec

    ts = jnp.arange(T)
    keys = jax.random.split(k_loop, T)
    if randomness.requires_eager():
        recs = []
        for t in range(T):
            particles, rec = body(particles, (t, keys[t], jax.tree.map(lambda v: v[t], xs)))
            recs.append(rec)
        hist = jax.tree.map(lambda *r: jnp.stack(r), *recs)
    else:
        particles, hist = jax.lax.scan(body, particles, (ts, keys, xs))
    paths = trajectories(hist["choices"], hist["ancestors"])
    paths = {f"{name}/{k}": v for k, v in paths.items()}
    return SMCResult(
        particles=particles,
        log_evidence=particles.log_evidence,
        log_evidence_history=hist["log_evidence"],
        ess=hist["ess"],
        resampled=hist["resampled"],
        ancestors=hist["ancestors"],
        paths=paths,
        filter_means=hist["mean"],
    )
