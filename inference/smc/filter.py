"""Particle filters for state-space models, built only from the blocks.

A state-space model is given as a ``ppl.scan`` step, ``step(carry, x_t) -> (carry, out)``, and an
initial carry (a value, or a ``ppl.Model`` whose return value is the initial carry, e.g. a draw
of x_0).  The model the filter targets is exactly ``ppl.scan(step, init, xs=xs, name=name)``:

    for t = 0..T-1:   [resample (t > 0, always or when ESS < ρN)]  →  extend(step, xs[t])

The time loop is one ``lax.scan`` over steps 1..T-1 after step 0 (a Python loop over the same
body under an eager interpreter, so the exact enumerator sees every draw).  Each step's draws are
made for the whole population at once (one ``jax.random`` call per site, see
:func:`~inference.smc.particles.shared_key_draws`), and only the records asked for with
``record=`` are kept, so the filter costs what a hand-written JAX filter costs.  The final population's genealogies are
properly weighted for the joint smoothing measure p(x_{0:T-1}, y_{0:T-1}), and
Ẑ = (1/N) Σ w_i is an unbiased estimate of p(y_{0:T-1}).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from inference._calling import reject_unknown
from inference._health import checkable, enforce
from inference._result import WeightedDraws
from ppl import config as ppl_config
from ppl import randomness
from ppl.checks import validate
from ppl.errors import ArgumentError

from . import blocks
from .particles import Particles, index_particles

__all__ = ["SMCResult", "particle_filter", "trajectories", "RECORDS", "DEFAULT_RECORD"]


#: what :func:`particle_filter` can record at every step
RECORDS = ("log_evidence", "ess", "resampled", "filter_means", "ancestors", "paths")
#: the default: per-step scalars and filtering means (cheap); genealogies are opt-in
DEFAULT_RECORD = ("log_evidence", "ess", "resampled", "filter_means")


def _records(record: Any) -> frozenset:
    if record is None:
        return frozenset()
    if isinstance(record, str):
        record = RECORDS if record == "all" else (record,)
    out = frozenset(record)
    bad = sorted(out - set(RECORDS))
    if bad:
        raise ArgumentError(f"particle_filter: record= got unknown entries {bad}; use 'all', None or a subset of {list(RECORDS)}.")
    return out


class SMCResult(WeightedDraws, eqx.Module):
    """The output of an SMC driver; a :class:`inference._result.Result`.

    Fields not asked for with ``record=`` are ``None``.  The result protocol: ``draws`` is
    ``paths`` (``{}`` when not recorded), ``weights``/``log_weights`` the final particles',
    ``info`` the log evidence and the recorded histories, ``predictive`` and ``to_arviz`` (need
    ``paths``).

    Attributes:
        particles: the final weighted population (states: final carries, or traces).
        log_evidence: log Ẑ, the log of an unbiased estimate of the evidence.
        log_evidence_history: (T,) log Ẑ after each step (an unbiased estimate of p(y_{0:t})).
        ess: (T,) effective sample size before each step's resampling decision.
        resampled: (T,) whether the population was resampled at the start of each step.
        ancestors: (T, N) parent indices chosen at the start of each step (identity if none).
        paths: address -> (N, T, ...) each final particle's trajectory of latent choices
            (its genealogy traced back through ``ancestors``), addresses ``"<name>/<site>"``.
        filter_means: (T, ...) self-normalised filtering mean of the carry after each step.
        health: (property) what the checks found: :func:`inference.smc.health.filter_health`.
    """

    particles: Particles
    log_evidence: jax.Array
    log_evidence_history: Any = None
    ess: Any = None
    resampled: Any = None
    ancestors: Any = None
    paths: Any = None
    filter_means: Any = None

    @property
    def health(self) -> Any:
        """The result's :class:`~inference._health.Health` (evidence finite, minimum ESS; issue 18)."""
        from .health import filter_health

        return filter_health(self)

    def _need_paths(self, what: str) -> dict:
        if self.paths is None:
            raise ArgumentError(
                f"SMCResult.{what}: the paths were not recorded; run particle_filter with "
                "record='all' (or a record= tuple containing 'paths')."
            )
        return self.paths

    def _draws(self) -> dict:
        return dict(self.paths) if self.paths is not None else {}

    def _log_weights(self) -> Any:
        return self.particles.log_weights

    def _info(self) -> dict:
        return {"log_evidence": self.log_evidence, "log_evidence_history": self.log_evidence_history,
                "ess": self.ess, "resampled": self.resampled, "ancestors": self.ancestors,
                "filter_means": self.filter_means}

    def predictive(self, key: Any, model: Any, *args: Any, num_samples: int | None = None, **kwargs: Any) -> dict:
        """Posterior predictive draws of ``model(*args, **kwargs)`` given the paths resampled by
        weight (``num_samples``, default N).  Needs ``record`` to include ``"paths"``."""
        self._need_paths("predictive")
        return super().predictive(key, model, *args, num_samples=num_samples, **kwargs)

    def to_arviz(self, key: Any = None, num_samples: int | None = None, **kw: Any) -> Any:
        """ArviZ data of the paths (see :meth:`inference._result.WeightedDraws.to_arviz`, which
        takes ``model=``, ``args=``, ``kwargs=``, ``coords=``, ``dims=``).  Needs ``record`` to
        include ``"paths"``."""
        self._need_paths("to_arviz")
        return super().to_arviz(key, num_samples, **kw)

    def sample(self, key: Any, num_samples: int | None = None) -> dict:
        """Draws from the (approximate) posterior over paths: trajectories picked w.p. W_i.

        Needs ``record`` to include ``"paths"``.
        """
        paths = self._need_paths("sample")
        shape = () if num_samples is None else (int(num_samples),)
        idx = jax.random.categorical(key, self.particles.log_weights, shape=shape)
        return jax.tree.map(lambda v: v[idx], paths)

    def weighted_paths(self) -> list:
        """[(path dict, log weight / N)] per particle: the population's weighted measure (eager)."""
        paths = self._need_paths("weighted_paths")
        N = self.particles.num_particles
        lw = np.asarray(self.particles.log_weights) - np.log(N)
        return [({k: np.asarray(v[i]) for k, v in paths.items()}, float(lw[i])) for i in range(N)]


