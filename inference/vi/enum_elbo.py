"""The ELBO with the model's guide-less finite discrete sites summed out, element by element
(Pyro's ``TraceEnum_ELBO`` for model-side enumeration; issue 14).

A model's finite discrete latent site that the guide does not sample (a mixture's assignment,
an HMM's state in ``ppl.scan``) is not a random choice of the objective: it is summed out of
the model's density exactly by :mod:`ppl.enum` — each plate element separately (N·K work, not
the K^N joint values of the ``"enum"`` gradient strategy, so no 4096-value limit), a scan by
the forward algorithm.  For a guide draw z ~ q_φ of the remaining latent sites the log weight is

    log w = log Σ_d p(x, z, d) − log q_φ(z)         (d: the guide-less discrete sites)

so the objective's value is the ELBO of the *marginal* model, E_q[log w] ≤ log p(x), and its
``grad`` is unbiased for ∇ ELBO (the sum over d is exact and differentiable; the guide's own
sites keep their strategies: ``"reparam"``, ``"reinforce"``, ``"enum"``, ...).  The model must
use a summed-out plated site element by element (see ``docs/design/enumeration.md``); a model
that reduces it across its plate is refused, naming the site, by ``vi.fit`` at its concrete
inputs (:func:`check_summed_out`) and whenever the objective runs with concrete data.

Example:
    >>> @ppl.model
    ... def mix(y):
    ...     mu = ppl.sample("mu", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    ...     with ppl.plate("data", y.shape[0]):
    ...         z = ppl.sample("z", dist.Bernoulli(probs=0.3))
    ...         ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y)
    >>> @ppl.model
    ... def guide(y):
    ...     loc = ppl.param("loc", jnp.array([-1.0, 1.0]))
    ...     ppl.sample("mu", dist.Normal(loc, 0.1).to_event(1))
    >>> obj = vi.trace_enum_elbo(mix, guide)
    >>> y = jnp.linspace(-2.0, 2.0, 500)       # 2^500 joint values: summed element by element
    >>> value, grads = obj.grad(jax.random.key(0), obj.init_params(jax.random.key(1), y), y)
    >>> sorted(grads), bool(jnp.isfinite(value))
    (['loc'], True)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import ppl

from .estimator import Objective
from .objectives import _check_k
from .program import particles, sample

__all__ = ["trace_enum_elbo", "enum_log_weight"]


def enum_log_weight(model: Any, tr: ppl.Trace, *args: Any, **kwargs: Any) -> Any:
    """log w = log Σ_d p(x, z, d) − log q(z) for a guide trace `tr`: its choices z scored by
    `model` with the model's other finite discrete latent sites d summed out
    (:func:`ppl.marginal_log_density`)."""
    return ppl.marginal_log_density(ppl.as_model(model), tr.choices, *args, **kwargs) - tr.log_density


def trace_enum_elbo(model: Any, guide: Any, num_particles: int = 1, strategies: dict | None = None) -> Objective:
    """The ELBO of `model` with its guide-less finite discrete latent sites summed out exactly,
    each plate element separately (a TraceEnum-style ELBO; see the module docstring).

    Its estimate is the mean of `num_particles` log weights :func:`enum_log_weight`; ``grad``
    is unbiased for its gradient (exact in the summed-out sites).  Use it with :func:`vi.fit`
    like :func:`vi.elbo`.
    """
    K = _check_k(num_particles, "trace_enum_elbo")
    m = ppl.as_model(model)

    def trace_enum_elbo_program(*args: Any, **kwargs: Any) -> Any:
        return jnp.mean(particles(K, lambda: enum_log_weight(m, sample(guide, *args, **kwargs), *args, **kwargs)))

    obj = Objective(trace_enum_elbo_program, strategies, name="trace_enum_elbo", model=model, guide=guide)
    obj.summed_out = True  # vi.fit checks the model's summed-out sites at its concrete inputs (check_summed_out)
    return obj


def check_summed_out(objective: Objective, key: Any, args: tuple, kwargs: dict) -> None:
    """Refuse an objective whose model uses a summed-out site other than element by element,
    at the concrete inputs `args`, `kwargs` (:func:`ppl.enum.check_summed_out`): the objective's
    program is traced once abstractly with them as constants, so each
    :func:`ppl.marginal_log_density` inside checks its model there, with the guide's traced
    draws replaced by concrete stand-ins (once per (model, inputs), cached).  A driver calls it
    before compiling its programs, whose inputs are traced (where the check cannot run); only
    for objectives marked ``summed_out`` (:func:`trace_enum_elbo`)."""
    if getattr(objective, "summed_out", False):
        with ppl.enum._entry_point("vi.fit(trace_enum_elbo)"):
            jax.eval_shape(lambda k: objective.init_params(k, *args, **kwargs), key)
