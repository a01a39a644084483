"""Automatic guides built from a model's unconstrained view (:func:`ppl.unconstrained`).

Each guide is a :class:`ppl.Model` taking the model's arguments, with one sample site per
latent site of the model (same address, same shape, in the model's support), so that
``model.log_density(guide_trace.choices, ...)`` works.  In unconstrained space u the guides are

* :func:`auto_normal` -- mean-field: u ~ N(loc, diag(scale²));
* :func:`auto_multivariate_normal` -- full rank: u ~ N(loc, L Lᵀ), L lower triangular,
  parameterised as NumPyro's ``scaled_unit_lower_cholesky``: L = diag(s) U with s > 0 (softplus)
  and U unit lower triangular, so that the optimiser moves the scales and the correlations
  separately (a plain Cholesky factor with exp'd diagonal oscillates under Adam at 1e-2);
* :func:`auto_low_rank_normal` -- u ~ N(loc, W Wᵀ + diag(d)), W of rank r, d > 0 (softplus);

and each site's value is T(u_site), T = ``biject_to(support)``, its density including log|det J|.
The joint Gaussians (full rank, low rank) draw the whole vector u once, at the auxiliary site
``"_aux/<prefix>/latent"`` (:data:`ppl.messengers.AUXILIARY`: the model's handlers ignore it),
and give each model site its value T(u_site) as a point mass (``dist.Delta``) carrying
−log|det J_T|, as :func:`vi.auto_flow` and NumPyro's ``AutoContinuous`` do: the guide trace's log
density is still log q of the latent values, and one draw and one Gaussian density per step cost
half of drawing each site from its exact conditional u_j | u_<j (issue 19).  So these guides
score the values they draw (``VIResult.sample`` drops the auxiliary site); their model sites are
``"reparam"`` (a score-function strategy goes on the auxiliary site, where it is valid).
Parameters are ``ppl.param`` sites named ``"<prefix>/loc"`` etc.

**Initialisation** (``init=``): the location starts at the prior median (``"median"``, the
default, as NumPyro's ``init_to_median``: per site, the median of 15 draws of the site's prior
given its parents' initial values, taken in unconstrained space), at ``"mean"`` (the prior mean
where finite, else the median), ``"sample"`` (one prior draw), ``"zeros"`` (u = 0), or at given
constrained values: a mapping address -> value (sites it omits start at the median), or a fit
that has a ``point`` (``vi.map``, ``vi.laplace``, ``vi.pathfinder`` results).  The scales start
at ``init_scale`` (0.1).

**Learning rates**: with these parameterisations ``optax.adam(1e-2)`` is a good default for
every autoguide; for a precise optimum decay it, e.g.
``optax.adam(optax.exponential_decay(1e-2, num_steps, 0.1))``.

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

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import ReshapeTransform, biject_to

import ppl
from ppl.errors import ArgumentError
from ppl.messengers import AUXILIARY
from ppl.model import run

__all__ = ["auto_normal", "auto_multivariate_normal", "auto_low_rank_normal", "INIT_STRATEGIES"]


INIT_STRATEGIES = ("median", "mean", "sample", "zeros")
_NUM_MEDIAN = 15  # prior draws per site for "median" (NumPyro's init_to_median)


def _init_values(init: Any) -> tuple[str, dict]:
    """(strategy, given constrained values) from the ``init=`` argument of an autoguide."""
    if isinstance(init, str):
        if init not in INIT_STRATEGIES:
            raise ArgumentError(f"autoguide: init={init!r} is not a strategy; expected one of {INIT_STRATEGIES}, "
                                "a mapping address -> constrained value, or a fit with a `point` (vi.map, vi.laplace, vi.pathfinder).")
        return init, {}
    point = getattr(init, "point", None)
    if point is not None and not isinstance(init, Mapping):
        init = point
    if isinstance(init, Mapping):
        return "median", dict(init)
    raise ArgumentError(f"autoguide: init must be a strategy name {INIT_STRATEGIES}, a mapping address -> constrained "
                        f"value, or a fit with a `point`; got {type(init).__name__}.")


class _Supports:
    """Give each latent site its initial value and record its support (a ``ppl.substitute``
    hook): the given value, or the strategy's value drawn from the site's prior given its
    parents' initial values."""

    def __init__(self, shapes: dict, strategy: str = "zeros", given: Mapping[str, Any] | None = None, key: Any = None):
        self.shapes = shapes
        self.strategy = strategy
        self.given = dict(given or {})
        self.key = jax.random.key(0) if key is None else key
        self.supports: dict[str, Any] = {}
        self.u: dict[str, Any] = {}

    def _value(self, site: ppl.Site, t: Any) -> Any:
        shape = self.shapes[site.name]
        if site.name in self.given:
            v = jnp.asarray(self.given[site.name])
            u = jnp.asarray(t.inv(v))
            if u.shape != shape:
                raise ArgumentError(f"autoguide: init value for site {site.name!r} has unconstrained shape {u.shape}, "
                                    f"expected {shape} (the site's value shape is {site.distribution.shape()}).")
            return u
        if self.strategy == "zeros":
            return jnp.zeros(shape)
        d = site.distribution
        key = jax.random.fold_in(self.key, len(self.u))
        if self.strategy == "mean":
            try:
                m = jnp.broadcast_to(d.mean, d.shape())
                u = t.inv(m)
                if bool(jnp.all(jnp.isfinite(u))):
                    return jnp.reshape(u, shape)
            except (NotImplementedError, ValueError, TypeError):
                pass
        if self.strategy == "sample":
            return jnp.reshape(t.inv(d.sample(key)), shape)
        try:
            draws = t.inv(d.sample(key, (_NUM_MEDIAN,)))
        except NotImplementedError:  # no sampler (e.g. an improper prior): the transform of 0
            return jnp.zeros(shape)
        return jnp.reshape(jnp.median(draws, axis=0), shape)

    def __call__(self, site: ppl.Site) -> Any:
        if site.type != "sample" or site.value is not None or site.name not in self.shapes:
            return None
        support = site.distribution.support
        self.supports[site.name] = support
        t = biject_to(support)
        u = self._value(site, t)
        self.u[site.name] = u
        return t(u)


