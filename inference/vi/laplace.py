"""``vi.laplace``: the Laplace approximation, a Gaussian at the mode of the unconstrained density.

With ℓ(u) = log p(T(u), data) + log|det J_T(u)| the model's log density in unconstrained space
(:func:`ppl.unconstrained`), the approximation is

    u ~ N(u*, Σ),   u* = argmax ℓ  (:func:`vi.map` with ``jacobian=True``),   Σ = (−∇²ℓ(u*))⁻¹,

pushed through T to the constrained values.  It is exact when ℓ is quadratic (a Gaussian
posterior over unconstrained sites).  The result is a fitted guide: ``result.guide`` is the
full-rank autoguide (:func:`vi.auto_multivariate_normal`) and ``result.params`` its parameters
(``"auto/loc"`` = u*, ``"auto/scale_tril"`` = chol Σ), so ``vi.sample_posterior(key,
result.guide, result.params, *args)`` and ``vi.elbo(model, result.guide)`` work; the guide's own
initial values are the Laplace ones (a VI fit started from it begins at the Laplace
approximation).  ``result.sample`` / ``predictive`` / ``to_arviz`` follow the Result protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.errors import ModelError
from ppl.handlers import check_key

from .._calling import check_option_clash, given_options
from .._health import enforce
from .psis import pareto_k
from .._result import to_inference_data
from .guides import auto_multivariate_normal
from .mode import _log_density_fn
from .mode import map as _map

__all__ = ["laplace", "LaplaceResult", "GaussianDraws"]


#: a Gaussian approximation (Laplace, Pathfinder) whose importance weights p/q have a Pareto k̂
#: above this misses posterior mass: its health is degraded (Vehtari et al. 2024: above 0.7 the
#: importance-sampling estimates are unreliable)
PARETO_K_MAX = 0.7
#: draws (fixed key ``jax.random.key(0)``) for the k̂ of a Laplace approximation
LAPLACE_PSIS_DRAWS = 1000


def approximation_health(who: str, khat: float, degraded: tuple = (), details: dict | None = None) -> Any:
    """The :class:`~inference._health.Health` of a Gaussian approximation (the library's one
    policy, issue 18): degraded when its Pareto k̂ exceeds :data:`PARETO_K_MAX` (or is not a
    number), and by the caller's ``degraded`` sentences.

    Example:
        >>> approximation_health("vi.laplace", 0.2).status, approximation_health("vi.laplace", 0.9).status
        ('ok', 'degraded')
    """
    from .._health import Health

    khat = float(khat)
    problems = list(degraded)
    if not khat <= PARETO_K_MAX:
        problems.append(f"Pareto k̂ = {khat:.3g} > {PARETO_K_MAX}: the Gaussian approximation misses posterior mass "
                        "(its draws and expectations are unreliable; MCMC, or importance resampling with more draws)")
    return Health(who, (), tuple(problems), {"pareto_k": khat, **(details or {})})


class GaussianDraws:
    """Result-protocol members shared by fits that are a Gaussian N(loc, L Lᵀ) in a model's
    unconstrained space (``self.loc``, ``self.scale_tril``, ``self.view``)."""

    loc: Any
    scale_tril: Any
    view: Any

    @property
    def draws(self) -> dict:
        """Draws made at fit time: none (``{}``); :meth:`sample` draws from the Gaussian."""
        return {}

    @property
    def cov(self) -> jax.Array:
        """The covariance L Lᵀ in unconstrained space."""
        return self.scale_tril @ self.scale_tril.T

    @property
    def point(self) -> dict:
        """address -> constrained value at the Gaussian's mean (an ``init=`` for autoguides)."""
        return self.view.to_constrained(self.loc)

    def sample_unconstrained(self, key: Any, num_samples: int) -> jax.Array:
        """``(num_samples, dim)`` draws of u ~ N(loc, L Lᵀ)."""
        eps = jax.random.normal(key, (int(num_samples), self.view.dim), dtype=jnp.result_type(self.loc))
        return self.loc + eps @ self.scale_tril.T

    def sample(self, key: Any, num_samples: int | None = None) -> dict:
        """``num_samples`` (default 1000) draws, address -> ``(num_samples, ...)`` constrained values
        (deterministic sites included)."""
        key = check_key(key, f"{type(self).__name__}.sample")
        u = self.sample_unconstrained(key, 1000 if num_samples is None else num_samples)
        return jax.jit(jax.vmap(self.view.to_constrained))(u)

    def predictive(self, key: Any, model: Any, *args: Any, num_samples: int | None = None, **kwargs: Any) -> dict:
        """Predictive draws of ``model(*args, **kwargs)`` (default: the fitted model's arguments)
        given ``num_samples`` (default 1000) draws."""
        key = check_key(key, f"{type(self).__name__}.predictive")
        k1, k2 = jax.random.split(key)
        draws = {k: v for k, v in self.sample(k1, num_samples).items() if k in self.view.sites}
        if not args and not kwargs:
            args, kwargs = self.view.args, self.view.kwargs
        return ppl.predictive(model, draws, *args, key=k2, **kwargs)

    def to_arviz(self, key: Any = None, num_samples: int = 1000) -> Any:
        """An ``arviz.InferenceData`` with ``num_samples`` draws (one chain) as the posterior."""
        key = jax.random.key(0) if key is None else key
        return to_inference_data({"posterior": {k: np.asarray(v)[None] for k, v in self.sample(key, num_samples).items()}})


