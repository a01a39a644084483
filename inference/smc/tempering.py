"""Adaptive tempered SMC for static models, built from the blocks.

Targets the path γ_β(x) = p(x) L(x)^β, β from 0 (the prior) to 1 (the posterior), on the model's
unconstrained view (``ppl.unconstrained``: x flat, the prior's Jacobian included).  Each step:

    β' = next_beta(...)            bisection on the conditional ESS (Zhou, Johansen & Aston 2016)
    temper(β → β')                 weights × L(x)^(β' − β)
    resample                       (always, or when ESS < ρN)
    rejuvenate                     random-walk MH or HMC leaving γ_β' invariant, tuned from the
                                   particles (RWM: covariance 2.38²/d × particle covariance; HMC:
                                   inverse mass = particle variances, step size adapted to the
                                   previous step's acceptance rate)

The log evidence estimate is the population's log Ẑ.  With a fixed schedule (``betas=``) Ẑ is
exactly unbiased; the adaptive schedule depends on the particles, which adds a bias of order 1/N.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl
from inference.mcmc import metropolis_accept

from . import blocks
from .particles import Particles, map_particles

__all__ = ["TemperedResult", "tempered_smc", "next_beta", "rwm_move", "hmc_move", "TemperedTarget"]


class TemperedTarget:
    """The tempered path of a model on its unconstrained view: log γ_β(x) = log p_u(x) − (1−β) ℓ(x)."""

    def __init__(self, model: Any, args: tuple = (), kwargs: dict | None = None):
        self.model = ppl.as_model(model)
        self.args, self.kwargs = tuple(args), dict(kwargs or {})
        self.view = ppl.unconstrained(self.model, *self.args, **self.kwargs)

    def log_likelihood(self, x: jax.Array) -> jax.Array:
        """ℓ(x): log density of the observations and factors at the latent values T(x)."""
        vals = self.view.to_constrained(x)
        vals = {k: v for k, v in vals.items() if k in self.view.sites}
        tr, _ = self.model.generate(jax.random.key(0), vals, *self.args, **self.kwargs)
        ll = tr.log_likelihood
        return jnp.where(jnp.isnan(ll), -jnp.inf, ll)

    def log_density(self, x: jax.Array, beta: Any) -> jax.Array:
        """log γ_β(x) = log p_u(x) + β ℓ(x) (p_u: the prior in unconstrained space)."""
        full = self.view.log_density(x)
        lp = full - (1.0 - beta) * self.log_likelihood(x)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    def prior_draw(self, key: Any) -> jax.Array:
        """x ~ the prior, pushed to unconstrained space."""
        tr = self.model.simulate(key, *self.args, **self.kwargs)
        return self.view.to_unconstrained({n: tr.choices[n] for n in self.view.sites})


def next_beta(log_weights: jax.Array, log_lik: jax.Array, beta: Any, target: float = 0.5, iters: int = 50) -> jax.Array:
    """The largest β' ≤ 1 whose conditional ESS fraction (Σ W v)² / Σ W v², v = L^(β'−β), is ≥ target."""
    logW = jax.nn.log_softmax(log_weights)
    ll = jnp.where(jnp.isnan(log_lik), -jnp.inf, log_lik)

    def cess(delta):
        a = logW + delta * ll
        return jnp.exp(2 * jax.scipy.special.logsumexp(a) - jax.scipy.special.logsumexp(logW + 2 * delta * ll))

    hi = 1.0 - beta

    def bisect(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        ok = cess(mid) >= target
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iters, bisect, (jnp.zeros_like(hi), hi))
    delta = jnp.where(cess(hi) >= target, hi, jnp.maximum(lo, 1e-12 * jnp.ones_like(lo)))
    return jnp.minimum(beta + delta, 1.0)


def rwm_move(log_target: Callable, scale_tril: jax.Array) -> Callable:
    """Random-walk MH step x' = x + L ε targeting exp(log_target); the accept coin is drawn
    through ``ppl.randomness`` (``Bernoulli(min(1, α))``)."""

    def step(key, x):
        k1, k2 = jax.random.split(key)
        prop = x + scale_tril @ jax.random.normal(k1, x.shape, dtype=x.dtype)
        log_alpha = log_target(prop) - log_target(x)
        acc, p = metropolis_accept(k2, log_alpha, name="smc/rwm/accept")
        return jnp.where(acc, prop, x), {"accept_prob": p}

    return step


def hmc_move(log_target: Callable, step_size: Any, inv_mass: jax.Array, num_leapfrog: int = 10) -> Callable:
    """HMC step (diagonal inverse mass `inv_mass`, fixed step size and path length) targeting
    exp(log_target)."""
    grad = jax.grad(log_target)

    def step(key, x):
        k1, k2 = jax.random.split(key)
        r0 = jax.random.normal(k1, x.shape, dtype=x.dtype) / jnp.sqrt(inv_mass)

        def leap(_, c):
            q, r = c
            r = r + 0.5 * step_size * grad(q)
            q = q + step_size * inv_mass * r
            r = r + 0.5 * step_size * grad(q)
            return q, r

        q, r = jax.lax.fori_loop(0, num_leapfrog, leap, (x, r0))
        h0 = log_target(x) - 0.5 * jnp.sum(inv_mass * r0**2)
        h1 = log_target(q) - 0.5 * jnp.sum(inv_mass * r**2)
        acc, p = metropolis_accept(k2, h1 - h0, name="smc/hmc/accept")
        return jnp.where(acc, q, x), {"accept_prob": p}

    return step


class TemperedResult(eqx.Module):
    """Output of :func:`tempered_smc`.

    Attributes:
        particles: final population (states: flat unconstrained vectors).
        samples: address -> (N, ...) constrained values of the final particles (equal weights
            after the last resampling; use ``particles.weights`` otherwise).
        log_evidence: log Ẑ.
        betas: (max_steps,) the schedule (padded with 1 after the last step).
        num_steps: number of tempering steps taken.
        ess: (max_steps,) ESS after each reweighting (before resampling).
        acceptance: (max_steps,) mean acceptance probability of each rejuvenation.
    """

    particles: Particles
    samples: dict
    log_evidence: jax.Array
    betas: jax.Array
    num_steps: jax.Array
    ess: jax.Array
    acceptance: jax.Array


def tempered_smc(
    key: Any,
    model: Any,
    *args: Any,
    num_particles: int = 1000,
    target_ess: float = 0.5,
    betas: Any = None,
    kernel: str = "rwm",
    num_mcmc_steps: int = 5,
    num_leapfrog: int = 10,
    scheme: Any = "systematic",
    ess_threshold: float | None = None,
    max_steps: int = 100,
    **kwargs: Any,
) -> TemperedResult:
    """Adaptive tempered SMC from the prior to the posterior of ``model(*args, **kwargs)``.

    Args:
        num_particles: N.
        target_ess: the conditional-ESS fraction each new β aims for (bisection).
        betas: a fixed increasing schedule ending at 1 instead (then Ẑ is exactly unbiased).
        kernel: "rwm" or "hmc" rejuvenation, ``num_mcmc_steps`` per tempering step.
        scheme: the resampling scheme (default: always resample after reweighting).
        ess_threshold: resample when the ESS falls below this fraction of N.
        max_steps: bound on the number of adaptive steps.

    The loop is one ``lax.while_loop`` (adaptive) or ``lax.scan`` (fixed schedule).
    """
    target = TemperedTarget(model, args, kwargs)
    N = int(num_particles)
    d = target.view.dim
    k_init, k_loop = jax.random.split(key)
    x0 = map_particles(lambda k, _: target.prior_draw(k), k_init, jnp.zeros((N,)))
    particles = Particles.from_states(x0)
    dtype = x0.dtype

    def advance(p: Particles, beta, new_beta, step_size, k):
        k_res, k_mv = jax.random.split(k)
        p = blocks.temper(p, target.log_likelihood, beta, new_beta)
        e = p.ess
        p, _ = blocks.resample(k_res, p, scheme, ess_threshold=ess_threshold)
        x = p.states
        W = p.weights
        mean = W @ x
        cov = (x - mean).T @ ((x - mean) * W[:, None]) + 1e-9 * jnp.eye(d, dtype=dtype)

        def lt(z):
            return target.log_density(z, new_beta)

        if kernel == "rwm":
            move = rwm_move(lt, jnp.linalg.cholesky((2.38**2 / d) * cov))
        elif kernel == "hmc":
            move = hmc_move(lt, step_size, jnp.diag(cov), num_leapfrog)
        else:
            raise ValueError(f"tempered_smc: kernel must be 'rwm' or 'hmc', got {kernel!r}.")
        p, info = blocks.rejuvenate(k_mv, p, move, num_steps=num_mcmc_steps)
        acc = jnp.mean(info["accept_prob"])
        new_step = step_size * jnp.exp(acc - 0.65)
        return p, e, acc, new_step

    step0 = jnp.asarray(1.0 / d**0.25, dtype=dtype)
    if betas is not None:
        sched = jnp.asarray(betas, dtype=dtype)
        prev = jnp.concatenate([jnp.zeros((1,), dtype), sched[:-1]])
        keys = jax.random.split(k_loop, sched.shape[0])

        def body(c, inp):
            p, ss = c
            b0, b1, k = inp
            p, e, acc, ss = advance(p, b0, b1, ss, k)
            return (p, ss), (e, acc)

        (particles, _), (ess_h, acc_h) = jax.lax.scan(body, (particles, step0), (prev, sched, keys))
        hist_b, n = sched, jnp.asarray(sched.shape[0])
    else:
        zeros = jnp.zeros((max_steps,), dtype)

        def cond(c):
            p, beta, n, *_ = c
            return (beta < 1.0) & (n < max_steps)

        def body(c):
            p, beta, n, ss, k, hb, he, ha = c
            k, sub = jax.random.split(k)
            ll = jax.vmap(target.log_likelihood)(p.states)
            nb = next_beta(p.log_weights, ll, beta, target_ess)
            nb = jnp.where(n == max_steps - 1, 1.0, nb)
            p, e, acc, ss = advance(p, beta, nb, ss, sub)
            return p, nb, n + 1, ss, k, hb.at[n].set(nb), he.at[n].set(e), ha.at[n].set(acc)

        c0 = (particles, jnp.asarray(0.0, dtype), jnp.asarray(0), step0, k_loop, jnp.ones((max_steps,), dtype), zeros, zeros)
        particles, _, n, _, _, hist_b, ess_h, acc_h = jax.lax.while_loop(cond, body, c0)
    samples = jax.vmap(target.view.to_constrained)(particles.states)
    return TemperedResult(particles, samples, particles.log_evidence, hist_b, n, ess_h, acc_h)
