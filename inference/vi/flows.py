"""Normalising-flow guides (issue 19): a flowjax flow over the model's unconstrained latent vector.

:func:`auto_flow` builds a guide whose unconstrained latent vector u (the same flattening as the
full-rank guide's: the model's latent sites in order, each flattened) is

    ε ~ N(0, I)  (an auxiliary site, ``"_aux/<prefix>/base"``),   u = loc + scale ⊙ f_θ(ε),

f_θ a normalising flow of `flowjax <https://danielward27.github.io/flowjax/>`_ (block neural
autoregressive, masked autoregressive, coupling, triangular spline or planar), built in its
*sampling* direction (``invert=False``), so drawing and scoring a draw take one forward pass and no
inverse.  ``loc`` starts at the ``init=`` point (prior median by default, as every autoguide) and
``scale`` at ``init_scale``; θ are the flow's arrays (``equinox.partition`` of the flow, flowjax's
``paramax.NonTrainable`` leaves kept fixed), raveled into one parameter ``"<prefix>/flow"`` and
unwrapped (``paramax.unwrap``) before use.

Each model site then gets its value T(u_site), T = ``biject_to(support)``, as a point mass
(``dist.Delta``) that carries the site's share of the guide's log density: the first site carries
−log|det ∂u/∂ε| (log N(ε) is scored at the auxiliary site), and every site its −log|det J_T|.  So the guide trace's log density is log q(z) = log N(ε) − log|det ∂u/∂ε| −
Σ log|det J_T|, the density of the model's latent values, and ``model.log_density(trace.choices)``
accepts the trace (auxiliary addresses are ignored by the model's handlers, see
:data:`ppl.messengers.AUXILIARY`).  The estimator machinery is unchanged: ε is drawn by the
``"reparam"`` strategy (its distribution has no parameters), the gradient flows through the point
masses' values and densities.  A ``"reinforce"`` strategy on ε gives the same estimate (the score
of a parameter-free draw is zero); the point-mass sites must stay ``"reparam"``.

Example:
    >>> @ppl.model
    ... def model(x):
    ...     s = ppl.sample("s", dist.HalfNormal(1.0))
    ...     mu = ppl.sample("mu", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
    ...     ppl.sample("x", dist.Normal(mu, s).to_event(1), obs=x)
    >>> x = jnp.array([0.5, -0.2])
    >>> guide = vi.auto_flow(model, x, flow="masked_autoregressive", flow_layers=2, nn_width=8)
    >>> sorted(vi.elbo(model, guide).init_params(jax.random.key(0), x))
    ['auto/flow', 'auto/loc', 'auto/scale']
"""

from __future__ import annotations

import inspect
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from numpyro.distributions import constraints

import ppl
from ppl.errors import ArgumentError
from ppl.messengers import AUXILIARY

from .guides import _check_scale, _layout, _site_point_masses

__all__ = ["auto_flow", "FLOWS"]

#: the flows :func:`auto_flow` builds, by name -> the flowjax constructor's name
FLOWS = {
    "block_neural_af": "block_neural_autoregressive_flow",
    "masked_autoregressive": "masked_autoregressive_flow",
    "coupling": "coupling_flow",
    "triangular_spline": "triangular_spline_flow",
    "planar": "planar_flow",
}


def _constructor(flow: str, options: dict):
    from flowjax import flows

    if flow not in FLOWS:
        raise ArgumentError(f"vi.auto_flow: flow={flow!r} is not a flow; expected one of {sorted(FLOWS)}.")
    ctor = getattr(flows, FLOWS[flow])
    allowed = [p for p in inspect.signature(ctor).parameters if p not in ("key", "base_dist", "cond_dim", "invert")]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(ctor).parameters.values())
    for k in options:
        if k not in allowed and not takes_any:
            raise ArgumentError(f"vi.auto_flow: {k!r} is not an option of flow {flow!r} (flowjax's {FLOWS[flow]}); "
                                f"its options are {allowed}. Pass the model's keyword arguments as model_kwargs=.")
    return ctor


def auto_flow(
    model: Any, *args: Any, flow: str = "block_neural_af", init: Any = "median", init_scale: float = 0.1,
    prefix: str = "auto", key: Any = None, model_kwargs: dict | None = None, **flow_options: Any,
) -> ppl.Model:
    """A normalising-flow guide over the model's unconstrained latent vector (module docstring).

    `flow` names the flowjax flow (:data:`FLOWS`); `flow_options` go to its constructor (e.g.
    ``flow_layers``, ``nn_block_dim``, ``nn_width``, ``knots``); the model's keyword arguments go in
    `model_kwargs`.  `key` draws the flow's initial weights (default ``jax.random.key(0)``).

    Example:
        >>> @ppl.model
        ... def banana():
        ...     x = ppl.sample("x", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(x**2, 0.5))
        >>> guide = vi.auto_flow(banana, flow="block_neural_af", nn_block_dim=4)
        >>> obj = vi.elbo(banana, guide)
        >>> params = obj.constrain(obj.init_params(jax.random.key(0)))
        >>> tr = ppl.substitute(guide, params).simulate(jax.random.key(1))
        >>> sorted(tr.choices)
        ['_aux/auto/base', 'x', 'y']
        >>> bool(jnp.isfinite(banana.log_density(tr.choices)))
        True
    """
    import flowjax.distributions as fd
    import paramax

    _check_scale(init_scale)
    kwargs = dict(model_kwargs or {})
    ctor = _constructor(flow, flow_options)
    sites, dim, loc0 = _layout(model, args, kwargs, init)
    if dim == 0:
        raise ArgumentError("vi.auto_flow: the model has no latent sites to fit.")
    if flow == "coupling" and dim < 2:
        raise ArgumentError(f"vi.auto_flow: flow='coupling' needs at least 2 latent dimensions, the model has {dim}.")
    key = jax.random.key(0) if key is None else key
    fl = ctor(key, base_dist=fd.Normal(jnp.zeros(dim)), invert=False, **flow_options)
    params, static = eqx.partition(fl.bijection, eqx.is_inexact_array,
                                   is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable))
    theta0, unravel = ravel_pytree(params)

    def auto_flow_guide(*a: Any, **k: Any) -> None:
        theta = ppl.param(f"{prefix}/flow", theta0)
        loc = ppl.param(f"{prefix}/loc", jnp.asarray(loc0))
        scale = ppl.param(f"{prefix}/scale", jnp.full((dim,), float(init_scale)), constraint=constraints.positive)
        bijection = paramax.unwrap(eqx.combine(unravel(theta), static))
        eps = ppl.sample(f"{AUXILIARY}{prefix}/base", dist.Normal(jnp.zeros(dim), 1.0).to_event(1))
        z, log_det = bijection.transform_and_log_det(eps)
        u = loc + scale * z
        _site_point_masses(sites, u, -(log_det + jnp.sum(jnp.log(scale))))

    return ppl.model(auto_flow_guide)
