"""Programmable variational inference: objectives as programs, gradient estimators per site.

Write an objective as a program (:func:`objective` with :func:`sample`, densities,
:func:`expectation`, :func:`particles`); the library turns it into an unbiased gradient
estimator by surrogate losses, choosing each random choice's estimator per site
(``"reparam"``, ``"reinforce"``, ``"enum"``, ``"mvd"``, or a :class:`Strategy` registered with
:func:`register_strategy`).  Built-in objectives (ELBO, IWAE,
Rényi, VIMCO, reweighted wake-sleep, and HVI / IWHVI through :func:`marginal`) are programs in
the same language; guides are ppl models with ``ppl.param`` sites, hand-written, automatic, or
amortised with equinox networks (:func:`network`); :func:`fit` optimises with optax in one
compiled loop.  See ``docs/tutorials/vi.md`` and ``docs/design/vi.md``.

Example:
    >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
    >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
    >>> obj = vi.elbo(model, guide, strategies={"z": "reinforce"})
    >>> u = obj.init_params(jax.random.key(0), 1.0)
    >>> value, g = obj.grad(jax.random.key(1), u, 1.0, num_samples=8)
    >>> sorted(g)
    ['m']
"""

from .core import STRATEGIES, Objective, VIError, expectation, objective, particles, sample
from .strategies import ENUM, MVD, REINFORCE, REPARAM, Reinforce, Strategy, register_strategy, registered_strategies
from .fit import VIResult, fit, sample_posterior
from .guides import auto_low_rank_normal, auto_multivariate_normal, auto_normal
from .marginals import Marginal, marginal
from .guides import INIT_STRATEGIES
from .mode import MAPResult, map  # noqa: A004 - vi.map (module inference.vi.mode: a module named map would be shadowed)
from .laplace import LaplaceResult, laplace
from .pathfinder import PathfinderResult, lbfgs_inverse_hessians, pathfinder
from .psis import pareto_k
from .flows import FLOWS, auto_flow
from .networks import network, network_from_params
from .objectives import elbo, hvi, iwae, iwhvi, log_weight, p_wake, q_wake, renyi, rws, vimco, vimco_baselines
from .enum_elbo import enum_log_weight, trace_enum_elbo  # issue 14: guide-less discrete sites summed out

__all__ = [
    "STRATEGIES",
    "Strategy",
    "Reinforce",
    "REPARAM",
    "REINFORCE",
    "ENUM",
    "MVD",
    "register_strategy",
    "registered_strategies",
    "Objective",
    "VIError",
    "objective",
    "sample",
    "expectation",
    "particles",
    "marginal",
    "Marginal",
    "hvi",
    "iwhvi",
    "network",
    "network_from_params",
    "log_weight",
    "elbo",
    "iwae",
    "renyi",
    "vimco",
    "vimco_baselines",
    "p_wake",
    "q_wake",
    "rws",
    "auto_normal",
    "auto_multivariate_normal",
    "auto_low_rank_normal",
    "fit",
    "VIResult",
    "sample_posterior",
    # issue 19: MAP, Laplace, Pathfinder, guide initialisation
    "map",
    "MAPResult",
    "laplace",
    "LaplaceResult",
    "INIT_STRATEGIES",
    "pathfinder",
    "PathfinderResult",
    "lbfgs_inverse_hessians",
    "pareto_k",
    # issue 14: the ELBO with guide-less discrete sites summed out element by element
    "trace_enum_elbo",
    "enum_log_weight",
    # issue 19: normalising-flow guides
    "auto_flow",
    "FLOWS",
]