def _layout(model: Any, args: tuple, kwargs: dict, init: Any = "zeros"):
    """The guide's sites (address, unconstrained shape, support, offset, size), the flat
    dimension and the flat unconstrained initial location."""
    from .program import _fixed_subsamples  # a subsampled plate: any indices (shapes only)

    with _fixed_subsamples():
        return _layout_of(model, args, kwargs, init)


def _layout_of(model: Any, args: tuple, kwargs: dict, init: Any):
    strategy, given = _init_values(init)
    view = ppl.unconstrained(model, *args, **kwargs)
    unknown = [k for k in given if k not in view.sites]
    if unknown:
        raise ArgumentError(f"autoguide: init names {unknown[0]!r}, which is not a latent site of the model "
                            f"(latent sites: {sorted(view.sites)}).")
    h = _Supports(dict(view.sites), strategy, given)
    _, traced = run(ppl.as_model(model).fn, args, kwargs, ppl.substitute(substitute_fn=h, strict=False))
    _refuse_subsampled_locals(traced, view.sites)
    sites = []
    offset = 0
    locs = []
    for name, ushape in view.sites.items():
        n = int(np.prod(ushape)) if ushape else 1
        sites.append((name, tuple(ushape), h.supports[name], offset, n))
        locs.append(np.reshape(np.asarray(h.u[name], dtype=float), (n,)))
        offset += n
    loc0 = np.concatenate(locs) if locs else np.zeros((0,))
    if not np.all(np.isfinite(loc0)):
        bad = next(n for n, *_ in sites if not np.all(np.isfinite(np.asarray(h.u[n]))))
        raise ArgumentError(f"autoguide: the initial value of site {bad!r} is not finite (init={init!r}); "
                            "pass init='zeros' or an explicit mapping.")
    return sites, offset, loc0


def _refuse_subsampled_locals(traced: Any, latents: Any) -> None:
    for name, site in traced.items():
        for f in site.get("cond_indep_stack") or ():
            if name in latents and f.size != f.full_size:
                raise ArgumentError(
                    f"autoguide: latent site {name!r} lies inside plate {f.name!r}, which subsamples "
                    f"({f.size} of {f.full_size}); the autoguides do not yet index a full-size "
                    "parameter by the subsample.  Write the guide by hand with the same plate (the "
                    "model replays the guide's indices) or do not subsample that plate."
                )


def _check_scale(init_scale: float) -> None:
    if not float(init_scale) > 0:
        raise ArgumentError(f"autoguide: init_scale must be > 0, got {init_scale!r}.")


def _init_tril(init: Any, init_scale_tril: Any, init_scale: float, dim: int) -> Any:
    """The initial Cholesky factor of a full-rank guide (see auto_multivariate_normal)."""
    L0 = init_scale_tril if init_scale_tril is not None else getattr(init, "scale_tril", None)
    if L0 is None:
        return init_scale * jnp.eye(dim)
    L0 = jnp.asarray(L0)
    if L0.shape != (dim, dim) or not bool(jnp.all(jnp.diag(L0) > 0)):
        raise ArgumentError(f"autoguide: init_scale_tril must be a ({dim}, {dim}) lower-triangular factor with a positive "
                            f"diagonal, got shape {L0.shape}.")
    return jnp.tril(L0)


def _site_dist(base: Any, ushape: tuple, n: int, support: Any) -> Any:
    """base (event (n,)) reshaped to ushape and mapped into the support."""
    ts = []
    if ushape != (n,):
        ts.append(ReshapeTransform(ushape, (n,)))
    t = biject_to(support)
    ts.append(t)
    return dist.TransformedDistribution(base, ts)


