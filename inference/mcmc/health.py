"""The health of an MCMC run, checked before :func:`inference.mcmc.sample` returns it.

The policy is the library's one policy (:mod:`inference._health`): a run whose draws are
useless raises :class:`~ppl.errors.InferenceFailure`; a usable run with a caveat warns with an
:class:`~ppl.errors.InferenceWarning`; either way ``run.health`` says what was found and
``run.summary()`` prints it under the table.  The checks and their stated thresholds:

- **failed** — an improper posterior or a sampler that ran away: a draw that is not finite or
  whose magnitude reaches :data:`FLOAT_LIMIT_FRACTION` of the float type's largest value, or a
  step size that does (a flat prior with no data: draws at ±3.4e38, step size 3.4e38);
- **degraded** — divergent transitions after warmup (count and share, per chain); split-R̂
  above :data:`RHAT_MAX` (two chains or more); bulk or tail ESS below :data:`ESS_MIN` (per
  site, the worst component named).

R̂ and ESS need at least 4 draws per chain; shorter runs, and sites of more than
:data:`MAX_DIAGNOSED_VALUES` values (the draws of a streamed run stay on disk), are checked for
divergences and runaway draws only.  Interrupted runs (Ctrl-C) are not checked until they are complete.

Example:
    >>> @ppl.model
    ... def m():
    ...     ppl.sample("x", dist.Normal(0.0, 1.0))
    >>> run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), m, num_warmup=100, num_samples=300,
    ...                   num_chains=2, progress=False)
    >>> run.health.status
    'ok'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ppl.errors import ModelError

from .._health import Health, enforce
from ._program import _by_suffix
from .diagnostics import Summary

__all__ = ["RHAT_MAX", "ESS_MIN", "FLOAT_LIMIT_FRACTION", "MAX_DIAGNOSED_VALUES", "run_health", "check_run", "summarize", "HealthSummary"]

#: split-R̂ above this is reported (Vehtari et al. 2021 recommend 1.01 for final results; 1.05
#: flags chains that clearly disagree without warning on every short exploratory run)
RHAT_MAX = 1.05
#: bulk or tail ESS below this (all chains together) is reported
ESS_MIN = 100.0
#: a draw or step size at this fraction of the float type's largest value has run away
FLOAT_LIMIT_FRACTION = 1e-3


#: R̂ and ESS are computed for sites of at most this many values (a streamed run's draws are
#: memory maps: larger sites are not read into memory whole; summary() computes them on request)
MAX_DIAGNOSED_VALUES = 2**25


def _runaway(name: str, v: np.ndarray) -> str | None:
    """A sentence when some value of ``v`` (chains, draws, ...) is not finite or has run off to
    the float limits, else None.  Read in blocks of draws, so memory-mapped draws stay on disk."""
    if not np.issubdtype(np.dtype(v.dtype), np.floating) or v.size == 0:
        return None
    limit = FLOAT_LIMIT_FRACTION * float(np.finfo(v.dtype).max)
    step = max(1, MAX_DIAGNOSED_VALUES // max(1, v.shape[0] * int(np.prod(v.shape[2:], dtype=int))))
    for t in range(0, v.shape[1], step):
        block = np.asarray(v[:, t:t + step])
        bad = ~np.isfinite(block) | (np.abs(block) >= limit)
        if bad.any():
            chains = sorted({int(c) for c in np.nonzero(bad.reshape(block.shape[0], -1).any(1))[0]})
            worst = block[bad].flat[0]
            return f"{name} ran off to {worst:.3g} (float limit {np.finfo(v.dtype).max:.3g}) in chain(s) {chains}"
    return None


def _worst(v: Any, pick: Any) -> float:
    """The worst finite component of ``v`` (constant components give NaN: skipped), or NaN."""
    v = np.atleast_1d(np.asarray(v, dtype=float))
    v = v[np.isfinite(v)]
    return float(pick(v)) if v.size else float("nan")


def run_health(run: Any) -> Health:
    """The :class:`~inference._health.Health` of a :class:`~inference.mcmc.Run` (see the module
    docstring for the checks and thresholds)."""
    failed, degraded, details = [], [], {}
    for name, v in run.samples.items():
        msg = _runaway(f"draws of {name!r}", v)
        if msg:
            failed.append(msg)
    ss = _by_suffix({k: np.asarray(v) for k, v in run.info.items()}, "step_size")
    for v in ss:
        msg = _runaway("the step size", v)
        if msg:
            failed.append(msg)
            break
    if failed:
        failed.append("the posterior may be improper (e.g. a flat prior with no data to bound it): "
                      "give every latent a proper prior or more data")
    div = _by_suffix({k: np.asarray(v) for k, v in run.info.items()}, "diverging")
    n = run.num_samples
    if div and n:
        counts = np.sum([np.asarray(v).sum(1) for v in div], axis=0)
        details["divergences"] = counts
        if counts.sum():
            share = ", ".join(f"chain {c}: {int(k)} ({k / n:.0%})" for c, k in enumerate(counts))
            degraded.append(f"{int(counts.sum())} divergent transitions after warmup ({share}); "
                            "the draws may be biased (reparameterise, e.g. non-centred, or raise target_accept_prob)")
    own = getattr(getattr(run, "_program", None), "kernel", None)
    if hasattr(own, "run_health"):  # a kernel's own checks (particle MCMC: a stuck chain)
        f, d, det = own.run_health(run)
        failed, degraded = failed + list(f), degraded + list(d)
        details.update(det)
    if not failed and n >= 4:
        from .diagnostics import ess_bulk, ess_tail, r_hat

        partial = {k for k, a in run.active.items() if not np.all(a)}
        for name, v in run.samples.items():
            if name in partial or not np.issubdtype(np.dtype(v.dtype), np.number) or v.size > MAX_DIAGNOSED_VALUES:
                continue
            x = np.asarray(v, dtype=float)
            if not np.size(x[0, 0]):
                continue
            if run.num_chains >= 2:
                rh = _worst(r_hat(x), np.max)
                if rh > RHAT_MAX:
                    degraded.append(f"R̂ of {name!r} is {rh:.3g} > {RHAT_MAX} (the chains disagree)")
            with np.errstate(invalid="ignore", divide="ignore"):
                e = _worst(np.minimum(ess_bulk(x), ess_tail(x)), np.min)
            if e < ESS_MIN:
                degraded.append(f"ESS of {name!r} is {e:.3g} < {ESS_MIN:g} (too few effective draws)")
    return Health("mcmc.sample", tuple(failed), tuple(degraded), details)


def check_run(run: Any) -> Any:
    """Attach ``run.health`` and apply the policy (raise when failed, warn when degraded);
    return the run.  The one hook the driver calls where a run is returned."""
    if run.interrupted:
        run.health = Health("mcmc.sample", (), ("interrupted before the end; not checked",))
        return run
    run.health = run_health(run)
    return enforce(run.health, run, stacklevel=5)


class HealthSummary(Summary):
    """A :class:`~inference.mcmc.diagnostics.Summary` whose printed table ends with the run's
    health (divergences, R̂/ESS beyond the thresholds, runaway draws)."""

    health: Health | None = None

    def __str__(self) -> str:
        table = super().__str__()
        return table if self.health is None else f"{table}\nhealth: {self.health}"


def summarize(run: Any, table: Any) -> HealthSummary:
    """``table()`` (the run's summary) with ``run.health`` attached; a run without draws is a
    :class:`~ppl.errors.ModelError` (there is nothing to summarise)."""
    if run.num_samples == 0:
        raise ModelError(
            f"Run.summary: the run holds no draws (num_samples=0, warmup {run.warmup_done} steps); "
            "run.resume(key, num_samples=...) makes some.")
    out = HealthSummary(table())
    out.health = getattr(run, "health", None)
    return out
