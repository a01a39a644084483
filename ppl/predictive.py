"""Prior and posterior predictive draws."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .errors import AddressError, ModelError, nearest
from .handlers import check_key, condition, seed, substitute
from .model import Model, as_model, run

__all__ = ["predictive"]


def _strip_conditioning(m: Model) -> Model:
    """The model without the ``ppl.condition`` wrappers around it (observed sites then sampled)."""
    while getattr(m, "_wrapper", None) is not None and m._wrapper[0] is condition:
        m = m._base
    return m


def predictive(
    model: Any,
    samples: Mapping[str, Any] | None = None,
    *args: Any,
    key: Any = None,
    num_samples: int | None = None,
    return_sites: Sequence[str] | None = None,
    batch_ndims: int = 1,
    **kwargs: Any,
) -> dict:
    """Draws from the predictive distribution of ``model(*args, **kwargs)``.

    * Prior predictive: ``samples=None`` and ``num_samples=n``: n joint draws from the model.
    * Posterior predictive: `samples` maps latent addresses to draws with `batch_ndims` leading
      axes (e.g. ``(draws,)`` or ``(chains, draws)``); each draw is substituted and the remaining
      sites (observations included) are drawn from the model given it.

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
    """
    key = check_key(key, "ppl.predictive")
    m = _strip_conditioning(as_model(model))
    if samples is None:
        if num_samples is None:
            raise ModelError("ppl.predictive: give posterior `samples`, or `num_samples` for prior draws.")
        lead: tuple = (int(num_samples),)
        samples = {}
    else:
        if not isinstance(samples, Mapping) or not samples:
            raise ModelError("ppl.predictive: samples must be a non-empty mapping address -> draws.")
        shapes = {k: tuple(np.shape(v))[:batch_ndims] for k, v in samples.items()}
        lead = next(iter(shapes.values()))
        bad = [k for k, s in shapes.items() if s != lead]
        if bad:
            raise ModelError(
                f"ppl.predictive: samples need the same {batch_ndims} leading axes; {bad[0]!r} has "
                f"{shapes[bad[0]]} but {next(iter(shapes))!r} has {lead}."
            )
        if num_samples is not None and (int(np.prod(lead)) != num_samples):
            raise ModelError(f"ppl.predictive: num_samples={num_samples} but samples hold {lead} draws.")
    n = int(np.prod(lead))
    flat = {k: jnp.reshape(jnp.asarray(v), (n,) + tuple(np.shape(v))[len(lead):]) for k, v in samples.items()}

    seen: set[str] = set()
    observed: set[str] = set()

    def one(k, s):
        # strict=False: draws may carry deterministic sites; unknown names are checked below
        _, sites = run(m.fn, args, kwargs, seed(key=k), substitute(None, s, strict=False))
        seen.update(sites)
        out = {}
        for name, rec in sites.items():
            if rec["type"] not in ("sample", "deterministic") or name in s:
                continue
            if rec["type"] == "sample" and rec["is_observed"]:
                # observed through an argument (obs=y): its "prediction" would be the data itself
                observed.add(name)
                continue
            if return_sites is not None and name not in return_sites:
                continue
            out[name] = rec["value"]
        return out

    keys = jax.random.split(key, n)
    draws = jax.vmap(one)(keys, flat)
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
