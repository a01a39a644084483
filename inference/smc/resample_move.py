"""Resample-move SMC for static models: sequential Bayesian updating, batch by batch.

Data-tempered SMC (Gilks & Berzuini 2001, Chopin 2002) moves a population through the
posteriors of a static model given growing data, γ_k(x) = p(x, y_{1:k}).  Built only from the
blocks:

    init(γ_0)                                   importance sampling from the prior
    for k = 1..K-1:   extend_model(γ_{k-1} → γ_k)     weights × p(y_k | x, y_{<k}) (new sites
                                                      from their prior)
                      resample                        (always, or when ESS < ρN)
                      rejuvenate(K_k)                 an MCMC kernel leaving γ_k invariant

Each block preserves the weighted measure in expectation (see :mod:`inference.smc.blocks`), so
E[μ̂_K] = γ_K and E[Ẑ] = p(y_{1:K}) exactly for any N, scheme and kernel that leaves its stage's
target invariant; log Ẑ after each stage estimates log p(y_{1:k}).
"""

from __future__ import annotations

from typing import Any, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.checks import validate, whole_number
from ppl.errors import ArgumentError
from inference._calling import is_algorithm, reject_unknown
from inference._health import checkable, enforce
from inference._result import WeightedDraws

from . import blocks
from .particles import Particles

__all__ = ["ResampleMoveResult", "resample_move", "stage_args"]


class ResampleMoveResult(WeightedDraws, eqx.Module):
    """Output of :func:`resample_move`; a :class:`inference._result.Result` whose ``draws`` are
    the latent sites of the final particles' traces (weighted by ``weights``), ``info`` the log
    evidence and the per-stage histories.

    Attributes:
        particles: the final population (states: stacked ``ppl.Trace``s of the last stage).
        log_evidence: log Ẑ, the log of an unbiased estimate of p(y_{1:K}).
        log_evidence_history: (K,) log Ẑ after each stage (estimates of p(y_{1:k})).
        ess: (K,) ESS after each stage's reweighting (before resampling).
        acceptance: (K,) mean acceptance probability of each stage's rejuvenation (NaN if none).
        health: (property) what the checks found: :func:`inference.smc.health.resample_move_health`.
    """

    particles: Particles
    log_evidence: jax.Array
    log_evidence_history: jax.Array
    ess: jax.Array
    acceptance: jax.Array

    @property
    def health(self) -> Any:
        """The result's :class:`~inference._health.Health` (evidence finite, minimum ESS; issue 18)."""
        from .health import resample_move_health

        return resample_move_health(self)

    def _draws(self) -> dict:
        return dict(self.particles.states.latent)

    def _log_weights(self) -> Any:
        return self.particles.log_weights

    def _info(self) -> dict:
        return {"log_evidence": self.log_evidence, "log_evidence_history": self.log_evidence_history,
                "ess": self.ess, "acceptance": self.acceptance}

    def sample(self, key: Any, num_samples: int | None = None) -> dict:
        """Posterior draws of the latent sites (particles picked with probability W_i)."""
        return self.particles.sample(key, num_samples).latent


def _concat(batches: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *bs: jnp.concatenate([jnp.asarray(b) for b in bs], axis=0), *batches)


def stage_args(data_batches: Sequence[Any], args: tuple = ()) -> list[tuple]:
    """The model's arguments at each stage: ``(*args, data so far)``, batches concatenated on axis 0
    (a batch may be a pytree, e.g. ``(X, y)``)."""
    return [tuple(args) + (_concat(data_batches[: k + 1]),) for k in range(len(data_batches))]


