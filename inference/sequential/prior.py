"""Today's posterior as tomorrow's prior: a fitted density of posterior draws as a ppl model.

A :class:`Layout` lists the sites of a model that the prior replaces, in the model's order, each
with its support, its value shape and its bijection T = ``biject_to(support)`` (the same one
:func:`ppl.unconstrained` uses).  Draws are mapped to u = T⁻¹(x) per site, flattened and
concatenated; an :mod:`estimator <inference.sequential.estimators>` is fitted to them; site i of
the prior is then

    x_i = T_i(u_i),   u_i ~ q(u_i | u_1, ..., u_{i-1}),

a numpyro ``TransformedDistribution``, whose log density at x_i is
``log q(T_i⁻¹ x_i | ...) - log |det J_{T_i}(u_i)|`` (the change of variables, Jacobian included).
Two ways to use it, both plain ppl models that every inference family runs unchanged:

* :func:`prior_model`: a model with only those sites (same names, constrained values), e.g. to
  draw from the prior, or to call inside a new model with ``ppl.call``;
* :func:`with_prior`: the user's model with the prior terms of those sites replaced (a handler
  that swaps each site's distribution for its conditional under the fitted density, whatever
  the model wrote there); this is what :func:`~inference.sequential.sequential` uses.

In the unconstrained view of ``with_prior(model, prior)`` the Jacobian of T_i cancels, so the
view's prior density of u is q(u) exactly.
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import ReshapeTransform, biject_to

import ppl
from ppl.core import Messenger
from ppl.errors import AddressError, ArgumentError, ModelError, nearest
from ppl.messengers import seed
from ppl.model import as_model, run

from .estimators import Estimator, FittedBeta, Gaussian

__all__ = ["Layout", "SiteSpec", "FittedPrior", "layout_of", "fit_prior", "prior_model", "with_prior"]


@dataclass(frozen=True)
class SiteSpec:
    """One replaced site: its name, constrained value shape, support (over the whole value) and
    unconstrained shape."""

    name: str
    shape: tuple
    support: Any
    ushape: tuple

    @property
    def size(self) -> int:
        return int(np.prod(self.ushape, dtype=int))

    @property
    def transform(self) -> Any:
        return biject_to(self.support)

    def unconstrain(self, value: Any) -> jax.Array:
        """The flat unconstrained image T⁻¹(value), shape (size,) (leading batch axes kept)."""
        value = jnp.asarray(value)
        u = self.transform.inv(value)
        lead = u.shape[: u.ndim - len(self.ushape)]
        return jnp.reshape(u, lead + (self.size,))


@dataclass(frozen=True)
class Layout:
    """The replaced sites in model order (see the module docstring)."""

    sites: tuple

    @property
    def names(self) -> tuple:
        return tuple(s.name for s in self.sites)

    @property
    def sizes(self) -> tuple:
        return tuple(s.size for s in self.sites)

    def flatten(self, draws: Mapping[str, Any]) -> jax.Array:
        """``(n, D)`` unconstrained draws from address -> ``(n, *shape)`` constrained draws."""
        parts = []
        for s in self.sites:
            if s.name not in draws:
                raise AddressError(f"sequential: no draws of site {s.name!r}{nearest(s.name, draws)}; the draws "
                                   f"hold {sorted(draws)}.")
            v = jnp.asarray(draws[s.name])
            if tuple(v.shape[1:]) != s.shape:
                raise ArgumentError(f"sequential: draws of site {s.name!r} have shape {tuple(v.shape)}; expected "
                                    f"(num_draws, *{s.shape}).")
            parts.append(s.unconstrain(v))
        return jnp.concatenate(parts, axis=-1)


def _whole(support: Any, shape: tuple) -> Any:
    extra = len(shape) - int(support.event_dim)
    return constraints.independent(support, extra) if extra > 0 else support


def layout_of(model: Any, *args: Any, sites: Sequence[str] | None = None, key: Any = None, **kwargs: Any) -> Layout:
    """The :class:`Layout` of ``model(*args, **kwargs)``'s continuous latent sites (``sites``: only
    those, default all), read from one run of the model (``key``, default key 0).

    Example:
        >>> from inference.sequential import layout_of
        >>> @ppl.model
        ... def m():
        ...     ppl.sample("tau", dist.HalfNormal(1.0))
        ...     ppl.sample("p", dist.Dirichlet(jnp.ones(3)))
        >>> [(s.name, s.shape, s.ushape) for s in layout_of(m).sites]
        [('tau', (), ()), ('p', (3,), (2,))]
    """
    model = as_model(model)
    key = jax.random.key(0) if key is None else key
    _, recs = run(model.fn, args, kwargs, seed(key=key))
    latent = [n for n, r in recs.items() if r["type"] == "sample" and not r["is_observed"] and not r["intervened"]]
    wanted = list(latent) if sites is None else list(sites)
    for n in wanted:
        if n not in latent:
            raise AddressError(f"sequential: {n!r} is not a latent sample site of model {model.name!r}"
                               f"{nearest(n, latent)}; its latent sites are {latent}.")
    specs = []
    for n in latent:
        if n not in wanted:
            continue
        fn = recs[n]["fn"]
        if fn.support.is_discrete:
            raise ArgumentError(f"sequential: site {n!r} is discrete ({type(fn).__name__}); a prior from draws is "
                                "fitted on the unconstrained space of continuous sites only.")
        shape = tuple(np.shape(recs[n]["value"]))
        sup = _whole(fn.support, shape)
        specs.append(SiteSpec(n, shape, sup, tuple(biject_to(sup).inverse_shape(shape))))
    return Layout(tuple(specs))


@dataclass(frozen=True)
class FittedPrior:
    """A fitted density over a :class:`Layout`'s unconstrained space (``density``: a fitted
    Gaussian, mixture or flow; or, on the exact conjugate path, a :class:`FittedBeta` for a single
    site).  ``site_distribution(i, prefix)`` is site i's law given the earlier sites' flat
    unconstrained values (module docstring); ``log_prob(values)`` the joint log density of
    constrained values."""

    layout: Layout
    density: Any

    def site_distribution(self, i: int, prefix: Any) -> dist.Distribution:
        s = self.layout.sites[i]
        if isinstance(self.density, FittedBeta):
            return self.density.site_distribution()
        base = self.density.conditional(i, prefix)
        return dist.TransformedDistribution(base, [ReshapeTransform(s.ushape, (s.size,)), s.transform])

    def log_prob(self, values: Mapping[str, Any]) -> jax.Array:
        """log density of the sites' constrained ``values`` under the prior (Jacobians included)."""
        total, us = 0.0, []
        for i, s in enumerate(self.layout.sites):
            prefix = jnp.concatenate(us) if us else None
            v = jnp.asarray(values[s.name])
            total = total + jnp.sum(self.site_distribution(i, prefix).log_prob(v))
            us.append(s.unconstrain(v))
        return total


