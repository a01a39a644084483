"""``vi.pathfinder``: multi-path Pathfinder (Zhang, Carpenter, Gelman & Vehtari, JMLR 2022).

One path: L-BFGS climbs ℓ(u) = log p(T(u), data) + log|det J_T(u)| (the unconstrained log density,
:func:`ppl.unconstrained`) from a random point (uniform in (−2, 2), as Stan); at every iterate
u_l the inverse-Hessian estimate H_l of L-BFGS (γ I, γ = sᵀy / yᵀy of the latest pair, updated
by the BFGS recursion H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ, ρ = 1 / yᵀs, over the last
``history`` curvature pairs (s, y) with sᵀy > 0) defines a Gaussian

    q_l = N(u_l + H_l ∇ℓ(u_l), H_l),

and the path's approximation is the q_l with the largest ELBO, estimated with
``num_elbo_draws`` draws each.  H_l is formed densely (O(d²) memory per iterate, d the
unconstrained dimension), not in the paper's O(d·history) factored form: fine up to a few hundred
dimensions.

Multi-path: ``num_paths`` paths run in one compiled program (``lax.map``); each draws ``num_draws`` points from
its best q_l with importance log weights ℓ(u) − log q(u); the pooled draws are resampled by
weight (importance resampling, with replacement) into the result's ``num_draws`` draws.  The
Pareto k̂ of the pooled weights (PSIS, NumPyro's estimator) is in ``info["pareto_k"]``: above
0.7 the draws are a poor approximation of the posterior.

Uses: an approximate posterior (``result.sample``, ``predictive``, ``to_arviz``); initial values
for MCMC chains (``result.init_values(num_chains, key)``: address -> ``(num_chains, ...)``
constrained values, the shape ``mcmc.sample(..., init=...)`` takes); the initialisation of a VI
guide (``vi.auto_multivariate_normal(model, *args, init=result)`` starts at the best path's
Gaussian: ``result.point`` and ``result.scale_tril``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.errors import ArgumentError, ModelError, PPLError
from ppl.handlers import check_key

import equinox as eqx

from ppl.config import gc_paused

from .._run.cache import PROGRAMS
from .._run.concrete import freeze, remembered, thaw
from .._calling import check_option_clash, given_options
from .._result import resample_draws, to_inference_data
from .mode import _init_flat, _lbfgs_path, _log_density_fn
from .psis import pareto_k
from .._health import enforce
from .laplace import approximation_health

__all__ = ["pathfinder", "PathfinderResult", "lbfgs_inverse_hessians"]


def _bfgs_update(H: jax.Array, s: jax.Array, y: jax.Array) -> jax.Array:
    """One BFGS update of the inverse Hessian H with the curvature pair (s, y)."""
    rho = 1.0 / jnp.dot(y, s)
    eye = jnp.eye(H.shape[0], dtype=H.dtype)
    A = eye - rho * jnp.outer(s, y)
    return A @ H @ A.T + rho * jnp.outer(s, s)


def lbfgs_inverse_hessians(xs: jax.Array, gs: jax.Array, history: int) -> jax.Array:
    """The inverse-Hessian estimates H_l (``(L + 1, d, d)``) of L-BFGS at the iterates ``xs``
    (``(L + 1, d)``) of a climb of ℓ with gradients ``gs``: γ I updated by the last ``history``
    pairs s_k = x_{k+1} − x_k, y_k = ∇ℓ(x_k) − ∇ℓ(x_{k+1}) before l with s_kᵀ y_k > 0 (module
    docstring).  H_0 = I.

    Example:
        >>> A = jnp.array([[2.0, 0.5], [0.5, 1.0]])          # ℓ(x) = −xᵀAx/2
        >>> xs = jnp.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
        >>> H = vi.lbfgs_inverse_hessians(xs, -xs @ A, history=2)[-1]
        >>> s, y = xs[2] - xs[1], (xs[2] - xs[1]) @ A       # the secant condition H y = s
        >>> bool(jnp.allclose(H @ y, s, atol=1e-6)), bool(jnp.all(jnp.linalg.eigvalsh(H) > 0))
        (True, True)
    """
    s = xs[1:] - xs[:-1]
    y = gs[:-1] - gs[1:]
    sy = jnp.sum(s * y, axis=-1)
    yy = jnp.sum(y * y, axis=-1)
    valid = (sy > 1e-10 * jnp.maximum(yy, 1e-30)) & (jnp.sum(s * s, axis=-1) > 0)
    npairs = s.shape[0]
    d = xs.shape[-1]
    count = jnp.cumsum(valid.astype(jnp.int32))  # valid pairs among 0..k

    def at(l):
        # pairs k < l, valid, among the last `history` valid ones before l
        before = jnp.where(l > 0, count[jnp.maximum(l - 1, 0)], 0)
        k = jnp.arange(npairs)
        use = valid & (k < l) & (before - count + valid.astype(jnp.int32) <= history)
        idx = jnp.nonzero(use, size=history, fill_value=-1)[0]
        last = jnp.max(idx)
        gamma = jnp.where(last >= 0, sy[jnp.maximum(last, 0)] / yy[jnp.maximum(last, 0)], 1.0)
        H0 = gamma * jnp.eye(d, dtype=xs.dtype)

        def body(H, i):
            H2 = _bfgs_update(H, s[jnp.maximum(i, 0)], y[jnp.maximum(i, 0)])
            return jnp.where(i >= 0, H2, H), None

        H, _ = jax.lax.scan(body, H0, idx)
        return H

    return jax.vmap(at)(jnp.arange(npairs + 1))


def _mvn_logpdf(u: jax.Array, mean: jax.Array, L: jax.Array) -> jax.Array:
    z = jax.scipy.linalg.solve_triangular(L, u - mean, lower=True)
    return -0.5 * jnp.sum(z * z) - jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * mean.shape[0] * jnp.log(2 * jnp.pi)


def _one_path(f, x0, key, max_steps, gtol, history, num_elbo_draws, num_draws):
    """One Pathfinder path: (best mean, best factor, ELBOs, draws, log weights, grad evals)."""
    xs, fs, gs, evals, steps = _lbfgs_path(f, x0, max_steps, gtol, history)
    Hs = lbfgs_inverse_hessians(xs, gs, history)
    means = xs + jnp.einsum("lij,lj->li", Hs, gs)
    Ls = jnp.linalg.cholesky(0.5 * (Hs + jnp.swapaxes(Hs, -1, -2)))
    d = xs.shape[-1]
    k_elbo, k_draw = jax.random.split(key)

    def elbo(mean, L, k):
        u = mean + jax.random.normal(k, (num_elbo_draws, d), dtype=xs.dtype) @ L.T
        lw = jax.vmap(f)(u) - jax.vmap(lambda v: _mvn_logpdf(v, mean, L))(u)
        e = jnp.mean(lw)
        return jnp.where(jnp.isfinite(e) & jnp.all(jnp.isfinite(L)), e, -jnp.inf)

    elbos = jax.vmap(elbo)(means, Ls, jax.random.split(k_elbo, means.shape[0]))
    best = jnp.argmax(elbos)
    mean, L = means[best], Ls[best]
    u = mean + jax.random.normal(k_draw, (num_draws, d), dtype=xs.dtype) @ L.T
    lw = jax.vmap(f)(u) - jax.vmap(lambda v: _mvn_logpdf(v, mean, L))(u)
    lw = jnp.where(jnp.isfinite(lw), lw, -jnp.inf)
    return mean, L, elbos[best], u, lw, evals, steps


@dataclass
class PathfinderResult:
    """The result of :func:`pathfinder` (module docstring).

    Attributes:
        draws: address -> ``(num_draws, ...)`` constrained draws (importance-resampled).
        u_draws: the pooled unconstrained draws of all paths ``(num_paths · num_draws, d)`` and
            ``log_weights`` their importance log weights.
        loc, scale_tril: the best path's Gaussian (unconstrained); ``point`` its mean, constrained.
        elbo: each path's best ELBO estimate.
        pareto_k: PSIS k̂ of the pooled importance weights.
        num_grad_evals: log-density-and-gradient evaluations of the L-BFGS climbs (all paths);
            ``num_density_evals``: log-density evaluations for the ELBOs and the weights.
        view: the model's :class:`ppl.UnconstrainedView`.
        health: (property) :func:`inference.vi.laplace.approximation_health` of ``pareto_k``
            (issue 18): degraded, with a :class:`ppl.InferenceWarning`, when k̂ > 0.7.
    """

    draws: dict
    u_draws: Any = field(repr=False)
    log_weights: Any = field(repr=False)
    loc: Any
    scale_tril: Any = field(repr=False)
    elbo: Any
    pareto_k: float
    num_grad_evals: int
    num_density_evals: int
    view: Any = field(repr=False)

    @property
    def health(self) -> Any:
        """The result's :class:`~inference._health.Health`: its Pareto k̂ (issue 18)."""
        return approximation_health("vi.pathfinder", self.pareto_k)

    @property
    def point(self) -> dict:
        """address -> constrained value at the best path's Gaussian mean (an ``init=`` for guides)."""
        return self.view.to_constrained(self.loc)

    @property
    def info(self) -> dict:
        """``elbo`` per path, ``pareto_k``, ``num_grad_evals``, ``num_density_evals``."""
        return {"elbo": np.asarray(self.elbo), "pareto_k": self.pareto_k, "num_grad_evals": self.num_grad_evals,
                "num_density_evals": self.num_density_evals}

    def sample(self, key: Any, num_samples: int | None = None) -> dict:
        """``num_samples`` (default: as many as ``draws``) draws resampled from the pooled
        weighted draws: address -> ``(num_samples, ...)`` constrained values."""
        key = check_key(key, "PathfinderResult.sample")
        n = self.u_draws.shape[0] if num_samples is None else int(num_samples)
        u = resample_draws(key, {"u": self.u_draws}, self.log_weights, n)["u"]
        return jax.jit(jax.vmap(self.view.to_constrained))(u)

    def init_values(self, num_chains: int, key: Any) -> dict:
        """Initial values for ``num_chains`` MCMC chains: address -> ``(num_chains, ...)``
        constrained values of the latent sites, resampled from the weighted draws (pass as
        ``mcmc.sample(..., init=result.init_values(4, key))``)."""
        key = check_key(key, "PathfinderResult.init_values")
        if int(num_chains) < 1:
            raise ArgumentError(f"PathfinderResult.init_values: num_chains must be >= 1, got {num_chains}.")
        draws = self.sample(key, int(num_chains))
        return {k: v for k, v in draws.items() if k in self.view.sites}

    def predictive(self, key: Any, model: Any, *args: Any, num_samples: int | None = None, **kwargs: Any) -> dict:
        """Predictive draws of ``model(*args, **kwargs)`` (default: the fitted model's arguments)
        given ``num_samples`` (default: as many as ``draws``) resampled draws."""
        key = check_key(key, "PathfinderResult.predictive")
        k1, k2 = jax.random.split(key)
        draws = {k: v for k, v in self.sample(k1, num_samples).items() if k in self.view.sites}
        if not args and not kwargs:
            args, kwargs = self.view.args, self.view.kwargs
        return ppl.predictive(model, draws, *args, key=k2, **kwargs)

    def to_arviz(self) -> Any:
        """An ``arviz.InferenceData`` with ``draws`` as one chain, and ``pareto_k``."""
        return to_inference_data({"posterior": {k: np.asarray(v)[None] for k, v in self.draws.items()},
                                  "sample_stats": {"elbo": np.asarray(self.elbo)[None]}})


