"""Density estimators of posterior draws on the flat unconstrained space, and their chain-rule
conditionals.

An estimator is fitted to ``(n, D)`` unconstrained draws u (the sites of a model, each mapped by
its own ``biject_to(support).inv`` and flattened, concatenated in the model's site order: a
:class:`~inference.sequential.prior.Layout`).  The fitted object is a density q(u) that can be
read site by site through the chain rule

    q(u) = q(u_1) q(u_2 | u_1) ... q(u_k | u_1, ..., u_{k-1}),

``conditional(i, u_prefix)`` being the numpyro distribution of block i given the blocks before
it.  That is what lets :func:`~inference.sequential.prior.prior_model` write the fitted density
as an ordinary ppl model whose sites keep their names: each site is sampled from its
conditional, in order, so the joint law of the sites is q exactly (no site is added, none is
dropped, and every inference family sees a plain model).

* :class:`Gaussian`: the mean and covariance of the draws (or given exact moments); the
  conditionals are the Gaussian ones (Schur complements).
* :class:`GaussianMixture`: K components fitted by EM (``lax.scan`` over iterations, restarts
  vectorised with ``vmap``); each covariance gets ``reg`` added to its diagonal (as
  scikit-learn's ``reg_covar``), so no component collapses on a draw.  The conditionals are
  mixtures of the components' Gaussian conditionals, reweighted by each component's marginal
  density of the prefix.
* :class:`Flow`: one masked autoregressive flow per site (flowjax), the i-th conditioned on the
  blocks before it (``cond_dim``), trained by ``flowjax.train.fit_to_data`` (maximum likelihood).
  Its chain rule is exact by construction.
* :class:`BetaMoments`: the exact conjugate path for a scalar Beta site: the Beta law with the
  posterior's mean and variance (moment matching is exact when the posterior is a Beta), on the
  constrained scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints

from ppl.errors import ArgumentError

__all__ = ["Estimator", "Gaussian", "GaussianMixture", "Flow", "BetaMoments",
           "FittedGaussian", "FittedMixture", "FittedFlow", "FittedBeta", "em_gaussian_mixture"]


def _blocks(sizes: Sequence[int]) -> list[tuple[int, int]]:
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(int(off[i]), int(off[i + 1])) for i in range(len(sizes))]


def _check_draws(who: str, u: Any) -> jax.Array:
    u = jnp.asarray(u)
    if u.ndim != 2 or u.shape[0] < 2:
        raise ArgumentError(f"{who}: expected draws of shape (num_draws >= 2, dim), got shape {tuple(u.shape)}.")
    if not bool(jnp.all(jnp.isfinite(u))):
        raise ArgumentError(f"{who}: the unconstrained draws hold NaN or inf values (a draw on the boundary of a "
                            "support?); the density estimator cannot be fitted to them.")
    return u


class Estimator:
    """A density estimator: ``fit(key, u, sizes)`` -> a fitted density over ``u`` (``(n, D)``,
    blocks of the given ``sizes``).  Subclasses: :class:`Gaussian`, :class:`GaussianMixture`,
    :class:`Flow`, :class:`BetaMoments`."""

    #: True when the estimator lives on the constrained scale of one site (no unconstrained view)
    constrained: bool = False

    def fit(self, key: Any, u: Any, sizes: Sequence[int]) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


# -- Gaussian ------------------------------------------------------------------------------------


@partial(jax.tree_util.register_dataclass, data_fields=['mean', 'cov'], meta_fields=['sizes'])
@dataclass(frozen=True)
class FittedGaussian:
    """N(mean, cov) over the flat unconstrained vector, read block by block (module docstring)."""

    mean: Any
    cov: Any
    sizes: tuple

    def log_prob(self, u: Any) -> jax.Array:
        """log q(u) for u of shape (..., D)."""
        return dist.MultivariateNormal(self.mean, covariance_matrix=self.cov).log_prob(u)

    def conditional(self, i: int, prefix: Any) -> dist.Distribution:
        """Block i given the blocks before it (``prefix``, flat): its Gaussian conditional."""
        a, b = _blocks(self.sizes)[i]
        m, S = self.mean, self.cov
        if a == 0:
            return dist.MultivariateNormal(m[a:b], covariance_matrix=S[a:b, a:b])
        Spp, Sip = S[:a, :a], S[a:b, :a]
        K = jnp.linalg.solve(Spp, Sip.T).T  # S_ip S_pp^-1
        cm = m[a:b] + K @ (prefix - m[:a])
        cS = S[a:b, a:b] - K @ Sip.T
        return dist.MultivariateNormal(cm, covariance_matrix=0.5 * (cS + cS.T))


@dataclass(frozen=True)
class Gaussian(Estimator):
    """The Gaussian with the draws' mean and covariance (``ddof=1``), plus ``jitter`` on the
    diagonal.  With ``exact=True`` the moments are taken from a result that carries them
    (``loc``/``cov`` of a Gaussian fit in the model's unconstrained space, e.g.
    :func:`inference.vi.laplace`, exact for linear-Gaussian models) instead of from draws.

    Example:
        >>> from inference.sequential import Gaussian
        >>> u = jax.random.normal(jax.random.key(0), (4000, 2)) * jnp.array([1.0, 3.0]) + 2.0
        >>> q = Gaussian().fit(jax.random.key(1), u, [1, 1])
        >>> [round(float(x)) for x in q.mean], round(float(q.cov[1, 1]))
        ([2, 2], 9)
    """

    jitter: float = 0.0
    exact: bool = False

    def fit(self, key: Any, u: Any, sizes: Sequence[int]) -> FittedGaussian:
        u = _check_draws("sequential.Gaussian", u)
        mean = jnp.mean(u, axis=0)
        cov = jnp.atleast_2d(jnp.cov(u, rowvar=False)) + self.jitter * jnp.eye(u.shape[1], dtype=u.dtype)
        return FittedGaussian(mean, cov, tuple(int(s) for s in sizes))

    def from_moments(self, mean: Any, cov: Any, sizes: Sequence[int]) -> FittedGaussian:
        """The Gaussian with the given (exact) moments."""
        mean = jnp.atleast_1d(jnp.asarray(mean))
        cov = jnp.atleast_2d(jnp.asarray(cov))
        if cov.shape != (mean.shape[0], mean.shape[0]) or mean.shape[0] != int(sum(sizes)):
            raise ArgumentError(f"sequential.Gaussian: moments of shapes {tuple(mean.shape)} and {tuple(cov.shape)} "
                                f"do not fit {int(sum(sizes))} unconstrained coordinates.")
        return FittedGaussian(mean, cov, tuple(int(s) for s in sizes))


# -- Gaussian mixture by EM ----------------------------------------------------------------------


def _mvn_logpdf(x: jax.Array, mean: jax.Array, cov: jax.Array) -> jax.Array:
    """log N(x; mean, cov) for x (n, D): (n,)."""
    L = jnp.linalg.cholesky(cov)
    z = jax.scipy.linalg.solve_triangular(L, (x - mean).T, lower=True)
    D = x.shape[-1]
    return -0.5 * jnp.sum(z**2, axis=0) - jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * D * jnp.log(2 * jnp.pi)


def _responsibilities(x: jax.Array, logw: jax.Array, means: jax.Array, covs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """E-step: log r_nk = log w_k + log N(x_n; m_k, S_k) - log Σ_j (...), and the per-point log q(x_n)."""
    logp = jax.vmap(_mvn_logpdf, in_axes=(None, 0, 0), out_axes=1)(x, means, covs) + logw
    ll = logsumexp(logp, axis=1)
    return logp - ll[:, None], ll


def em_gaussian_mixture(key: Any, x: Any, num_components: int, *, num_iters: int = 200, reg: float = 1e-6,
                        num_restarts: int = 4) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Maximum-likelihood Gaussian mixture of ``x`` (n, D) by EM: ``(log_weights, means, covs,
    mean_log_lik)``.  Each restart starts from K distinct draws as means, the draws' covariance
    for every component and equal weights; iterations are a ``lax.scan``, restarts a ``vmap``; the
    restart with the highest final mean log-likelihood is kept.  ``reg`` is added to the diagonal
    of every covariance at each M-step (the regularised ML estimate).

    Example:
        >>> from inference.sequential import em_gaussian_mixture
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> x = jnp.concatenate([jax.random.normal(k1, (3000, 1)) - 4.0, jax.random.normal(k2, (1000, 1)) + 4.0])
        >>> logw, means, covs, ll = em_gaussian_mixture(jax.random.key(2), x, 2, num_iters=50)
        >>> sorted(round(float(w), 2) for w in jnp.exp(logw))
        [0.25, 0.75]
    """
    x = _check_draws("sequential.em_gaussian_mixture", x)
    n, D = x.shape
    K = int(num_components)
    if K < 1 or K > n:
        raise ArgumentError(f"sequential.em_gaussian_mixture: num_components must be in 1..{n} (the number of draws), got {num_components!r}.")
    eye = jnp.eye(D, dtype=x.dtype)
    cov0 = jnp.atleast_2d(jnp.cov(x, rowvar=False)) + reg * eye

    def one(k: jax.Array):
        idx = jax.random.choice(k, n, (K,), replace=False)
        init = (jnp.full((K,), -jnp.log(K), dtype=x.dtype), x[idx], jnp.broadcast_to(cov0, (K, D, D)))

        def step(carry, _):
            logw, means, covs = carry
            logr, ll = _responsibilities(x, logw, means, covs)
            r = jnp.exp(logr)
            nk = jnp.sum(r, axis=0) + 10 * jnp.finfo(x.dtype).tiny
            means = (r.T @ x) / nk[:, None]
            diff = x[:, None, :] - means[None]
            covs = jnp.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None] + reg * eye
            return (jnp.log(nk / n), means, covs), jnp.mean(ll)

        (logw, means, covs), _ = jax.lax.scan(step, init, None, length=int(num_iters))
        return logw, means, covs, jnp.mean(_responsibilities(x, logw, means, covs)[1])

    out = jax.vmap(one)(jax.random.split(key, int(num_restarts)))
    best = jnp.argmax(jnp.where(jnp.isfinite(out[3]), out[3], -jnp.inf))
    return tuple(o[best] for o in out)  # type: ignore[return-value]