def fit_prior(key: Any, draws: Mapping[str, Any], layout: Layout, estimator: Estimator | None = None) -> FittedPrior:
    """Fit ``estimator`` (default :class:`Gaussian`) to the constrained ``draws`` (address ->
    ``(n, *shape)``) of the layout's sites, on the unconstrained space.

    Example:
        >>> from inference.sequential import Gaussian, fit_prior, layout_of, prior_model
        >>> m = ppl.model(lambda: ppl.sample("tau", dist.LogNormal(0.0, 1.0)))
        >>> draws = {"tau": jnp.exp(jax.random.normal(jax.random.key(0), (5000,)) * 0.5 + 1.0)}
        >>> prior = fit_prior(jax.random.key(1), draws, layout_of(m), Gaussian())
        >>> round(float(prior.density.mean[0]), 1), round(float(prior.density.cov[0, 0]), 2)
        (1.0, 0.25)
    """
    estimator = Gaussian() if estimator is None else estimator
    if getattr(estimator, "constrained", False):
        if len(layout.sites) != 1 or layout.sites[0].shape != ():
            raise ArgumentError(f"sequential: {type(estimator).__name__} fits one scalar site; the layout has "
                                f"{[(s.name, s.shape) for s in layout.sites]}.")
        return FittedPrior(layout, estimator.fit(key, draws[layout.sites[0].name]))
    return FittedPrior(layout, estimator.fit(key, layout.flatten(draws), layout.sizes))