def resample_move(
    key: Any,
    model: Any,
    data_batches: Sequence[Any],
    num_particles: int,
    kernel: Any = None,
    *,
    args: tuple = (),
    kwargs: dict | None = None,
    stages: Sequence[tuple] | None = None,
    scheme: Any = "systematic",
    ess_threshold: float | None = None,
    num_mcmc_steps: int = 1,
    **unknown: Any,
) -> ResampleMoveResult:
    """Sequential Bayesian updating of ``model(*args, data_so_far, **kwargs)``, one batch at a time.

    Args:
        key: a ``jax.random`` key.
        model: a static ``ppl.Model`` whose last positional argument is the data seen so far.
        data_batches: a list of K batches (arrays or pytrees, leading axis = observations); stage
            k runs the model with batches 0..k concatenated.
        num_particles: N.
        kernel: an ``inference.mcmc`` trace kernel (``mcmc.Gibbs("z")``, ``mcmc.Regenerate("mu")``,
            ``mcmc.MH(proposal)``, a ``cycle`` of them), bound to each stage's model; or a
            function ``args -> step`` returning a ``step(key, TraceState)``; or None (no move).
        stages: the model's argument tuples per stage instead of ``data_batches`` (any sequence
            of targets, e.g. growing masks); ``data_batches`` is then ignored.
        scheme: the resampling scheme (default: systematic, at every stage).
        ess_threshold: resample when the ESS falls below this fraction of N.
        num_mcmc_steps: kernel steps per particle per stage.

    Preserves: E[(1/N) Σ w_i δ_{x_i}] = p(x, y_{1:K}) and E[Ẑ] = p(y_{1:K}) (exactly, for any N).
    Stages have different shapes, so the stage loop is a Python loop (``jit`` the whole call to
    compile it once).

    Also callable in the library's one calling convention, kernel before model:
    ``resample_move(key, kernel, model, data_batches, num_particles)``.

    Example:
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     with ppl.plate("data", y.shape[0]):
        ...         ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> y = jnp.array([0.3, 1.1, -0.4, 0.8, 0.1])
        >>> res = smc.resample_move(jax.random.key(0), mcmc.Regenerate("mu"), normal_mean, [y[:2], y[2:4], y[4:]], 200)
        >>> res.sample(jax.random.key(1), 100)["mu"].shape, bool(jnp.isfinite(res.log_evidence))
        ((100,), True)
    """
    reject_unknown("smc.resample_move", resample_move, unknown)  # a typo'd option, by name
    if is_algorithm(model):  # the conventional order: (key, kernel, model, data_batches, num_particles)
        kernel, model, data_batches, num_particles = model, data_batches, num_particles, kernel
    validate("resample_move", key)  # issue 18: the one check of keys and counts
    _check_trace_kernel(kernel)
    whole_number("resample_move", "num_particles", num_particles, 1)
    m = ppl.as_model(model)
    kwargs = dict(kwargs or {})
    stage_list = list(stages) if stages is not None else stage_args(data_batches, args)
    if not stage_list:
        raise ArgumentError("resample_move: no stages (pass at least one data batch; got none).")
    K = len(stage_list)
    keys = jax.random.split(key, 3 * K + 1)
    p = blocks.init(keys[0], m, num_particles, *stage_list[0], **kwargs)
    hist, esss, accs = [p.log_evidence], [p.ess], [jnp.asarray(jnp.nan)]
    for k in range(1, K):
        k_ext, k_res, k_mv = keys[3 * k - 2: 3 * k + 1]
        # traces carry the stage's args from here on (kernels read them from the trace)
        p = blocks.extend_model(k_ext, p, m, stage_list[k], kwargs)
        esss.append(p.ess)
        p, _ = blocks.resample(k_res, p, scheme, ess_threshold=ess_threshold)
        acc = jnp.asarray(jnp.nan)
        if kernel is not None:
            if hasattr(kernel, "bind"):
                step = kernel.bind(m, stage_list[k], kwargs)
            else:
                step = kernel(stage_list[k])
            p, info = blocks.rejuvenate(k_mv, p, step, num_steps=num_mcmc_steps)
            if isinstance(info, dict) and "accept_prob" in info:
                acc = jnp.mean(info["accept_prob"])
        accs.append(acc)
        hist.append(p.log_evidence)
    res = ResampleMoveResult(p, p.log_evidence, jnp.stack(hist), jnp.stack(esss), jnp.stack(accs))
    return enforce(res.health, res) if checkable(res.log_evidence) else res  # issue 18: raise or warn


def _check_trace_kernel(kernel: Any) -> None:
    """Resample-move moves *trace* particles; a gradient kernel (RWM, MALA, HMC, NUTS) steps a
    chain on the unconstrained vector and has no trace to move (it used to fail deep inside with
    an AttributeError).  Refuse it by name and say what works."""
    from inference.mcmc.gradient import _GradientKernel

    if isinstance(kernel, _GradientKernel):
        raise ArgumentError(
            f"smc.resample_move: kernel={type(kernel).__name__}(...) is a gradient kernel on the "
            "unconstrained vector; resample-move moves trace particles and needs a trace kernel: "
            "mcmc.Regenerate(site), mcmc.MH(proposal), mcmc.Gibbs(site) or a cycle of them. For "
            "gradient moves on a static model use smc.tempered_smc(key, kernel, model, *args)."
        )

