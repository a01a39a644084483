"""Particle MCMC: particle marginal Metropolis–Hastings and particle Gibbs (conditional SMC).

Both are MCMC kernels with the protocol of :mod:`inference.mcmc.protocol` — ``kernel.bind(model,
args, kwargs)`` gives a bound kernel (a :class:`~inference.mcmc.BoundBase`: no tuning, so no
adaptation) with pure ``init(key, init=None) -> state`` and ``step(key, state, params=None) ->
(state, info)`` on an ``equinox.Module`` state, plus ``samples``, ``log_density`` and
``explain`` — so they run under ``mcmc.sample`` (chains by ``vmap``) and as blocks of bigger
samplers.  Every random choice goes through ``ppl.randomness.draw``, so the
exact enumerator runs them unchanged in tests.

**PMMH** (Andrieu, Doucet & Holenstein 2010).  Static parameters θ with prior model p(θ) and a
state-space likelihood p(y | θ) that is only available through an unbiased, nonnegative
estimate Ẑ(θ, u), u the SMC's randomness with law ψ_θ (e.g. ``particle_filter(...).log_evidence``).
The chain's state is (θ, Ẑ): the estimate at the current θ is *kept*, never recomputed.  PMMH is
exact MH on the extended space for the target

    π̄(θ, u) = p(θ) ψ_θ(u) Ẑ(θ, u) / Z,          Z = ∫ p(θ) p(y | θ) dθ,

with proposal q(θ' | θ) ψ_θ'(u'): the ratio is p(θ') Ẑ' q(θ | θ') / (p(θ) Ẑ q(θ' | θ)).  Because
E_ψθ[Ẑ] = p(y | θ), π̄ is a probability measure whose θ-marginal is the posterior
π(θ) = p(θ) p(y | θ) / Z.  So the kernel preserves π̄ exactly, and the θ-marginal of the chain
targets π(θ) for any N ≥ 1 (recomputing Ẑ at the current θ every step — "Monte Carlo within
Metropolis" — or using a biased Ẑ, e.g. from renormalised weights, breaks it).

**Particle Gibbs** (same paper).  For a state-space model ``ppl.scan(step, init, xs=ys)`` the
state is one trajectory x*_{0:T-1}.  A step runs *conditional SMC*: particle 0 is pinned to the
reference trajectory at every step and is never resampled away (its ancestor is always 0; the
others' ancestors are drawn i.i.d. from the weights, multinomial), then one trajectory is drawn
with probability W_k from the final weights and traced back through its ancestors.  The kernel
leaves the path posterior p(x_{0:T-1} | y_{0:T-1}) invariant for any N ≥ 2 (the same loop with
the reference not pinned — plain SMC followed by picking a path — does not).

Example:
    >>> def make_step(sigma):
    ...     def step(x, y):
    ...         x = ppl.sample("x", dist.Normal(x, sigma))
    ...         ppl.sample("y", dist.Normal(x, 0.5), obs=y)
    ...         return x, x
    ...     return step
    >>> @ppl.model
    ... def prior(ys):
    ...     ppl.sample("sigma", dist.LogNormal(0.0, 0.5))
    >>> ys = jnp.array([0.1, -0.3, 0.4])
    >>> def log_ev(key, theta, ys):           # an unbiased estimate of p(ys | θ)
    ...     return smc.particle_filter(key, make_step(theta["sigma"]), 0.0, ys, 16).log_evidence
    >>> run = mcmc.sample(jax.random.key(0), smc.PMMH(log_ev), prior, ys, num_warmup=5, num_samples=10,
    ...                   num_chains=2, progress=False)
    >>> run.samples["sigma"].shape
    (2, 10)
    >>> pg = smc.ParticleGibbs(init=0.0, num_particles=8, name="step").bind(make_step(1.0), (ys,))
    >>> state = pg.init(jax.random.key(1)); state, info = pg.step(jax.random.key(2), state)
    >>> state.path["step/x"].shape
    (3,)
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro import distributions as dist

import ppl
from inference.mcmc import BoundBase, Kernel, metropolis_accept
from ppl import randomness
from ppl.core import is_concrete
from ppl.errors import ArgumentError, InferenceWarning, ModelError
from ppl.model import Selection, Trace, as_model

from . import blocks
from .filter import particle_filter, trajectories
from .particles import Particles, index_particles, map_particles

__all__ = ["PMMH", "PMMHState", "ParticleGibbs", "PGState", "conditional_smc"]


def _select(pred: Any, on_true: Any, on_false: Any) -> Any:
    if is_concrete(pred):
        return on_true if bool(pred) else on_false
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


# ---------------------------------------------------------------------------------------------
# PMMH


class PMMHState(eqx.Module):
    """State of PMMH: the parameter trace (of the prior model) and the *kept* log Ẑ at it."""

    trace: Trace
    log_evidence: jax.Array


@dataclasses.dataclass(frozen=True)
class PMMH(Kernel):
    """Particle marginal Metropolis–Hastings over the latent sites of a prior model.

    Bind it to the *parameter model* p(θ) (a ``ppl.Model`` whose latent sites are θ; it may have
    observations or factors of its own) with ``bind(prior, args, kwargs)``: the parameter model
    and ``log_evidence`` are both called with the bound args (``def prior(ys): ...`` may ignore
    the data), as ``mcmc.sample(key, smc.PMMH(log_ev), prior, ys)`` does.

    Args:
        log_evidence: ``log_evidence(key, theta, *args, **kwargs) -> log Ẑ`` with ``theta`` the
            dict of θ's latent values: the log of an unbiased nonnegative estimate of p(y | θ)
            (e.g. ``particle_filter(...).log_evidence``).  Its randomness must go through
            ``ppl.randomness`` (every SMC block does).
        proposal: a model ``proposal(trace, *proposal_args)`` sampling new values of θ's sites
            under the same names (as :class:`inference.mcmc.MH`); default: redraw ``selection``
            from the prior model (an independence proposal).
        selection: the addresses redrawn by the default proposal (default: every latent site).

    Preserves the extended target π̄(θ, u) ∝ p(θ) ψ_θ(u) Ẑ(θ, u), whose θ-marginal is the
    posterior (see :mod:`inference.smc.pmcmc`); the accept coin is
    ``Bernoulli(min(1, p(θ')Ẑ'q(θ|θ') / (p(θ)Ẑ q(θ'|θ))))``.

    Example:
        >>> @ppl.model
        ... def prior(ys):
        ...     ppl.sample("sigma", dist.LogNormal(0.0, 0.5))
        >>> def log_ev(key, theta, ys):     # here exact: log N(ys; 0, sigma^2 I)
        ...     return jnp.sum(dist.Normal(0.0, theta["sigma"]).log_prob(ys))
        >>> k = smc.PMMH(log_ev).bind(prior, (jnp.array([0.1, -0.3]),))
        >>> s = k.init(jax.random.key(0)); s, info = k.step(jax.random.key(1), s)
        >>> sorted(info)
        ['accept_prob', 'accepted']
    """

    log_evidence: Callable
    proposal: Any = None
    proposal_args: tuple = ()
    selection: Any = None

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundPMMH(self, model, args, kwargs)

    def run_health(self, run: Any) -> tuple:
        """``(failed, degraded, details)`` of an ``mcmc.sample`` run of this kernel (issue 18,
        :func:`inference.smc.health.pmcmc_checks`): a chain that accepts no proposal is stuck at
        its first θ (every proposal's log Ẑ is −inf, or the estimate is far too noisy)."""
        from .health import pmcmc_checks

        return pmcmc_checks("smc.PMMH", run.info.get("accepted", np.zeros((0, 0))), "accepted",
                            "the log Ẑ estimate is −inf or too noisy at the proposals: more particles, "
                            "a better proposal or a smaller proposal step")


class _BoundPMMH(BoundBase):
    def __init__(self, kernel: PMMH, model: Any, args: tuple, kwargs: dict | None):
        self.kernel = kernel
        self.model = as_model(model)
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})

    def _log_ev(self, key, tr: Trace) -> jax.Array:
        le = jnp.asarray(self.kernel.log_evidence(key, dict(tr.latent), *self.args, **self.kwargs))
        return jnp.where(jnp.isnan(le), -jnp.inf, le)

    def init(self, key: Any, init: Any = None) -> PMMHState:
        """θ from the prior model (or the given dict of values) and a fresh log Ẑ at it."""
        k1, k2 = jax.random.split(key)
        if isinstance(init, dict):
            tr, _ = self.model.generate(k1, init, *self.args, **self.kwargs)
        elif init in (None, "prior"):
            tr = self.model.simulate(k1, *self.args, **self.kwargs)
        else:
            raise ModelError(f"PMMH starts from the prior or from a dict of values; got init={init!r}.")
        return PMMHState(tr, self._log_ev(k2, tr))

    def step(self, key: Any, state: PMMHState, params: Any = None) -> tuple[PMMHState, dict]:
        tr = state.trace
        k_fwd, k_upd, k_rev, k_ev, k_acc = jax.random.split(key, 5)
        kern = self.kernel
        if kern.proposal is None:
            sel = kern.selection
            if sel is None:
                sel = Selection(*tr.latent.keys())
            elif not isinstance(sel, Selection):
                sel = Selection(*([sel] if isinstance(sel, str) else sel))
            # the trace is run with the *bound* args (never the trace's own)
            new, w = self.model.regenerate(k_upd, tr, sel, args=self.args, kwargs=self.kwargs)
        else:
            q = as_model(kern.proposal)
            fwd = q.simulate(k_fwd, tr, *kern.proposal_args)
            new, w, _ = self.model.update(k_upd, tr, fwd.latent, args=self.args, kwargs=self.kwargs)
            rev = ppl.substitute(q, data=tr.latent, strict=False).simulate(k_rev, new, *kern.proposal_args)
            w = w + rev.log_density - fwd.log_density
        new_le = self._log_ev(k_ev, new)
        log_alpha = w + new_le - state.log_evidence
        acc, p = metropolis_accept(k_acc, log_alpha, name="smc/pmmh/accept")
        out = _select(acc, PMMHState(new, new_le), state)
        return out, {"accept_prob": jnp.asarray(p, dtype=float), "accepted": jnp.asarray(acc, dtype=bool)}

    def samples(self, state: PMMHState) -> dict:
        tr = state.trace
        return {**tr.latent, **tr.deterministic}

    def log_density(self, state: PMMHState) -> jax.Array:
        """log p(θ) + log Ẑ: the extended target's density at the state (up to ψ and Z)."""
        return state.trace.log_density + state.log_evidence

    def explain(self, state: PMMHState) -> str:
        if not bool(jnp.isfinite(state.trace.log_density)):
            return "the parameter model's log density is not finite at the initial θ"
        return f"the SMC log evidence estimate at the initial θ is {float(state.log_evidence)}"