@partial(jax.tree_util.register_dataclass, data_fields=['log_weights', 'means', 'covs'], meta_fields=['sizes'])
@dataclass(frozen=True)
class FittedMixture:
    """Σ_k w_k N(m_k, S_k) over the flat unconstrained vector."""

    log_weights: Any
    means: Any
    covs: Any
    sizes: tuple

    def log_prob(self, u: Any) -> jax.Array:
        """log q(u) for u of shape (..., D)."""
        comp = dist.MultivariateNormal(self.means, covariance_matrix=self.covs)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.log_weights), comp).log_prob(u)

    def conditional(self, i: int, prefix: Any) -> dist.Distribution:
        """Block i given the blocks before it: the mixture of the components' conditionals, with
        weights w_k N(prefix; m_kP, S_kPP) / Σ_j (...)."""
        a, b = _blocks(self.sizes)[i]
        m, S = self.means, self.covs
        if a == 0:
            cm, cS, logw = m[:, a:b], S[:, a:b, a:b], self.log_weights
        else:
            Spp, Sip = S[:, :a, :a], S[:, a:b, :a]
            K = jnp.swapaxes(jnp.linalg.solve(Spp, jnp.swapaxes(Sip, -1, -2)), -1, -2)
            cm = m[:, a:b] + jnp.einsum("kij,kj->ki", K, prefix - m[:, :a])
            cS = S[:, a:b, a:b] - K @ jnp.swapaxes(Sip, -1, -2)
            cS = 0.5 * (cS + jnp.swapaxes(cS, -1, -2))
            logw = self.log_weights + dist.MultivariateNormal(m[:, :a], covariance_matrix=Spp).log_prob(prefix)
        return dist.MixtureSameFamily(dist.Categorical(logits=logw - logsumexp(logw)),
                                      dist.MultivariateNormal(cm, covariance_matrix=cS))


