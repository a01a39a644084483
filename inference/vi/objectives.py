"""Built-in objectives, each written as a program in the objective language of :mod:`.core`.

Every objective below is a lower bound on log Z = log p(x) (except the wake-sleep objectives,
which are surrogates for other updates); each one's ``grad`` is unbiased for the gradient of
the expectation of the value it returns (not for the gradient of log Z).

Notation: w = p(x, z) / q(z) for z ~ q, the importance weight of one guide draw.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

import ppl

from .estimator import Objective
from .program import particles, sample
from .terms import VIError
from .marginals import marginal

__all__ = [
    "log_weight",
    "elbo",
    "iwae",
    "renyi",
    "vimco",
    "p_wake",
    "q_wake",
    "rws",
    "vimco_baselines",
    "hvi",
    "iwhvi",
]

sg = jax.lax.stop_gradient


def log_weight(model: Any, tr: ppl.Trace, *args: Any, **kwargs: Any) -> jax.Array:
    """log w = log p(x, z) − log q(z) for a guide trace `tr` (its choices scored by `model`)."""
    return ppl.as_model(model).log_density(tr.choices, *args, **kwargs) - tr.log_density


def _particle_log_weights(model: Any, guide: Any, K: int, args: tuple, kwargs: dict, **sample_kw: Any):
    return particles(K, lambda: log_weight(model, sample(guide, *args, **sample_kw, **kwargs), *args, **kwargs))


def _check_k(K: Any, who: str) -> int:
    K = int(K)
    if K < 1:
        raise VIError(f"vi.{who}: num_particles must be at least 1, got {K}.")
    return K


def elbo(model: Any, guide: Any, num_particles: int = 1, strategies: dict | None = None) -> Objective:
    """The evidence lower bound E_q[log p(x, z) − log q(z)] ≤ log p(x).

    Its estimate is the mean of `num_particles` log weights; ``grad`` is unbiased for ∇ ELBO.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> obj = vi.elbo(model, guide)
        >>> value, g = obj.grad(jax.random.key(0), obj.init_params(jax.random.key(1), 1.0), 1.0)
        >>> sorted(g)
        ['m']
    """
    K = _check_k(num_particles, "elbo")

    def elbo_program(*args: Any, **kwargs: Any) -> jax.Array:
        return jnp.mean(_particle_log_weights(model, guide, K, args, kwargs))

    return Objective(elbo_program, strategies, name="elbo", model=model, guide=guide)


def iwae(model: Any, guide: Any, num_particles: int = 10, strategies: dict | None = None) -> Objective:
    """The importance-weighted bound E[log (1/K) Σ_k w_k] (Burda et al.); increases to log p(x) with K.

    ``grad`` is unbiased for the gradient of the K-particle bound.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> obj = vi.iwae(model, guide, num_particles=10)
        >>> obj.name
        'iwae10'
    """
    K = _check_k(num_particles, "iwae")

    def iwae_program(*args: Any, **kwargs: Any) -> jax.Array:
        lw = _particle_log_weights(model, guide, K, args, kwargs)
        return jax.nn.logsumexp(lw) - math.log(K)

    return Objective(iwae_program, strategies, name=f"iwae{K}", model=model, guide=guide)


def renyi(model: Any, guide: Any, alpha: float = 0.5, num_particles: int = 2, strategies: dict | None = None) -> Objective:
    """The Rényi (VR) bound E[1/(1−α) log (1/K) Σ_k w_k^{1−α}] (Li & Turner 2016), α ≠ 1.

    α = 0 with K particles is IWAE; α → 1 tends to the ELBO.  ``grad`` is unbiased for the
    gradient of the K-particle bound.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> obj = vi.renyi(model, guide, alpha=0.5, num_particles=4)
        >>> obj.name
        'renyi0.5'
    """
    K = _check_k(num_particles, "renyi")
    alpha = float(alpha)
    if alpha == 1.0:
        raise VIError("vi.renyi: alpha = 1 is the ELBO; use vi.elbo.")

    def renyi_program(*args: Any, **kwargs: Any) -> jax.Array:
        lw = _particle_log_weights(model, guide, K, args, kwargs)
        return (jax.nn.logsumexp((1.0 - alpha) * lw) - math.log(K)) / (1.0 - alpha)

    return Objective(renyi_program, strategies, name=f"renyi{alpha}", model=model, guide=guide)


def vimco_baselines(log_w: jax.Array) -> jax.Array:
    """VIMCO's leave-one-out baselines (Mnih & Rezende 2016): for particle k,
    b_k = log (1/K)(Σ_{j≠k} w_j + ŵ_{−k}), ŵ_{−k} the geometric mean of the other weights.
    b_k does not depend on particle k, so the score terms stay unbiased."""
    K = log_w.shape[0]
    mean_others = (jnp.sum(log_w) - log_w) / (K - 1)
    eye = jnp.eye(K, dtype=bool)
    mat = jnp.where(eye, mean_others[:, None], log_w[None, :])  # row k: log w with k replaced
    return jax.nn.logsumexp(mat, axis=1) - math.log(K)


def vimco(model: Any, guide: Any, num_particles: int = 5, strategies: dict | None = None) -> Objective:
    """The IWAE bound with VIMCO's per-particle leave-one-out baselines for score-function sites.

    Same value and same expected gradient as :func:`iwae` (unbiased for ∇ IWAE_K); lower variance
    for discrete guides.  Needs K ≥ 2.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> obj = vi.vimco(model, guide, num_particles=5)
        >>> obj.guide is guide
        True
    """
    K = _check_k(num_particles, "vimco")
    if K < 2:
        raise VIError("vi.vimco needs num_particles >= 2 (the baselines leave one particle out).")

    def vimco_program(*args: Any, **kwargs: Any) -> jax.Array:
        lw = particles(
            K,
            lambda: log_weight(model, sample(guide, *args, **kwargs), *args, **kwargs),
            baseline=vimco_baselines,
        )
        return jax.nn.logsumexp(lw) - math.log(K)

    return Objective(vimco_program, strategies, name=f"vimco{K}", model=model, guide=guide)


def p_wake(model: Any, guide: Any, num_particles: int = 5) -> Objective:
    """Reweighted wake-sleep's model update: the IWAE bound with the guide detached.

    The draws z_k ~ q carry no gradient and the guide's parameters are constants, so ``grad`` is
    unbiased for ∇_θ IWAE_K(θ, φ) (model parameters θ) and zero for the guide's parameters.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> obj = vi.p_wake(model, guide, num_particles=5)
        >>> obj.name
        'p_wake5'
    """
    K = _check_k(num_particles, "p_wake")

    def p_wake_program(*args: Any, **kwargs: Any) -> jax.Array:
        lw = _particle_log_weights(model, guide, K, args, kwargs, detach=True)
        return jax.nn.logsumexp(lw) - math.log(K)

    return Objective(p_wake_program, name=f"p_wake{K}", model=model, guide=guide)


def _q_wake_terms(model: Any, guide: Any, K: int, args: tuple, kwargs: dict):
    g = ppl.as_model(guide)

    def one():
        tr = sample(guide, *args, detach=True, **kwargs)
        lw = log_weight(model, tr, *args, **kwargs)
        return jnp.stack([lw, g.log_density(tr.choices, *args, **kwargs)])

    out = particles(K, one)
    lw, log_q = out[:, 0], out[:, 1]
    return lw, log_q


def q_wake(model: Any, guide: Any, num_particles: int = 5) -> Objective:
    """Reweighted wake-sleep's guide update: F = Σ_k w̃_k log q_φ(z_k), z_k ~ q detached, w̃ the
    self-normalised (constant) weights.

    ``grad`` is unbiased for E_{z_{1:K}~q}[Σ_k w̃_k ∇_φ log q_φ(z_k)], the self-normalised
    estimate of ∇_φ E_{p(z|x)}[log q_φ(z)] (the wake-phase update of Bornschein & Bengio 2015;
    consistent, not unbiased, for that gradient as K grows).

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> obj = vi.q_wake(model, guide, num_particles=5)
        >>> obj.name
        'q_wake5'
    """
    K = _check_k(num_particles, "q_wake")

    def q_wake_program(*args: Any, **kwargs: Any) -> jax.Array:
        lw, log_q = _q_wake_terms(model, guide, K, args, kwargs)
        return jnp.sum(jax.nn.softmax(sg(lw)) * log_q)

    return Objective(q_wake_program, name=f"q_wake{K}", model=model, guide=guide)


def rws(model: Any, guide: Any, num_particles: int = 5) -> Objective:
    """Reweighted wake-sleep: p-wake for the model's parameters and q-wake for the guide's, one
    objective.  Its value is the IWAE_K estimate; its gradient is p-wake's (model parameters) plus
    q-wake's (guide parameters).

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> obj = vi.rws(model, guide, 5)
        >>> value, g = obj.grad(jax.random.key(0), obj.init_params(jax.random.key(1), 1.0), 1.0)
        >>> value.shape
        ()
    """
    K = _check_k(num_particles, "rws")

    def rws_program(*args: Any, **kwargs: Any) -> jax.Array:
        lw, log_q = _q_wake_terms(model, guide, K, args, kwargs)
        bound = jax.nn.logsumexp(lw) - math.log(K)
        q_term = jnp.sum(jax.nn.softmax(sg(lw)) * log_q)
        return bound + (q_term - sg(q_term))

    return Objective(rws_program, name=f"rws{K}", model=model, guide=guide)


def iwhvi(
    model: Any,
    guide: Any,
    aux: Any,
    proposal: Any,
    num_particles: int = 5,
    strategies: dict | None = None,
) -> Objective:
    """Importance-weighted hierarchical VI (Sobolev & Vetrov 2019) for a guide q(z, λ) with
    auxiliary addresses `aux`: F = log p(x, z) − log q̂_K(z), (z, λ_0) ~ q, with the marginal
    density estimated from λ_0 and K draws of the reverse model `proposal` τ(λ | z)
    (:func:`vi.marginal`).  Only z is scored by the model.

    E[F] ≤ log p(x) for every K and τ, increasing with K to the ELBO of the marginal q(z);
    ``grad`` is unbiased for the gradient of E[F] w.r.t. the parameters of model, guide and τ.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> @ppl.model
        ... def guide(x):
        ...     lam = ppl.sample("lam", dist.Normal(ppl.param("m", 0.0), 1.0))
        ...     ppl.sample("z", dist.Normal(lam, 0.5))
        >>> reverse = ppl.model(lambda z, x: ppl.sample("lam", dist.Normal(ppl.param("r", 0.5) * z["z"], 0.8)))
        >>> obj = vi.iwhvi(model, guide, aux=["lam"], proposal=reverse, num_particles=5)
        >>> sorted(obj.init_params(jax.random.key(0), 1.0))
        ['m', 'r']
    """
    K = int(num_particles)
    if K < 0:
        raise VIError(f"vi.iwhvi: num_particles must be at least 0, got {K}.")
    q = marginal(guide, aux, proposal, K)

    def iwhvi_program(*args: Any, **kwargs: Any) -> jax.Array:
        return log_weight(model, sample(q, *args, **kwargs), *args, **kwargs)

    return Objective(iwhvi_program, strategies, name=f"iwhvi{K}", model=model, guide=guide)


def hvi(model: Any, guide: Any, aux: Any, proposal: Any, strategies: dict | None = None) -> Objective:
    """Hierarchical VI's bound (Ranganath et al. 2016): E_q(z,λ)[log p(x, z) + log r(λ | z) −
    log q(z, λ)] ≤ log p(x), with `proposal` as the reverse model r.  It is :func:`iwhvi` with
    K = 0 (the auxiliary draw λ of q is the only candidate); ``grad`` is unbiased for its gradient.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> @ppl.model
        ... def guide(x):
        ...     lam = ppl.sample("lam", dist.Normal(ppl.param("m", 0.0), 1.0))
        ...     ppl.sample("z", dist.Normal(lam, 0.5))
        >>> reverse = ppl.model(lambda z, x: ppl.sample("lam", dist.Normal(ppl.param("r", 0.5) * z["z"], 0.8)))
        >>> obj = vi.hvi(model, guide, aux=["lam"], proposal=reverse)
        >>> obj.name
        'hvi'
    """
    obj = iwhvi(model, guide, aux, proposal, 0, strategies)
    obj.name = "hvi"
    return obj
