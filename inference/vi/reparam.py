"""Reparameterisation: base noise and a differentiable transform, per distribution type.

``_reparam(d, V)`` returns ``(noise, f)`` with ``f(ε) ~ d`` for ``ε ~ noise`` and ``f``
differentiable in ``d``'s parameters (``noise`` is None for a point mass), or None when the
type of ``d`` has no entry here (the ``"reparam"`` strategy then falls back to NumPyro's
``d.sample``).  Dispatch is by the *exact* NumPyro class, through a registry keyed by type:
a subclass may change how it samples, so it is not assumed to share its parent's transform.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions.distribution import ExpandedDistribution, Independent, TransformedDistribution

__all__: list[str] = []

#: exact distribution type -> (d, V) -> (noise | None, f) | None
_REPARAMS: dict[type, Callable[[Any, tuple], Any]] = {}


def _reparam(d: Any, V: tuple) -> tuple[Any, Callable[[jax.Array], jax.Array]] | None:
    """(noise distribution or None, f) with f(ε) ~ d for ε ~ noise, f differentiable in d's params.

    `V` is the shape of the value.  None when the family is not supported explicitly.
    """
    rule = _REPARAMS.get(type(d))
    return None if rule is None else rule(d, V)


def _wrapped(d: Any, V: tuple):
    return _reparam(d.base_dist, V)


def _normal(d: Any, V: tuple):
    return dist.Normal(jnp.zeros(V), 1.0), lambda e: d.loc + d.scale * e


def _mvn(d: Any, V: tuple):
    return dist.Normal(jnp.zeros(V), 1.0), lambda e: d.loc + jnp.einsum("...ij,...j->...i", d.scale_tril, e)


def _low_rank_mvn(d: Any, V: tuple):
    r = d.cov_factor.shape[-1]
    W = V[:-1] + (r + V[-1],)

    def f(e):
        return (
            d.loc
            + jnp.einsum("...ij,...j->...i", d.cov_factor, e[..., :r])
            + jnp.sqrt(d.cov_diag) * e[..., r:]
        )

    return dist.Normal(jnp.zeros(W), 1.0), f


def _uniform(d: Any, V: tuple):
    return dist.Uniform(jnp.zeros(V), 1.0), lambda e: d.low + (d.high - d.low) * e


def _exponential(d: Any, V: tuple):
    return dist.Exponential(jnp.ones(V)), lambda e: e / d.rate


def _delta(d: Any, V: tuple):
    return None, lambda e: jnp.broadcast_to(d.v, V)


def _transformed(d: Any, V: tuple):
    transforms = list(d.transforms)
    shape = V
    for t in reversed(transforms):
        shape = tuple(t.inverse_shape(shape))
    base = _reparam(d.base_dist, shape)
    if base is None:
        return None
    noise, g = base

    def f(e):
        x = g(e)
        for t in transforms:
            x = t(x)
        return x

    return noise, f


_REPARAMS.update(
    {
        Independent: _wrapped,
        ExpandedDistribution: _wrapped,
        dist.Normal: _normal,
        dist.MultivariateNormal: _mvn,
        dist.LowRankMultivariateNormal: _low_rank_mvn,
        dist.Uniform: _uniform,
        dist.Exponential: _exponential,
        dist.Delta: _delta,
        TransformedDistribution: _transformed,
        dist.LogNormal: _transformed,
    }
)
