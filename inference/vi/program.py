"""The objective as a program: one run of it per pass of the estimator, and its constructs.

An estimator (:mod:`.estimator`) runs the objective program in *passes*, each a :class:`Run`
subclass that decides what happens at a latent site by calling one method of the site's
strategy (:mod:`.strategies`):

* :class:`InitRun` -- draw fresh, collect the ``ppl.param`` sites (``init_params``);
* :class:`SampleRun` -- first pass: draw every choice with stop-gradient parameters and record
  it; re-runs share the prefix before the enum site that changed;
* :class:`BranchRun` -- value only: replay a recorded prefix, override one site, draw the rest
  fresh (the branches of measure-valued derivatives);
* :class:`GradRun` -- second pass: replay the record with differentiable parameters, collecting
  the surrogate's terms;
* :class:`DirectRun` -- one pass that draws and differentiates at once (no re-running site).

The constructs :func:`sample`, :func:`particles` and :func:`expectation` act on the innermost
running pass.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to

import ppl
from ppl.core import Messenger
from ppl.model import make_trace, run
from ppl.randomness import draw, requires_eager

from . import strategies as _strategies
from .strategies import Choice, Strategy, _EnumWalker
from .terms import VIError, _MVDTerm, _NeedsLoop, _NeedsTwoPasses, _Score
from inference._lapack import map_batch

__all__ = ["sample", "particles", "expectation"]

sg = jax.lax.stop_gradient


class _State(threading.local):
    def __init__(self) -> None:
        self.stack: list[Run] = []


_STATE = _State()


def _current(who: str) -> "Run":
    if not _STATE.stack:
        raise VIError(
            f"vi.{who} was called outside an objective: use it inside a function decorated with "
            "@vi.objective, and run it with objective.grad / objective.estimate / vi.fit."
        )
    return _STATE.stack[-1]


class Run:
    """One run of an objective program (the state every pass shares).

    ``records`` (first pass), ``scores``, ``mvd`` and ``enum_logq`` collect what the site
    strategies build; ``detach`` > 0 inside a detached ``vi.sample``; ``block_depth`` > 0
    inside a vmapped ``vi.particles`` block; ``baseline`` is the enclosing ``vi.sample``'s.
    """

    #: the pass collects ``ppl.param`` sites and their initial values (and so needs none given)
    collects_params = False
    #: the pass builds the surrogate's terms (particle baselines apply)
    differentiates = False
    #: the pass records its choices (the first pass)
    records_choices = False
    #: ``vi.particles`` may run vectorised in this pass
    vectorises = True
    #: the attributes a vmapped particle block saves and restores
    block_fields: tuple[str, ...] = ("key", "index", "records", "scores", "subsamples")

    def __init__(self, key: Any, uparams: Mapping[str, Any], strategies: Mapping[str, Any]):
        self.key = key
        self.uparams = dict(uparams)
        self.strategies = dict(strategies)
        self.index = 0
        self.records: list[dict] = []
        self.scores: list[_Score] = []
        self.enum_logq: list[Any] = []
        self.mvd: list[_MVDTerm] = []
        self.detach = 0
        self.block_depth = 0
        self.baseline: Any = 0.0
        self.used: dict[str, Strategy] = {}  # name -> strategy met at some site
        self.subsamples: dict[str, Any] = {}  # plate name -> indices the guide drew (replaced, never mutated)
        self.in_guide = 0  # > 0 while vi.sample runs a guide

    def next_key(self) -> Any:
        self.key, k = jax.random.split(self.key)
        return k

    def call(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        _STATE.stack.append(self)
        try:
            with ppl.substitute(substitute_fn=self._param_value, strict=False), _Subsampler(self):
                out = fn(*args, **kwargs)
        finally:
            _STATE.stack.pop()
        out = jnp.asarray(out)
        if out.shape != ():
            raise VIError(f"an objective must return a scalar, got an array of shape {out.shape}.")
        return out

    def _param_value(self, site: ppl.Site) -> Any:
        """Each ``ppl.param`` site's value T(u) from the unconstrained parameters."""
        if site.type != "param":
            return None
        if site.name in self.uparams:
            v = biject_to(site.constraint)(self.uparams[site.name])
            return sg(v) if self.detach else v
        if site.value is None and not self.collects_params:
            raise VIError(
                f"param {site.name!r} has no value: it was not present when the parameters were "
                "initialised (objective.init_params); re-initialise them."
            )
        return None

    # -- one latent site of a guide --------------------------------------------------------------

    def site(self, msg: dict) -> Any:
        name, d = msg["name"], msg["fn"]
        infer = msg.get("infer") or {}
        strategy = _strategies.resolve(name, d, self.strategies.get(name), infer)
        if self.detach and strategy.detachable:
            strategy = _strategies._DETACH
        self.used.setdefault(strategy.name, strategy)
        self.check(name, strategy)
        if self.block_depth and strategy.reruns:
            raise _NeedsLoop(name)  # vi.particles re-runs its particles as a Python loop
        i = self.index
        self.index += 1
        key = self.next_key()
        return self.choose(Choice(name, d, infer, i, key), strategy)

    def check(self, name: str, strategy: Strategy) -> None:
        """Refuse a strategy this pass cannot run (before any key is used)."""

    def choose(self, c: Choice, strategy: Strategy) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- vi.particles blocks --------------------------------------------------------------------

    def recorded(self, i: int) -> list | None:
        """The records that a vmapped block at choice `i` replays, or None (fresh particles)."""
        return None

    def enter_block(self, inner: Any) -> None:
        """Inside one particle of a vmapped block: replay `inner` (its records) or run fresh."""