@dataclass(frozen=True)
class GaussianMixture(Estimator):
    """A K-component Gaussian mixture fitted by EM (:func:`em_gaussian_mixture`; ``reg`` on each
    covariance's diagonal).

    Example:
        >>> from inference.sequential import GaussianMixture
        >>> u = jnp.concatenate([jax.random.normal(jax.random.key(0), (500, 1)) - 3.0,
        ...                      jax.random.normal(jax.random.key(1), (500, 1)) + 3.0])
        >>> q = GaussianMixture(2, num_iters=50).fit(jax.random.key(2), u, [1])
        >>> sorted(round(float(x)) for x in q.means[:, 0])
        [-3, 3]
    """

    num_components: int = 2
    num_iters: int = 200
    reg: float = 1e-6
    num_restarts: int = 4

    def fit(self, key: Any, u: Any, sizes: Sequence[int]) -> FittedMixture:
        logw, means, covs, _ = em_gaussian_mixture(key, u, self.num_components, num_iters=self.num_iters,
                                                   reg=self.reg, num_restarts=self.num_restarts)
        return FittedMixture(logw, means, covs, tuple(int(s) for s in sizes))


# -- normalising flow (flowjax) -------------------------------------------------------------------


def _typed(key: Any) -> jax.Array:
    """A new-style typed key (flowjax needs them) from either kind."""
    return key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)


