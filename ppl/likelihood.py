"""Pointwise log-likelihood of a model's observations at posterior draws (for LOO, WAIC and
model comparison)."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .errors import AddressError, ModelError, nearest
from .handlers import substitute
from .model import as_model, run
from .predictive import batch_layout, site_shapes

__all__ = ["log_likelihood"]


def pointwise_log_prob(rec: Mapping[str, Any]) -> jax.Array:
    """The log density of one recorded sample site, not summed over its batch (plate) axes:
    ``fn.log_prob(value)`` with the site's mask and scale applied, shaped like the
    distribution's batch shape.  A site handed out of ``ppl.scan`` has one term per time step
    (each step's terms summed).  Summing it gives the site's term of the trace's log density."""
    fn = rec.get("fn")
    if fn is None:  # a site out of a loop combinator: a precomputed per-step vector
        return jnp.asarray(rec["log_prob"])
    lp = fn.log_prob(rec["value"])
    if rec.get("mask") is not None:
        lp = jnp.where(rec["mask"], lp, 0.0)
    if rec.get("scale") is not None:
        lp = lp * rec["scale"]
    return jnp.asarray(lp)


def log_likelihood(model: Any, samples: Mapping[str, Any], *args: Any, batch_ndims: int | None = None,
                   **kwargs: Any) -> dict:
    """Pointwise log-likelihood of every observed site of ``model(*args, **kwargs)`` at each draw.

    `samples` maps the model's latent addresses to draws with leading batch axes (a run's
    ``(chains, draws)`` as they are, or ``(n,)``; found from the model's site shapes, or the first
    `batch_ndims` axes when given).  Observations are the sites observed in this call: through
    ``obs=`` arguments or ``ppl.condition``.  Returns address -> ``batch axes + the site's batch
    (plate) shape``: ``log p(y_i | draw)`` for each observation ``y_i`` (masks and scales of the
    model applied; a ``ppl.scan`` site has one term per step).  Summed over the observations it
    is the model's log density at the draw minus the latent (prior) terms.  Computes one
    vectorised, compiled program over all the draws.  Every latent sample site needs draws (an
    :class:`ppl.AddressError` names a missing one).

    Example:
        >>> @ppl.model
        ... def m(y=None):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     with ppl.plate("obs", 3):
        ...         ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> ll = ppl.log_likelihood(m, {"mu": jnp.zeros((2, 5))}, y=jnp.zeros(3))
        >>> ll["y"].shape                                   # (chains, draws, obs)
        (2, 5, 3)
        >>> round(float(ll["y"][0, 0, 0]), 4)               # log N(0 | 0, 1)
        -0.9189
    """
    who = "ppl.log_likelihood"
    m = as_model(model)
    shapes = site_shapes(m, args, kwargs)
    lead = batch_layout(who, samples, shapes, batch_ndims)
    observed = [k for k, (_, kind) in shapes.items() if kind == "observed"]
    if not observed:
        raise ModelError(
            f"{who}: the model observes nothing in this call; pass the data (e.g. y=y) or condition it "
            "(ppl.condition) so that there is a likelihood to evaluate."
        )
    unknown = [k for k in samples if k not in shapes]
    if unknown:
        raise AddressError(f"{who}: samples hold address {unknown[0]!r}, which the model does not have"
                           f"{nearest(unknown[0], shapes)}.")
    missing = [k for k, (_, kind) in shapes.items() if kind == "latent" and k not in samples]
    if missing:
        raise AddressError(
            f"{who}: the latent site {missing[0]!r} has no draws in samples (given: {sorted(samples)}); the "
            "likelihood is evaluated at draws of every latent site."
        )
    n = int(np.prod(lead))
    flat = {k: jnp.reshape(jnp.asarray(v), (n,) + tuple(np.shape(v))[len(lead):]) for k, v in samples.items()}

    def one(s):
        _, sites = run(m.fn, args, kwargs, substitute(None, s, strict=False))
        return {k: pointwise_log_prob(sites[k]) for k in observed}

    out = jax.jit(jax.vmap(one))(flat)
    return {k: jnp.reshape(v, tuple(lead) + tuple(v.shape[1:])) for k, v in out.items()}