class InitRun(Run):
    """Draw fresh and collect the ``ppl.param`` sites: name -> (initial value, constraint)."""

    collects_params = True
    vectorises = False

    def __init__(self, key: Any, strategies: Mapping[str, Any]):
        super().__init__(key, {}, strategies)
        self.params_seen: dict[str, tuple[Any, Any]] = {}
        self.sites_seen: set[str] = set()  # issue 18: strategies for unknown addresses are refused

    def site(self, msg: dict) -> Any:
        self.sites_seen.add(msg["name"])
        return super().site(msg)

    def _param_value(self, site: ppl.Site) -> Any:
        if site.type != "param":
            return None
        value = site.value
        if value is None:
            value = site.init(self.next_key()) if callable(site.init) else jnp.asarray(site.init)
        self.params_seen.setdefault(site.name, (value, site.constraint))
        return value

    def choose(self, c: Choice, strategy: Strategy) -> Any:
        return draw(c.key, c.distribution, (), c.name)


class SampleRun(Run):
    """First pass: draw with stop-gradient parameters and record each choice.  After the first
    path, the choices before the enum site that changed (``shared`` of them) are the previous
    path's (``prev``)."""

    records_choices = True
    block_fields = Run.block_fields + ("prev", "shared")

    def __init__(self, key: Any, uparams: Mapping[str, Any], strategies: Mapping[str, Any], walker: _EnumWalker):
        super().__init__(key, uparams, strategies)
        self.walker = walker
        self.prev: list[dict] | None = None
        self.prev_mvd: dict[int, _MVDTerm] = {}
        self.shared = 0
        self.value: Any = None

    def choose(self, c: Choice, strategy: Strategy) -> Any:
        if self.prev is not None and c.index < self.shared:
            rec = self.prev[c.index]
            value = strategy.prefix(self, c, rec)
        else:
            rec = {"name": c.name, "strategy": strategy.name}
            value = strategy.draw(self, c, rec)
        self.records.append(rec)
        return value

    def recorded(self, i: int) -> list | None:
        return self.prev if self.prev is not None and i < self.shared else None

    def enter_block(self, inner: Any) -> None:
        self.prev, self.shared = inner, (_BIG if inner is not None else 0)


class BranchRun(Run):
    """Value only: replay `replay` before site ``override[0]``, set it to ``override[1]``, then
    draw fresh (enum sites still summed exactly)."""

    block_fields = Run.block_fields + ("replay", "override")

    def __init__(self, key, uparams, strategies, walker: _EnumWalker, replay: list, override: tuple[int, Any]):
        super().__init__(key, uparams, strategies)
        self.walker = walker
        self.replay = replay
        self.override = override

    def choose(self, c: Choice, strategy: Strategy) -> Any:
        if c.index == self.override[0]:
            return self.override[1]
        if c.index < self.override[0]:
            return strategy.value_of(self.replay[c.index], c.distribution)
        return strategy.fresh(self, c)

    def recorded(self, i: int) -> list | None:
        return self.replay if i < self.override[0] else None

    def enter_block(self, inner: Any) -> None:
        self.replay = inner
        self.override = (_BIG, None) if inner is not None else (-1, None)


