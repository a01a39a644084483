"""``fit``: maximise an objective with optax, in compiled chunks driven from the host.

The parameters are the unconstrained values u of every ``ppl.param`` site (the constrained
value is ``biject_to(constraint)(u)``).  Step ``t`` uses the key ``fold_in(run_key, t)``,
computes the objective's unbiased gradient estimate (:meth:`Objective.surrogate`) and applies
the optax update to −gradient (optax minimises).  The steps run in chunks of one compiled
``lax.scan`` (:mod:`inference._run`), so the result does not depend on the chunk size; between
chunks the host shows progress, checks the plateau rule of early stopping (the mean objective
of a chunk improves by less than ``min_delta`` (relative) for ``patience`` chunks in a row)
and turns Ctrl-C into a partial result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.errors import ArgumentError
from ppl import handlers as _handlers
from ppl.checks import validate
from ppl.handlers import check_key
from ppl.messengers import is_auxiliary
import numpyro.distributions as dist

from .._calling import check_option_clash, given_options, model_keywords
from .._health import enforce
from .._result import to_inference_data
from ppl.config import gc_paused

from .._run.cache import PROGRAMS
from .._run.concrete import freeze, join, remembered, retry_concretely, split, thaw
from .._run.chunking import MAX_CHUNK, choose_chunk_size
from .._run.loop import host_loop, scan_chunk
from .._run.progress import Progress, progress_default
from .core import Objective, VIError
from .enum_elbo import check_summed_out

__all__ = ["fit", "VIResult", "sample_posterior"]



@dataclass
class VIResult:
    """The result of :func:`fit`.

    Attributes:
        params: address -> constrained value of every ``ppl.param`` site: the average of the
            last iterates that ``fit``'s ``average`` chose (by default ``"auto"``: those since the
            objective stopped improving, kept only when not worse than the last iterate; taken in
            the unconstrained space, then constrained), or the last iterate when nothing was averaged.
        uparams: the unconstrained values of ``params``.
        last_params: the last iterate, constrained (what the optimiser reached at the last
            step): continue a fit from it, ``vi.fit(..., init_params=result.last_params)``.
        last_uparams: the last iterate, unconstrained.
        averaged_steps: how many iterates ``params`` averages (0: ``params`` is the last iterate).
        history: the objective's estimate at every step run (a NumPy array).
        num_steps: steps run (fewer than asked when stopped early or interrupted).
        stopped_early: whether the plateau rule stopped the run.
        objective: the objective that was fitted.
        interrupted: whether Ctrl-C stopped the run (``params`` are those after the last
            finished chunk).
        guide: the guide of the objective (``objective.guide``), used by :meth:`sample`.
        pareto_k: PSIS k̂ of the fitted guide's importance weights (computed when first read;
            :meth:`psis_diagnostic` for another key or number of draws).
        health: what the checks found when ``fit`` returned (:func:`fit_health`; issue 18):
            failed (:class:`ppl.InferenceFailure` raised) when a fitted parameter is not finite,
            degraded (:class:`ppl.InferenceWarning`) when the objective was not finite at some step.

    Example:
        >>> @ppl.model
        ... def model(x):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> @ppl.model
        ... def guide(x):
        ...     ppl.sample("mu", dist.Normal(ppl.param("loc", 0.0), 0.7))
        >>> import optax
        >>> res = vi.fit(jax.random.key(0), vi.elbo(model, guide), optax.adam(0.05), 1.0,
        ...              num_steps=200, progress=False)
        >>> res.sample(jax.random.key(1), 10, guide=guide)["mu"].shape, res.draws
        ((10,), {})
    """

    params: dict
    uparams: dict
    history: np.ndarray
    num_steps: int
    stopped_early: bool
    objective: Objective = field(repr=False)
    interrupted: bool = False
    guide: Any = field(default=None, repr=False)
    args: tuple = field(default=(), repr=False)
    kwargs: dict = field(default_factory=dict, repr=False)
    health: Any = field(default=None, repr=False)
    last_params: Any = field(default=None, repr=False)
    last_uparams: Any = field(default=None, repr=False)
    averaged_steps: int = 0

    @property
    def draws(self) -> dict:
        """Draws made at fit time: none (``{}``); :meth:`sample` draws from the fitted guide."""
        return {}

    @property
    def info(self) -> dict:
        """Diagnostics: ``objective`` (the estimate at every step run, as :attr:`history`),
        ``num_steps``, ``stopped_early``, ``interrupted`` and ``averaged_steps``."""
        return {"objective": self.history, "num_steps": self.num_steps, "stopped_early": self.stopped_early,
                "interrupted": self.interrupted, "averaged_steps": self.averaged_steps}

    def _guide(self, who: str, guide: Any) -> Any:
        guide = guide if guide is not None else (self.guide if self.guide is not None else getattr(self.objective, "guide", None))
        if guide is None:
            raise ArgumentError(
                f"{who}: this result's objective {self.objective!r} carries no guide (objective.guide); "
                "pass guide=... explicitly."
            )
        return guide

    def sample(self, key: Any, num_samples: int = 1000, *args: Any, guide: Any = None, **kwargs: Any) -> dict:
        """``num_samples`` draws from the fitted guide: address -> array with a leading
        ``num_samples`` axis.  The guide is the objective's (``objective.guide``) unless given;
        its arguments are the ones ``fit`` was given unless ``args``/``kwargs`` are."""
        guide = self._guide("VIResult.sample", guide)
        if not args and not kwargs:
            args, kwargs = self.args, self.kwargs
        return sample_posterior(key, guide, self.params, *args, num_samples=num_samples, **kwargs)

    def predictive(self, key: Any, model: Any, *args: Any, num_samples: int | None = None, guide: Any = None, **kwargs: Any) -> dict:
        """Posterior predictive draws of ``model(*args, **kwargs)`` (:func:`ppl.predictive`)
        given ``num_samples`` (default 1000) draws from the fitted guide.  Without
        ``args``/``kwargs`` the model (and the guide) get the arguments ``fit`` was given."""
        key = check_key(key, "VIResult.predictive")
        k_draw, k_pred = jax.random.split(key)
        draws = self.sample(k_draw, 1000 if num_samples is None else num_samples, guide=guide)
        if not args and not kwargs:
            args, kwargs = self.args, self.kwargs
        return ppl.predictive(model, draws, *args, key=k_pred, **kwargs)

    def to_arviz(self, key: Any = None, num_samples: int = 1000, guide: Any = None, coords: Any = None,
                 dims: Any = None):
        """An ``arviz.InferenceData``: ``num_samples`` draws of the fitted guide (one chain;
        ``key`` default ``jax.random.key(0)``) as the posterior group, when the guide is known,
        and the objective trace as ``sample_stats["objective"]`` shaped (1, steps).  When the
        objective knows its model (``vi.elbo(model, guide)``, ...) and the guide draws every
        latent site: also ``log_likelihood`` (for ``az.loo``; draws from the guide, not the
        posterior: PSIS's Pareto k says how far apart they are), ``observed_data`` and dims named
        after the plates (``coords={dim: labels}`` labels them), as :meth:`mcmc.Run.to_arviz`."""
        from .._result import model_sites, workflow_groups

        posterior = {}
        if guide is not None or self.guide is not None or getattr(self.objective, "guide", None) is not None:
            key = jax.random.key(0) if key is None else key
            posterior = {k: np.asarray(v)[None] for k, v in self.sample(key, num_samples, guide=guide).items()}
        stats = {"objective": np.asarray(self.history)[None]}
        model = getattr(self.objective, "model", None)
        if model is None or not posterior:
            return to_inference_data(dict(posterior=posterior, sample_stats=stats), dims, coords)
        first = {k: v[0, 0] for k, v in posterior.items()}
        sites = model_sites(model, self.args, self.kwargs, first)
        covered = all(k in posterior for k, s in sites.items() if s["kind"] == "latent")
        groups, site_dims = workflow_groups("VIResult.to_arviz", model, self.args, self.kwargs, posterior, chains=1,
                                            draws=int(num_samples), log_likelihood=covered)
        groups["sample_stats"] = stats
        return to_inference_data(groups, {**site_dims, **dict(dims or {})}, coords)

    def psis_diagnostic(self, key: Any = None, num_samples: int = 1000, guide: Any = None) -> float:
        """PSIS k̂ (:func:`vi.pareto_k`) of the importance weights p(x, z) / q(z) of ``num_samples``
        draws z of the fitted guide (``key`` default ``jax.random.key(0)``), the model being the
        objective's: below 0.5 the guide covers the posterior well, above 0.7 it misses mass."""
        from .objectives import log_weight
        from .psis import pareto_k

        guide = self._guide("VIResult.psis_diagnostic", guide)
        model = getattr(self.objective, "model", None)
        if model is None:
            raise ArgumentError(f"VIResult.psis_diagnostic: the objective {self.objective!r} carries no model.")
        key = jax.random.key(0) if key is None else check_key(key, "VIResult.psis_diagnostic")
        g = ppl.substitute(ppl.as_model(guide), self.params)
        args, kwargs = self.args, self.kwargs
        lw = jax.jit(jax.vmap(lambda k: log_weight(model, g.simulate(k, *args, **kwargs), *args, **kwargs)))(
            jax.random.split(key, int(num_samples)))
        return pareto_k(lw)

    @property
    def pareto_k(self) -> float:
        """PSIS k̂ of the fitted guide's importance weights (:meth:`psis_diagnostic` with its
        defaults, computed on first access and kept)."""
        if "_pareto_k" not in self.__dict__:
            self.__dict__["_pareto_k"] = self.psis_diagnostic()
        return self.__dict__["_pareto_k"]

    def sample_posterior(self, key: Any, guide: Any, *args: Any, num_samples: int = 1000, **kwargs: Any) -> dict:
        """Draws from the fitted guide: address -> array with a leading ``num_samples`` axis.

        Pass them to ``ppl.predictive(model, draws, *args, key=...)`` for posterior predictions.
        """
        return sample_posterior(key, guide, self.params, *args, num_samples=num_samples, **kwargs)


def sample_posterior(key: Any, guide: Any, params: Mapping[str, Any], *args: Any, num_samples: int = 1000, **kwargs: Any) -> dict:
    """`num_samples` draws of the latent sites of `guide` with its ``ppl.param`` sites set to `params`.

    Example:
        >>> @ppl.model
        ... def guide():
        ...     ppl.sample("mu", dist.Normal(ppl.param("loc", 0.0), 1.0))
        >>> vi.sample_posterior(jax.random.key(0), guide, {"loc": 2.0}, num_samples=500)["mu"].shape
        (500,)
    """
    key = check_key(key, "vi.sample_posterior")
    g = ppl.as_model(guide)
    names = set(params)

    def one(k):
        tr = ppl.substitute(g, {n: v for n, v in params.items() if n in names}).simulate(k, *args, **kwargs)
        return {k: v for k, v in tr.latent.items() if not is_auxiliary(k)}  # a flow guide's base noise

    return jax.vmap(one)(jax.random.split(key, int(num_samples)))


def _args_from(data: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if data is None:
        return tuple(args), dict(kwargs)
    if isinstance(data, tuple):
        return tuple(data) + tuple(args), dict(kwargs)
    if isinstance(data, Mapping):
        return tuple(args), {**dict(data), **kwargs}
    return (data,) + tuple(args), dict(kwargs)


def _init_params(objective: Objective, key: Any, args: tuple, kwargs: dict, models: tuple = ()) -> dict:
    """``objective.init_params`` compiled once per objective (an eager run of a network-sized
    program costs more than many optimisation steps); eager when the program cannot be traced."""
    f = PROGRAMS.get(objective, ("vi.init_params",),
                     lambda: eqx.filter_jit(lambda k, a, kw: objective.init_params(k, *thaw(a), **thaw(kw))))
    try:
        return dict(f(key, args, kwargs))
    except VIError:
        raise
    except Exception as e:  # e.g. a program that needs concrete values while initialising
        if retry_concretely(e, models, (args, kwargs), False):  # issue 17: its NumPy data concrete
            try:
                return dict(f(key, *freeze((args, kwargs))))
            except VIError:
                raise
            except Exception:  # noqa: BLE001 - eager below
                pass
        args, kwargs = thaw((args, kwargs))
        return objective.init_params(key, *args, **kwargs)


def _compiled(objective: Objective, key: tuple, fn: Any) -> Any:
    """``fn`` (a function of the parameters alone) jitted once per (objective, key) (issue 19: run
    eagerly, the guide's bijections cost milliseconds of host dispatch on every call); ``fn``
    itself, eager, when the key is unhashable or ``fn`` cannot be traced."""
    try:
        f = PROGRAMS.get(objective, key, lambda: jax.jit(fn))
    except TypeError:  # an unhashable optimizer
        return fn

    def call(x: Any) -> Any:
        try:
            return f(x)
        except Exception:  # noqa: BLE001 - eager below (e.g. a bijection that needs concrete values)
            return fn(x)

    return call


def _with_strategies(objective: Objective, strategies: Mapping[str, str]) -> Objective:
    """``objective.with_strategies(strategies)``, one object per (objective, strategies), so
    its compiled programs are cached too."""
    skey = tuple(sorted(dict(strategies).items()))
    return PROGRAMS.get(objective, ("vi.with_strategies", skey), lambda: objective.with_strategies(strategies))


def _default_chunk(num_steps: int, progress: bool, extra: int = 0) -> int:
    """Steps per compiled chunk when the user gives none: about 20 chunks when progress is shown;
    without progress (and without early stopping) as few chunks as :data:`MAX_CHUNK` allows, since
    every chunk is a dispatch and a host sync (issue 19: 20 of them cost more than 2000 steps of a
    small model; the result does not depend on the chunk size).  ``extra`` iterations (the final
    check of ``average="auto"``) follow the steps in the last chunk: they do not add a chunk."""
    if progress:
        return choose_chunk_size(num_steps + extra, phases=(num_steps + extra,))
    n_chunks = -(-int(num_steps) // MAX_CHUNK)
    return max(1, -(-(int(num_steps) + extra) // max(n_chunks, 1)))


_PLAIN = (bool, int, str, bytes, type(None))


def optimizer_key(optimizer: Any) -> Any:
    """A cache key for an optax optimizer by its *structure*: the code of its ``init``/``update``
    functions and, recursively, the values they close over (hyperparameters, inner
    transformations of a chain, schedules), so a fresh ``optax.adam(1e-2)`` finds the program the
    last one compiled.  Two optimizers with equal keys compute the same updates, because a
    compiled step bakes in exactly that code and those values.  Anything else among the closed-over
    values (an array, an object) makes the key the optimizer itself (identity: always safe).

    Example:
        >>> import optax
        >>> optimizer_key(optax.adam(1e-2)) == optimizer_key(optax.adam(1e-2))
        True
        >>> optimizer_key(optax.adam(1e-2)) == optimizer_key(optax.adam(2e-2))
        False
    """

    class _Opaque(Exception):
        pass

    def key(x: Any, depth: int) -> Any:
        if depth > 50:
            raise _Opaque
        if isinstance(x, float):
            return ("float", repr(x))
        if isinstance(x, _PLAIN):
            return (type(x).__name__, x)
        if isinstance(x, (tuple, list)):
            return (type(x).__name__, tuple(key(v, depth + 1) for v in x))
        if isinstance(x, dict):
            return ("dict", tuple((k, key(v, depth + 1)) for k, v in sorted(x.items(), key=lambda kv: repr(kv[0]))))
        code = getattr(x, "__code__", None)
        if code is not None and not hasattr(x, "__self__"):  # a plain function or closure
            cells = tuple(cell(c, depth + 1) for c in (x.__closure__ or ()))
            return ("fn", code, key(x.__defaults__, depth + 1), key(x.__kwdefaults__, depth + 1), cells)
        if isinstance(x, tuple) or hasattr(x, "_fields"):  # NamedTuples (optax's GradientTransformation)
            return (type(x), tuple(key(v, depth + 1) for v in x))
        raise _Opaque

    def cell(c: Any, depth: int) -> Any:
        try:
            contents = c.cell_contents
        except ValueError:  # an empty cell (a name not yet bound): part of the code's structure
            return ("empty-cell",)
        return key(contents, depth)

    try:
        return ("optax-structure", key(optimizer, 0))
    except _Opaque:
        return optimizer


_OPT_KEYS: dict = {}


def _optimizer_key_memo(optimizer: Any) -> Any:
    """:func:`optimizer_key`, remembered for the last few optimizer objects (held, so their ids
    stay theirs): a fit called again with the same optax object skips the walk."""
    hit = _OPT_KEYS.get(id(optimizer))
    if hit is not None and hit[0] is optimizer:
        return hit[1]
    k = optimizer_key(optimizer)
    if len(_OPT_KEYS) >= 8:
        _OPT_KEYS.pop(next(iter(_OPT_KEYS)))
    _OPT_KEYS[id(optimizer)] = (optimizer, k)
    return k


def _average_in(acc: Any, u: Any, live: Any) -> Any:
    """The running mean ``(mean, count)`` of the iterates, ``u`` entering it when ``live`` (a
    traced bool): ``mean + (u − mean) / count`` (issue 19: Polyak–Ruppert averaging)."""
    m, c = acc
    c2 = c + live.astype(c.dtype)
    f = live / jnp.maximum(c2, 1).astype(jnp.float32)
    return jax.tree.map(lambda a, x: a + f.astype(a.dtype) * (x - a), m, u), c2


# issue 19 (h19b): the adaptive window of ``average="auto"``: the time constants (steps) of the
# fast and slow moving averages of the objective, and the margin (in standard errors of the
# fast average) by which the fast one must exceed the slow one for the fit to count as improving
AUTO_FAST, AUTO_SLOW, AUTO_MARGIN = 10.0, 50.0, 2.0
# ... and the final check: the objective at the average and at the last iterate, estimated with
# the same draws (common random numbers) at AUTO_CHECK pairs of extra iterations of the steps'
# own compiled body (issue 19, h19c: no second compiled objective); the average is kept only if
# not worse
AUTO_CHECK = 32
AUTO_EXTRA = 2 * AUTO_CHECK  # the iterations after the last step of a run with average="auto"


def _auto_in(acc: Any, u: Any, v: Any, live: Any) -> Any:
    """One step of ``average="auto"``: ``acc = (mean, count, fast, slow, var, seen)``.  The fast
    and slow exponential moving averages of the objective ``v`` (time constants
    :data:`AUTO_FAST`, :data:`AUTO_SLOW`; a plain running mean while fewer steps were seen) and
    a running variance of ``v`` about the fast one are updated (not by a non-finite ``v``); when
    the fit is still improving, ``fast − slow > AUTO_MARGIN · sd / sqrt(2 · AUTO_FAST)`` (the fast
    average's noise), the running mean restarts, so it covers only the steps since the objective
    stopped improving; ``u`` enters it when ``live`` (the cap: the last fraction of the run).
    Dhaka et al. (2020) in spirit: average only once the iterates are stationary."""
    m, c, fast, slow, var, seen = acc
    ok = jnp.isfinite(v)
    v = jnp.where(ok, v, 0.0).astype(fast.dtype)
    seen2 = seen + ok.astype(seen.dtype)
    n = jnp.maximum(seen2, 1).astype(fast.dtype)
    af, as_ = jnp.maximum(1.0 / n, 1.0 / AUTO_FAST), jnp.maximum(1.0 / n, 1.0 / AUTO_SLOW)
    fast2 = jnp.where(ok, fast + af * (v - fast), fast)
    slow2 = jnp.where(ok, slow + as_ * (v - slow), slow)
    dev2 = jnp.where(seen > 0, (v - fast) ** 2, 0.0)  # about the fast average before this step (none at the first)
    var2 = jnp.where(ok, var + as_ * (dev2 - var), var)
    improving = fast2 - slow2 > AUTO_MARGIN * jnp.sqrt(var2 / (2.0 * AUTO_FAST))
    c0 = jnp.where(improving, 0, c)
    m2, c2 = _average_in((m, c0), u, live)
    return m2, c2, fast2, slow2, var2, seen2


class _FitPrograms:
    """The compiled programs of one (objective, optimizer, settings, argument structure): plain
    ``jax.jit`` functions of the traced arguments ``dyn`` (:func:`inference._run.concrete.split`;
    the concrete ones and the structure are closed over), so a warm call dispatches each with
    no per-call filtering (issue 19: ``eqx.filter_jit`` cost ~0.3 ms a call).

    * ``start(key, dyn) -> (u, opt_state, acc, run_key)``: the initial parameters (strongly
      typed), the optimizer's state, an empty average and the key of the steps, in one program.
    * ``run_chunk(u, st, acc, run_key, t0, n_end, a0, dyn, full)``: steps t0 .. t0 + chunk − 1
      (those ≥ n_end change nothing); the iterate after step t enters the average ``acc`` when
      t ≥ a0; ``full`` (static: :func:`~inference._run.loop.scan_chunk`) when every step is live.
    * ``finish(u, acc) -> (u_avg, params, last_params, finite)``: the average (the last iterate
      when nothing was averaged), both constrained, and whether every value of ``params`` is finite.
    * ``whole(key, dyn, a0) -> (values, u, u_avg, params, last_params, finite)``: a run of exactly
      ``chunk`` steps as one program (one dispatch, one host sync: a warm call's fixed cost)."""

    def __init__(self, objective: Objective, optimizer: Any, opt_key: Any, chunk: int, num_samples: int,
                 baseline: Any, treedef: Any, statics: tuple, averaging: Any = True):
        def start(key, dyn):
            args, kwargs = join(treedef, statics, dyn)
            k_init, k_run = jax.random.split(key)
            u = _strong(dict(objective.init_params(k_init, *args, **kwargs)))
            return u, optimizer.init(u), _empty_average(u, averaging), k_run

        def run_chunk(u, st, acc, k, t0, n_end, a0, dyn, full=False):
            args, kwargs = join(treedef, statics, dyn)

            def loss(u, k):
                s, v = objective.surrogate(k, u, *args, num_samples=num_samples, baseline=baseline, **kwargs)
                return -s, v

            def step(k_t, carry, t):
                u, st, acc = carry
                if averaging == "auto":
                    return auto_step(k_t, carry, t)
                g, v = jax.grad(loss, has_aux=True)(u, k_t)
                updates, st2 = optimizer.update(g, st, u)
                u2 = jax.tree_util.tree_map(lambda a, b: a + b, u, updates)
                # no averaging asked (static): the step is the plain optimizer step
                return (u2, st2, _average_in(acc, u2, t >= a0) if averaging else acc), v

            def auto_step(k_t, carry, t):
                # issue 19 (h19c): iterations t >= n_end are the final check of average="auto",
                # run by this same body (one compiled objective): pair p = (t - n_end) // 2
                # evaluates the objective at the running mean (even t - n_end) and at the last
                # iterate (odd) with the key of step n_end + p, and changes nothing
                u, st, acc = carry
                chk = t >= n_end
                at_mean = chk & ((t - n_end) % 2 == 0)
                x = jax.tree.map(lambda a, b: jnp.where(at_mean, a, b), acc[0], u)
                kk = jax.random.fold_in(k, jnp.where(chk, n_end + (t - n_end) // 2, t))
                g, v = jax.grad(loss, has_aux=True)(x, kk)
                updates, st2 = optimizer.update(g, st, u)
                u2 = jax.tree_util.tree_map(lambda a, b: a + b, u, updates)
                acc2 = _auto_in(acc, u2, v, t >= a0)
                keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(chk, b, a), new, old)  # noqa: E731
                return (keep(u2, u), keep(st2, st), keep(acc2, acc)), v

            # with "auto" the live iterations run AUTO_EXTRA past the last step (the check)
            bound = n_end + AUTO_EXTRA if averaging == "auto" else n_end
            return scan_chunk(step, k, (u, st, acc), t0, bound, chunk, full=full)

        def choose(u, acc, k, n, dyn):
            # average="auto" stopped (patience, Ctrl-C) after n steps, before its check ran: the
            # same check (pair p: the key of step n + p) as a program of its own
            args, kwargs = join(treedef, statics, dyn)

            def value(x, p):
                return objective.surrogate(jax.random.fold_in(k, n + p), x, *args, num_samples=num_samples,
                                           baseline=baseline, **kwargs)[1]

            both = jax.vmap(lambda p: jnp.stack([value(acc[0], p), value(u, p)]))(jnp.arange(AUTO_CHECK))
            return _checked(acc, both)

        def finish(u, acc):
            m, c = acc[:2]
            avg = jax.tree.map(lambda a, b: jnp.where(c > 0, a, b), m, u)
            params = objective.constrain(avg)
            finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]
            return avg, params, objective.constrain(u), jnp.all(jnp.stack(finite)) if finite else jnp.array(True), c

        # start and finish do not depend on the chunk size: one of each per chunk sizes' programs
        self.start = _cached(objective, ("vi.fit.start", opt_key, treedef, statics) + (("auto",) if averaging == "auto" else ()),
                             lambda: jax.jit(start))
        self.run_chunk = jax.jit(run_chunk, static_argnums=(8,))
        self.finish = _cached(objective, ("vi.fit.finish",), lambda: jax.jit(finish))

        def whole(key, dyn, a0):  # start, every step (one full chunk) and finish in one program
            u, st, acc, k_run = start(key, dyn)
            n = chunk - AUTO_EXTRA if averaging == "auto" else chunk  # the steps; then the check
            (u, st, acc), vals = run_chunk(u, st, acc, k_run, jnp.int32(0), jnp.int32(n), a0, dyn, True)
            if averaging == "auto":
                acc = _checked(acc, vals[n:])
                vals = vals[:n]
            return (vals, u) + tuple(finish(u, acc))

        self.whole = jax.jit(whole)  # traced on its first call only
        self.averaging = averaging
        self.choose = jax.jit(choose)


def _checked(acc: Any, check: Any) -> tuple:
    """``acc`` with its count set to 0 (the last iterate is returned) unless the objective at the
    mean is not below the one at the last iterate: ``check`` holds the :data:`AUTO_CHECK` pairs
    (at the mean, at the last iterate) of estimates with common draws (NaN at the mean: refused)."""
    pairs = jnp.reshape(check, (-1, 2))
    vm, vu = jnp.mean(pairs[:, 0]), jnp.mean(pairs[:, 1])
    keep = (acc[1] > 0) & (vm >= vu)
    return (acc[0], jnp.where(keep, acc[1], 0)) + tuple(acc[2:])


def _cached(objective: Objective, key: tuple, build: Any) -> Any:
    try:
        return PROGRAMS.get(objective, key, build)
    except TypeError:  # unhashable: no caching
        return build()


def _strong(u: dict) -> dict:
    # issue 19: strongly typed, as the chunks return them (a weakly typed ``ppl.param(.., 0.0)``
    # would make the second chunk's carry another type: a second trace and compile of the loop)
    return jax.tree.map(lambda v: jnp.asarray(v, dtype=jnp.result_type(v)) if getattr(v, "weak_type", False) or not hasattr(v, "dtype") else v, u)


def _empty_average(u: Any, averaging: Any = True) -> tuple:
    acc = jax.tree.map(jnp.zeros_like, u), jnp.zeros((), jnp.int32)
    if averaging == "auto":  # the moving averages of the objective (:func:`_auto_in`)
        z = jnp.zeros((), jnp.float32)
        acc = acc + (z, z, z, jnp.zeros((), jnp.int32))
    return acc


def _fit_programs(objective: Objective, optimizer: Any, opt_key: Any, chunk: int, num_samples: int, baseline: Any,
                  treedef: Any, statics: tuple, averaging: Any = True) -> _FitPrograms:
    """:class:`_FitPrograms`, cached (:mod:`inference._run.cache`): a second ``fit`` with the same
    objective, optimizer (by :func:`optimizer_key`), settings and argument structure compiles
    nothing, whatever ``num_steps``, the data values or the key are."""

    def build():
        return _FitPrograms(objective, optimizer, opt_key, chunk, num_samples, baseline, treedef, statics, averaging)

    try:
        return PROGRAMS.get(objective, ("vi.fit", opt_key, chunk, num_samples, baseline, treedef, statics, averaging), build)
    except TypeError:  # an unhashable optimizer or concrete argument: no caching
        return build()


def _why_non_finite(objective: Objective, guide: Any, uparams: Any, args: tuple, kwargs: dict) -> str:
    model = getattr(objective, "model", None)
    hint = None
    if model is not None and guide is not None:
        hint = support_mismatch(model, guide, objective.constrain(uparams), args, kwargs)
    return hint or "check the guide's initial scale and the learning rate"


AVERAGE = "auto"
"""The default ``average`` of :func:`fit`: ``"auto"``, the adaptive window with its final check
(issue 19, h19c: never below the last iterate on the benchmarks, and since its check runs in the
steps' own compiled loop it costs no second compiled objective; ``benchmarks/RESULTS.md``, "h19c").
A fixed fraction lags while the fit still moves (h19); 0 is the plain last iterate."""


AUTO_CAP = 0.5
"""With ``average="auto"``: the window never reaches back further than this fraction of the run."""


def _check_average(average: Any) -> tuple:
    """``(mode, fraction)``: mode ``"auto"`` (the adaptive window, capped at :data:`AUTO_CAP`),
    ``True`` (the fixed window: the last ``fraction`` of the run) or ``False`` (off)."""
    if isinstance(average, str) and average == "auto":
        return "auto", AUTO_CAP
    if average is False:
        average = 0.0
    try:
        a = math.nan if isinstance(average, bool) else float(average)
    except (TypeError, ValueError):
        a = math.nan
    if not 0.0 <= a <= 1.0:  # also NaN
        raise ArgumentError(f"vi.fit: average must be a fraction of the run in [0, 1] (0: the last iterate; 0.5: the mean "
                            f"of the iterates of the last half of the steps) or \"auto\" (the adaptive window), got {average!r}.")
    return a > 0, a


def fit_health(history: Any, params: Mapping[str, Any], why: str = "") -> Any:
    """The :class:`~inference._health.Health` of a fit (the library's one policy, issue 18):
    **failed** when a fitted parameter is not finite (nothing usable: the optimiser diverged);
    **degraded** when the objective's estimate was not finite at some step though the
    parameters are (``why`` says what is suspected, e.g. the guide site whose support is wrong).
    ``details``: ``non_finite_steps`` and ``first_non_finite_step``.

    Example:
        >>> fit_health(np.array([-3.0, np.nan, -2.0]), {"loc": 0.1}).status
        'degraded'
        >>> fit_health(np.array([-3.0, -2.0]), {"loc": np.nan}).status
        'failed'
    """
    from .._health import Health

    hist = np.asarray(history, dtype=float)
    bad = ~np.isfinite(hist)
    details = {"non_finite_steps": int(bad.sum()), "first_non_finite_step": int(np.argmax(bad)) if bad.any() else None}
    why = f"; {why}" if why else ""
    failed = [f"parameter {k!r} is not finite after the fit" for k, v in params.items()
              if not all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(v))]
    if failed:
        failed[-1] += f" (the optimiser diverged{why})"
    degraded = []
    if bad.any() and not failed:
        degraded.append(f"the objective was not finite at {int(bad.sum())} of {hist.size} steps, first at step "
                        f"{details['first_non_finite_step']}{why}")
    return Health("vi.fit", tuple(failed), tuple(degraded), details)


def fit(
    key: Any,
    objective: Objective,
    optimizer: Any,
    *args: Any,
    num_steps: int = 1000,
    data: Any = None,
    num_samples: int = 1,
    baseline: str | None = None,
    strategies: Mapping[str, str] | None = None,
    init_params: Mapping[str, Any] | None = None,
    average: float | str | None = None,
    patience: int | None = None,
    chunk_size: int | None = None,
    min_delta: float = 1e-4,
    progress: bool | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> VIResult:
    """Maximise `objective` with the optax `optimizer` for up to `num_steps` steps.

    `data` supplies the objective's arguments: a tuple (positional), a mapping (keywords), or one
    positional argument; further ``*args``/``**kwargs`` follow.  `num_samples` independent
    gradient estimates are averaged per step (``baseline="loo"``: leave-one-out baselines for
    score-function sites).  `strategies` maps addresses to gradient strategies.
    `init_params` gives constrained initial values for some params (to continue a fit, pass
    ``init_params=result.last_params``: the last iterate; the optimizer's state starts afresh).
    `average` (default ``"auto"``, below; or a fraction a in [0, 1], 0: off) returns as
    ``params`` an average of the last iterates (Polyak–Ruppert averaging, taken in the
    unconstrained space where the optimizer moves, then constrained; ``result.last_params`` is
    the last iterate, ``result.averaged_steps`` counts the iterates averaged, 0 when ``params`` is
    the last iterate): at a constant learning rate the last iterate jitters on the optimum's
    plateau and the average does not (issue 19: the Brownian motion's full-rank fit at 2000 steps
    of Adam 1e-2, ELBO 5.02 with ``average=0.25`` against 2.99 for the last iterate, log Z 5.61).
    A fixed fraction a averages the iterates of the last ⌈a·num_steps⌉ steps; while the fit is
    still moving it lags (Howell m4.3 at 250 steps: 17 nats worse with 0.25).  With `patience`
    its window is the same steps of the requested ``num_steps``: a run stopped before reaching it
    returns the last iterate.  ``average="auto"`` (issue 19, h19b/h19c) adapts the window: two
    moving averages of the objective (10 and 50 steps) tell whether the fit is still improving
    (the fast one above the slow one by more than two standard errors of the fast one), and while
    it is the running mean restarts, so it covers only the steps since the objective stopped
    improving, within the last half of the run; after the last step the objective at the average
    and at the last iterate is estimated with the same draws, in :data:`AUTO_CHECK` pairs of extra
    iterations of the steps' own compiled body (each as many draws as a step; they change no
    parameter and are not in ``history``), and the average is kept only if it is not worse.  Over
    10 seeds it was never below the last iterate at 250/500/1000/2000 steps on three benchmark
    problems and kept most of the plateau gain (``benchmarks/RESULTS.md``).  Its cost: a few
    scalar operations per step and 2·:data:`AUTO_CHECK` more gradient evaluations per fit, no
    second compiled objective.  ``average=0`` gives the plain optimizer's last iterate (a loop
    with no running mean: another program).
    The steps run in compiled
    chunks of `chunk_size` steps (None: about 20 chunks when progress is shown, else as few as
    possible, at most 1024 steps each; the result does not depend on it).
    With `patience` the run stops once `patience` consecutive chunks (default size
    ``max(10, num_steps // 20)``) improve the mean objective by less than
    ``min_delta · max(1, |mean|)``.  `progress` shows ``vi.fit: step/num_steps | objective``
    between chunks (default: in a terminal or notebook, not under ``CI``).  Ctrl-C between
    chunks returns the result so far (``interrupted=True``); a run of one chunk without progress,
    ``patience``, ``init_params`` or ``chunk_size`` is one compiled program (start, steps and
    finish: the fixed cost of a call), which Ctrl-C stops with ``KeyboardInterrupt``.  ``model_kwargs`` gives the
    objective's keyword arguments as a dict whatever their names; a keyword given directly must
    be a parameter of the model or guide (see :mod:`inference._calling`), else it is an error
    with "did you mean" (``num_step=``: ``num_steps``).

    Returns a :class:`VIResult` with constrained ``params`` and the objective's ``history``.
    The compiled loop (and the parameters' initialisation) is cached: fitting the same
    objective again with the same optimizer, settings and argument shapes (new data values, a
    new key, another ``num_steps`` with the same ``chunk_size``) compiles nothing.

    Raises:
        ppl.errors.ArgumentError: when the objective's model or guide (``objective.model``,
            ``objective.guide``) has a parameter named like one of the options above.

    Example:
        >>> import optax
        >>> @ppl.model
        ... def model(x):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> @ppl.model
        ... def guide(x):
        ...     ppl.sample("mu", dist.Normal(ppl.param("loc", 0.0), 0.7))
        >>> result = vi.fit(jax.random.key(0), vi.elbo(model, guide), optax.adam(0.05),
        ...                 num_steps=300, data=1.0, progress=False)
        >>> sorted(result.params), result.history.shape
        (['loc'], (300,))
    """
    key = check_key(key, "vi.fit")
    validate("vi.fit", num_steps=(num_steps, 1), num_samples=(num_samples, 1), patience=(patience, 1),
             chunk_size=(chunk_size, 1))  # issue 18: one check of the counts at the entry point
    if not isinstance(objective, Objective):
        raise VIError(f"vi.fit expects a vi.Objective (e.g. vi.elbo(model, guide)), got {type(objective).__name__}.")
    if not hasattr(optimizer, "init") or not hasattr(optimizer, "update"):
        raise VIError(f"vi.fit expects an optax optimizer such as optax.adam(1e-2), got {type(optimizer).__name__}.")
    for part in ("model", "guide"):
        m = getattr(objective, part, None)
        if m is not None:
            check_option_clash("vi.fit", m, set(given_options(fit, dict(
                num_steps=num_steps, num_samples=num_samples, baseline=baseline, strategies=strategies,
                init_params=init_params, patience=patience, chunk_size=chunk_size, min_delta=min_delta,
                progress=progress, average=average))) - set(model_kwargs or ()))
    kwargs = model_keywords("vi.fit", fit, [getattr(objective, p, None) for p in ("model", "guide")], kwargs,
                            model_kwargs)
    num_steps = int(num_steps)
    if num_steps < 1:
        raise VIError(f"vi.fit: num_steps must be at least 1, got {num_steps}.")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ArgumentError(f"vi.fit: chunk_size must be >= 1 (or None), got {chunk_size}.")
    mode, average = _check_average(AVERAGE if average is None else average)
    guide = getattr(objective, "guide", None)
    if strategies:
        objective = _with_strategies(objective, strategies)
    args, kwargs = _args_from(data, args, kwargs)
    # issue 14: the programs below trace the data, where the element-by-element check of a model's
    # summed-out sites cannot run: it runs here, at the concrete inputs (cached per model, inputs)
    check_summed_out(objective, key, args, kwargs)
    # issue 17: NumPy data traced unless the model's body needs it concrete (inference._run.concrete)
    parts = [getattr(objective, p, None) for p in ("model", "guide")]
    on = progress_default() if progress is None else bool(progress)
    opt_key = _optimizer_key_memo(optimizer)
    # average="auto": the check's iterations follow the steps (none when a plateau may stop the run)
    extra = AUTO_EXTRA if mode == "auto" and patience is None else 0
    if patience is not None:
        chunk = int(chunk_size or max(10, num_steps // 20))
    else:
        chunk = int(chunk_size) if chunk_size else _default_chunk(num_steps, on, extra)
    P = {"concrete": remembered(*parts)}  # issue 17: NumPy data concrete when the body needs it

    def programs(concrete: bool) -> None:
        treedef, statics, dyn = split((tuple(args), dict(kwargs)), concrete)
        P.update(concrete=concrete, dyn=dyn,
                 progs=_fit_programs(objective, optimizer, opt_key, chunk, num_samples, baseline, treedef, statics,
                                     mode))

    programs(P["concrete"])
    n_end, a0 = np.int32(num_steps), np.int32(num_steps - int(math.ceil(average * num_steps)))
    whole = None
    n_run = num_steps + extra  # iterations run: the steps, then the check of average="auto"
    if chunk_size is None and patience is None and not init_params and not on and chunk == n_run:
        # issue 19: one chunk, nothing to do between steps: the whole fit as one program (its
        # fixed cost one dispatch and one sync, as a jitted scan); on any failure (a model that
        # needs concrete data, ...) the chunked path below, with its fallbacks and errors
        for attempt in (0, 1):
            try:
                with gc_paused():
                    whole = P["progs"].whole(key, P["dyn"], a0)
                break
            except Exception as e:  # noqa: BLE001 - concrete NumPy data once, else the general path decides
                if attempt or not retry_concretely(e, parts, (args, kwargs), P["concrete"]):
                    break
                programs(True)
    display = Progress(on, "vi.fit", num_steps)
    history: list[np.ndarray] = []
    plateau = {"prev": None, "flat": 0, "stopped": False}

    def dispatch(carry, t0):
        u, st, acc = carry
        full = t0 + chunk <= n_run  # no per-step branch unless the chunk runs past the end
        if t0 == 0:  # the first call traces and compiles (unless cached)
            with gc_paused():
                try:
                    return P["progs"].run_chunk(u, st, acc, state[3], np.int32(t0), n_end, a0, P["dyn"], full)
                except Exception as e:  # noqa: BLE001 - re-raised unless the body needs concrete NumPy data
                    if not retry_concretely(e, parts, (args, kwargs), P["concrete"]):
                        raise
                programs(True)
                return P["progs"].run_chunk(u, st, acc, state[3], np.int32(t0), n_end, a0, P["dyn"], full)
        return P["progs"].run_chunk(u, st, acc, state[3], np.int32(t0), n_end, a0, P["dyn"], full)

    def collect(vals, t0, m):
        history.append(np.asarray(vals)[:m])

    def after(carry, done, last):
        vals = history[-1]
        if done > num_steps:  # the check's iterations of average="auto"
            vals = vals[:max(0, len(vals) - (done - num_steps))]
            if not len(vals):
                return False
        display(min(done, num_steps), f"objective {float(vals[-1]):.6g}")
        if patience is None or last:
            return False
        m = float(np.mean(vals))
        prev = plateau["prev"]
        if prev is not None and m - prev < min_delta * max(1.0, abs(prev)):
            plateau["flat"] += 1
        else:
            plateau["flat"] = 0
        plateau["prev"] = m if prev is None else max(prev, m)
        if plateau["flat"] >= patience:
            plateau["stopped"] = True
            return True
        return False

    if whole is None:
        with gc_paused():
            state = _start(objective, optimizer, opt_key, key, P, programs, parts, args, kwargs, init_params)
        try:
            (last_u, _, acc), done, interrupted = host_loop(dispatch, state[:3], 0, n_run, chunk, collect, after)
        finally:
            display.close()
        hist = np.concatenate(history) if history else np.zeros((0,))
        checked = extra and done >= n_run
        hist, done = hist[:num_steps], min(done, num_steps)
        try:
            if checked:  # the check ran in the loop (its iterations after the steps)
                acc = _checked(acc, np.concatenate(history)[num_steps:n_run])
            elif mode == "auto":  # stopped before (patience, Ctrl-C): the check as a program of its own
                acc = P["progs"].choose(last_u, acc, state[3], np.int32(done), P["dyn"])
            uparams, params, last_params, finite, count = P["progs"].finish(last_u, acc)
        except Exception:  # noqa: BLE001 - eager (e.g. a bijection that needs concrete values)
            uparams = jax.tree.map(lambda a, b: a if int(acc[1]) > 0 else b, acc[0], last_u)
            params, last_params, finite, count = objective.constrain(uparams), objective.constrain(last_u), False, acc[1]
    else:
        vals, last_u, uparams, params, last_params, finite, count = whole
        vals, finite, count = jax.device_get((vals, finite, count))  # one transfer for what the host reads
        hist, done, interrupted = np.asarray(vals), num_steps, False
    why = ""
    finite = bool(finite) and bool(np.all(np.isfinite(hist)))  # one read of the device's verdict
    if not finite and (not np.all(np.isfinite(hist)) or not all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(params))):
        why = _why_non_finite(objective, guide, uparams, args, kwargs)  # issue 18: name the site when it is the guide's support
    if interrupted:
        warnings.warn(f"vi.fit: interrupted; returning the parameters after {done} of {num_steps} steps.", stacklevel=2)
    res = VIResult(
        params=params,
        uparams=uparams,
        history=hist,
        num_steps=done,
        stopped_early=plateau["stopped"],
        objective=objective,
        interrupted=interrupted,
        guide=guide,
        args=args,
        kwargs=kwargs,
        health=fit_health(hist, {} if finite else params, why),  # finite: nothing in params to report
        last_params=last_params,
        last_uparams=last_u,
        averaged_steps=int(count),  # the iterates in the mean (counted on the device)
    )
    return res if interrupted else enforce(res.health, res)  # issue 18: raise or warn (one policy)


def _start(objective: Objective, optimizer: Any, opt_key: Any, key: Any, P: dict, programs: Any, parts: list,
           args: tuple, kwargs: dict, init_params: Mapping[str, Any] | None) -> tuple:
    """``(u, opt_state, average, run_key)`` at step 0: the cached start program (one dispatch);
    when it cannot be traced, the initialisation with its own fallbacks (compiled, concrete
    NumPy data, eager: :func:`_init_params`).  ``init_params`` (constrained values) override."""
    out = None
    for attempt in (0, 1):
        try:
            out = P["progs"].start(key, P["dyn"])
            break
        except VIError:
            raise
        except Exception as e:  # noqa: BLE001 - concrete NumPy data once, else the step-by-step path
            if attempt or not retry_concretely(e, parts, (args, kwargs), P["concrete"]):
                break
            programs(True)
    if out is not None:
        u, st, acc, k_run = out
    else:
        k_init, k_run = jax.random.split(key)
        u = _strong(_init_params(objective, k_init, *(freeze((args, kwargs)) if P["concrete"] else (args, kwargs)),
                                 models=tuple(parts)))
        st = None
    if init_params:
        unknown = [k for k in init_params if k not in u]
        if unknown:
            raise VIError(f"vi.fit: init_params names {unknown[0]!r}, which is not a param of the objective (params: {sorted(u)}).")
        u = _strong({**u, **objective.unconstrain(init_params)})
        st = None
    if st is None:
        st = _compiled(objective, ("vi.optimizer_init", opt_key), optimizer.init)(u)
        acc = _empty_average(u, P["progs"].averaging)
    return u, st, acc, k_run


# a diagnosis of non-finite objectives (issue 18); here, not in ppl.checks: it runs models through
# ppl.handlers, which ppl.core (and so ppl.checks) must not import
def support_mismatch(model: Any, guide: Any, params: dict, args: tuple = (), kwargs: dict | None = None) -> str | None:
    """A sentence naming the first latent site whose distribution in ``guide`` (with its
    ``ppl.param`` sites set to ``params``) has another support than in ``model`` (a Normal guide
    for a positive site: its draws leave the model's support and the objective becomes NaN), or
    ``None``.  Both are run once, eagerly, with a fixed key (the model from its prior); a model
    or guide that cannot be run so gives ``None``."""
    kwargs = dict(kwargs or {})
    try:
        with _handlers.trace() as g_sites:
            _handlers.seed(_handlers.substitute(guide, dict(params)), jax.random.key(0))(*args, **kwargs)
        with _handlers.trace() as m_sites:  # the model's own draws: a guide's value may lie outside its support
            _handlers.seed(model, jax.random.key(0))(*args, **kwargs)
    except Exception:  # a diagnosis only: never an error of its own
        return None
    for name, s in g_sites.items():
        m = m_sites.get(name)
        if s["type"] != "sample" or s["is_observed"] or m is None or m["type"] != "sample" or isinstance(s["fn"], dist.Delta):
            continue
        gs, ms = s["fn"].support, m["fn"].support
        if type(gs) is not type(ms) or repr(gs) != repr(ms):
            return (f"the guide's site {name!r} has support {gs} but the model's has {ms}: the guide draws "
                    f"values the model cannot score (use a guide with the model's support, e.g. "
                    f"dist.LogNormal for a positive site, or an automatic guide)")
    return None