def trajectories(choices: dict, ancestors: jax.Array) -> dict:
    """Trace each final particle back through the ancestors: address -> (N, T, ...).

    ``choices[a]`` is (T, N, ...) (step t's choices of the particles at step t) and
    ``ancestors[t]`` maps particles at step t to their parents at step t − 1.
    """
    ancestors = jnp.asarray(ancestors, dtype=jnp.int32)  # int64 indices (x64) would break the scan's carry
    T, N = ancestors.shape
    last = jnp.arange(N, dtype=jnp.int32)

    def back(b, t):
        # b: indices at step t of the lineages of the final particles
        here = jax.tree.map(lambda v: v[t][b], choices)
        return ancestors[t][b], here

    if randomness.requires_eager() or T == 0:
        out, b = [], last
        for t in reversed(range(T)):
            b, here = back(b, t)
            out.append(here)
        out = out[::-1]
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *out) if out else choices
    else:
        _, stacked = jax.lax.scan(back, last, jnp.arange(T), reverse=True)
    return jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), stacked)


def _weighted_mean(particles: Particles, states: Any) -> Any:
    W = particles.weights
    return jax.tree.map(lambda v: jnp.tensordot(W, jnp.asarray(v, dtype=W.dtype), axes=(0, 0)), states)


def particle_filter(
    key: Any,
    step: Any,
    init: Any,
    xs: Any,
    num_particles: int,
    *,
    proposal: Any = None,
    scheme: Any = "systematic",
    ess_threshold: float | None = None,
    init_args: tuple = (),
    name: str | None = None,
    record: Any = DEFAULT_RECORD,
    **unknown: Any,
) -> SMCResult:
    """Bootstrap (or guided) particle filter for ``ppl.scan(step, init, xs=xs, name=name)``.

    Args:
        key: a ``jax.random`` key.
        step: the step model ``step(carry, x_t) -> (carry, out)`` (plain function or Model).
        init: the initial carry (a pytree), or a ``ppl.Model`` called with ``init_args`` whose
            return value is the initial carry (its observations, if any, weight the particles).
        xs: the per-step inputs (observations), leading time axis T ≥ 1.
        num_particles: N.
        proposal: optional model ``proposal(carry, x_t)`` sampling the step's latent sites
            (default: the step's prior, the bootstrap filter).
        scheme: resampling scheme name or :class:`~inference.smc.ResamplingDistribution` class.
        ess_threshold: resample only when ESS < ρ N (default: resample at every step t > 0).
        init_args: arguments of `init` when it is a model.
        name: the address prefix of the paths (default: the step function's name).
        record: what to keep per step, a subset of ``"log_evidence"``, ``"ess"``,
            ``"resampled"``, ``"filter_means"``, ``"ancestors"``, ``"paths"`` (or ``"all"``, or
            ``None`` for nothing).  The default keeps the per-step scalars and filtering means;
            the genealogy (``"ancestors"``, ``"paths"``: N·T values per site, and the trace-back)
            is opt-in.  What is recorded never changes the draws.

    Returns:
        An :class:`SMCResult`.  Unbiased: E[Ẑ] = p(y); properly weighted: E[(1/N) Σ_i w_i
        δ_{path_i}] = p(x_{0:T-1}, y_{0:T-1}).

    The particle axis is laid out across all devices when there are several
    (:mod:`inference.sharding`); resampling gathers across them, so the numbers are those of
    one device for the same key.

    Example:
        >>> def step(x, y):
        ...     x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
        ...     ppl.sample("y", dist.Normal(x, 0.5), obs=y)
        ...     return x, None
        >>> ys = jnp.array([0.1, -0.3, 0.4])
        >>> res = particle_filter(jax.random.key(0), step, 0.0, ys, 100, record="all")
        >>> bool(jnp.isfinite(res.log_evidence)), res.filter_means.shape, res.paths["step/x"].shape
        (True, (3,), (100, 3))
        >>> res.sample(jax.random.key(1), 10)["step/x"].shape     # paths picked with probability W_i
        (10, 3)
    """
    from inference import sharding

    reject_unknown("smc.particle_filter", particle_filter, unknown)  # a typo'd option, by name
    ppl_config.ensure_compilation_cache()  # the scan below compiles (outside jit too)
    validate("smc.particle_filter", key, num_particles=(num_particles, 1))  # issue 18
    rec = _records(record)
    m = ppl.as_model(step)
    name = name or m.name
    N = int(num_particles)
    leaves = jax.tree_util.tree_leaves(xs)
    if not leaves or np.ndim(leaves[0]) == 0 or int(np.shape(leaves[0])[0]) == 0:
        raise ArgumentError(
            "particle_filter: xs must have a leading time axis with at least one step; got "
            + (f"shape {np.shape(leaves[0])}" if leaves else "no arrays")
            + "."
        )
    eager = randomness.requires_eager()
    settings = (N, proposal, scheme, ess_threshold, tuple(sorted(rec)), name)
    if eager:  # a randomness that needs eager evaluation: the loop runs step by step
        res = _filter(key, m, init, xs, tuple(init_args), *settings, eager=True)
    else:
        res = _cached_filter(key, step, m, init, xs, tuple(init_args), settings)
    return enforce(res.health, res) if checkable(res.log_evidence) else res  # issue 18: raise or warn