class GradRun(Run):
    """Second pass: replay the first pass's record with differentiable parameters; each
    strategy adds its surrogate terms."""

    differentiates = True
    block_fields = Run.block_fields + ("replay",)

    def __init__(self, key: Any, uparams: Mapping[str, Any], strategies: Mapping[str, Any], replay: list):
        super().__init__(key, uparams, strategies)
        self.replay = replay

    def choose(self, c: Choice, strategy: Strategy) -> Any:
        rec = self.replay[c.index]
        if rec["name"] != c.name or rec["strategy"] != strategy.name:
            raise VIError(
                f"the objective is not deterministic given its random choices: site #{c.index} was "
                f"{rec['name']!r} ({rec['strategy']}) and is now {c.name!r} ({strategy.name})."
            )
        return strategy.replay(self, c, rec)

    def recorded(self, i: int) -> list | None:
        return self.replay

    def enter_block(self, inner: Any) -> None:
        self.replay = inner


class DirectRun(Run):
    """One pass: draw and differentiate at once; the same draws, from the same keys, as the
    first pass followed by the gradient pass (no re-running site in the program)."""

    differentiates = True

    def check(self, name: str, strategy: Strategy) -> None:
        if strategy.reruns:
            raise _NeedsTwoPasses(name)  # enum / MVD re-run the program: the two-pass estimator

    def choose(self, c: Choice, strategy: Strategy) -> Any:
        return strategy.one_pass(self, c)


class _GuideSampler(Messenger):
    """Choose each latent site's value through the running pass.

    A Messenger, not ``ppl.substitute``: it reads the site's ``infer`` annotation (the
    per-site strategy, not part of :class:`ppl.Site`) and marks the value as in the support,
    so that a strategy's draw is not re-checked as a user-supplied value."""

    def __init__(self, ctx: Run):
        super().__init__()
        self.ctx = ctx

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["intervened"] or msg["value"] is not None:
            return
        msg["value"] = self.ctx.site(msg)
        msg["in_support"] = True


class _Subsampler(Messenger):
    """Give every subsampled plate (``ppl.plate(name, N, subsample_size=B)``) its indices.

    A guide's plate draws them from the pass's key stream (so the two passes of an estimator
    agree) and records them by plate name; the model's plate of the same name, scored after the
    guide (``model.log_density``), replays them, as NumPyro shares them by name, so the local
    latents the guide drew are scored at the data they belong to.  A plate only the model has
    draws its own.  Each plate scales its sites by N/B, so the estimate stays unbiased for the
    full-data objective."""

    passive = True

    def __init__(self, ctx: Run):
        super().__init__()
        self.ctx = ctx

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "subsample" or msg["value"] is not None:
            return
        ctx, name, kw = self.ctx, msg["name"], msg["kwargs"]
        shared = ctx.subsamples.get(name)
        if shared is not None and not ctx.in_guide:
            if tuple(shared.shape) != (kw["subsample_size"],) or shared.dtype == bool:
                raise VIError(
                    f"plate {name!r}: the guide's plate drew {shared.shape[0]} indices but the "
                    f"model's asks for subsample_size={kw['subsample_size']}: give both the same "
                    "size and subsample_size."
                )
            msg["value"] = shared
            return
        idx = jax.random.choice(ctx.next_key(), kw["size"], (kw["subsample_size"],), replace=False)
        if ctx.in_guide:
            ctx.subsamples = {**ctx.subsamples, name: idx}
        msg["value"] = idx


class _fixed_subsamples(Messenger):
    """Give every subsampled plate the indices of one fixed key (for shapes-only runs)."""

    passive = True

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "subsample" and msg["value"] is None:
            kw = msg["kwargs"]
            msg["value"] = jax.random.choice(jax.random.key(0), kw["size"], (kw["subsample_size"],), replace=False)