# ---------------------------------------------------------------------------------------------
# conditional SMC and particle Gibbs


def _prefix(name: str, d: dict) -> dict:
    return {f"{name}/{k}": v for k, v in d.items()}


def _ancestor_logits(log_weights: jax.Array, log_join: jax.Array) -> jax.Array:
    """PGAS: log of the reference's ancestor probabilities, w_{t-1}^i p(x*_t, y_t | carry^i)."""
    return log_weights + log_join


def conditional_smc(
    key: Any,
    step: Any,
    init: Any,
    xs: Any,
    num_particles: int,
    reference: dict,
    *,
    name: str | None = None,
    conditional: bool = True,
    ancestor_sampling: bool = False,
    init_args: tuple = (),
) -> tuple[dict, dict]:
    """One conditional-SMC sweep (bootstrap, multinomial resampling at every t > 0) and a new path.

    `reference` maps each latent site of the step, addressed ``"<name>/<site>"`` as in
    :attr:`SMCResult.paths`, to its (T, ...) values.  Particle 0 takes the reference's values at
    every step (scored by ``generate`` with them as constraints; its weight is the likelihood,
    like the others') and keeps ancestor 0; particles 1..N-1 are drawn from the step's prior
    after their ancestors are drawn i.i.d. from the normalised weights.  Finally an index k is
    drawn with probability W_k and its trajectory traced back.

    With ``ancestor_sampling=True`` (PGAS, Lindsten, Jordan & Schön 2014) the reference's
    ancestor at each t > 0 is not fixed to 0 but drawn with probability ∝ w_{t-1}^i
    p(x*_t, y_t | carry_{t-1}^i), the weight of particle i's history joined to the reference's
    step t (``step.generate`` with the reference's choices as constraints).  This is exact when
    the step is first-order Markov in its choices: the new carry, hence the reference's future,
    depends on the old carry only through the step's density (e.g. carry = x_t).  It mixes far
    better over the early part of the path, where plain particle Gibbs degenerates onto the
    reference.

    The initial carry `init` is a value, or a ``ppl.Model`` (called with ``init_args``) whose
    return value is the initial carry: then its latent sites (under their own addresses, as in
    ``ppl.scan(step, init(*init_args), xs=xs)``) are part of the path and of `reference`;
    particle 0 takes the reference's values, the others draw x_0 from the model, and each is
    weighted by the model's observations (if any).

    Preserves: the Markov kernel reference → new path leaves p(path | y) invariant, the path
    being the step choices x_{0:T-1} (and the initial model's choices)
    (``conditional=False`` runs the unconditioned sweep, which does not — a test twin).
    Returns ``(path, info)``, info with ``log_weights`` (N,) final, ``ancestors`` (T, N) and
    ``index`` (the chosen particle).

    Example:
        >>> def step(x, y):
        ...     x = ppl.sample("x", dist.Normal(x, 1.0))
        ...     ppl.sample("y", dist.Normal(x, 0.5), obs=y)
        ...     return x, x
        >>> ys, ref = jnp.array([0.1, -0.3, 0.4]), jnp.zeros(3)
        >>> path, info = smc.conditional_smc(jax.random.key(0), step, 0.0, ys, 8, {"step/x": ref},
        ...                                  name="step", ancestor_sampling=True)
        >>> path["step/x"].shape, info["ancestors"].shape
        ((3,), (3, 8))
    """
    m = ppl.as_model(step)
    name = name or m.name
    N = int(num_particles)
    if N < 2 and conditional:
        raise ArgumentError(
            f"conditional_smc: num_particles must be at least 2 (particle 0 is the reference), got {num_particles!r}."
        )
    init_model = init if isinstance(init, ppl.Model) else None
    sites = [k[len(name) + 1:] for k in reference if k.startswith(name + "/")]
    init_sites = [k for k in reference if not k.startswith(name + "/")]
    if init_sites and init_model is None:
        raise ModelError(
            f"conditional_smc: reference addresses must start with {name + '/'!r} (the initial carry is a value); "
            f"got {sorted(init_sites)}."
        )
    T = int(np.shape(jax.tree_util.tree_leaves(xs)[0])[0])
    first = 0 if conditional else N  # particles [first, N) are free; [0, first) pinned
    n_free = N - (1 if conditional else 0)

    def free_one(k, carry, x):
        tr, lw = m.generate(k, {}, carry, x)
        return tr.retval[0], dict(tr.latent), lw

    def body(c, inp):
        carry, lw = c
        t, k, x, ref_t = inp
        k_res, k_ext, k_ref, k_as = jax.random.split(k, 4)
        # resample: the free particles' ancestors i.i.d. Categorical(W); particle 0 keeps 0
        if randomness.requires_eager() and t == 0:
            anc = jnp.arange(N, dtype=jnp.int32)
        else:
            drawn = jnp.asarray(
                randomness.draw(k_res, dist.Categorical(logits=lw), (n_free,), "smc/csmc/ancestors")
            ).astype(jnp.int32)
            if conditional and ancestor_sampling:
                logp = map_particles(lambda kk, cc: m.generate(kk, ref_t, cc, x)[1], k_ref, carry)
                a0 = randomness.draw(k_as, dist.Categorical(logits=_ancestor_logits(lw, logp)), (), "smc/csmc/ancestor0")
                drawn = jnp.concatenate([jnp.asarray(a0).astype(jnp.int32)[None], drawn])
            else:
                drawn = jnp.concatenate([jnp.zeros((N - n_free,), jnp.int32), drawn])
            if randomness.requires_eager():
                anc = drawn
            else:
                anc = jnp.where(t > 0, drawn, jnp.arange(N, dtype=jnp.int32))
        lw = jnp.where(jnp.asarray(t) > 0, jnp.full_like(lw, blocks.log_mean_exp(lw)), lw)
        carry = index_particles(carry, anc)
        # extend
        xb = jax.tree.map(lambda v: jnp.broadcast_to(v, (n_free,) + jnp.shape(v)), x)
        carry_f = jax.tree.map(lambda v: v[N - n_free:], carry)
        new_f, ch_f, inc_f = map_particles(lambda kk, cc, xx: free_one(kk, cc, xx), k_ext, carry_f, xb)
        if conditional:
            carry_0 = jax.tree.map(lambda v: v[0], carry)
            tr0, _ = m.generate(k_ref, ref_t, carry_0, x)
            new_c = jax.tree.map(lambda a, b: jnp.concatenate([jnp.asarray(a)[None], b]), tr0.retval[0], new_f)
            ch = {s: jnp.concatenate([jnp.asarray(tr0.choices[s])[None], ch_f[s]]) for s in ch_f}
            inc = jnp.concatenate([jnp.asarray(tr0.log_likelihood)[None], inc_f])
        else:
            new_c, ch, inc = new_f, ch_f, inc_f
        return (new_c, lw + inc), {"choices": ch, "ancestors": anc}

    ref = {s: jnp.asarray(reference[f"{name}/{s}"]) for s in sites}
    if init_model is None:
        carry0 = jax.tree.map(lambda v: jnp.broadcast_to(jnp.asarray(v), (N,) + jnp.shape(v)), init)
        lw0 = jnp.zeros((N,))
        k_loop, k_pick = jax.random.split(key)
        init_choices = {}
    else:
        key, k_free0, k_ref0 = jax.random.split(key, 3)
        k_loop, k_pick = jax.random.split(key)

        def init_one(kk, _):
            tr, lw = init_model.generate(kk, {}, *init_args)
            return tr.retval, dict(tr.latent), lw

        c_f, ch_f, lw_f = map_particles(init_one, k_free0, jnp.zeros((n_free,)))
        if conditional:
            tr0, _ = init_model.generate(k_ref0, {k: reference[k] for k in init_sites}, *init_args)
            carry0 = jax.tree.map(lambda a, b: jnp.concatenate([jnp.asarray(a)[None], b]), tr0.retval, c_f)
            init_choices = {k: jnp.concatenate([jnp.asarray(tr0.choices[k])[None], ch_f[k]]) for k in ch_f}
            lw0 = jnp.concatenate([jnp.asarray(tr0.log_likelihood)[None], lw_f])
        else:
            carry0, init_choices, lw0 = c_f, ch_f, lw_f
    keys = jax.random.split(k_loop, T)
    if randomness.requires_eager():
        c, recs = (carry0, lw0), []
        for t in range(T):
            c, rec = body(c, (t, keys[t], jax.tree.map(lambda v: v[t], xs), {s: v[t] for s, v in ref.items()}))
            recs.append(rec)
        hist = jax.tree.map(lambda *r: jnp.stack(r), *recs)
    else:
        c, hist = jax.lax.scan(body, (carry0, lw0), (jnp.arange(T), keys, xs, ref))
    _, lw = c
    paths = trajectories(hist["choices"], hist["ancestors"])
    idx = jnp.asarray(randomness.draw(k_pick, dist.Categorical(logits=lw), (), "smc/csmc/pick")).astype(jnp.int32)
    path = {f"{name}/{s}": v[idx] for s, v in paths.items()}
    if init_choices:
        root = _root(hist["ancestors"], idx)  # the chosen path's particle at step 0
        path.update({k: v[root] for k, v in init_choices.items()})
    return path, {"log_weights": lw, "ancestors": hist["ancestors"], "index": idx}