def prior_model(prior: FittedPrior, name: str = "prior_from_draws") -> ppl.Model:
    """The fitted prior as a ppl model whose sites are the layout's, same names, constrained
    values, sampled in order from their chain-rule conditionals; returns address -> value.

    Example:
        >>> from inference.sequential import Gaussian, layout_of, prior_model
        >>> m = ppl.model(lambda: ppl.sample("p", dist.Dirichlet(jnp.ones(3))))
        >>> lay = layout_of(m)
        >>> pm = prior_model(FittedPrior(lay, Gaussian().from_moments(jnp.zeros(2), jnp.eye(2), lay.sizes)))
        >>> tr = pm.simulate(jax.random.key(0))
        >>> round(float(tr["p"].sum()), 6)
        1.0
    """

    def fn() -> dict:
        out, us = {}, []
        for i, s in enumerate(prior.layout.sites):
            v = ppl.sample(s.name, prior.site_distribution(i, jnp.concatenate(us) if us else None))
            us.append(s.unconstrain(v))
            out[s.name] = v
        return out

    fn.__name__ = fn.__qualname__ = name
    return ppl.model(fn, name=name)


class _ReplacePrior(Messenger):
    """Replace the distribution of each of the prior's sites by its conditional under the fitted
    density given the earlier ones (module docstring); record each value on its way back."""

    def __init__(self, prior: FittedPrior):
        super().__init__(None)
        if not isinstance(prior, FittedPrior):
            raise ArgumentError(f"sequential.with_prior: expected a FittedPrior (from fit_prior), got {type(prior).__name__}.")
        self.prior = prior
        self.index = {s.name: i for i, s in enumerate(prior.layout.sites)}
        self.us: list = []
        self.seen: list = []

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["name"] not in self.index:
            return
        name = msg["name"]
        i = self.index[name]
        if msg["is_observed"]:
            raise ModelError(f"sequential.with_prior: site {name!r} is observed in this model, but the prior from "
                             "draws is a prior over it (a latent site).")
        if i != len(self.seen):
            expected = self.prior.layout.names[len(self.seen)] if len(self.seen) < len(self.index) else None
            raise ModelError(f"sequential.with_prior: the model reached site {name!r} where the fitted prior expects "
                             f"{expected!r}: the prior's sites must be sampled in the order {list(self.prior.layout.names)}.")
        self.seen.append(name)
        msg["fn"] = self.prior.site_distribution(i, jnp.concatenate(self.us) if self.us else None)

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.index and len(self.us) < len(self.seen):
            self.us.append(self.prior.layout.sites[self.index[msg["name"]]].unconstrain(msg["value"]))


def _run_replaced(base: Any, prior: FittedPrior, a: tuple, k: dict) -> Any:
    """``base.fn(*a, **k)`` with the prior's sites replaced; every site of the prior must be reached."""
    h = _ReplacePrior(prior)
    with h:
        out = base.fn(*a, **k)
    missing = [n for n in prior.layout.names if n not in h.seen]
    if missing:
        raise AddressError(f"sequential.with_prior: model {base.name!r} never sampled the prior's site(s) "
                           f"{missing}; the prior is over {list(prior.layout.names)}.")
    return out


def with_prior(model: Any, prior: FittedPrior) -> ppl.Model:
    """``model`` with the prior of the fitted prior's sites replaced by the fitted density (module
    docstring).  The model must sample those sites in the layout's order; a site of the prior that
    the model does not reach is an error at the first run (:class:`ppl.AddressError`).

    Example:
        >>> from inference.sequential import Gaussian, FittedPrior, layout_of, with_prior
        >>> @ppl.model
        ... def m(y=None):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 100.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> lay = layout_of(m, sites=["mu"])
        >>> m2 = with_prior(m, FittedPrior(lay, Gaussian().from_moments(jnp.array([1.0]), jnp.eye(1), lay.sizes)))
        >>> lp = m2.log_density({"mu": 2.0}, y=0.0)          # N(2; 1, 1) + N(0; 2, 1)
        >>> bool(jnp.isclose(lp, dist.Normal(1.0, 1.0).log_prob(2.0) + dist.Normal(2.0, 1.0).log_prob(0.0)))
        True
    """
    base = as_model(model)
    _ReplacePrior(prior)  # check the argument now

    def checked(*a: Any, **k: Any) -> Any:
        return _run_replaced(base, prior, a, k)

    checked.__name__ = checked.__qualname__ = base.name
    out = ppl.Model(checked, name=base.name)
    out._base = base
    out._wrapper = (_ReplacePrior, (prior,), {})
    return out