def _path_program(P: int, M: int, K: int, J: int, S: int, gtol: float):
    """``(x0, keys, k_pick, view) ->`` every path's best Gaussian, ELBOs, pooled draws and log
    weights, grad evaluations, and ``M`` constrained draws resampled by weight: one program."""

    def run(x0, keys, k_pick, view):
        f = _log_density_fn(view, jacobian=True)
        # lax.map, not vmap, over the paths: the same draws, and half the compile time (the
        # line search's while loops compile once, unbatched)
        means, Ls, elbos, u, lw, evals, _ = jax.lax.map(lambda a: _one_path(f, a[0], a[1], S, gtol, J, K, M), (x0, keys))
        u_all, lw_all = jnp.reshape(u, (P * M, view.dim)), jnp.reshape(lw, (P * M,))
        u_pick = resample_draws(k_pick, {"u": u_all}, lw_all, M)["u"]
        return means, Ls, elbos, u_all, lw_all, evals, jax.vmap(view.to_constrained)(u_pick)

    return jax.jit(run, static_argnums=3)


def _program(model: Any, P: int, M: int, K: int, J: int, S: int, gtol: float):
    """The compiled Pathfinder of ``model`` (cached in :data:`inference._run.cache.PROGRAMS`):
    ``(x0, keys, k_pick, args, kwargs)``, the model's arguments traced (NumPy ones concrete,
    :mod:`inference._run.concrete`)."""

    def build():
        inner = _path_program(P, M, K, J, S, gtol)

        def run(x0, keys, k_pick, args, kwargs):
            args, kwargs = thaw((args, kwargs))
            view = ppl.unconstrained(model, *args, **kwargs)
            return inner.__wrapped__(x0, keys, k_pick, view)

        return eqx.filter_jit(run)

    return PROGRAMS.get(model, ("vi.pathfinder", P, M, K, J, S, gtol), build)