@dataclass
class LaplaceResult(GaussianDraws):
    """The result of :func:`laplace`.

    Attributes:
        loc: u*, the mode in unconstrained space (flat).
        scale_tril: the Cholesky factor of Σ = (−∇²ℓ(u*))⁻¹; ``cov`` is Σ.
        log_density: ℓ(u*).
        log_evidence: the Laplace estimate of log Z, ℓ(u*) + (d/2) log 2π + ½ log det Σ
            (exact for a Gaussian posterior).
        mode: the :class:`vi.MAPResult` of the optimisation.
        guide, params: the fitted full-rank autoguide and its parameters (module docstring).
        view: the model's :class:`ppl.UnconstrainedView`.
        pareto_k: PSIS k̂ of p/q over :data:`LAPLACE_PSIS_DRAWS` draws of the Gaussian (key 0).
        health: :func:`approximation_health` (issue 18): degraded, with a
            :class:`ppl.InferenceWarning`, when k̂ > :data:`PARETO_K_MAX`.
    """

    loc: Any
    scale_tril: Any
    log_density: float
    log_evidence: float
    mode: Any = field(repr=False)
    guide: Any = field(repr=False)
    params: dict = field(repr=False)
    view: Any = field(repr=False)
    pareto_k: float = float("nan")
    health: Any = field(default=None, repr=False)

    @property
    def info(self) -> dict:
        """``log_density``, ``log_evidence``, the optimiser's ``converged``/``num_steps`` and ``pareto_k``."""
        return {"log_density": self.log_density, "log_evidence": self.log_evidence,
                "converged": self.mode.converged, "num_steps": self.mode.num_steps, "pareto_k": self.pareto_k}


def laplace(model: Any, *args: Any, init: Any = "median", max_steps: int = 500, gtol: float = 1e-6,
            **kwargs: Any) -> LaplaceResult:
    """The Laplace approximation of ``model(*args, **kwargs)``'s posterior (module docstring).

    Raises ``ppl.errors.ModelError`` when −∇²ℓ at the mode is not positive definite (not a strict
    maximum: e.g. a flat direction, or the optimiser did not converge).

    Example:
        >>> @ppl.model
        ... def m(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> res = vi.laplace(m, 2.0)          # posterior N(1, 1/2): exact
        >>> round(float(res.loc[0]), 6), round(float(res.cov[0, 0]), 6)
        (1.0, 0.5)
        >>> res.sample(jax.random.key(0), 100)["mu"].shape
        (100,)
    """
    check_option_clash("vi.laplace", model, given_options(laplace, dict(init=init, max_steps=max_steps, gtol=gtol)))
    mode = _map(model, *args, init=init, jacobian=True, max_steps=max_steps, gtol=gtol, **kwargs)
    view = mode.view
    f = _log_density_fn(view, jacobian=True)
    hess = jax.jit(jax.value_and_grad(f)), jax.jit(jax.hessian(f))
    u = mode.u
    H = hess[1](u)
    # one Newton step from the optimiser's point (exact on a quadratic ℓ), kept if it climbs
    u_new = u - jnp.linalg.solve(H, hess[0](u)[1])
    if bool(jnp.all(jnp.isfinite(u_new))) and float(hess[0](u_new)[0]) >= mode.log_density:
        u = u_new
        H = hess[1](u)
    prec = -0.5 * (H + H.T)
    Lp = jnp.linalg.cholesky(prec)
    if not bool(jnp.all(jnp.isfinite(Lp))):
        ev = float(jnp.min(jnp.linalg.eigvalsh(prec)))
        raise ModelError(f"vi.laplace: the negative Hessian of the log density of model {view.model.name!r} at the mode "
                         f"is not positive definite (smallest eigenvalue {ev:.3g}; optimiser converged: {mode.converged}); "
                         "the mode is not a strict maximum.")
    # Σ = prec⁻¹ = (Lp Lpᵀ)⁻¹; its Cholesky factor: L = chol(Σ)
    eye = jnp.eye(view.dim, dtype=prec.dtype)
    cov = jax.scipy.linalg.cho_solve((Lp, True), eye)
    L = jnp.linalg.cholesky(0.5 * (cov + cov.T))
    d = view.dim
    log_z = float(hess[0](u)[0]) + 0.5 * d * np.log(2 * np.pi) - float(jnp.sum(jnp.log(jnp.diag(Lp))))
    guide = auto_multivariate_normal(model, *args, init=view.to_constrained(u), init_scale_tril=L, **kwargs)
    params = {"auto/loc": u, "auto/scale_tril": L}
    # issue 18: the approximation's health, its Pareto k̂ (draws u = u* + L z, log q(u) exact)
    z = jax.random.normal(jax.random.key(0), (LAPLACE_PSIS_DRAWS, d), dtype=L.dtype)
    log_q = -0.5 * jnp.sum(z * z, -1) - jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * d * np.log(2 * np.pi)
    khat = pareto_k(jax.jit(jax.vmap(f))(u + z @ L.T) - log_q)
    health = approximation_health("vi.laplace", khat, details={"converged": bool(mode.converged)})
    res = LaplaceResult(loc=u, scale_tril=L, log_density=float(hess[0](u)[0]), log_evidence=float(log_z),
                        mode=mode, guide=guide, params=params, view=view, pareto_k=khat, health=health)
    return enforce(health, res)
