"""Markov chain Monte Carlo: kernels, combinators, a multi-chain driver and diagnostics.

Every kernel, bound to a model with ``kernel.bind(model, args, kwargs)``, has the protocol
:class:`BoundKernel` (a pure pair ``init(key, ...) -> state`` / ``step(key, state, params) ->
(state, info)``, ``params`` its tuning) and leaves its target measure invariant; tuning during
warmup is a separate :class:`Adaptation` object (:class:`WindowAdaptation` for the gradient
kernels), paired with the kernel by :class:`Adapted` on a :class:`Chain`:

- on traces (target π ∝ p(trace), any set of addresses): :class:`MH` (a model as proposal),
  :class:`Regenerate` (prior proposal on a selection), :class:`Gibbs` (exact, finite site);
- on the unconstrained view (target π ∝ exp(−U)): :class:`RWM`, :class:`MALA`, :class:`HMC`,
  :class:`NUTS`, with Stan-style window adaptation during warmup;
- combinators: :func:`cycle`, :func:`mixture`, and :func:`block_gibbs` over address blocks
  (``Within(NUTS(), "mu")`` on continuous sites, ``Gibbs("z")`` on discrete ones).

Example:
    >>> @ppl.model
    ... def normal_mean(y):
    ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
    >>> run = mcmc.sample(jax.random.key(1), mcmc.NUTS(), normal_mean, 0.5,
    ...                   num_warmup=50, num_samples=50, num_chains=2, progress=False)
    >>> run.samples["mu"].shape
    (2, 50)
    >>> run.diagnostics["divergences"].shape
    (2,)
"""

from __future__ import annotations

from ._base import BoundBase, Kernel, MCMCInitError, metropolis_accept
from .adaptation import GradParams, WindowAdaptation
from .blocks import BlockGibbs, BlockState, Within, block_gibbs
from .combinators import Cycle, Mixture, cycle, mixture
from .diagnostics import Summary, ess_bulk, ess_tail, r_hat, summary
from .driver import Run, load, sample
from .gradient import HMC, MALA, NUTS, RWM, BoundGradient, GradState
from .protocol import Adaptation, Adapted, BoundKernel, Chain
from .trace_kernels import MH, Gibbs, Regenerate, TraceState
from .adaptation_fisher import FisherAdaptation  # issue 15: mass matrix by Fisher divergence
from .metric import LowRankMetric  # issue 15: low-rank-plus-diagonal metric

__all__ = [
    "Kernel",
    "BoundKernel",
    "BoundBase",
    "Adaptation",
    "Adapted",
    "Chain",
    "WindowAdaptation",
    "GradParams",
    "BoundGradient",
    "MCMCInitError",
    "metropolis_accept",
    "MH",
    "Regenerate",
    "Gibbs",
    "TraceState",
    "RWM",
    "MALA",
    "HMC",
    "NUTS",
    "GradState",
    "cycle",
    "BlockGibbs",
    "BlockState",
    "Within",
    "block_gibbs",
    "mixture",
    "Cycle",
    "Mixture",
    "sample",
    "load",
    "Run",
    "summary",
    "Summary",
    "r_hat",
    "ess_bulk",
    "ess_tail",
    # issue 15
    "FisherAdaptation",
    "LowRankMetric",
]