# ---------------------------------------------------------------------------------------------
# constructs


def sample(guide: Any, *args: Any, baseline: Any = None, detach: bool = False, **kwargs: Any) -> ppl.Trace:
    """Run `guide` (a model, or a :func:`vi.marginal`) as a random choice of the objective;
    return its :class:`ppl.Trace` (for a marginal: the non-auxiliary choices, with the
    estimated marginal log density as ``log_density``).

    Each latent site's gradient is estimated by its strategy (:mod:`.strategies`).  `baseline`,
    a value independent of this draw, is subtracted from the learning signal of the draw's
    score-function sites (variance reduction; any such value keeps the estimator unbiased).
    With ``detach=True`` the draw carries no gradient at all: its values, densities and the
    guide's parameters are constants (used by wake-sleep's p-wake).

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> @vi.objective
        ... def elbo1(x):
        ...     tr = vi.sample(guide, x)
        ...     return model.log_density(tr.choices, x) - tr.log_density
        >>> elbo1.estimate(jax.random.key(0), {"m": jnp.zeros(())}, 1.0).shape
        ()
    """
    ctx = _current("sample")
    if hasattr(guide, "_vi_sample"):  # a vi.marginal
        return guide._vi_sample(args, kwargs, baseline, detach)
    g = ppl.as_model(guide)
    prev_b = ctx.baseline
    ctx.baseline = 0.0 if baseline is None else sg(jnp.asarray(baseline))
    ctx.detach += int(bool(detach))
    ctx.in_guide += 1
    try:
        retval, sites = run(g.fn, args, kwargs, _GuideSampler(ctx))
    finally:
        ctx.in_guide -= 1
        ctx.detach -= int(bool(detach))
        ctx.baseline = prev_b
    return make_trace(sites, retval, args, kwargs)


