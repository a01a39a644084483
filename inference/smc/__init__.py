"""Sequential Monte Carlo: particles, resampling schemes, blocks, and the drivers built from them.

Blocks (pure functions on :class:`Particles`; each preserves the weighted measure in expectation,
see :mod:`inference.smc.blocks`): :func:`init`, :func:`extend`, :func:`extend_model`,
:func:`reweight`, :func:`change_target`, :func:`temper`, :func:`resample`, :func:`rejuvenate`.

Resampling schemes are distributions over ancestor vectors (:class:`Multinomial`,
:class:`Systematic`, :class:`Stratified`, :class:`Residual`) with exact ``log_prob`` and
``enumerate_support``, so shipped SMC code runs under the exact enumerator of ``semantics``.

Drivers: :func:`particle_filter` (bootstrap or guided, one ``lax.scan``),
:func:`tempered_smc` (adaptive tempering, rejuvenated by any ``inference.mcmc`` gradient kernel
bound to :func:`tempered_model`),
:func:`resample_move` (sequential Bayesian updating of a static model, batch by batch).

Particle MCMC (kernels with the ``inference.mcmc`` protocol, usable with ``mcmc.sample``):
:class:`PMMH` (SMC evidence inside MH over static parameters) and :class:`ParticleGibbs`
(conditional SMC, :func:`conditional_smc`; ``ancestor_sampling=True`` for PGAS).

The particle axis is split across all local devices when there are several
(:mod:`inference.sharding`; ``PPL_SHARDING=0`` turns it off), with the same numbers for the
same key.

Example:
    >>> from inference import smc
    >>> def step(x, y):                                  # a state-space model's step
    ...     x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
    ...     ppl.sample("y", dist.Normal(x, 0.5), obs=y)
    ...     return x, None
    >>> ys = jnp.array([0.1, -0.3, 0.4])
    >>> res = smc.particle_filter(jax.random.key(0), step, 0.0, ys, num_particles=100, record="all")
    >>> res.filter_means.shape, res.sample(jax.random.key(1), 10)["step/x"].shape
    ((3,), (10, 3))
"""

from __future__ import annotations

from . import blocks, resampling
from .blocks import (
    change_target,
    extend,
    extend_model,
    init,
    init_states,
    rejuvenate,
    resample,
    resampled_log_weights,
    reweight,
    temper,
)
from .filter import SMCResult, particle_filter, trajectories
from .particles import Particles, ess, log_mean_exp, map_particles
from .resampling import (
    Multinomial,
    Residual,
    ResamplingDistribution,
    Stratified,
    Systematic,
    offspring_counts,
)
from .tempering import TemperedResult, tempered_smc, next_beta, tempered_model, temper_likelihood
from .pmcmc import PMMH, PMMHState, ParticleGibbs, PGState, conditional_smc
from .resample_move import ResampleMoveResult, resample_move, stage_args

__all__ = [
    "Particles",
    "ess",
    "log_mean_exp",
    "map_particles",
    "init",
    "init_states",
    "extend",
    "extend_model",
    "reweight",
    "change_target",
    "temper",
    "resample",
    "resampled_log_weights",
    "rejuvenate",
    "ResamplingDistribution",
    "Multinomial",
    "Systematic",
    "Stratified",
    "Residual",
    "offspring_counts",
    "SMCResult",
    "particle_filter",
    "trajectories",
    "TemperedResult",
    "tempered_smc",
    "next_beta",
    "tempered_model",
    "temper_likelihood",
    "PMMH",
    "PMMHState",
    "ParticleGibbs",
    "PGState",
    "conditional_smc",
    "ResampleMoveResult",
    "resample_move",
    "stage_args",
]
