"""Prior and posterior predictive draws."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .errors import AddressError, ModelError, nearest
from .handlers import check_key, condition, seed, substitute
from .core import Messenger
from .model import Model, as_model, run

__all__ = ["predictive"]


def _strip_conditioning(m: Model) -> Model:
    """The model without the ``ppl.condition`` wrappers around it (observed sites then sampled)."""
    while getattr(m, "_wrapper", None) is not None and m._wrapper[0] is condition:
        m = m._base
    return m


class _Unobserve(Messenger):
    """Turn the observations made in the call (``obs=`` arguments, ``ppl.condition``) back into
    sample sites, so that the handlers outside draw them."""

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["is_observed"] and not msg["intervened"]:
            msg["value"] = None
            msg["is_observed"] = False
            msg["supplied"] = False


def site_shapes(m: Model, args: tuple, kwargs: dict) -> dict:
    """address -> ``(shape, kind)`` of every sample and deterministic site of one run of the model
    (found abstractly, ``jax.eval_shape``: nothing is computed); kind is ``"observed"``,
    ``"intervened"``, ``"latent"`` or ``"deterministic"``."""
    kinds: dict = {}

    def f(k):
        _, sites = run(m.fn, args, kwargs, seed(key=k))
        out = {}
        for name, rec in sites.items():
            if rec["type"] == "sample":
                kinds[name] = "observed" if rec["is_observed"] else ("intervened" if rec["intervened"] else "latent")
            elif rec["type"] == "deterministic":
                kinds[name] = "deterministic"
            else:
                continue
            out[name] = jnp.asarray(rec["value"])
        return out

    shapes = jax.eval_shape(f, jax.random.key(0))
    return {k: (tuple(v.shape), kinds[k]) for k, v in shapes.items()}


def batch_layout(who: str, samples: Mapping[str, Any], shapes: Mapping[str, tuple], batch_ndims: int | None) -> tuple:
    """The leading (batch) axes shared by every entry of `samples`: its first `batch_ndims` axes,
    or, with ``batch_ndims=None``, the axes an entry has beyond the model's site (`shapes` from
    :func:`site_shapes`): ``(chains, draws)`` for a run's draws, ``(n,)`` for a flat set.  Raises
    :class:`ppl.ModelError` naming two sites whose layouts disagree."""
    if not isinstance(samples, Mapping) or not samples:
        raise ModelError(f"{who}: samples must be a non-empty mapping address -> draws.")
    lead: dict = {}
    for k, v in samples.items():
        shp = tuple(np.shape(v))
        if batch_ndims is not None:
            lead[k] = shp[: int(batch_ndims)]
        elif k in shapes:
            b = len(shp) - len(shapes[k][0])
            if b < 0:
                raise ModelError(
                    f"{who}: samples[{k!r}] has shape {shp}, fewer axes than the site itself (shape "
                    f"{shapes[k][0]}); draws need leading batch axes, e.g. (chains, draws) + {shapes[k][0]}."
                )
            lead[k] = shp[:b]
    if not lead:
        k = next(iter(samples))
        raise AddressError(f"{who}: samples hold address {k!r}, which the model does not have{nearest(k, shapes)}.")
    first = next(iter(lead))
    for k, b in lead.items():
        if b != lead[first]:
            if batch_ndims is not None:
                raise ModelError(
                    f"{who}: samples need the same {batch_ndims} leading axes; {k!r} has {b} but {first!r} has {lead[first]}."
                )
            raise ModelError(
                f"{who}: the draws' batch axes disagree: {first!r} has shape {tuple(np.shape(samples[first]))} for a "
                f"site shaped {shapes[first][0]} (batch axes {lead[first]}), but {k!r} has shape "
                f"{tuple(np.shape(samples[k]))} for a site shaped {shapes[k][0]} (batch axes {b}); give every site the "
                "same leading axes (e.g. (chains, draws) as a run holds them), or pass batch_ndims."
            )
    return lead[first]


def predictive(
    model: Any,
    samples: Mapping[str, Any] | None = None,
    *args: Any,
    key: Any = None,
    num_samples: int | None = None,
    return_sites: Sequence[str] | None = None,
    batch_ndims: int | None = None,
    predict_observed: bool = False,
    **kwargs: Any,
) -> dict:
    """Draws from the predictive distribution of ``model(*args, **kwargs)``.

    * Prior predictive: ``samples=None`` and ``num_samples=n``: n joint draws from the model.
    * Posterior predictive: `samples` maps latent addresses to draws with leading batch axes,
      ``(draws,)`` or ``(chains, draws)`` (a run's ``samples`` as they are); the axes are those
      the draws have beyond the model's sites (or the first `batch_ndims` axes, when given), and
      sites whose layouts disagree are an error naming them.  Each draw is substituted and the
      remaining sites (observations included) are drawn from the model given it.
    * New inputs: pass the model's new arguments (e.g. new covariates) after `samples`.
    * ``predict_observed=True``: the sites observed in the call (``obs=`` arguments) are drawn
      instead (the data stay in the arguments; handy for posterior predictive checks).
    * Forecasting: for a ``ppl.scan`` model run for more steps than the draws cover (draws of
      ``"ts/x"`` shaped ``(..., T)``, the model run for ``T + H`` steps), the draws give the
      first T steps and the last H are simulated from where they end; such a site is returned
      whole (``(..., T + H)``).

    Observations made with ``ppl.condition`` are removed, so they are predicted; for a model that
    observes through an argument (``y=y``), pass ``y=None``: a site observed in the call is left out
    of the result (its value would be the data), and asking for it (``return_sites``), or a call in
    which the only sites left are observed ones, is an error naming the site.  Returns address -> array with the
    same leading axes, for every sample and deterministic site not in `samples` (or those in
    `return_sites`).  Computes one vectorised program (``vmap``) over the draws.

    Example:
        >>> @ppl.model
        ... def m(y=None):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     with ppl.plate("obs", 3):
        ...         ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> ppl.predictive(m, None, key=jax.random.key(0), num_samples=100)["y"].shape
        (100, 3)
        >>> ppl.predictive(m, {"mu": jnp.zeros(5)}, key=jax.random.key(0))["y"].shape
        (5, 3)
        >>> ppl.predictive(m, {"mu": jnp.zeros((2, 5))}, key=jax.random.key(0))["y"].shape  # (chains, draws)
        (2, 5, 3)
    """
    key = check_key(key, "ppl.predictive")
    m = _strip_conditioning(as_model(model))
    if samples is None:
        if num_samples is None:
            raise ModelError("ppl.predictive: give posterior `samples`, or `num_samples` for prior draws.")
        lead: tuple = (int(num_samples),)
        samples = {}
    else:
        lead = batch_layout("ppl.predictive", samples, site_shapes(m, args, kwargs) if batch_ndims is None else {},
                            batch_ndims)
        if num_samples is not None and (int(np.prod(lead)) != num_samples):
            raise ModelError(f"ppl.predictive: num_samples={num_samples} but samples hold {lead} draws.")
    n = int(np.prod(lead))
    flat = {k: jnp.reshape(jnp.asarray(v), (n,) + tuple(np.shape(v))[len(lead):]) for k, v in samples.items()}

    seen: set[str] = set()
    observed: set[str] = set()

    def one(k, s):
        # strict=False: draws may carry deterministic sites; unknown names are checked below
        extra = (_Unobserve(),) if predict_observed else ()
        _, sites = run(m.fn, args, kwargs, seed(key=k), substitute(None, s, strict=False), *extra)
        seen.update(sites)
        out = {}
        for name, rec in sites.items():
            if rec["type"] not in ("sample", "deterministic"):
                continue
            if name in s and jnp.shape(s[name]) == jnp.shape(rec["value"]):
                continue  # given by the draws (a scanned site given for its first steps is reported)
            if rec["type"] == "sample" and rec["is_observed"]:
                # observed through an argument (obs=y): its "prediction" would be the data itself
                observed.add(name)
                continue
            if return_sites is not None and name not in return_sites:
                continue
            out[name] = rec["value"]
        return out

    keys = jax.random.split(key, n)
    draws = jax.jit(jax.vmap(one))(keys, flat)  # one compiled program over the draws
    unknown = [k for k in flat if k not in seen]
    if unknown:
        raise AddressError(
            f"ppl.predictive: samples hold address {unknown[0]!r}, which the model does not have"
            f"{nearest(unknown[0], seen)}."
        )
    asked = [r for r in return_sites if r in observed] if return_sites is not None else []
    if asked or (observed and not draws):
        name = (asked or sorted(observed))[0]
        raise ModelError(
            f"ppl.predictive: site {name!r} is observed in this call (its value is given through the "
            f"model's arguments), so it cannot be predicted; pass that argument as None (e.g. "
            f"{name}=None) to draw it from the model."
        )
    if return_sites is not None:
        missing = [r for r in return_sites if r not in draws]
        if missing:
            raise AddressError(
                f"ppl.predictive: return_sites names {missing[0]!r}, which the model does not "
                f"produce{nearest(missing[0], seen)}."
            )
    return {k: jnp.reshape(v, lead + tuple(v.shape[1:])) for k, v in draws.items()}