def _cached_filter(key: Any, owner: Any, m: Any, init: Any, xs: Any, init_args: tuple, settings: tuple) -> "SMCResult":
    """The filter as one compiled program per (step model, init model, settings, shapes):
    repeated calls (a PMMH log-likelihood, a notebook cell run again) compile nothing.  NumPy
    arguments the models need concrete are handled as in the other drivers
    (:mod:`inference._run.concrete`)."""
    from inference import sharding
    from inference._run.cache import PROGRAMS
    from inference._run.concrete import join, split, with_concrete_retry

    init_model = init if isinstance(init, ppl.Model) else None
    tree = (xs, None if init_model is not None else init, init_args)
    models = [m] + ([init_model] if init_model is not None else [])

    def attempt(concrete: bool):
        treedef, statics, dyn = split(tree, concrete)

        def program():
            def run(k, d):
                xs_, init_, args_ = join(treedef, statics, d)
                return _filter(k, m, init_model if init_model is not None else init_, xs_, args_, *settings, eager=False)

            return jax.jit(run)

        try:
            key_ = ("smc.particle_filter", _filter, init_model, treedef, statics, sharding.num_devices()) + settings
            run = PROGRAMS.get(owner, key_, program)  # the user's step (a plain function is wrapped anew per call)
        except TypeError:  # an unhashable option or argument: traced without caching
            run = program()
        return run(key, dyn)

    return with_concrete_retry(models, tree, attempt)