def _root(ancestors: jax.Array, idx: Any) -> jax.Array:
    """The index at step 0 of particle `idx`'s lineage (``ancestors[0]`` is the identity)."""
    T = ancestors.shape[0]
    if randomness.requires_eager():
        b = idx
        for t in reversed(range(T)):
            b = ancestors[t][b]
        return b
    b, _ = jax.lax.scan(lambda b, t: (ancestors[t][b], None), idx, jnp.arange(T), reverse=True)
    return b


class PGState(eqx.Module):
    """State of particle Gibbs: the retained trajectory, address -> (T, ...)."""

    path: dict


@dataclasses.dataclass(frozen=True)
class ParticleGibbs(Kernel):
    """Particle Gibbs: a conditional-SMC sweep per step; leaves p(x_{0:T-1} | y) invariant.

    Bind it to the state-space model's *step* (``step(carry, x_t) -> (carry, out)``) and its
    per-step inputs: ``ParticleGibbs(init, N).bind(step, (xs,))``; the target is
    ``ppl.scan(step, init, xs=xs, name=name)`` conditioned on its observations.  ``init`` is the
    initial carry: a value, or a ``ppl.Model`` called with ``init_args`` whose latent sites
    (x_0) then join the path.  ``init(key)`` starts from a path drawn by a particle filter with
    the same N (from the prior when ``init`` is a model).  For static parameters θ, alternate it with an MCMC move on θ given the path.
    ``ancestor_sampling=True`` gives particle Gibbs with ancestor sampling (PGAS, see
    :func:`conditional_smc`; for steps first-order Markov in their choices), which mixes well
    with far fewer particles.

    Example:
        >>> def hmm_step(prev, y):
        ...     s = ppl.sample("s", dist.Bernoulli(probs=jnp.where(prev == 1, 0.9, 0.2)))
        ...     ppl.sample("y", dist.Normal(2.0 * s, 1.0), obs=y)
        ...     return s, s
        >>> ys = jnp.array([0.1, 2.2, 1.9, -0.4])
        >>> pg = smc.ParticleGibbs(init=jnp.asarray(0), num_particles=8, name="hmm").bind(hmm_step, (ys,))
        >>> s = pg.init(jax.random.key(0)); s, info = pg.step(jax.random.key(1), s)
        >>> s.path["hmm/s"].shape
        (4,)
        >>> pgas = smc.ParticleGibbs(init=jnp.asarray(0), num_particles=4, ancestor_sampling=True)
    """

    init: Any
    num_particles: int = 16
    name: str | None = None
    ancestor_sampling: bool = False
    init_args: tuple = ()

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundPG(self, model, args, kwargs)

    def run_health(self, run: Any) -> tuple:
        """``(failed, degraded, details)`` of an ``mcmc.sample`` run of this kernel (issue 18,
        :func:`inference.smc.health.pmcmc_checks`): a chain whose sweeps always pick the
        reference trajectory never renews its path."""
        from .health import pmcmc_checks

        kept = run.info.get("kept_reference")
        moved = np.zeros((0, 0)) if kept is None else ~np.asarray(kept, dtype=bool)
        return pmcmc_checks("smc.ParticleGibbs", moved, "renewed its path",
                            "path degeneracy: more particles, or ancestor_sampling=True")

    def __hash__(self):  # the initial carry may be an array
        return hash((id(self.init), self.num_particles, self.name, self.ancestor_sampling, id(self.init_args)))


