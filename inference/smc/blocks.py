"""The SMC blocks: pure functions on :class:`Particles`, each preserving the weighted measure.

Notation: a population denotes μ̂ = (1/N) Σ_i w_i δ_{x_i} with w_i = exp(ℓ_i) (see
:mod:`inference.smc.particles`).  "E" is the expectation over the block's own randomness.

=================  ==========================================================================
block              what it preserves
=================  ==========================================================================
``init``           E[μ̂] = γ, the model's unnormalised measure (importance sampling: prior or
                   proposal model); E[Ẑ] = Z.
``extend``         a step model p(x', y | x): E[μ̂_out(dx, dx')] = μ̂_in(dx) p(dx', y | x) — the
                   weighted measure of the longer sequence (bootstrap or user proposal).
``extend_model``   a static/sequence model whose arguments grow (the next batch of data):
                   E[μ̂_out] = μ̂_in reweighted by γ_new / γ_old, new sites from their prior.
``reweight``       deterministic: μ̂_out = μ̂_in · exp(log_increment) (``change_target``:
                   γ_new / γ_old; ``temper``: L^{β'-β}).
``resample``       E[μ̂_out] = μ̂_in exactly, and Ẑ_out = Ẑ_in (every weight set to the average).
``rejuvenate``     for a kernel K leaving π ∝ γ invariant: E[μ̂_out] = μ̂_in K, which equals γ in
                   expectation when E[μ̂_in] = γ; weights untouched.
=================  ==========================================================================

Every random choice goes through ``ppl.randomness.draw`` (model operations, the ancestor
vector, accept coins), so the same blocks run under ``jax.random`` in production and under the
exact enumerator of ``semantics`` in tests.  Per-particle work is ``vmap``-ed, or a Python loop
over particles when ``ppl.randomness.requires_eager()``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

import ppl
from ppl import randomness
from ppl.core import is_concrete
from ppl.model import Trace

from .particles import Particles, ess, index_particles, log_mean_exp, map_particles
from .resampling import ResamplingDistribution, scheme as _scheme

__all__ = [
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
]


# ---------------------------------------------------------------------------------------------
# init


def init(
    key: Any,
    model: Any,
    num_particles: int,
    *args: Any,
    proposal: Any = None,
    proposal_args: tuple | None = None,
    constraints: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Particles:
    """N particles (stacked ``ppl.Trace``s) by importance sampling; E[μ̂] = γ, the model's measure.

    Without `proposal`, each particle is ``model.generate(key, constraints, *args)``: latents from
    the prior, weight = likelihood of the observations (and constraints).  With a `proposal`
    model (called with ``proposal_args``, default the model's args), its latent choices are
    proposed and the weight is p(x, y) / q(x) (latent sites the proposal does not sample are drawn
    from the prior and cancel).
    """
    m = ppl.as_model(model)
    constraints = dict(constraints or {})
    q = None if proposal is None else ppl.as_model(proposal)
    q_args = args if proposal_args is None else tuple(proposal_args)

    def one(k):
        if q is None:
            tr, lw = m.generate(k, constraints, *args, **kwargs)
            return tr, lw
        k1, k2 = jax.random.split(k)
        qt = q.simulate(k1, *q_args)
        tr, lw = m.generate(k2, {**qt.latent, **constraints}, *args, **kwargs)
        return tr, lw - qt.log_density

    dummy = jnp.zeros((num_particles,))
    traces, lw = map_particles(lambda k, _: one(k), key, dummy, shared_key=True)
    return Particles.from_states(traces, lw)


def init_states(states: Any, num_particles: int) -> Particles:
    """N copies of a fixed initial state (e.g. a state-space model's initial carry), weight 1 each."""
    stacked = jax.tree.map(lambda v: jnp.broadcast_to(jnp.asarray(v), (num_particles,) + jnp.shape(v)), states)
    return Particles.from_states(stacked)


# ---------------------------------------------------------------------------------------------
# extend


def extend(
    key: Any,
    particles: Particles,
    step: Any,
    x: Any = None,
    *,
    proposal: Any = None,
) -> tuple[Particles, Trace]:
    """Advance a sequence model by one step: x_i → (x_i, x'_i), weights × p(x', y | x) / q(x' | x).

    `step` is a step model in ``ppl.scan`` form, ``step(carry, x) -> (new_carry, out)`` (a plain
    function calling ``ppl.sample``, or a ``ppl.Model``); the particles' states are carries.
    ``x`` is this step's input (its observation, as in ``ppl.scan(step, init, xs=ys)``).
    Without `proposal` the new latent sites are drawn from the step's prior (bootstrap filter)
    and the weight increment is the likelihood of the step's observations; a `proposal` model
    ``proposal(carry, x)`` samples the step's latent sites under the same names and the
    increment is p(x', y | x) / q(x' | x).

    Preserves: E[μ̂_out(dx, dx')] = μ̂_in(dx) p(dx', y | x) (in particular E[Ẑ_out] = E[Ẑ_in] ×
    the step's predictive likelihood, when μ̂_in is unbiased).  Returns ``(particles, traces)``
    with the stacked step traces (for the history of choices).
    """
    m = ppl.as_model(step)
    q = None if proposal is None else ppl.as_model(proposal)

    def one(k, carry):
        if q is None:
            tr, lw = m.generate(k, {}, carry, x)
        else:
            k1, k2 = jax.random.split(k)
            qt = q.simulate(k1, carry, x)
            tr, lw = m.generate(k2, qt.latent, carry, x)
            lw = lw - qt.log_density
        return tr, lw

    traces, inc = map_particles(one, key, particles.states, shared_key=True)
    new_states = _carry(traces.retval, m.name)
    return Particles(new_states, particles.log_weights + inc, particles.ancestors), traces


def _carry(retval: Any, name: str) -> Any:
    if not (isinstance(retval, tuple) and len(retval) == 2):
        raise ppl.ModelError(
            f"extend: the step model {name!r} must return (new_carry, output) like a ppl.scan step; "
            f"got {type(retval).__name__}."
        )
    return retval[0]


def extend_model(
    key: Any,
    particles: Particles,
    model: Any,
    args: tuple,
    kwargs: dict | None = None,
    constraints: Mapping[str, Any] | None = None,
) -> Particles:
    """Move trace particles to the model run with new arguments (e.g. the data so far plus a batch).

    Each trace is ``model.update``-d: old latent values are kept, sites that appear are drawn from
    their prior, and the weight is multiplied by γ_new(t') q_prior(dropped) / (γ_old(t)
    q_prior(new sites)); a latent site that becomes observed (its data arrived) counts as dropped.
    Preserves: E[μ̂_out] = γ_new (restricted to the kept sites, extended by the new ones) whenever
    E[μ̂_in] = γ_old (sequential Bayesian updating, data-tempered SMC).
    """
    m = ppl.as_model(model)
    kwargs = dict(kwargs or {})
    constraints = dict(constraints or {})
    _check_kept_shapes(m, particles, tuple(args), kwargs, constraints)

    def one(k, tr):
        # Model.update counts a latent site that the new data observes as dropped
        new, lw, _ = m.update(k, tr, constraints, args=tuple(args), kwargs=kwargs)
        return new, lw

    traces, inc = map_particles(one, key, particles.states)
    return Particles(traces, particles.log_weights + inc, particles.ancestors)


def _check_kept_shapes(m: ppl.Model, particles: Particles, args: tuple, kwargs: dict, constraints: Mapping) -> None:
    """Refuse a latent site kept by ``update`` whose shape differs under the new arguments: a
    site in a plate that grows with the data (a mixture's ``z`` in ``ppl.plate("data", len(y))``).
    ``update`` keeps the old value, which then broadcasts over the new plate elements: one value
    shared by old and new elements, scored once per element (a wrong measure, silently; issue
    14's audit found E[Ẑ]/Z = 0.43 on a two-point model).  Shapes are read abstractly."""
    from ppl.enum import _Fill
    from ppl.model import run
    from ppl.transforms import _Prototype

    old = {a: tuple(jnp.shape(v))[1:] for a, v in particles.states.latent.items()}
    new: dict = {}

    def go():  # the new latent sites' shapes, at placeholder values (no draws: nothing enumerated)
        _, sites = run(m.fn, args, kwargs, _Fill(), _Prototype())
        new.update({a: tuple(jnp.shape(r["value"])) for a, r in sites.items()
                    if r["type"] == "sample" and not r.get("is_observed", False)})
        return jnp.zeros(())

    try:
        jax.eval_shape(go)
    except Exception:  # noqa: BLE001 - not readable abstractly: update reports its own errors
        return
    for a, shape in new.items():
        if a in old and a not in constraints and shape != old[a]:
            raise ppl.ModelError(
                f"extend_model: latent site {a!r} has shape {old[a]} in the particles but {shape} "
                f"under the new arguments of model {m.name!r}: a site in a plate that grows with the data. "
                "Sequential updating keeps the old value, which would be shared by the new elements (a wrong "
                "posterior and evidence). Give each batch's latent sites their own names (one plate per batch), "
                "or run smc.tempered_smc on all the data (it sums finite discrete sites out)."
            )


# ---------------------------------------------------------------------------------------------
# reweight


def reweight(particles: Particles, log_increment: Any) -> Particles:
    """Multiply each weight by exp(log_increment(x_i)) (a function of a state, or an (N,) array).

    Deterministic: μ̂_out = μ̂_in · exp(log_increment).
    """
    if callable(log_increment):
        inc = jax.vmap(log_increment)(particles.states)
    else:
        inc = jnp.asarray(log_increment)
    return Particles(particles.states, particles.log_weights + inc, particles.ancestors)


def change_target(particles: Particles, new_log_density: Callable, old_log_density: Callable) -> Particles:
    """Reweight from target γ_old to γ_new: w_i × γ_new(x_i) / γ_old(x_i).

    Preserves: E[μ̂_in] = γ_old ⇒ E[μ̂_out] = γ_new (on the support of γ_old).
    """
    return reweight(particles, lambda x: new_log_density(x) - old_log_density(x))


def temper(particles: Particles, log_likelihood: Callable, beta: Any, new_beta: Any) -> Particles:
    """Tempering p(x) L(x)^β → p(x) L(x)^β': weights × L(x)^(β' − β)."""
    return reweight(particles, lambda x: (new_beta - beta) * log_likelihood(x))


# ---------------------------------------------------------------------------------------------
# resample


def _replicated(x: jax.Array) -> jax.Array:
    """Inside a program whose particles are split across devices: ask for a full copy of the
    (N,) log weights on every device, so the scheme's cumulative sum and search run locally
    (N numbers gathered once), not as a sequence of cross-device collectives."""
    from inference import sharding

    if randomness.requires_eager() or sharding.num_devices() == 1 or is_concrete(x):
        return x
    from jax.sharding import NamedSharding, PartitionSpec

    return jax.lax.with_sharding_constraint(x, NamedSharding(sharding.mesh(), PartitionSpec()))


def resampled_log_weights(log_weights: jax.Array, ancestors: jax.Array) -> jax.Array:
    """The log weights after resampling: every particle gets the average weight (keeps Ẑ)."""
    return jnp.full_like(log_weights, log_mean_exp(log_weights))


def resample(
    key: Any,
    particles: Particles,
    scheme: Any = "systematic",
    ess_threshold: float | None = None,
    name: str = "ancestors",
) -> tuple[Particles, dict]:
    """Resample: draw an ancestor vector, copy states, set every weight to the average.

    `scheme`: "multinomial", "systematic", "stratified", "residual" (or a
    :class:`ResamplingDistribution` subclass); the ancestors are drawn with
    ``ppl.randomness.draw(key, Scheme(log_weights), name=name)``.  With ``ess_threshold`` ρ
    the population is resampled only when ESS < ρ N (otherwise returned unchanged).

    Preserves: E[μ̂_out] = μ̂_in (each scheme's expected offspring counts are N W_j) and
    Ẑ_out = Ẑ_in exactly.  Returns ``(particles, info)`` with info ``ancestors`` (identity when
    not resampled), ``resampled`` and ``ess`` (before resampling).
    """
    cls = _scheme(scheme)
    lw = _replicated(particles.log_weights)
    N = lw.shape[-1]
    e = ess(lw)
    identity = jnp.arange(N, dtype=jnp.int32)

    def do(k):
        a = jnp.asarray(randomness.draw(k, cls(lw), (), name)).astype(jnp.int32)
        return Particles(index_particles(particles.states, a), resampled_log_weights(lw, a), a)

    if ess_threshold is None:
        out = do(key)
        return out, {"ancestors": out.ancestors, "resampled": jnp.asarray(True), "ess": e}
    trigger = e < ess_threshold * N
    if is_concrete(trigger) or randomness.requires_eager():
        if bool(trigger):
            out = do(key)
            return out, {"ancestors": out.ancestors, "resampled": jnp.asarray(True), "ess": e}
        kept = Particles(particles.states, lw, identity)
        return kept, {"ancestors": identity, "resampled": jnp.asarray(False), "ess": e}
    out = jax.lax.cond(
        trigger,
        do,
        lambda k: Particles(particles.states, lw, identity),
        key,
    )
    return out, {"ancestors": out.ancestors, "resampled": trigger, "ess": e}


# ---------------------------------------------------------------------------------------------
# rejuvenate


def rejuvenate(key: Any, particles: Particles, kernel: Any, num_steps: int = 1) -> tuple[Particles, dict]:
    """Apply an MCMC kernel to every particle (``num_steps`` times); weights are unchanged.

    `kernel` is ``step(key, state) -> (state, info)`` or a bound kernel with the protocol of
    :mod:`inference.mcmc.protocol` (``kernel.bind(model, args, kwargs)``, stepped with its own
    params); trace particles are wrapped in ``inference.mcmc.TraceState`` when needed.  Valid when the kernel leaves the current target π ∝ γ invariant:
    then E[μ̂_out] = μ̂_in K, whose expectation is γ K = γ.  Returns ``(particles, info)`` with
    the last step's per-particle info.
    """
    step = kernel.step if hasattr(kernel, "step") else kernel
    wrap = isinstance(particles.states, Trace) and hasattr(kernel, "step")
    if wrap:
        from inference.mcmc import TraceState

    def one(k, state):
        s = TraceState(state) if wrap else state
        info = {}
        for k_i in jax.random.split(k, num_steps):
            s, info = step(k_i, s)
        return (s.trace if wrap else s), info

    states, info = map_particles(one, key, particles.states)
    return Particles(states, particles.log_weights, particles.ancestors), info