class _FlowDistribution(dist.Distribution):
    """A flowjax distribution (optionally conditioned) as a numpyro distribution over R^d."""

    support = constraints.real_vector

    def __init__(self, flow: Any, condition: Any, dim: int):
        self.flow, self.condition = flow, condition
        super().__init__(batch_shape=(), event_shape=(int(dim),))

    def sample(self, key: Any, sample_shape: tuple = ()) -> jax.Array:
        return self.flow.sample(_typed(key), tuple(sample_shape), condition=self.condition)

    def log_prob(self, value: Any) -> jax.Array:
        return self.flow.log_prob(value, condition=self.condition)


@partial(jax.tree_util.register_dataclass, data_fields=['flows'], meta_fields=['sizes'])
@dataclass(frozen=True)
class FittedFlow:
    """One flowjax flow per block, the i-th conditioned on the blocks before it."""

    flows: tuple
    sizes: tuple

    def log_prob(self, u: Any) -> jax.Array:
        """log q(u) = Σ_i log q_i(u_i | u_<i), for u of shape (..., D)."""
        total = 0.0
        for i, (a, b) in enumerate(_blocks(self.sizes)):
            total = total + self.flows[i].log_prob(u[..., a:b], condition=None if a == 0 else u[..., :a])
        return total

    def conditional(self, i: int, prefix: Any) -> dist.Distribution:
        """Block i's flow, conditioned on ``prefix`` (none for the first block)."""
        a, b = _blocks(self.sizes)[i]
        return _FlowDistribution(self.flows[i], None if a == 0 else prefix, b - a)


