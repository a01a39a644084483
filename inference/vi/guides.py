"""Automatic guides built from a model's unconstrained view (:func:`ppl.unconstrained`).

Each guide is a :class:`ppl.Model` taking the model's arguments, with one sample site per
latent site of the model (same address, same shape, in the model's support), so that
``model.log_density(guide_trace.choices, ...)`` works.  In unconstrained space u the guides are

* :func:`auto_normal` -- mean-field: u ~ N(loc, diag(scale²));
* :func:`auto_multivariate_normal` -- full rank: u ~ N(loc, L Lᵀ), L lower triangular;
* :func:`auto_low_rank_normal` -- u ~ N(loc, W Wᵀ + diag(d)), W of rank r;

and each site's value is T(u_site), T = ``biject_to(support)``, its density including log|det J|.
Joint Gaussians are written site by site as exact conditionals u_j | u_<j, so every site keeps
its address.  Parameters are ``ppl.param`` sites named ``"<prefix>/loc"`` etc.

Example:
    >>> @ppl.model
    ... def model(x):
    ...     s = ppl.sample("s", dist.HalfNormal(1.0))
    ...     mu = ppl.sample("mu", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
    ...     ppl.sample("x", dist.Normal(mu, s).to_event(1), obs=x)
    >>> x = jnp.array([0.5, -0.2])
    >>> guide = vi.auto_multivariate_normal(model, x)
    >>> sorted(vi.elbo(model, guide).init_params(jax.random.key(0), x))
    ['auto/loc', 'auto/scale_tril']
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import ReshapeTransform, biject_to

import ppl
from ppl.model import run

__all__ = ["auto_normal", "auto_multivariate_normal", "auto_low_rank_normal"]


class _Supports:
    """Give each latent site T(0) and record its support (a ``ppl.substitute`` hook)."""

    def __init__(self, shapes: dict):
        self.shapes = shapes
        self.supports: dict[str, Any] = {}

    def __call__(self, site: ppl.Site) -> Any:
        if site.type != "sample" or site.value is not None or site.name not in self.shapes:
            return None
        support = site.distribution.support
        self.supports[site.name] = support
        return biject_to(support)(jnp.zeros(self.shapes[site.name]))


def _layout(model: Any, args: tuple, kwargs: dict):
    view = ppl.unconstrained(model, *args, **kwargs)
    h = _Supports(dict(view.sites))
    run(ppl.as_model(model).fn, args, kwargs, ppl.substitute(substitute_fn=h, strict=False))
    sites = []
    offset = 0
    for name, ushape in view.sites.items():
        n = int(np.prod(ushape)) if ushape else 1
        sites.append((name, tuple(ushape), h.supports[name], offset, n))
        offset += n
    return sites, offset


def _site_dist(base: Any, ushape: tuple, n: int, support: Any) -> Any:
    """base (event (n,)) reshaped to ushape and mapped into the support."""
    ts = []
    if ushape != (n,):
        ts.append(ReshapeTransform(ushape, (n,)))
    t = biject_to(support)
    ts.append(t)
    return dist.TransformedDistribution(base, ts)


def auto_normal(model: Any, *args: Any, init_scale: float = 0.1, prefix: str = "auto", **kwargs: Any) -> ppl.Model:
    """A mean-field normal guide in the model's unconstrained space (see module docstring).

    Example:
        >>> @ppl.model
        ... def model(x):
        ...     s = ppl.sample("s", dist.HalfNormal(1.0))
        ...     mu = ppl.sample("mu", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
        ...     ppl.sample("x", dist.Normal(mu, s).to_event(1), obs=x)
        >>> x = jnp.array([0.5, -0.2])
        >>> guide = vi.auto_normal(model, x)
        >>> isinstance(guide, ppl.Model)
        True
    """
    sites, dim = _layout(model, args, kwargs)

    def auto_normal_guide(*a: Any, **k: Any) -> None:
        loc = ppl.param(f"{prefix}/loc", jnp.zeros(dim))
        scale = ppl.param(f"{prefix}/scale", jnp.full((dim,), init_scale), constraint=constraints.positive)
        for name, ushape, support, off, n in sites:
            base = dist.Normal(loc[off : off + n], scale[off : off + n]).to_event(1)
            ppl.sample(name, _site_dist(base, ushape, n, support))

    return ppl.model(auto_normal_guide)


def _sequential_mvn(sites: list, loc: Any, L: Any) -> None:
    """Sample each site from its exact conditional u_j | u_<j of N(loc, L Lᵀ)."""
    us = []
    for name, ushape, support, off, n in sites:
        if off == 0:
            cond_loc = loc[:n]
        else:
            u_prev = jnp.concatenate(us)
            eps = jsl.solve_triangular(L[:off, :off], u_prev - loc[:off], lower=True)
            cond_loc = loc[off : off + n] + L[off : off + n, :off] @ eps
        base = dist.MultivariateNormal(cond_loc, scale_tril=L[off : off + n, off : off + n])
        value = ppl.sample(name, _site_dist(base, ushape, n, support))
        us.append(jnp.reshape(biject_to(support).inv(value), (n,)))


def auto_multivariate_normal(model: Any, *args: Any, init_scale: float = 0.1, prefix: str = "auto", **kwargs: Any) -> ppl.Model:
    """A full-rank normal guide N(loc, L Lᵀ) in the model's unconstrained space.

    Example:
        >>> @ppl.model
        ... def model(x):
        ...     s = ppl.sample("s", dist.HalfNormal(1.0))
        ...     mu = ppl.sample("mu", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
        ...     ppl.sample("x", dist.Normal(mu, s).to_event(1), obs=x)
        >>> x = jnp.array([0.5, -0.2])
        >>> guide = vi.auto_multivariate_normal(model, x)
        >>> isinstance(guide, ppl.Model)
        True
    """
    sites, dim = _layout(model, args, kwargs)

    def auto_mvn_guide(*a: Any, **k: Any) -> None:
        loc = ppl.param(f"{prefix}/loc", jnp.zeros(dim))
        L = ppl.param(f"{prefix}/scale_tril", init_scale * jnp.eye(dim), constraint=constraints.lower_cholesky)
        _sequential_mvn(sites, loc, L)

    return ppl.model(auto_mvn_guide)


def auto_low_rank_normal(
    model: Any, *args: Any, rank: int = 2, init_scale: float = 0.1, prefix: str = "auto", **kwargs: Any
) -> ppl.Model:
    """A low-rank-plus-diagonal normal guide N(loc, W Wᵀ + diag(d)) in unconstrained space.

    Example:
        >>> @ppl.model
        ... def model(x):
        ...     s = ppl.sample("s", dist.HalfNormal(1.0))
        ...     mu = ppl.sample("mu", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
        ...     ppl.sample("x", dist.Normal(mu, s).to_event(1), obs=x)
        >>> x = jnp.array([0.5, -0.2])
        >>> guide = vi.auto_low_rank_normal(model, x, rank=2)
        >>> isinstance(guide, ppl.Model)
        True
    """
    sites, dim = _layout(model, args, kwargs)
    rank = int(rank)

    def auto_low_rank_guide(*a: Any, **k: Any) -> None:
        loc = ppl.param(f"{prefix}/loc", jnp.zeros(dim))
        W = ppl.param(f"{prefix}/cov_factor", lambda key: 0.01 * jax.random.normal(key, (dim, rank)))
        d = ppl.param(f"{prefix}/cov_diag", jnp.full((dim,), init_scale**2), constraint=constraints.positive)
        L = jnp.linalg.cholesky(W @ W.T + jnp.diag(d))
        _sequential_mvn(sites, loc, L)

    return ppl.model(auto_low_rank_guide)