_BIG = 1 << 62


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _partition(tree: Any):
    """(array leaves, rebuild): split a pytree of records into arrays and static metadata."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    dyn = [j for j, x in enumerate(leaves) if _is_array(x)]
    static = list(leaves)

    def rebuild(arrays: list) -> Any:
        ls = list(static)
        for j, x in zip(dyn, arrays):
            ls[j] = x
        return jax.tree_util.tree_unflatten(treedef, ls)

    return [leaves[j] for j in dyn], rebuild


def _expand(b: Any, ndim: int) -> Any:
    b = jnp.asarray(b)
    return jnp.reshape(b, b.shape + (1,) * max(0, ndim - b.ndim))


def _particles_vmapped(ctx: Run, num: int, fn: Callable[[], Any]) -> Any:
    """Run the particles with ``jax.vmap``: the block is one record (index) of the run whose
    inner records carry a leading ``num`` axis; raises :class:`_NeedsLoop` (state restored)
    when a particle meets a site whose strategy re-runs the program."""
    from inference import sharding

    saved = tuple(getattr(ctx, f) for f in ctx.block_fields)
    i = ctx.index
    inner_in = None
    recorded = ctx.recorded(i)
    if recorded is not None:
        if i >= len(recorded):
            raise VIError("the objective is not deterministic given its random choices: it made more choices when re-run.")
        rec = recorded[i]
        if rec.get("strategy") != "block":  # the first pass ran these particles as a loop
            raise _NeedsLoop(rec.get("name"))
        if rec.get("num") != num:
            raise VIError(
                f"the objective is not deterministic given its random choices: a vi.particles block "
                f"of {rec.get('num')} is now one of {num}."
            )
        inner_in = rec["inner"]
    key = ctx.next_key()
    after_key = ctx.key
    keys = sharding.constrain_batch(jax.random.split(key, num))
    in_leaves, rebuild_in = _partition(inner_in)
    in_leaves = sharding.constrain_batch(in_leaves)
    meta: dict = {}

    def body(k, leaves):
        inner = rebuild_in(leaves) if inner_in is not None else None
        ctx.key, ctx.index, ctx.records, ctx.scores = k, 0, [], []
        ctx.enter_block(inner)
        ctx.block_depth += 1
        try:
            out = fn()
        finally:
            ctx.block_depth -= 1
        out = jax.tree_util.tree_map(jnp.asarray, out)
        recs, meta["records"] = _partition(ctx.records)
        scores = [(t.log_q, jnp.asarray(t.baseline, dtype=jnp.result_type(t.log_q))) for t in ctx.scores]
        restore()  # each trace of the body (map_batch may trace it twice) starts from the same state
        return out, recs, scores

    def restore() -> None:
        for f, v in zip(ctx.block_fields, saved):
            setattr(ctx, f, v)

    try:
        out, recs, scores = map_batch(body, keys, in_leaves)  # vmap, or a loop where batched LAPACK could deadlock
    except BaseException:
        restore()
        raise
    restore()
    ctx.key, ctx.index = after_key, i + 1
    out = sharding.constrain_batch(out)
    if ctx.records_choices:
        inner = meta["records"](sharding.constrain_batch(recs))
        ctx.records.append({"name": "<vi.particles>", "strategy": "block", "num": num, "inner": inner})
    start = len(ctx.scores)
    for log_q, b in scores:
        ctx.scores.append(_Score(log_q, b))
    return out, start


def particles(num: int, fn: Callable[[], Any], baseline: Callable[[Any], Any] | None = None) -> Any:
    """Run ``fn()`` `num` times independently; return the outputs stacked on a leading axis.

    ``baseline(outputs)`` (optional) returns one baseline per particle, shape ``(num,)``; the
    score-function terms of particle k then use the learning signal F − b_k.  The estimator stays
    unbiased only when b_k does not depend on particle k's own random choices (VIMCO's
    leave-one-out baselines); it is computed from stop-gradient values.

    The particles run vectorised (``jax.vmap``, their axis split across devices when there are
    several, see ``inference.sharding``); they run as a Python loop under an eager interpreter
    (the exact enumerator of the tests) and when a particle contains an ``"enum"`` or ``"mvd"``
    site, whose re-runs are per value.  Both give the same estimator.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> @vi.objective
        ... def iwae10(x):
        ...     log_w = vi.particles(10, lambda: vi.log_weight(model, vi.sample(guide, x), x))
        ...     return jax.nn.logsumexp(log_w) - jnp.log(10.0)
        >>> iwae10.estimate(jax.random.key(0), {"m": jnp.zeros(())}, 1.0).shape
        ()
    """
    ctx = _current("particles")
    num = int(num)
    if num < 1:
        raise VIError(f"vi.particles: num must be at least 1, got {num}.")
    block = None
    if ctx.vectorises and num > 1 and not requires_eager():  # one particle: no vmap axis
        try:
            block = _particles_vmapped(ctx, num, fn)
        except _NeedsLoop:
            if ctx.block_depth:  # an enclosing block must run as a loop too
                raise
    if block is not None:
        stacked, start = block
        spans = None
    else:
        # the same keys as the vmapped block: particle k runs from key k of the split
        keys = jax.random.split(ctx.next_key(), num)
        after_key = ctx.key
        outs, spans = [], []
        for k in range(num):
            start = len(ctx.scores)
            ctx.key = keys[k]
            outs.append(fn())
            spans.append((start, len(ctx.scores)))
        ctx.key = after_key
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)
    if baseline is not None and ctx.differentiates:
        b = sg(jnp.asarray(baseline(jax.tree_util.tree_map(sg, stacked))))
        if b.shape != (num,):
            raise VIError(f"vi.particles: baseline must return shape ({num},), got {b.shape}.")
        if spans is None:
            for t in ctx.scores[start:]:
                t.baseline = t.baseline + _expand(b, jnp.ndim(t.log_q))
        else:
            for k, (a, e) in enumerate(spans):
                for t in ctx.scores[a:e]:
                    t.baseline = t.baseline + b[k]
    return stacked


def expectation(fn: Callable[[], Any], num_samples: int = 1) -> Any:
    """The mean of ``fn()`` over `num_samples` independent runs (unbiased for E[fn()]).

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> elbo4 = vi.objective(lambda x: vi.expectation(
        ...     lambda: vi.log_weight(model, vi.sample(guide, x), x), num_samples=4))
        >>> elbo4.estimate(jax.random.key(0), {"m": jnp.zeros(())}, 1.0).shape
        ()
    """
    return jnp.mean(particles(num_samples, fn), axis=0)