# -- one model per (model, layout, density structure): the prior's numbers as a traced argument ----

#: the keyword through which :func:`prior_as_argument`'s model receives the fitted prior's arrays
PRIOR_KEYWORD = "_sequential_prior"

_TRACED: "weakref.WeakKeyDictionary[Any, list]" = weakref.WeakKeyDictionary()


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def split_prior(prior: FittedPrior) -> tuple[Any, tuple]:
    """``(structure, arrays)`` of a fitted prior: ``structure`` (hashable: the layout, the
    density's tree structure and its non-array leaves) says which model
    :func:`prior_as_argument` builds; ``arrays`` are its numbers, passed as the keyword
    :data:`PRIOR_KEYWORD` so that a compiled program is reused by every prior of that structure."""
    leaves, treedef = jax.tree.flatten(prior.density)
    static = tuple(None if _is_array(x) else x for x in leaves)
    arrays = tuple(jnp.asarray(x) for x in leaves if _is_array(x))
    return (prior.layout, treedef, static), arrays


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # an array-valued comparison somewhere: not the same structure
        return False


def _join(structure: Any, arrays: Any) -> FittedPrior:
    layout, treedef, static = structure
    it = iter(arrays)
    leaves = [next(it) if x is None else x for x in static]
    return FittedPrior(layout, jax.tree.unflatten(treedef, leaves))


def prior_as_argument(model: Any, structure: Any) -> ppl.Model:
    """:func:`with_prior` with the fitted prior's arrays as an argument: the model
    ``m(*args, _sequential_prior=arrays, **kwargs)`` is ``with_prior(model, prior)(*args, **kwargs)``
    for any prior with ``split_prior(prior) == (structure, arrays)``.  One model object per
    (model, structure) (cached), so the inference drivers' program cache, keyed on the model,
    compiles once for every prior of that structure (:func:`~inference.sequential.sequential`
    uses it from its second task on).

    Example:
        >>> from inference.sequential import Gaussian, FittedPrior, layout_of
        >>> from inference.sequential.prior import prior_as_argument, split_prior, PRIOR_KEYWORD
        >>> @ppl.model
        ... def m(y=None):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 100.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> lay = layout_of(m, sites=["mu"])
        >>> s1, a1 = split_prior(FittedPrior(lay, Gaussian().from_moments(jnp.array([1.0]), jnp.eye(1), lay.sizes)))
        >>> s2, a2 = split_prior(FittedPrior(lay, Gaussian().from_moments(jnp.array([3.0]), jnp.eye(1), lay.sizes)))
        >>> m2 = prior_as_argument(m, s1)
        >>> m2 is prior_as_argument(m, s2)                  # same structure, same model
        True
        >>> lp = m2.log_density({"mu": 2.0}, y=0.0, **{PRIOR_KEYWORD: a2})   # N(2; 3, 1) + N(0; 2, 1)
        >>> bool(jnp.isclose(lp, dist.Normal(3.0, 1.0).log_prob(2.0) + dist.Normal(2.0, 1.0).log_prob(0.0)))
        True
    """
    base = as_model(model)
    try:
        table = _TRACED.setdefault(base, [])
    except TypeError:  # pragma: no cover - a Model is weakly referenceable
        table = []
    for known, out in table:  # compared with == (numpyro constraints are not hashable)
        if _same(known, structure):
            return out
    def checked(*a: Any, **k: Any) -> Any:
        arrays = k.pop(PRIOR_KEYWORD, None)
        if arrays is None:
            raise ArgumentError(f"sequential: model {base.name!r} with a prior from draws needs its prior's arrays as "
                                f"the keyword {PRIOR_KEYWORD!r} (sequential passes them; see prior.split_prior).")
        return _run_replaced(base, _join(structure, arrays), a, k)

    try:  # the user's signature plus the prior keyword (for the drivers' keyword checks)
        sig = inspect.signature(base.fn)
        params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        var_kw = [p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD]
        extra = inspect.Parameter(PRIOR_KEYWORD, inspect.Parameter.KEYWORD_ONLY, default=None)
        checked.__signature__ = sig.replace(parameters=params + [extra] + var_kw)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        pass
    checked.__name__ = checked.__qualname__ = base.name
    out = ppl.Model(checked, name=base.name)
    table.append((structure, out))
    return out
