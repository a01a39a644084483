"""The one result protocol of every inference family, and the helpers that implement it.

Whatever produced it (MCMC, SMC, VI), a result answers the same questions the same way:

* ``draws``: address -> array with leading batch axes: ``(chains, draws, ...)`` for MCMC,
  ``(particles, ...)`` for SMC (weighted: see ``log_weights``/``weights``).  VI results keep the
  fitted guide instead and may hold no draws (``{}``).  ``samples`` stays an alias where it
  existed.
* ``info``: a dict of diagnostics (divergences, ESS, log evidence, loss trace, ...).
* ``to_arviz()``: an ``arviz.InferenceData`` (ArviZ 0.x) or its 1.x ``DataTree`` counterpart.
* ``sample(key, num_samples)``: a dict of ``num_samples`` equally weighted posterior draws,
  address -> ``(num_samples, ...)`` (MCMC: resampled stored draws; SMC: resampled by weight; VI:
  drawn from the fitted guide).
* ``predictive(key, model, *args, num_samples=None, **kwargs)``: posterior predictive draws of
  ``model(*args, **kwargs)`` given the result's posterior (:func:`ppl.predictive`).

The helpers below (:func:`resample_draws`, :func:`weighted_predictive`, :func:`to_inference_data`)
let a weighted-particle result implement the protocol in a few lines; :class:`WeightedDraws` does
so for every SMC result.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import jax
import numpy as np

__all__ = ["Result", "WeightedDraws", "resample_draws", "weighted_predictive", "to_inference_data", "model_sites",
           "workflow_groups"]


@runtime_checkable
class Result(Protocol):
    """What every inference result provides (see the module docstring for the meaning of each
    member).  ``isinstance(r, Result)`` checks that the members exist.

    Example:
        >>> from inference._result import Result
        >>> from inference.smc import Particles, SMCResult
        >>> res = SMCResult(particles=Particles.from_states(jnp.zeros(4)), log_evidence=jnp.asarray(0.0),
        ...                 paths={"x": jnp.arange(4.0)})           # what smc.particle_filter returns
        >>> isinstance(res, Result), res.draws["x"].shape, res.sample(jax.random.key(1), 5)["x"].shape
        (True, (4,), (5,))
    """

    @property
    def draws(self) -> dict: ...

    @property
    def info(self) -> dict: ...

    def to_arviz(self) -> Any: ...

    def sample(self, key: Any, num_samples: int | None = None) -> dict: ...

    def predictive(self, key: Any, model: Any, *args: Any, num_samples: int | None = None, **kwargs: Any) -> dict: ...


def resample_draws(key: Any, draws: Mapping[str, Any], log_weights: Any, num_samples: int | None = None) -> dict:
    """``num_samples`` draws picked with probability proportional to ``exp(log_weights)``
    (multinomial, with replacement): address -> ``(num_samples, ...)``; ``num_samples=None``:
    one draw, without the leading axis.  Equally weighted draws from the weighted population's
    measure (the same indices as :meth:`inference.smc.Particles.sample` for the same key).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from inference._result import resample_draws
        >>> out = resample_draws(jax.random.key(0), {"x": jnp.arange(4.0)}, jnp.log(jnp.array([0.0, 0, 1, 0])), 3)
        >>> out["x"].tolist()
        [2.0, 2.0, 2.0]
    """
    shape = () if num_samples is None else (int(num_samples),)
    idx = jax.random.categorical(key, jax.numpy.asarray(log_weights), shape=shape)
    return jax.tree.map(lambda v: jax.numpy.asarray(v)[idx], dict(draws))


def weighted_predictive(who: str, key: Any, draws: Mapping[str, Any], log_weights: Any, model: Any,
                        args: tuple, kwargs: dict, num_samples: int | None = None) -> dict:
    """Posterior predictive draws of ``model(*args, **kwargs)``: ``num_samples`` draws (default:
    as many as there are draws) resampled by weight (:func:`resample_draws`; ``log_weights=None``:
    picked uniformly, or the draws as they are when ``num_samples`` is None), each substituted
    into the model and the remaining sites drawn (:func:`ppl.predictive`); address ->
    ``(num_samples, ...)``.  Raises :class:`ppl.ArgumentError` when a model parameter has the
    name of the option ``num_samples`` (calling convention) or there are no draws.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from inference._result import weighted_predictive
        >>> @ppl.model
        ... def m():
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     return ppl.sample("y", dist.Normal(mu, 1e-6))
        >>> out = weighted_predictive("demo", jax.random.key(0), {"mu": jnp.array([5.0, -5.0])},
        ...                           jnp.array([0.0, -jnp.inf]), m, (), {}, num_samples=3)
        >>> out["y"].round(3).tolist()
        [5.0, 5.0, 5.0]
    """
    import ppl

    from inference._calling import check_option_clash

    check_option_clash(who, model, [] if num_samples is None else ["num_samples"])
    reserved = sorted(set(kwargs) & {"key", "return_sites", "batch_ndims", "predict_observed"})
    if reserved:
        raise ppl.ArgumentError(f"{who}: the model keyword {reserved[0]!r} is an option of ppl.predictive; "
                                "pass it positionally, or bind it first (functools.partial or ppl.condition).")
    if not draws:
        raise ppl.ArgumentError(f"{who}: the result holds no draws to predict from (were they recorded?).")
    k_pick, k_pred = jax.random.split(key)
    if log_weights is not None:
        lw = jax.numpy.asarray(log_weights)
        draws = resample_draws(k_pick, draws, lw, int(lw.shape[-1]) if num_samples is None else num_samples)
    elif num_samples is not None:
        n = int(np.shape(next(iter(draws.values())))[0])
        idx = jax.random.randint(k_pick, (int(num_samples),), 0, n)
        draws = {k: jax.numpy.asarray(v)[idx] for k, v in draws.items()}
    return ppl.predictive(model, dict(draws), *args, key=k_pred, batch_ndims=1, **kwargs)


def _arviz_major() -> int:
    import arviz as az

    try:
        return int(str(az.__version__).split(".")[0])
    except ValueError:  # pragma: no cover - unusual version strings
        return 0


def _dataset(group: str, data: Mapping[str, Any], dims: Mapping[str, Any], coords: Mapping[str, Any], sample_axes: int):
    """One ``xarray.Dataset``: each variable with dims ``("chain", "draw")`` (``sample_axes=2``;
    none for ``observed_data``) followed by its named dims (``dims[var]``, else ``var_dim_i``)."""
    import xarray as xr

    from ppl.errors import ArgumentError

    lead = ["chain", "draw"][:sample_axes]
    variables, used = {}, {}
    for var, v in data.items():
        a = np.asarray(v)
        rest = a.ndim - sample_axes
        if rest < 0:
            raise ArgumentError(f"to_arviz: {group}[{var!r}] has shape {a.shape}; expected the (chain, draw) axes first.")
        names = list(dims.get(var, ()))[:rest]
        names += [f"{var}_dim_{i}" for i in range(len(names), rest)]
        for d, n in zip(names, a.shape[sample_axes:]):
            if used.setdefault(d, n) != n:
                raise ArgumentError(f"to_arviz: dim {d!r} has size {used[d]} in one {group} variable and {n} in "
                                    f"{var!r}; give the variables distinct dims (dims=...).")
        variables[var] = (lead + names, a)
    ds = xr.Dataset(variables)
    crd: dict = {}
    for d in ds.dims:
        if d in ("chain", "draw") and d not in coords:
            crd[d] = np.arange(ds.sizes[d])
        elif d in coords:
            c = np.asarray(coords[d])
            if c.shape != (ds.sizes[d],):
                raise ArgumentError(f"to_arviz: coords[{d!r}] has {c.shape[0] if c.ndim else 0} values but dim {d!r} "
                                    f"has size {ds.sizes[d]} (in {group}).")
            crd[d] = c
    return ds.assign_coords(crd)


#: groups without the (chain, draw) axes
_UNSAMPLED = ("observed_data", "constant_data")


def to_inference_data(groups: Mapping[str, Mapping[str, Any]], dims: Mapping[str, Any] | None = None,
                      coords: Mapping[str, Any] | None = None) -> Any:
    """An ArviZ object from ``{group: {variable: array}}`` (each array ``(chain, draw, ...)``,
    ``observed_data`` without those axes), built from ``xarray`` datasets with named dims:
    ``dims`` maps a variable to the names of its axes after ``(chain, draw)`` (default
    ``<var>_dim_<i>``), ``coords`` a dim to its labels.  Returns ``arviz.InferenceData`` with
    ArviZ 0.x, an ``xarray.DataTree`` (the object ArviZ 1.x works on) with ArviZ 1.x.  Empty
    groups are left out; values are converted to NumPy.

    Example:
        >>> import numpy as np
        >>> from inference._result import to_inference_data
        >>> idata = to_inference_data({"posterior": {"theta": np.zeros((1, 5, 3))}, "sample_stats": {}},
        ...                           dims={"theta": ["school"]}, coords={"school": ["a", "b", "c"]})
        >>> idata.posterior["theta"].dims, idata.posterior["school"].values.tolist()
        (('chain', 'draw', 'school'), ['a', 'b', 'c'])
    """
    try:
        import arviz as az
    except ImportError as e:  # pragma: no cover - arviz is a test dependency
        raise ImportError("to_arviz needs arviz: pip install arviz") from e
    dims, coords = dict(dims or {}), dict(coords or {})
    sets = {g: _dataset(g, d, dims, coords, 0 if g in _UNSAMPLED else 2) for g, d in groups.items() if d}
    if _arviz_major() >= 1:  # pragma: no cover - ArviZ 1.x needs Python >= 3.12 (not this CI)
        import xarray as xr

        return xr.DataTree.from_dict({f"/{g}": ds for g, ds in sets.items()})
    return az.InferenceData(**sets)


def model_sites(model: Any, args: tuple, kwargs: dict, draw: Mapping[str, Any] | None = None) -> dict:
    """address -> ``{"kind", "value", "dims"}`` for every sample/deterministic site of one run of
    ``model(*args, **kwargs)`` (latent values from `draw` where given): kind ``"observed"``,
    ``"latent"``, ``"intervened"`` or ``"deterministic"``; ``dims`` names the value's axes after
    the plates (``plate("school", 8)`` -> ``"school"``), a ``ppl.scan`` site's time axis after the
    scan, and the others ``<address>_dim_<i>`` (ArviZ's default).

    Example:
        >>> from inference._result import model_sites
        >>> @ppl.model
        ... def m(y=None):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     with ppl.plate("school", 3):
        ...         ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> s = model_sites(m, (), {"y": jnp.zeros(3)})
        >>> s["y"]["kind"], s["y"]["dims"], s["mu"]["kind"]
        ('observed', ['school'], 'latent')
    """
    import ppl
    from ppl.model import as_model, run

    m = as_model(model)
    _, sites = run(m.fn, tuple(args), dict(kwargs), ppl.seed(key=jax.random.key(0)),
                   ppl.substitute(None, dict(draw or {}), strict=False))
    out = {}
    for name, rec in sites.items():
        if rec["type"] == "sample":
            kind = "observed" if rec["is_observed"] else ("intervened" if rec["intervened"] else "latent")
        elif rec["type"] == "deterministic":
            kind = "deterministic"
        else:
            continue
        shape = np.shape(rec["value"])
        names: list = [None] * len(shape)
        if np.ndim(rec["log_prob"]) >= 1 and "/" in name:  # handed out of ppl.scan: time leads
            if names:
                names[0] = name.rsplit("/", 1)[0]
        else:
            fn = rec.get("fn")
            nb = len(shape) - (len(fn.event_shape) if rec["type"] == "sample" and fn is not None else 0)
            for fr in rec.get("cond_indep_stack") or ():
                ax = nb + fr.dim
                if 0 <= ax < nb:
                    names[ax] = fr.name
        out[name] = {"kind": kind, "value": rec["value"],
                     "dims": [n if n is not None else f"{name}_dim_{i}" for i, n in enumerate(names)]}
    return out


def _per_chain(who: str, name: str, v: Any, chains: int, draws: int | None) -> np.ndarray:
    """Draws laid out ``(chain, draw, ...)``: as given, or split from a flat ``(chain·draw, ...)``
    or ``(n, ...)`` (one chain)."""
    from ppl.errors import ArgumentError

    a = np.asarray(v)
    if draws is not None and a.shape[:2] == (chains, draws):
        return a
    if draws is not None and a.ndim >= 1 and a.shape[0] == chains * draws:
        return a.reshape((chains, draws) + a.shape[1:])
    if draws is None and a.ndim >= 1:
        return a[None]
    raise ArgumentError(f"{who}: {name!r} has shape {a.shape}; expected ({chains}, {draws}, ...) or "
                        f"({chains * (draws or 0)}, ...) draws.")


def workflow_groups(who: str, model: Any, args: tuple, kwargs: dict, posterior: Mapping[str, Any], *,
                    chains: int, draws: int, log_likelihood: bool = True, posterior_predictive: Any = None,
                    prior: Any = None) -> tuple[dict, dict]:
    """The groups of a result's ArviZ data beyond its ``sample_stats``, written once for every
    family: ``posterior`` (`posterior` laid out ``(chains, draws, ...)``), ``log_likelihood``
    (:func:`ppl.log_likelihood` of the model's observed sites at those draws), ``observed_data``
    (the values observed in ``model(*args, **kwargs)``), ``posterior_predictive`` (draws given
    as a dict, or a random key: the observed sites drawn at every posterior draw) and
    ``prior``/``prior_predictive`` (draws given as a dict; its observed sites go to
    ``prior_predictive``); and the dims of every variable after the model's plates.
    Returns ``(groups, dims)`` for :func:`to_inference_data`.

    Example:
        >>> from inference._result import workflow_groups
        >>> @ppl.model
        ... def m(y=None):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     with ppl.plate("school", 3):
        ...         ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> groups, dims = workflow_groups("demo", m, (), {"y": jnp.zeros(3)}, {"mu": jnp.zeros((2, 4))}, chains=2, draws=4)
        >>> groups["log_likelihood"]["y"].shape, dims["y"]
        ((2, 4, 3), ['school'])
    """
    import ppl

    post = {k: _per_chain(who, k, v, chains, draws) for k, v in posterior.items()}
    first = {k: v[0, 0] for k, v in post.items()}
    sites = model_sites(model, args, kwargs, first)
    dims = {k: s["dims"] for k, s in sites.items()}
    observed = {k: np.asarray(s["value"]) for k, s in sites.items() if s["kind"] == "observed"}
    groups: dict = {"posterior": post, "observed_data": observed}
    if log_likelihood and observed and post:
        latent = {k: v for k, v in post.items() if k in sites and sites[k]["kind"] == "latent"}
        ll = ppl.log_likelihood(model, latent, *args, batch_ndims=2, **kwargs)
        groups["log_likelihood"] = {k: np.asarray(v) for k, v in ll.items()}
    if posterior_predictive is not None and not isinstance(posterior_predictive, Mapping):
        # a random key: draw the observed sites at every posterior draw (as they are laid out)
        if observed and post:
            latent = {k: v for k, v in post.items() if k in sites and sites[k]["kind"] == "latent"}
            posterior_predictive = ppl.predictive(model, latent, *args, key=posterior_predictive, batch_ndims=2,
                                                  return_sites=sorted(observed), predict_observed=True, **kwargs)
        else:
            posterior_predictive = {}
    if posterior_predictive is not None:
        groups["posterior_predictive"] = {k: _per_chain(who, k, v, chains, draws)
                                          for k, v in dict(posterior_predictive).items()}
    if prior is not None:
        pri = {k: np.asarray(v) for k, v in dict(prior).items()}
        shaped = {k: (v if k in sites and np.ndim(v) == len(np.shape(sites[k]["value"])) + 2 else v[None])
                  for k, v in pri.items()}
        groups["prior"] = {k: v for k, v in shaped.items() if k not in observed}
        groups["prior_predictive"] = {k: v for k, v in shaped.items() if k in observed}
    return groups, dims


class WeightedDraws:
    """The result protocol for a weighted population of particles.  A subclass provides
    ``_draws()`` (address -> ``(N, ...)``), ``_log_weights()`` ((N,)) and ``_info()``; this class
    turns them into ``draws``, ``info``, ``weights``/``log_weights``, ``sample`` (resampling by
    weight), ``predictive`` and ``to_arviz``.  Preserves: ``sample`` and ``predictive`` draw from
    the population's self-normalised measure Σ W_i δ_{x_i}."""

    def _draws(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_weights(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _info(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def draws(self) -> dict:
        """Address -> ``(N, ...)``: the particles' values (weighted by :attr:`weights`)."""
        return self._draws()

    @property
    def info(self) -> dict:
        """Diagnostics: the log evidence and every per-step history the driver recorded."""
        return {k: v for k, v in self._info().items() if v is not None}

    @property
    def log_weights(self) -> Any:
        """(N,) unnormalised log weights of the particles."""
        return self._log_weights()

    @property
    def weights(self) -> Any:
        """(N,) normalised weights W_i (summing to one)."""
        return jax.nn.softmax(jax.numpy.asarray(self._log_weights()), axis=-1)

    def sample(self, key: Any, num_samples: int | None = None) -> dict:
        """``num_samples`` equally weighted posterior draws, picked by weight: address ->
        ``(num_samples, ...)`` (``None``: one draw without the leading axis)."""
        return resample_draws(key, self._draws(), self._log_weights(), num_samples)

    def predictive(self, key: Any, model: Any, *args: Any, num_samples: int | None = None, **kwargs: Any) -> dict:
        """Posterior predictive draws of ``model(*args, **kwargs)`` (``num_samples``, default N,
        resampled by weight): address -> ``(num_samples, ...)``."""
        return weighted_predictive(f"{type(self).__name__}.predictive", key, self._draws(), self._log_weights(),
                                   model, args, kwargs, num_samples)

    def to_arviz(self, key: Any = None, num_samples: int | None = None, *, model: Any = None, args: tuple = (),
                 kwargs: Mapping[str, Any] | None = None, coords: Any = None, dims: Any = None) -> Any:
        """ArviZ data with one chain.  Without ``key``: the N particles as they are, their log
        weights in ``sample_stats["log_weight"]`` (ArviZ treats draws as equally weighted, so
        weigh them yourself); with ``key``: ``num_samples`` draws resampled by weight.  With
        ``key`` and the ``model`` (and its ``args``/``kwargs``) the particles target: also
        ``log_likelihood`` (for ``az.loo``/``az.compare``), ``observed_data`` and dims named
        after the plates, as :meth:`inference.mcmc.Run.to_arviz` (``coords={dim: labels}``)."""
        from ppl.errors import ArgumentError

        if key is not None:
            n = int(np.shape(self._log_weights())[-1]) if num_samples is None else int(num_samples)
            post, stats = self.sample(key, n), {}
        else:
            post = self._draws()
            stats = {"log_weight": np.asarray(self._log_weights())[None]}
        post = {k: np.asarray(v)[None] for k, v in post.items()}
        if model is None:
            return to_inference_data({"posterior": post, "sample_stats": stats}, dims, coords)
        if key is None:
            raise ArgumentError(f"{type(self).__name__}.to_arviz: the log-likelihood of weighted particles needs equally "
                                "weighted draws: pass a key (and num_samples) to resample them by weight.")
        n = next(iter(post.values())).shape[1]
        groups, site_dims = workflow_groups(f"{type(self).__name__}.to_arviz", model, tuple(args), dict(kwargs or {}),
                                            post, chains=1, draws=n)
        groups["sample_stats"] = stats
        return to_inference_data(groups, {**site_dims, **dict(dims or {})}, coords)
