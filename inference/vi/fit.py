"""``fit``: maximise an objective with optax in one compiled loop.

The parameters are the unconstrained values u of every ``ppl.param`` site (the constrained
value is ``biject_to(constraint)(u)``).  Each step draws a fresh key, computes the objective's
unbiased gradient estimate (:meth:`Objective.surrogate`) and applies the optax update to
−gradient (optax minimises).  The loop is a ``lax.scan`` compiled once; with early stopping it
runs in chunks of the same compiled scan, stopping when the mean objective of a chunk improves
by less than ``min_delta`` (relative) for ``patience`` chunks in a row.  Progress is reported
from the device with ``jax.debug.callback`` (off under CI or when stderr is not a terminal).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.handlers import check_key

from .core import Objective, VIError

__all__ = ["fit", "VIResult", "sample_posterior"]


def _progress_default() -> bool:
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    try:
        return sys.stderr.isatty()
    except Exception:
        return False


def _report(total: int, i: Any, value: Any) -> None:
    i = int(i)
    end = "\n" if i >= total else ""
    sys.stderr.write(f"\rvi.fit: {i}/{total} | objective {float(value):.6g}{end}")
    sys.stderr.flush()


@dataclass
class VIResult:
    """The result of :func:`fit`.

    Attributes:
        params: address -> constrained value of every ``ppl.param`` site.
        uparams: the unconstrained values (what the optimiser moved).
        history: the objective's estimate at every step run (a NumPy array).
        num_steps: steps run (fewer than asked when stopped early).
        stopped_early: whether the plateau rule stopped the run.
        objective: the objective that was fitted.
    """

    params: dict
    uparams: dict
    history: np.ndarray
    num_steps: int
    stopped_early: bool
    objective: Objective = field(repr=False)

    def sample_posterior(self, key: Any, guide: Any, *args: Any, num_samples: int = 1000, **kwargs: Any) -> dict:
        """Draws from the fitted guide: address -> array with a leading ``num_samples`` axis.

        Pass them to ``ppl.predictive(model, draws, *args, key=...)`` for posterior predictions.
        """
        return sample_posterior(key, guide, self.params, *args, num_samples=num_samples, **kwargs)


def sample_posterior(key: Any, guide: Any, params: Mapping[str, Any], *args: Any, num_samples: int = 1000, **kwargs: Any) -> dict:
    """`num_samples` draws of the latent sites of `guide` with its ``ppl.param`` sites set to `params`.

    Example:
        >>> draws = vi.sample_posterior(key, guide, result.params, x, num_samples=500)
        >>> ppl.predictive(model, draws, x, key=key)["y"].shape
    """
    key = check_key(key, "vi.sample_posterior")
    g = ppl.as_model(guide)
    names = set(params)

    def one(k):
        tr = ppl.substitute(g, {n: v for n, v in params.items() if n in names}).simulate(k, *args, **kwargs)
        return tr.latent

    return jax.vmap(one)(jax.random.split(key, int(num_samples)))


def _args_from(data: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if data is None:
        return tuple(args), dict(kwargs)
    if isinstance(data, tuple):
        return tuple(data) + tuple(args), dict(kwargs)
    if isinstance(data, Mapping):
        return tuple(args), {**dict(data), **kwargs}
    return (data,) + tuple(args), dict(kwargs)


def _init_params(objective: Objective, key: Any, args: tuple, kwargs: dict) -> dict:
    """``objective.init_params`` compiled once per objective (an eager run of a network-sized
    program costs more than many optimisation steps); eager when the program cannot be traced."""
    f = objective.__dict__.get("_init_jit")
    if f is None:
        f = objective._init_jit = eqx.filter_jit(lambda k, a, kw: objective.init_params(k, *a, **kw))
    try:
        return dict(f(key, args, kwargs))
    except VIError:
        raise
    except Exception:  # e.g. a program that needs concrete values while initialising
        return objective.init_params(key, *args, **kwargs)


def _compiled_chunk(objective: Objective, optimizer: Any, num_steps: int, chunk: int, num_samples: int, baseline: Any, progress: bool):
    """The compiled chunk of the optimisation loop, cached on the objective: a second ``fit``
    with the same objective, optimizer, settings and argument shapes compiles nothing."""
    every = max(1, num_steps // 20)
    cache_key = (optimizer, num_steps, chunk, num_samples, baseline, progress)
    cache = objective.__dict__.setdefault("_fit_cache", {})
    try:
        hit = cache.get(cache_key)
    except TypeError:  # an unhashable optimizer: no caching
        cache_key, hit = None, None
    if hit is not None:
        return hit

    def run_chunk(u, st, k, start, args, kwargs):
        def loss(u, k):
            s, v = objective.surrogate(k, u, *args, num_samples=num_samples, baseline=baseline, **kwargs)
            return -s, v

        def step(carry, xs):
            u, st = carry
            t, k = xs
            g, v = jax.grad(loss, has_aux=True)(u, k)
            updates, st2 = optimizer.update(g, st, u)
            u2 = jax.tree_util.tree_map(lambda a, b: a + b, u, updates)
            live = t < num_steps
            if num_steps % chunk:  # the last chunk runs past num_steps: freeze those steps
                u2 = jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), u2, u)
                st2 = jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), st2, st)
            if progress:
                jax.lax.cond(
                    live & (((t + 1) % every == 0) | (t + 1 == num_steps)),
                    lambda: jax.debug.callback(_report, num_steps, t + 1, v),
                    lambda: None,
                )
            return (u2, st2), v

        ts = start + jnp.arange(chunk)
        keys = jax.vmap(lambda t: jax.random.fold_in(k, t))(ts)
        return jax.lax.scan(step, (u, st), (ts, keys))

    compiled = eqx.filter_jit(run_chunk)
    if cache_key is not None:
        cache[cache_key] = compiled
    return compiled


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
    patience: int | None = None,
    chunk_size: int | None = None,
    min_delta: float = 1e-4,
    progress: bool | None = None,
    **kwargs: Any,
) -> VIResult:
    """Maximise `objective` with the optax `optimizer` for up to `num_steps` steps.

    `data` supplies the objective's arguments: a tuple (positional), a mapping (keywords), or one
    positional argument; further ``*args``/``**kwargs`` follow.  `num_samples` independent
    gradient estimates are averaged per step (``baseline="loo"``: leave-one-out baselines for
    score-function sites).  `strategies` maps addresses to gradient strategies.
    `init_params` gives constrained initial values for some params.  With `patience` the run
    stops once `patience` consecutive chunks of `chunk_size` steps improve the mean objective by
    less than ``min_delta · max(1, |mean|)``.

    Returns a :class:`VIResult` with constrained ``params`` and the objective's ``history``.
    The compiled loop (and the parameters' initialisation) is cached on the objective: fitting
    the same objective again with the same optimizer, settings and argument shapes (new data
    values, a new key) compiles nothing.

    Example:
        >>> result = vi.fit(jax.random.key(0), vi.elbo(model, guide), optax.adam(1e-2),
        ...                 num_steps=2000, data=x)
        >>> result.params["loc"], result.history[-1]
    """
    key = check_key(key, "vi.fit")
    if not isinstance(objective, Objective):
        raise VIError(f"vi.fit expects a vi.Objective (e.g. vi.elbo(model, guide)), got {type(objective).__name__}.")
    if not hasattr(optimizer, "init") or not hasattr(optimizer, "update"):
        raise VIError(f"vi.fit expects an optax optimizer such as optax.adam(1e-2), got {type(optimizer).__name__}.")
    num_steps = int(num_steps)
    if num_steps < 1:
        raise VIError(f"vi.fit: num_steps must be at least 1, got {num_steps}.")
    if strategies:
        variants = objective.__dict__.setdefault("_variants", {})
        skey = tuple(sorted(dict(strategies).items()))
        if skey not in variants:
            variants[skey] = objective.with_strategies(strategies)
        objective = variants[skey]
    args, kwargs = _args_from(data, args, kwargs)
    progress = _progress_default() if progress is None else bool(progress)
    k_init, k_run = jax.random.split(key)
    uparams = _init_params(objective, k_init, args, kwargs)
    if init_params:
        unknown = [k for k in init_params if k not in uparams]
        if unknown:
            raise VIError(f"vi.fit: init_params names {unknown[0]!r}, which is not a param of the objective (params: {sorted(uparams)}).")
        uparams.update(objective.unconstrain(init_params))
    opt_state = optimizer.init(uparams)

    chunk = num_steps if patience is None else int(chunk_size or max(10, num_steps // 20))
    n_chunks = -(-num_steps // chunk)

    run_chunk = _compiled_chunk(objective, optimizer, num_steps, chunk, num_samples, baseline, progress)

    history: list[np.ndarray] = []
    prev = None
    flat = 0
    stopped = False
    done = 0
    for c in range(n_chunks):
        (uparams, opt_state), vals = run_chunk(uparams, opt_state, k_run, jnp.asarray(c * chunk), args, kwargs)
        vals = np.asarray(vals)[: num_steps - c * chunk]
        history.append(vals)
        done += len(vals)
        if patience is not None and c + 1 < n_chunks:
            m = float(np.mean(vals))
            if prev is not None and m - prev < min_delta * max(1.0, abs(prev)):
                flat += 1
            else:
                flat = 0
            prev = m if prev is None else max(prev, m)
            if flat >= patience:
                stopped = True
                break
    hist = np.concatenate(history) if history else np.zeros((0,))
    if not np.all(np.isfinite(hist)):
        bad = int(np.argmax(~np.isfinite(hist)))
        import warnings

        warnings.warn(f"vi.fit: the objective became non-finite at step {bad}; check the guide's initial scale and the learning rate.", RuntimeWarning, stacklevel=2)
    return VIResult(
        params=objective.constrain(uparams),
        uparams=uparams,
        history=hist,
        num_steps=done,
        stopped_early=stopped,
        objective=objective,
    )