@dataclass(frozen=True)
class Flow(Estimator):
    """A masked autoregressive flow per site (flowjax ``masked_autoregressive_flow`` with a
    standard normal base), each conditioned on the sites before it, fitted by maximum likelihood
    with ``flowjax.train.fit_to_data`` (early stopping on a validation split).

    Example:
        >>> from inference.sequential import Flow
        >>> u = jax.random.normal(jax.random.key(0), (500, 2)) + 1.0
        >>> q = Flow(flow_layers=1, nn_width=8, max_epochs=5).fit(jax.random.key(1), u, [2])
        >>> q.log_prob(u[:3]).shape
        (3,)
    """

    flow_layers: int = 4
    nn_width: int = 32
    max_epochs: int = 200
    learning_rate: float = 5e-3
    batch_size: int = 256
    max_patience: int = 10

    def fit(self, key: Any, u: Any, sizes: Sequence[int]) -> FittedFlow:
        from flowjax.distributions import Normal as FJNormal
        from flowjax.flows import masked_autoregressive_flow
        from flowjax.train import fit_to_data

        u = _check_draws("sequential.Flow", u)
        key = _typed(key)
        flows = []
        for i, (a, b) in enumerate(_blocks(sizes)):
            key, k_init, k_fit = jax.random.split(key, 3)
            kd_init, kd_fit = _typed(k_init), _typed(k_fit)
            flow = masked_autoregressive_flow(kd_init, base_dist=FJNormal(jnp.zeros(b - a, dtype=u.dtype)),
                                              cond_dim=None if a == 0 else a, flow_layers=self.flow_layers,
                                              nn_width=self.nn_width)
            data = (u[:, a:b],) if a == 0 else (u[:, a:b], u[:, :a])
            flow, _ = fit_to_data(kd_fit, flow, data, learning_rate=self.learning_rate, max_epochs=self.max_epochs,
                                  batch_size=min(self.batch_size, u.shape[0]), max_patience=self.max_patience,
                                  show_progress=False)
            flows.append(flow)
        return FittedFlow(tuple(flows), tuple(int(s) for s in sizes))


# -- the exact conjugate path for a Beta site ----------------------------------------------------


@partial(jax.tree_util.register_dataclass, data_fields=['a', 'b'], meta_fields=[])
@dataclass(frozen=True)
class FittedBeta:
    """Beta(a, b) on the constrained scale of one scalar site in (0, 1)."""

    a: Any
    b: Any

    def site_distribution(self) -> dist.Distribution:
        return dist.Beta(self.a, self.b)


@dataclass(frozen=True)
class BetaMoments(Estimator):
    """The Beta law with given (or the draws') mean m and variance v of a scalar site in (0, 1):
    a + b = m (1 - m) / v - 1, a = m (a + b).  Exact when the posterior is a Beta (the
    Beta–Bernoulli model) and the moments are exact (``fit_moments``).

    Example:
        >>> from inference.sequential import BetaMoments
        >>> q = BetaMoments().fit_moments(0.25, 0.25 * 0.75 / 5.0)     # Beta(1, 3): m = 1/4, v = 3/80
        >>> round(float(q.a), 12), round(float(q.b), 12)
        (1.0, 3.0)
    """

    constrained = True

    def fit(self, key: Any, v: Any, sizes: Sequence[int] = (1,)) -> FittedBeta:
        v = jnp.ravel(jnp.asarray(v))
        return self.fit_moments(jnp.mean(v), jnp.var(v, ddof=1))

    def fit_moments(self, mean: Any, var: Any) -> FittedBeta:
        """The Beta with the given mean and variance."""
        mean, var = jnp.asarray(mean), jnp.asarray(var)
        if not (0.0 < float(mean) < 1.0 and 0.0 < float(var) < float(mean) * (1.0 - float(mean))):
            raise ArgumentError(f"sequential.BetaMoments: no Beta law has mean {float(mean)!r} and variance "
                                f"{float(var)!r} (need 0 < mean < 1 and 0 < variance < mean (1 - mean)).")
        s = mean * (1.0 - mean) / var - 1.0
        return FittedBeta(mean * s, (1.0 - mean) * s)
