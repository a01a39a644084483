"""Kernels on traces: Metropolis–Hastings with a model as proposal, regenerate, exact Gibbs.

The target of every kernel here is the model's unnormalised measure over traces,
π(t) ∝ p(t) = exp(trace.log_density) (observations and factors included), on whatever set of
addresses each trace has.  All randomness goes through the model's operations and
``ppl.randomness.draw``, so the *shipped* kernels can be run under an exact enumerator.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro import distributions as dist

import ppl
from ppl import enum as _enum
from ppl import randomness
from ppl.core import is_concrete
from ppl.errors import ModelError
from ppl.model import Model, Selection, Trace, as_model

from ._base import BoundBase, Kernel, MCMCInitError, metropolis_accept, select, split

__all__ = ["TraceState", "MH", "Regenerate", "Gibbs"]


class TraceState(eqx.Module):
    """State of a trace kernel: the current trace."""

    trace: Trace


def _trace_info(accept_prob: Any, accepted: Any) -> dict:
    return {"accept_prob": jnp.asarray(accept_prob, dtype=float), "accepted": jnp.asarray(accepted, dtype=bool)}


class _BoundTraceKernel(BoundBase):
    """Shared init / samples / checks of kernels whose state is a trace (each kernel provides
    only its ``step``).

    A step targets the model at the *trace's own* arguments (``trace.args``, ``trace.kwargs``),
    which `init` sets to the bound ones; to move a population of traces to new data (SMC), first
    ``model.update`` them with the new ``args``.
    """

    def __init__(self, kernel: Kernel, model: Any, args: tuple, kwargs: dict):
        self.kernel = kernel
        self.model: Model = as_model(model)
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})

    def concrete(self, tr: Trace) -> Trace:
        """``tr`` with the bound arguments that are concrete (Python numbers, strings, concrete
        NumPy data: not JAX arrays) put back in place of the trace's copies of them, which
        ``vmap`` over chains or a ``select`` between traces turned into arrays: a plate size or
        ``np.unique`` of data in the model body sees the user's value in every step, as at init."""
        bound, treedef = jax.tree_util.tree_flatten((self.args, self.kwargs))
        if all(isinstance(v, jax.Array) for v in bound):
            return tr
        leaves, tdef = jax.tree_util.tree_flatten((tuple(tr.args), dict(tr.kwargs)))
        if tdef != treedef:  # the trace was moved to other arguments (SMC): keep them
            return tr
        leaves = [v if isinstance(b, jax.Array) else b for v, b in zip(leaves, bound)]
        args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
        return dataclasses.replace(tr, args=args, kwargs=kwargs)

    def init(self, key: Any, init: Any = None) -> TraceState:
        """A prior draw (retried while its log density is not finite), or the given values."""
        if isinstance(init, dict):
            tr, _ = self.model.generate(key, init, *self.args, **self.kwargs)
            return TraceState(tr)
        if getattr(init, "kind", None) == "prior":  # ppl.init_to_sample()
            init = "prior"
        if init not in (None, "prior"):
            raise ModelError(
                f"trace kernels start from the prior or from a dict of values; got init={init!r}."
            )

        def draw(k):
            return self.model.simulate(k, *self.args, **self.kwargs)

        k0, key = jax.random.split(key)
        tr0 = draw(k0)

        def cond(c):
            i, tr, _ = c
            return (i < 100) & ~jnp.isfinite(tr.log_density)

        def body(c):
            i, _, k = c
            k, sub = jax.random.split(k)
            return i + 1, draw(sub), k

        _, tr, _ = jax.lax.while_loop(cond, body, (0, tr0, key))
        return TraceState(tr)

    def active(self, state: TraceState) -> dict:
        """address -> whether the site exists in the state's trace, for the sites inside
        ``ppl.cond`` / ``ppl.switch`` (the others always exist)."""
        return {k: jnp.asarray(v, bool) for k, v in state.trace.active.items()}

    def samples(self, state: TraceState) -> dict:
        tr = state.trace
        return {**tr.latent, **tr.deterministic}

    def log_density(self, state: TraceState) -> jax.Array:
        return state.trace.log_density

    def explain(self, state: TraceState) -> str:
        for name, lp in state.trace.log_probs.items():
            if not bool(jnp.all(jnp.isfinite(jnp.sum(lp)))):
                v = state.trace.choices.get(name)
                return f"site {name!r} has log density {float(jnp.sum(lp))} at value {v!r}"
        return "the trace's log density is not finite"

    def step(self, key: Any, state: TraceState, params: Any = None) -> tuple[TraceState, dict]:
        """One move of the trace (trace kernels have no tuning: ``params`` is ignored)."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Metropolis–Hastings with a model as proposal


@dataclasses.dataclass(frozen=True)
class MH(Kernel):
    """Metropolis–Hastings with a *model as proposal*; leaves the model's posterior invariant.

    ``proposal(trace, *proposal_args)`` is a :class:`ppl.Model` that reads the current trace and
    samples new values for some latent addresses under the same names.  A move is

        t* ~ q(· | t)                          (the proposal's choices)
        t' = update(t, t*)                     (sites that appear are drawn from their prior,
                                                sites that disappear are dropped)
        α  = p(t') q(t_old | t') / (p(t) q(t* | t))   × prior terms of appearing/dropped sites

    with q(t_old | t') the proposal, run on t', scoring the values t had.  Sites that appear in t'
    without being proposed are drawn from their prior, and sites of t that disappear are scored
    by their prior, unless the reverse proposal samples them (then q scores them).  The move
    satisfies detailed balance w.r.t. π ∝ p whenever the reverse proposal can propose the old
    values (the addresses the proposal samples on t' are among those it changed or removed),
    also when the set of addresses changes.

    Example:
        >>> @ppl.model
        ... def coin():
        ...     z = ppl.sample("z", dist.Bernoulli(probs=0.3))
        ...     ppl.sample("y", dist.Bernoulli(probs=jnp.where(z == 1, 0.9, 0.2)), obs=1)
        >>> @ppl.model
        ... def flip(tr):
        ...     ppl.sample("z", dist.Bernoulli(probs=0.5))
        >>> run = mcmc.sample(jax.random.key(0), mcmc.MH(flip), coin, num_warmup=10, num_samples=20,
        ...                   num_chains=2, progress=False)
        >>> run.samples["z"].shape
        (2, 20)
    """

    proposal: Any
    proposal_args: tuple = ()

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundMH(self, model, args, kwargs)

    def log_accept_ratio(self, update_weight, log_q_reverse, log_q_forward):
        """log α = (update weight) + log q(old values | t') − log q(proposed values | t)."""
        return update_weight + log_q_reverse - log_q_forward


class _BoundMH(_BoundTraceKernel):
    def step(self, key, state, params=None):
        tr = self.concrete(state.trace)
        k_fwd, k_upd, k_rev, k_acc = split(key, 4)
        q = as_model(self.kernel.proposal)
        pargs = self.kernel.proposal_args
        fwd = q.simulate(k_fwd, tr, *pargs)
        proposed = fwd.latent
        new, w, discard = self.model.update(k_upd, tr, proposed)
        # reverse proposal: run q on t' with the old values substituted; it must only sample
        # addresses the move changed or removed (checked when the structure is concrete)
        rev = ppl.substitute(q, data=tr.latent, strict=False).simulate(k_rev, new, *pargs)
        if is_concrete(w):
            missing = [a for a in rev.latent if a not in discard]
            if missing:
                raise ModelError(
                    f"MH: on the proposed trace the proposal samples {missing[0]!r}, which the "
                    "move neither changed nor removed, so the reverse move cannot be scored; a "
                    "valid proposal samples, from any trace, only addresses it may change."
                )
        # `update` scores removed sites by their prior (as if the reverse move redrew them from
        # it); a removed site that the reverse proposal samples is scored by q instead.
        w = w - _removed_and_reproposed(tr, new, rev, fwd)
        log_alpha = self.kernel.log_accept_ratio(w, rev.log_density, fwd.log_density)
        acc, p = metropolis_accept(k_acc, log_alpha)
        return TraceState(select(acc, new, tr)), _trace_info(p, acc)


def _active(tr: Trace, a: str) -> jax.Array:
    if a not in tr.choices:
        return jnp.asarray(False)
    return jnp.asarray(tr.active.get(a, True))


def _removed_and_reproposed(old: Trace, new: Trace, rev: Trace, fwd: Trace) -> jax.Array:
    """Σ prior log density (in `old`) of the sites that `new` no longer has and `rev` samples.

    A site the forward proposal sampled is not "removed" (its new value was proposed), but only
    where the proposal actually sampled it: under ``jit`` a proposal with ``ppl.cond`` has every
    branch's sites in ``fwd.latent``, the untaken ones inactive.
    """
    total = jnp.zeros(())
    for a in rev.latent:
        if a not in old.latent:
            continue
        mask = _active(old, a) & ~_active(new, a) & _active(rev, a) & ~_active(fwd, a)
        total = total + jnp.where(mask, jnp.sum(old.log_probs[a]), 0.0)
    return total


# ---------------------------------------------------------------------------------------------
# regenerate


@dataclasses.dataclass(frozen=True)
class Regenerate(Kernel):
    """MH that redraws the selected addresses from their prior; leaves the posterior invariant.

    Uses ``model.regenerate``, whose weight is exactly the log acceptance ratio
    log p(t') − log p(t) − log q(redrawn/new sites of t') + log q(redrawn/removed sites of t),
    so the move satisfies detailed balance w.r.t. π ∝ p, also when redrawing a selected site
    changes which other sites exist.

    Example:
        >>> @ppl.model
        ... def coin():
        ...     z = ppl.sample("z", dist.Bernoulli(probs=0.3))
        ...     ppl.sample("y", dist.Bernoulli(probs=jnp.where(z == 1, 0.9, 0.2)), obs=1)
        >>> bound = mcmc.Regenerate("z").bind(coin)
        >>> state, info = bound.step(jax.random.key(1), bound.init(jax.random.key(0)))
        >>> sorted(info)
        ['accept_prob', 'accepted']
    """

    selection: Any

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundRegenerate(self, model, args, kwargs)


class _BoundRegenerate(_BoundTraceKernel):
    def step(self, key, state, params=None):
        tr = self.concrete(state.trace)
        k_upd, k_acc = split(key, 2)
        sel = self.kernel.selection
        if not isinstance(sel, Selection):
            sel = Selection(*([sel] if isinstance(sel, str) else sel))
        new, w = self.model.regenerate(k_upd, tr, sel)
        acc, p = metropolis_accept(k_acc, w)
        return TraceState(select(acc, new, tr)), _trace_info(p, acc)


# ---------------------------------------------------------------------------------------------
# exact Gibbs


@dataclasses.dataclass(frozen=True)
class Gibbs(Kernel):
    """Exact Gibbs update of one finite discrete site: draw it from its full conditional.

    The full conditional p(x_a = v | rest) ∝ p(t with x_a = v).  A site with plate elements
    (the usual mixture assignment ``z_i``) is updated element by element, N·K work: the other
    latent sites are held at their values and the enumeration of ``ppl.enum`` gives the
    elements' conditionals, from which all elements are drawn at once; the draw is accepted with
    the Metropolis–Hastings ratio of that independence proposal, which is exactly 1 when the
    elements are conditionally independent given the rest (then the step is an exact Gibbs
    update) and keeps the move exact when model code couples them (a factor on ``jnp.sum(z)``).
    A scalar site, a site in ``ppl.scan``, or a model whose code does not broadcast over an
    enumeration dimension is updated from its joint conditional, by evaluating
    ``model.log_density`` at every joint value (at most ``max_combinations``; more is refused
    with the count).  The kernel leaves π ∝ p invariant.  The value of the site must not change
    the set of addresses (use :class:`MH` or :class:`Regenerate` for such sites).

    Example:
        >>> kern = mcmc.cycle(mcmc.Gibbs("z"), mcmc.Regenerate("mu"))
    """

    address: str
    max_combinations: int = 4096

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundGibbs(self, model, args, kwargs)


class _BoundGibbs(_BoundTraceKernel):
    def _candidates(self, key, tr: Trace) -> jax.Array:
        a = self.kernel.address
        if a not in tr.choices or a in tr.observed:
            raise ModelError(
                f"Gibbs: {a!r} is not a latent sample site of the trace (latent sites: "
                f"{sorted(tr.latent)})."
            )
        sites = ppl.substitute(self.model, data=tr.latent, strict=False).trace_sites(key, *tr.args, **tr.kwargs)
        d = sites[a]["fn"]
        if not getattr(d, "has_enumerate_support", False):
            raise ModelError(
                f"Gibbs: site {a!r} has distribution {type(d).__name__}, whose support cannot be "
                "enumerated; exact Gibbs needs a finite discrete site (Bernoulli, Categorical, ...)."
            )
        if tuple(d.event_shape) != ():
            raise ModelError(f"Gibbs: site {a!r} has event shape {d.event_shape}; only scalar events are supported.")
        value = tr.choices[a]
        vshape = tuple(jnp.shape(value))
        vals = d.enumerate_support(expand=True)  # (K,) + batch_shape
        K = vals.shape[0]
        n = int(np.prod(vshape)) if vshape else 1
        vals = jnp.broadcast_to(vals.reshape((K,) + tuple(d.batch_shape)), (K,) + vshape).reshape(K, n)
        if K**n > self.kernel.max_combinations:
            raise ModelError(
                f"Gibbs: site {a!r} has {K}^{n} joint values, more than max_combinations="
                f"{self.kernel.max_combinations}."
            )
        idx = np.array(list(itertools.product(range(K), repeat=n)), dtype=np.int32)  # (K^n, n)
        cands = vals[idx, np.arange(n)]
        return cands.reshape((idx.shape[0],) + vshape).astype(jnp.result_type(value))

    def _given(self, tr: Trace) -> dict:
        """The values the site is conditioned on: every other latent site of the trace."""
        return {k: v for k, v in tr.latent.items() if k != self.kernel.address}

    def _by_elements(self, key, tr: Trace):
        """A draw of the site from the enumeration's conditional given the rest of the trace, its
        plate dimensions kept as batch dimensions (N·K, ``ppl.enum``), as ``(value, log q(value),
        log q(current value))``; None when the site is not the enumeration's only variable (a
        site in ``ppl.scan``, a scalar site, or a model the enumeration refuses or whose code
        does not broadcast over an enumeration dimension): then the joint is enumerated."""
        a = self.kernel.address
        if a not in tr.choices or a in tr.observed or int(np.prod(jnp.shape(tr.choices[a]))) < 2:
            return None  # a scalar site: its K values are enumerated directly (exact, no MH)
        try:
            en, _ = _enum._enumerated(self.model.fn, tuple(tr.args), dict(tr.kwargs),
                                      (_enum._Given(self._given(tr)),), record=True)
            if en.scans or len(en.vars) != 1:
                return None
            buckets: list = []
            _enum._contract(en.factors, en.vars, en.plates, set(), frozenset(), "sum", en._guard, buckets)
        except (ModelError, TypeError, ValueError, IndexError):
            # the enumeration refuses the model, or its code does not broadcast over an extra
            # leading dimension (e.g. jnp.where(z == 1, probs_a, probs_b) on a scalar z)
            return None
        (var, b), = buckets
        value = tr.choices[a]
        if var.name != a or tuple(var.batch_shape) != tuple(jnp.shape(value)):
            return None
        (idx,) = _enum._choose(key, b, [var.dim], 1, f"mcmc/gibbs/{a}")
        lq = jax.nn.log_softmax(b, axis=var.dim)
        nb = len(var.batch_shape)
        cur = jnp.argmax(jnp.asarray(value)[..., None] == var.support, axis=-1)
        cur = cur.reshape((1,) * (b.ndim - nb) + tuple(var.batch_shape))
        new = _enum._values(var, idx).astype(jnp.result_type(value))
        return new, jnp.sum(_enum._select(lq, var.dim, idx)), jnp.sum(_enum._select(lq, var.dim, cur))

    def log_accept_ratio(self, log_p_new, log_p_old, log_q_new, log_q_old):
        """Independence MH: the elements are drawn from the enumeration's conditional q, and
        α = p(new) q(old) / (p(old) q(new)), exactly 1 when the elements are conditionally
        independent given the rest (then q is the full conditional)."""
        return (log_p_new - log_p_old) - (log_q_new - log_q_old)

    def step(self, key, state, params=None):
        tr = self.concrete(state.trace)
        a = self.kernel.address
        k_sup, k_draw, k_upd = split(key, 3)
        prop = self._by_elements(k_draw, tr)
        if prop is not None:
            v, lq_new, lq_old = prop
            new, _, _ = self.model.update(k_upd, tr, {a: v})
            log_alpha = self.log_accept_ratio(new.log_density, tr.log_density, lq_new, lq_old)
            acc, p = metropolis_accept(k_sup, log_alpha, f"mcmc/gibbs/{a}/accept")
            return TraceState(select(acc, new, tr)), _trace_info(p, acc)
        cands = self._candidates(k_sup, tr)
        latent = dict(tr.latent)

        def lp(v):
            # like `update` below, score at the trace's own arguments (see _BoundTraceKernel)
            return self.model.log_density({**latent, a: v}, *tr.args, **tr.kwargs)

        if randomness.requires_eager():
            lps = jnp.stack([lp(cands[i]) for i in range(cands.shape[0])])
        else:
            lps = jax.vmap(lp)(cands)
        if is_concrete(lps) and not bool(jnp.any(jnp.isfinite(lps))):
            raise MCMCInitError(f"Gibbs: every value of site {a!r} has zero density given the rest of the trace.")
        i = randomness.draw(k_draw, dist.Categorical(logits=lps), (), f"mcmc/gibbs/{a}")
        new, _, _ = self.model.update(k_upd, tr, {a: cands[i]})
        return TraceState(new), _trace_info(1.0, True)