def pathfinder(
    key: Any,
    model: Any,
    *args: Any,
    num_paths: int = 4,
    num_draws: int = 1000,
    num_elbo_draws: int = 32,
    history: int = 6,
    max_steps: int = 200,
    gtol: float = 1e-6,
    init: Any = None,
    **kwargs: Any,
) -> PathfinderResult:
    """Multi-path Pathfinder on ``model(*args, **kwargs)`` (module docstring).  ``init``: None
    (each path starts uniformly in (−2, 2) in unconstrained space, the paths' keys from ``key``),
    or an autoguide initialisation (``"median"``, a mapping, ...) for every path.  The compiled
    program is cached (:mod:`inference._run.cache`): a second call with the same model, settings
    and argument shapes (new data values, a new key) compiles nothing.

    Example:
        >>> @ppl.model
        ... def m(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> pf = vi.pathfinder(jax.random.key(0), m, 2.0, num_paths=2, num_draws=200)
        >>> pf.draws["mu"].shape, pf.init_values(4, jax.random.key(1))["mu"].shape
        ((200,), (4,))
        >>> round(float(pf.loc[0]), 3)                 # the posterior is N(1, 1/2)
        1.0
    """
    key = check_key(key, "vi.pathfinder")
    check_option_clash("vi.pathfinder", model, given_options(pathfinder, dict(
        num_paths=num_paths, num_draws=num_draws, num_elbo_draws=num_elbo_draws, history=history,
        max_steps=max_steps, gtol=gtol, init=init)))
    P, M, K, J, S = int(num_paths), int(num_draws), int(num_elbo_draws), int(history), int(max_steps)
    for name, v in (("num_paths", P), ("num_draws", M), ("num_elbo_draws", K), ("history", J), ("max_steps", S)):
        if v < 1:
            raise ArgumentError(f"vi.pathfinder: {name} must be >= 1, got {v}.")
    view = ppl.unconstrained(model, *args, **kwargs)
    if view.dim == 0:
        raise ModelError(f"vi.pathfinder: model {view.model.name!r} has no continuous latent site.")
    k_init, k_paths, k_pick = jax.random.split(key, 3)
    if init is None:
        dtype = jnp.result_type(float)
        x0 = jax.random.uniform(k_init, (P, view.dim), dtype=dtype, minval=-2.0, maxval=2.0)
    else:
        x0 = jnp.broadcast_to(_init_flat("vi.pathfinder", model, view, args, kwargs, init), (P, view.dim))
    keys = jax.random.split(k_paths, P)
    run = _program(model, P, M, K, J, S, float(gtol))
    try:  # the cached program (issue 19): a second call with the same shapes compiles nothing
        with gc_paused():
            means, Ls, elbos, u_all, lw_all, evals, draws = run(x0, keys, k_pick, *(freeze((args, kwargs)) if remembered(model) else (args, kwargs)))
    except Exception as e:  # noqa: BLE001 - a model that cannot take traced arguments: closed over below
        if isinstance(e, PPLError):
            raise
        means, Ls, elbos, u_all, lw_all, evals, draws = _path_program(P, M, K, J, S, float(gtol))(
            x0, keys, k_pick, view)
    if not bool(jnp.any(jnp.isfinite(elbos))):
        raise ModelError(f"vi.pathfinder: no path of model {view.model.name!r} found a finite ELBO; check the model's "
                         "log density (or pass init=).")
    best = int(jnp.argmax(elbos))
    khat = pareto_k(lw_all)
    n_path = (S + 1) * K + M  # per path: the ELBO draws of every iterate and the final draws
    res = PathfinderResult(draws=draws, u_draws=u_all, log_weights=lw_all, loc=means[best], scale_tril=Ls[best],
                           elbo=elbos, pareto_k=khat, num_grad_evals=int(jnp.sum(evals)),
                           num_density_evals=int(P * n_path), view=view)
    return enforce(res.health, res)  # issue 18: warn when k̂ > 0.7 (one policy)