class _BoundPG(BoundBase):
    def __init__(self, kernel: ParticleGibbs, step: Any, args: tuple, kwargs: dict | None):
        if len(args) != 1 or kwargs:
            raise ModelError("ParticleGibbs binds to a step model with one argument: the per-step inputs xs.")
        self.kernel = kernel
        self.step_model = ppl.as_model(step)
        self.xs = args[0]
        self.name = kernel.name or self.step_model.name

    def init(self, key: Any, init: Any = None) -> PGState:
        if isinstance(init, dict):
            return PGState({k: jnp.asarray(v) for k, v in init.items()})
        k1, k2 = jax.random.split(key)
        if isinstance(self.kernel.init, ppl.Model):
            tr = self._whole().simulate(k1, self.xs)
            return PGState({k: v for k, v in tr.latent.items()})
        # the filter only picks the chain's first path: a low ESS there is not the chain's
        # health (that is judged on the draws), so its degraded warning is not shown; a failed
        # filter (log Ẑ = -inf) still raises
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InferenceWarning)
            res = particle_filter(k1, self.step_model, self.kernel.init, self.xs, self.kernel.num_particles, name=self.name, record=("paths",))
        return PGState(res.sample(k2))

    def step(self, key: Any, state: PGState, params: Any = None) -> tuple[PGState, dict]:
        path, info = conditional_smc(
            key, self.step_model, self.kernel.init, self.xs, self.kernel.num_particles, state.path, name=self.name,
            ancestor_sampling=self.kernel.ancestor_sampling, init_args=tuple(self.kernel.init_args),
        )
        return PGState(path), {"chosen": info["index"], "kept_reference": info["index"] == 0}

    def samples(self, state: PGState) -> dict:
        return dict(state.path)

    def _whole(self) -> ppl.Model:
        m, init, init_args = self.step_model, self.kernel.init, tuple(self.kernel.init_args)

        @ppl.model
        def whole(xs):
            c0 = init(*init_args) if isinstance(init, ppl.Model) else init
            return ppl.scan(m, c0, xs=xs, name=self.name)

        return whole

    def log_density(self, state: PGState) -> jax.Array:
        return self._whole().log_density(state.path, self.xs)

    def explain(self, state: PGState) -> str:
        return "the initial trajectory has zero density under the model"
