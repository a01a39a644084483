"""The health of SMC results (:func:`~inference.smc.tempered_smc`, :func:`~inference.smc.particle_filter`).

The library's one policy (:mod:`inference._health`): **failed** — the evidence estimate log Ẑ
is −inf or NaN (every particle has weight zero: an impossible observation, a likelihood that is
zero everywhere), so the population carries no posterior at all, or the tempering forced β = 1
and collapsed onto a single particle (ESS < 1.5: every draw the same point) — raises
:class:`~ppl.errors.InferenceFailure`; **degraded** — the tempering ran out of ``max_steps`` and
forced β = 1 in one step, or the ESS fell below
:data:`~inference._health.MIN_ESS_FRACTION` of N (or below 2) — warns with an
:class:`~ppl.errors.InferenceWarning`.  ``result.health`` is readable on any concrete result.

Example:
    >>> def step(x, y):
    ...     x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
    ...     ppl.sample("y", dist.Normal(x, 0.5), obs=y)
    ...     return x, None
    >>> res = smc.particle_filter(jax.random.key(0), step, 0.0, jnp.array([0.1, -0.3]), 100)
    >>> res.health.status, res.health.details["min_ess"] > 2
    ('ok', True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._health import MIN_ESS_FRACTION, Health

__all__ = ["tempered_health", "filter_health", "ess_floor"]


def ess_floor(num_particles: int) -> float:
    """The ESS below which a population of ``num_particles`` is degraded."""
    return max(2.0, MIN_ESS_FRACTION * num_particles)


def _evidence(who: str, log_z: Any, failed: list, where: str = "") -> None:
    z = float(np.asarray(log_z))
    if not np.isfinite(z):
        failed.append(f"log Ẑ = {z}{where}: every particle has weight zero (an impossible or NaN "
                      "observation, or a likelihood that is zero everywhere under the prior), so "
                      "the population holds no posterior")


def tempered_health(res: Any) -> Health:
    """Health of a :class:`~inference.smc.TemperedResult`: reached β = 1 by its own criterion,
    minimum ESS over the steps taken, evidence finite."""
    N = int(np.shape(np.asarray(res.particles.log_weights))[-1])
    n = int(np.asarray(res.num_steps))
    ess = np.asarray(res.ess)[:n]
    betas = np.asarray(res.betas)[:n]
    forced = bool(np.asarray(res.forced)) if res.forced is not None else False
    min_ess = float(np.nanmin(ess)) if ess.size and not np.all(np.isnan(ess)) else float("nan")
    details = {"reached_beta_1": bool(n and betas[-1] >= 1.0 and not forced), "forced_beta_1": forced,
               "min_ess": min_ess, "num_particles": N, "log_evidence": float(np.asarray(res.log_evidence))}
    failed: list = []
    degraded: list = []
    _evidence("smc.tempered_smc", res.log_evidence, failed)
    if np.isnan(min_ess) and not failed:
        failed.append("the ESS is NaN: the weights are NaN")
    if forced:
        prev = float(betas[-2]) if n >= 2 else 0.0
        # forced and collapsed onto one particle: every draw is the same point, not a posterior
        (failed if min_ess < 1.5 else degraded).append(
            f"max_steps={n} ran out at β = {prev:.3g}: β = 1 was forced in one step, not reached by the ESS "
            f"criterion, and the ESS fell to {min_ess:.3g} of {N} particles (raise max_steps or num_particles)")
    if min_ess < ess_floor(N) and not forced:
        degraded.append(f"the ESS fell to {min_ess:.3g} of {N} particles (step {int(np.nanargmin(ess))}): "
                        "the population collapsed onto a few particles")
    return Health("smc.tempered_smc", tuple(failed), tuple(degraded), details)


def filter_health(res: Any) -> Health:
    """Health of an :class:`~inference.smc.SMCResult` of :func:`~inference.smc.particle_filter`:
    evidence finite (the first step where it was not, when ``log_evidence`` was recorded) and
    the minimum ESS (when ``ess`` was recorded; also the final population's)."""
    N = int(np.shape(np.asarray(res.particles.log_weights))[-1])
    failed: list = []
    degraded: list = []
    where = ""
    if res.log_evidence_history is not None:
        h = np.asarray(res.log_evidence_history)
        bad = ~np.isfinite(h)
        if bad.any():
            where = f" from step {int(np.argmax(bad))} on"
    _evidence("smc.particle_filter", res.log_evidence, failed, where)
    ess = [float(np.asarray(res.particles.ess))]
    if res.ess is not None:
        ess += [float(e) for e in np.asarray(res.ess)[1:]]
    min_ess = float(np.nanmin(ess)) if not np.all(np.isnan(ess)) else float("nan")
    if not failed and min_ess < ess_floor(N):
        degraded.append(f"the ESS fell to {min_ess:.3g} of {N} particles: the population collapsed onto "
                        "a few particles (more particles, or a better proposal)")
    details = {"min_ess": min_ess, "num_particles": N, "log_evidence": float(np.asarray(res.log_evidence))}
    return Health("smc.particle_filter", tuple(failed), tuple(degraded), details)


# ---------------------------------------------------------------------------------------------
# issue 18 follow-up (f18): resample-move SMC and particle MCMC, by the same policy


def resample_move_health(res: Any) -> Health:
    """Health of a :class:`~inference.smc.ResampleMoveResult`: evidence finite (the first stage
    where it was not is named) and the minimum ESS over the stages' reweightings."""
    N = int(np.shape(np.asarray(res.particles.log_weights))[-1])
    failed: list = []
    degraded: list = []
    h = np.asarray(res.log_evidence_history)
    bad = ~np.isfinite(h)
    _evidence("smc.resample_move", res.log_evidence, failed, f" from stage {int(np.argmax(bad))} on" if bad.any() else "")
    ess = np.asarray(res.ess, dtype=float)
    min_ess = float(np.nanmin(ess)) if ess.size and not np.all(np.isnan(ess)) else float("nan")
    if not failed and min_ess < ess_floor(N):
        degraded.append(f"the ESS fell to {min_ess:.3g} of {N} particles (stage {int(np.nanargmin(ess))}): the "
                        "population collapsed onto a few particles (more particles, smaller batches or more moves)")
    details = {"min_ess": min_ess, "num_particles": N, "log_evidence": float(np.asarray(res.log_evidence))}
    return Health("smc.resample_move", tuple(failed), tuple(degraded), details)


#: a particle-MCMC chain accepting (PMMH) or renewing its path (particle Gibbs) in less than
#: this share of its steps is degraded; a chain that never did is stuck at its first state
PMCMC_MIN_MOVE_SHARE = 0.01
#: the stuck-chain check needs at least this many draws per chain
PMCMC_MIN_DRAWS = 20


def pmcmc_checks(who: str, moved: Any, what: str, remedy: str) -> tuple[tuple, tuple, dict]:
    """``(failed, degraded, details)`` of particle-MCMC chains from ``moved`` (chains, draws):
    whether each step moved the chain.  Every chain stuck (never moved in at least
    :data:`PMCMC_MIN_DRAWS` draws) fails — every draw is the chain's first state; some chains
    stuck, or a chain moving in less than :data:`PMCMC_MIN_MOVE_SHARE` of its steps, is degraded."""
    moved = np.asarray(moved, dtype=bool)
    if moved.ndim != 2 or moved.shape[1] < PMCMC_MIN_DRAWS:
        return (), (), {}
    share = moved.mean(axis=1)
    details = {f"{what}_share": share}
    stuck = [int(c) for c in np.nonzero(share == 0)[0]]
    shares = ", ".join(f"chain {c}: {s:.1%}" for c, s in enumerate(share))
    msg = f"{who}: {what} in {shares} of {moved.shape[1]} draws"
    if len(stuck) == moved.shape[0]:
        return (f"{msg}: every chain is stuck at its first state, so every draw is the same point ({remedy})",), (), details
    if stuck or share.min() < PMCMC_MIN_MOVE_SHARE:
        return (), (f"{msg}: the chain(s) barely move ({remedy})",), details
    return (), (), details