def _filter(key, m, init, xs, init_args, N, proposal, scheme, ess_threshold, rec, name, eager) -> "SMCResult":
    """The body of :func:`particle_filter` (checked arguments; ``eager`` steps in Python)."""
    from inference import sharding

    leaves = jax.tree_util.tree_leaves(xs)
    T = int(np.shape(leaves[0])[0])
    constrain = (lambda p: p) if eager else sharding.constrain_batch
    k_init, k_loop = jax.random.split(key)
    if isinstance(init, ppl.Model):
        p0 = blocks.init(k_init, init, N, *init_args)
        particles = Particles(p0.states.retval, p0.log_weights, p0.ancestors)
    else:
        particles = blocks.init_states(init, N)
    particles = constrain(particles)
    identity = jnp.arange(N, dtype=jnp.int32)

    def body(p, t, k, x, first):
        k_res, k_ext = jax.random.split(k)
        if first:
            e, resampled = p.ess, jnp.asarray(False)
            p = Particles(p.states, p.log_weights, identity)
        elif eager or ess_threshold is not None:
            p, info = blocks.resample(k_res, p, scheme, ess_threshold=ess_threshold)
            e, resampled = info["ess"], info["resampled"]
        else:
            e, resampled = p.ess, jnp.asarray(True)
            p, _ = blocks.resample(k_res, p, scheme)
        p = constrain(p)
        p, traces = blocks.extend(k_ext, p, m, x, proposal=proposal)
        p = constrain(p)
        out = {}
        if "paths" in rec:
            out["choices"] = dict(traces.latent)
        if "paths" in rec or "ancestors" in rec:
            out["ancestors"] = p.ancestors
        if "resampled" in rec:
            out["resampled"] = resampled
        if "ess" in rec:
            out["ess"] = e
        if "log_evidence" in rec:
            out["log_evidence"] = p.log_evidence
        if "filter_means" in rec:
            out["mean"] = _weighted_mean(p, p.states)
        return p, out

    keys = jax.random.split(k_loop, T)
    x_at = lambda t: jax.tree.map(lambda v: v[t], xs)  # noqa: E731
    if eager:
        recs = []
        for t in range(T):
            particles, r = body(particles, t, keys[t], x_at(t), t == 0)
            recs.append(r)
        hist = jax.tree.map(lambda *r: jnp.stack(r), *recs)
    else:
        # step 0 outside the scan (no resampling), so the loop body resamples unconditionally
        particles, r0 = body(particles, 0, keys[0], x_at(0), True)
        if T > 1:
            rest = jax.tree.map(lambda v: v[1:], xs)
            particles, hist = jax.lax.scan(
                lambda p, inp: body(p, None, inp[0], inp[1], False), particles, (keys[1:], rest)
            )
            hist = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), r0, hist)
        else:
            hist = jax.tree.map(lambda a: a[None], r0)
    paths = None
    if "paths" in rec:
        paths = trajectories(hist["choices"], hist["ancestors"])
        paths = {f"{name}/{k}": v for k, v in paths.items()}
    res = SMCResult(
        particles=particles,
        log_evidence=particles.log_evidence,
        log_evidence_history=hist.get("log_evidence"),
        ess=hist.get("ess"),
        resampled=hist.get("resampled"),
        ancestors=hist.get("ancestors") if ("ancestors" in rec or "paths" in rec) else None,
        paths=paths,
        filter_means=hist.get("mean"),
    )
    return res