def auto_normal(
    model: Any, *args: Any, init_scale: float = 0.1, init: Any = "median", prefix: str = "auto", **kwargs: Any
) -> ppl.Model:
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
    sites, dim, loc0 = _check_scale(init_scale) or _layout(model, args, kwargs, init)

    L0 = getattr(init, "scale_tril", None)
    scale0 = jnp.full((dim,), init_scale) if L0 is None else jnp.sqrt(jnp.sum(jnp.asarray(L0) ** 2, axis=1))

    def auto_normal_guide(*a: Any, **k: Any) -> None:
        loc = ppl.param(f"{prefix}/loc", jnp.asarray(loc0))
        scale = ppl.param(f"{prefix}/scale", scale0, constraint=constraints.positive)
        for name, ushape, support, off, n in sites:
            base = dist.Normal(loc[off : off + n], scale[off : off + n]).to_event(1)
            ppl.sample(name, _site_dist(base, ushape, n, support))

    return ppl.model(auto_normal_guide)


def _site_point_masses(sites: list, u: jax.Array, extra_log_density: Any = 0.0) -> None:
    """Each site's value T(u_site) as a point mass carrying −log|det J_T| (the first also
    `extra_log_density`): with u drawn at an auxiliary site, the guide trace's log density is
    log q(u) − Σ log|det J_T|, the density of the model's latent values."""
    for i, (name, ushape, support, off, n) in enumerate(sites):
        t = biject_to(support)
        u_site = jnp.reshape(u[off : off + n], ushape)
        value = t(u_site)
        ladj = t.log_abs_det_jacobian(u_site, value)
        ld = -jnp.sum(ladj) + (extra_log_density if i == 0 else 0.0)
        ppl.sample(name, dist.Delta(value, log_density=ld, event_dim=jnp.ndim(value)))


def _joint_gaussian(sites: list, prefix: str, base: Any) -> None:
    """Draw the whole unconstrained vector u ~ `base` once, at the auxiliary site
    ``"_aux/<prefix>/latent"``, and give each model site its value T(u_site) as a point mass
    (:func:`_site_point_masses`).  One draw and one Gaussian density per step, as NumPyro's
    ``AutoContinuous`` (issue 19: the exact conditionals u_j | u_<j, one site each, cost about
    twice NumPyro's step in triangular solves and per-site draws)."""
    u = ppl.sample(f"{AUXILIARY}{prefix}/latent", base)
    _site_point_masses(sites, u)


def auto_multivariate_normal(
    model: Any, *args: Any, init_scale: float = 0.1, init: Any = "median", init_scale_tril: Any = None,
    prefix: str = "auto", **kwargs: Any
) -> ppl.Model:
    """A full-rank normal guide N(loc, L Lᵀ) in the model's unconstrained space, L = diag(s) U
    (``scaled_unit_lower_cholesky``).  L starts at ``init_scale`` · I, or at ``init_scale_tril``
    (a (dim, dim) lower-triangular factor), or at the ``scale_tril`` of ``init`` when that is a
    Gaussian fit (``vi.laplace``, ``vi.pathfinder``).

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
    sites, dim, loc0 = _check_scale(init_scale) or _layout(model, args, kwargs, init)

    L0 = _init_tril(init, init_scale_tril, init_scale, dim)

    def auto_mvn_guide(*a: Any, **k: Any) -> None:
        loc = ppl.param(f"{prefix}/loc", jnp.asarray(loc0))
        L = ppl.param(f"{prefix}/scale_tril", L0, constraint=constraints.scaled_unit_lower_cholesky)
        _joint_gaussian(sites, prefix, dist.MultivariateNormal(loc, scale_tril=L))

    return ppl.model(auto_mvn_guide)


def auto_low_rank_normal(
    model: Any, *args: Any, rank: int = 2, init_scale: float = 0.1, init: Any = "median", prefix: str = "auto",
    **kwargs: Any,
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
    sites, dim, loc0 = _check_scale(init_scale) or _layout(model, args, kwargs, init)
    rank = int(rank)

    def auto_low_rank_guide(*a: Any, **k: Any) -> None:
        loc = ppl.param(f"{prefix}/loc", jnp.asarray(loc0))
        W = ppl.param(f"{prefix}/cov_factor", lambda key: 0.01 * jax.random.normal(key, (dim, rank)))
        d = ppl.param(f"{prefix}/cov_diag", jnp.full((dim,), init_scale**2), constraint=constraints.softplus_positive)
        L = jnp.linalg.cholesky(W @ W.T + jnp.diag(d))
        _joint_gaussian(sites, prefix, dist.MultivariateNormal(loc, scale_tril=L))

    return ppl.model(auto_low_rank_guide)
