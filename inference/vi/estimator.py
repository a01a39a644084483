"""Objectives: a program's value L(φ) = E[F] and unbiased gradient estimates of it.

:class:`Objective` turns an objective program (:mod:`.program`) into a *surrogate loss* s(φ)
whose gradient is an unbiased estimate of ∇L, E[∇s(φ)] = ∇ E[F] (``docs/design/vi.md``): a
first pass records every random choice (once per joint value of the enum sites), the
strategies that need it complete the record (MVD's branch runs), and a gradient pass replays it
with differentiable parameters and assembles the terms the strategies built.  A program whose
strategies all draw in one pass is estimated in one pass.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to

from ppl import core as _core
from ppl.errors import nearest
from ppl.randomness import requires_eager

from . import strategies as _strategies
from .program import BranchRun, DirectRun, GradRun, InitRun, SampleRun, _current
from .strategies import _EnumWalker
from .terms import VIError, _NeedsTwoPasses

__all__ = ["Objective", "objective"]

sg = jax.lax.stop_gradient


def _freeze_strategies(strategies: Mapping[str, Any] | None) -> dict:
    """address -> strategy (a registered name or a :class:`vi.Strategy`), each checked."""
    out = dict(strategies or {})
    for k, v in out.items():
        _strategies._validate(k, v)
    return out


class Objective:
    """An objective program: L(φ) = E[F] for the scalar F that `fn` returns.

    Methods (``uparams`` are the unconstrained parameters, address -> array):

    * :meth:`init_params` -- initial unconstrained parameters of every ``ppl.param`` site.
    * :meth:`estimate` -- an unbiased estimate of L (enum sites summed exactly).
    * :meth:`surrogate` -- ``(s, value)`` with E[∇s] = ∇L and value an estimate of L.
    * :meth:`grad` -- ``(value, ∇s)``: an unbiased estimate of ∇L w.r.t. ``uparams``.
    * :meth:`with_strategies` -- the same objective with per-address gradient strategies.
    * :meth:`constrain` -- constrained values of unconstrained parameters.

    Strategies (``strategies``, address -> name or :class:`vi.Strategy`) override the sites'
    own.  ``model`` and ``guide`` are kept when the objective was built from them (the built-in
    objectives do), so that a fitted result can sample the guide without being given it again.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> obj = vi.elbo(model, guide)
        >>> u = obj.init_params(jax.random.key(0), 1.0)
        >>> value, g = obj.grad(jax.random.key(1), u, 1.0)
        >>> obj.constrain(u)
        {'m': Array(0., ...)}
    """

    def __init__(
        self,
        fn: Callable,
        strategies: Mapping[str, Any] | None = None,
        name: str | None = None,
        *,
        model: Any = None,
        guide: Any = None,
    ):
        self.fn = fn
        self.strategies = _freeze_strategies(strategies)
        self.name = name or getattr(fn, "__name__", "objective")
        self.constraints: dict[str, Any] = {}
        self.model = model
        self.guide = guide

    def __repr__(self) -> str:
        s = f", strategies={self.strategies}" if self.strategies else ""
        return f"<vi.Objective {self.name}{s}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inside another objective, run this one's program (objectives compose)."""
        _current(self.name)
        return self.fn(*args, **kwargs)

    def with_strategies(self, strategies: Mapping[str, Any]) -> "Objective":
        """A copy whose sites at the given addresses use the given strategies."""
        out = Objective(
            self.fn, {**self.strategies, **_freeze_strategies(strategies)}, self.name, model=self.model, guide=self.guide
        )
        out.constraints = self.constraints
        return out

    # -- parameters -----------------------------------------------------------------------------

    def init_params(self, key: Any, *args: Any, **kwargs: Any) -> dict:
        """Initial unconstrained parameters ``biject_to(constraint).inv(init)`` of every param site."""
        ctx = InitRun(key, self.strategies)
        dyn0 = _core._STATE.dynamic_structure
        ctx.call(self.fn, args, kwargs)
        # issue 18: a misspelt address is an error (unless a branch taken eagerly may hide sites)
        unseen = set(self.strategies) - ctx.sites_seen if _core._STATE.dynamic_structure == dyn0 else set()
        for name in sorted(unseen):
            raise VIError(f"strategies= names {name!r}, which is not a latent site of the objective's program"
                          f"{nearest(name, ctx.sites_seen)}.")
        out = {}
        for name, (value, constraint) in ctx.params_seen.items():
            self.constraints[name] = constraint
            out[name] = biject_to(constraint).inv(jnp.asarray(value))
        return out

    def constrain(self, uparams: Mapping[str, Any]) -> dict:
        """address -> constrained value ``biject_to(constraint)(u)``."""
        return {k: biject_to(self.constraints.get(k, dist.constraints.real))(v) for k, v in uparams.items()}

    def unconstrain(self, params: Mapping[str, Any]) -> dict:
        """address -> unconstrained value of constrained parameters."""
        return {k: biject_to(self.constraints.get(k, dist.constraints.real)).inv(jnp.asarray(v)) for k, v in params.items()}

    # -- estimators -----------------------------------------------------------------------------

    def _first_pass(self, key: Any, uparams: Mapping[str, Any], args: tuple, kwargs: dict) -> list[SampleRun]:
        """Run the program once per joint value of its enum sites; then each strategy met
        finishes the records (:meth:`vi.Strategy.finish`: MVD's branch runs)."""
        u0 = jax.tree_util.tree_map(sg, dict(uparams))
        walker = _EnumWalker()
        paths: list[SampleRun] = []
        used: dict[str, Any] = {}
        while True:
            ctx = SampleRun(key, u0, self.strategies, walker)
            if paths:  # replay the choices made before the enum site that changed
                ctx.prev = paths[-1].records
                ctx.prev_mvd = {t.site: t for t in paths[-1].mvd}
                ctx.shared = walker.nodes[-1][2]
            ctx.value = ctx.call(self.fn, args, kwargs)
            paths.append(ctx)
            used.update(ctx.used)
            if not walker.advance():
                break

        def branch_value(records: list, site: int, value: Any) -> jax.Array:
            return self._branch_value(key, u0, records, site, value, args, kwargs)

        for s in used.values():  # e.g. MVD: the signals of its branches
            s.finish(paths, branch_value)
        return paths

    def _branch_value(self, key, u0, records, site, value, args, kwargs):
        """E[F | the record up to `site`, site = value]: fresh draws after it, enum sites summed."""
        walker = _EnumWalker()
        total = jnp.zeros(())
        while True:
            b = BranchRun(key, u0, self.strategies, walker, records, (site, value))
            F = b.call(self.fn, args, kwargs)
            total = total + jnp.exp(sum(b.enum_logq, jnp.zeros(()))) * F
            if not walker.advance():
                break
        return total

    def estimate(self, key: Any, uparams: Mapping[str, Any], *args: Any, **kwargs: Any) -> jax.Array:
        """An unbiased estimate of L = E[F]: one run per joint value of the enum sites, weighted."""
        paths = self._first_pass(key, uparams, args, kwargs)
        return _combine_values(paths)

    def _surrogate_parts(self, key: Any, uparams: Mapping[str, Any], args: tuple, kwargs: dict):
        """(surrogate, value, score sum) of one evaluation (see docs/design/vi.md)."""
        if not requires_eager():
            try:
                return self._one_pass(key, uparams, args, kwargs)
            except _NeedsTwoPasses:
                pass
        paths = self._first_pass(key, uparams, args, kwargs)
        total, value, score_total = 0.0, 0.0, 0.0
        for p in paths:
            g = GradRun(key, uparams, self.strategies, p.records)
            F = g.call(self.fn, args, kwargs)
            S = sum((jnp.sum(t.log_q - sg(t.log_q)) for t in g.scores), jnp.zeros(()))
            B = sum((jnp.sum(sg(t.baseline) * (t.log_q - sg(t.log_q))) for t in g.scores), jnp.zeros(()))
            M = jnp.zeros(())
            for term in g.mvd:
                for (param, idx, _, _, _), sig in zip(term.alts, term.signals):
                    th = term.theta[param][idx]
                    M = M + (th - sg(th)) * sg(sig)
            surr = F + sg(F) * S - B + M
            logw = sum(g.enum_logq, jnp.zeros(()))
            w = jnp.exp(logw)
            total = total + (w - sg(w)) * sg(F) + sg(w) * surr
            value = value + sg(w) * sg(F)
            score_total = score_total + sg(w) * S
        return total, value, score_total

    def _one_pass(self, key: Any, uparams: Mapping[str, Any], args: tuple, kwargs: dict):
        """The surrogate of a program without enum / MVD sites in one pass (same value and
        gradient as the two passes, from the same draws; see docs/design/vi.md)."""
        g = DirectRun(key, uparams, self.strategies)
        F = g.call(self.fn, args, kwargs)
        S = sum((jnp.sum(t.log_q - sg(t.log_q)) for t in g.scores), jnp.zeros(()))
        B = sum((jnp.sum(sg(t.baseline) * (t.log_q - sg(t.log_q))) for t in g.scores), jnp.zeros(()))
        return F + sg(F) * S - B, sg(F), S

    def surrogate(
        self,
        key: Any,
        uparams: Mapping[str, Any],
        *args: Any,
        num_samples: int = 1,
        baseline: str | None = None,
        **kwargs: Any,
    ) -> tuple[jax.Array, jax.Array]:
        """``(s, value)``: E[∇s] = ∇L, and value = the mean of `num_samples` estimates of L.

        With ``baseline="loo"`` (and ``num_samples ≥ 2``) the score terms of evaluation m use
        the mean value of the *other* evaluations as their baseline (leave-one-out, unbiased).
        """
        if baseline not in (None, "loo"):
            raise VIError(f"baseline must be None or 'loo', got {baseline!r}.")
        if baseline == "loo" and num_samples < 2:
            raise VIError("baseline='loo' needs num_samples >= 2.")
        keys = jax.random.split(key, num_samples)
        if num_samples == 1:
            s, v, _ = self._surrogate_parts(keys[0], uparams, args, kwargs)
            return s, v
        if requires_eager():
            parts = [self._surrogate_parts(k, uparams, args, kwargs) for k in keys]
            s, v, S = (jnp.stack(x) for x in zip(*parts))
        else:
            s, v, S = jax.vmap(lambda k: self._surrogate_parts(k, uparams, args, kwargs))(keys)
        if baseline == "loo":
            c = (jnp.sum(v) - v) / (num_samples - 1)
            s = s - sg(c) * S
        return jnp.mean(s), jnp.mean(v)

    def grad(self, key: Any, uparams: Mapping[str, Any], *args: Any, num_samples: int = 1, baseline: str | None = None, **kwargs: Any):
        """``(value, gradient)``: an unbiased estimate of ∇L w.r.t. the unconstrained parameters.

        Example:
            >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
            >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
            >>> value, g = vi.elbo(model, guide).grad(jax.random.key(0), {"m": jnp.zeros(())}, 1.0)
            >>> g["m"].shape
            ()
        """

        def f(u):
            s, v = self.surrogate(key, u, *args, num_samples=num_samples, baseline=baseline, **kwargs)
            return s, v

        g, v = jax.grad(f, has_aux=True)(dict(uparams))
        return v, g


def _combine_values(paths: list[SampleRun]) -> jax.Array:
    total = jnp.zeros(())
    for p in paths:
        total = total + jnp.exp(sum(p.enum_logq, jnp.zeros(()))) * p.value
    return total


def objective(
    fn: Callable | None = None,
    *,
    strategies: Mapping[str, Any] | None = None,
    name: str | None = None,
    model: Any = None,
    guide: Any = None,
):
    """Decorator: an :class:`Objective` from a program using :func:`sample` and friends.

    ``model`` and ``guide`` (optional) are kept on the objective, as the built-in objectives
    keep theirs, so that a fitted result can sample the guide.

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
        >>> @vi.objective
        ... def iwae5(x):
        ...     lw = vi.particles(5, lambda: vi.log_weight(model, vi.sample(guide, x), x))
        ...     return jax.nn.logsumexp(lw) - jnp.log(5.0)
        >>> u = iwae5.init_params(jax.random.key(0), 1.0)
        >>> iwae5.estimate(jax.random.key(1), u, 1.0).shape
        ()
    """
    if fn is None:
        return lambda f: Objective(f, strategies, name, model=model, guide=guide)
    return Objective(fn, strategies, name, model=model, guide=guide)
