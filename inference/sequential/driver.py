"""The ``sequential`` driver: condition on a batch, infer, refit the prior, continue.

For tasks t = 1..T with data D_t (keyword arguments of the model),

    p_t(θ) ∝ p(D_t | θ) q_{t-1}(θ),      q_t = estimator fitted to draws of p_t,    q_0 = the model's prior,

where the model's prior terms of the chosen sites are replaced by q_{t-1} with
:func:`~inference.sequential.prior.with_prior`.  With exact inference and an exact estimator
(a Gaussian posterior and its exact moments, or a Beta posterior and its exact moments) this is
Bayes' rule applied batch by batch, so q_T is the batch posterior p(θ | D_1, ..., D_T) and the
per-task log evidences add up to log p(D_1, ..., D_T).  With draws and a fitted estimator it is
the approximation of Kessler et al. ("On sequential Bayesian inference for continual
learning"), whose error is that of the estimator.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from inference._calling import is_algorithm
from inference._health import Health
from inference._result import to_inference_data, weighted_predictive
from inference._run.progress import Progress, progress_default
from ppl.errors import ArgumentError, ArgumentTypeError
from ppl.randomness import check_key

from .estimators import BetaMoments, Estimator, Gaussian
from .prior import PRIOR_KEYWORD, FittedPrior, Layout, fit_prior, layout_of, prior_as_argument, split_prior, with_prior

__all__ = ["sequential", "SequentialResult", "refit"]


def _exact_gaussian(result: Any, layout: Layout, estimator: Gaussian) -> FittedPrior:
    """The layout's block of a Gaussian result's exact moments in its unconstrained space."""
    view = getattr(result, "view", None)
    if view is None or not hasattr(result, "loc") or not hasattr(result, "cov"):
        raise ArgumentError(f"sequential: Gaussian(exact=True) needs a result with exact unconstrained moments "
                            f"(loc, cov, view; e.g. vi.laplace), got {type(result).__name__}.")
    offsets, off = {}, 0
    for name, shape in view.sites.items():
        n = int(np.prod(shape, dtype=int))
        offsets[name] = (off, n)
        off += n
    idx = []
    for s in layout.sites:
        a, n = offsets[s.name]
        if n != s.size:  # pragma: no cover - same bijection, same size
            raise ArgumentError(f"sequential: site {s.name!r} has {n} unconstrained coordinates in the result, {s.size} in the layout.")
        idx.extend(range(a, a + n))
    idx = np.asarray(idx)
    loc, cov = jnp.asarray(result.loc), jnp.asarray(result.cov)
    return FittedPrior(layout, estimator.from_moments(loc[idx], cov[np.ix_(idx, idx)], layout.sizes))


def refit(key: Any, result: Any, layout: Layout, estimator: Estimator, num_draws: int = 1000) -> tuple[FittedPrior, dict]:
    """The prior for the next task from an inference ``result``: ``(fitted prior, draws used)``.

    ``Gaussian(exact=True)`` reads the result's exact moments (no draws); ``BetaMoments`` reads
    ``result.moments[site] = (mean, var)`` when the result has them; otherwise ``num_draws``
    equally weighted draws (``result.sample``) are fitted."""
    if isinstance(estimator, Gaussian) and estimator.exact:
        prior = _exact_gaussian(result, layout, estimator)
        return prior, {}
    moments = getattr(result, "moments", None)
    if isinstance(estimator, BetaMoments) and moments is not None:
        name = layout.sites[0].name
        return FittedPrior(layout, estimator.fit_moments(*moments[name])), {}
    k_draw, k_fit = jax.random.split(key)
    draws = result.sample(k_draw, int(num_draws))
    draws = {s.name: draws[s.name] for s in layout.sites}
    return fit_prior(k_fit, draws, layout, estimator), draws


@dataclass
class SequentialResult:
    """The result of :func:`sequential` (implements the ``Result`` protocol for the last task's
    posterior).

    Attributes:
        results: the inference result of each task.
        priors: ``priors[t]`` is the fitted prior after task t (the prior of task t + 1).
        task_draws: the equally weighted draws each prior was fitted to (``{}`` on exact paths).
        layout: the replaced sites.
    """

    results: list
    priors: list
    task_draws: list
    layout: Layout
    model: Any = field(repr=False, default=None)

    @property
    def draws(self) -> dict:
        """The last task's posterior draws as fitted (address -> ``(num_draws, ...)``)."""
        return dict(self.task_draws[-1]) if self.task_draws else {}

    @property
    def posterior(self) -> FittedPrior:
        """The fitted density of the last task's posterior."""
        return self.priors[-1]

    @property
    def log_evidences(self) -> np.ndarray:
        """Per-task log evidence log p(D_t | D_<t) where the inference estimates it (SMC log Ẑ,
        the Laplace/exact log Z), NaN elsewhere."""
        out = []
        for r in self.results:
            info = getattr(r, "info", {}) or {}
            v = info.get("log_evidence", getattr(r, "log_evidence", None))
            out.append(np.nan if v is None else float(np.asarray(v)))
        return np.asarray(out)

    @property
    def info(self) -> dict:
        """``num_tasks``, ``log_evidence`` (per task) and ``log_evidence_total`` (their sum)."""
        le = self.log_evidences
        return {"num_tasks": len(self.results), "log_evidence": le, "log_evidence_total": float(np.sum(le))}

    @property
    def health(self) -> Health:
        """Degraded when any task's inference was (its problems, prefixed by the task)."""
        degraded, failed = [], []
        for t, r in enumerate(self.results):
            h = getattr(r, "health", None)
            if h is not None:
                failed += [f"task {t}: {p}" for p in h.failed]
                degraded += [f"task {t}: {p}" for p in h.degraded]
        return Health("sequential", tuple(failed), tuple(degraded))

    def sample(self, key: Any, num_samples: int | None = None) -> dict:
        """Draws from the last task's posterior (its own inference result's ``sample``)."""
        return self.results[-1].sample(key, num_samples)

    def predictive(self, key: Any, model: Any, *args: Any, num_samples: int | None = None, **kwargs: Any) -> dict:
        """Predictive draws of ``model(*args, **kwargs)`` given the last task's draws."""
        draws = self.draws or self.sample(jax.random.fold_in(key, 1), 1000 if num_samples is None else num_samples)
        return weighted_predictive("sequential", key, draws, None, model, args, kwargs, num_samples)

    def to_arviz(self) -> Any:
        """The last task's fitted draws as one chain."""
        if not self.draws:
            raise ArgumentError("sequential: to_arviz needs draws; this run used an exact path that keeps none "
                                "(use result.sample(key, n)).")
        return to_inference_data({"posterior": {k: np.asarray(v)[None] for k, v in self.draws.items()}})


def _as_infer(infer: Any, options: Mapping[str, Any]) -> Callable:
    if is_algorithm(infer):
        from inference import mcmc

        return lambda key, model, *a, **kw: mcmc.sample(key, infer, model, *a, **{"progress": False, **options}, **kw)
    if not callable(infer):
        raise ArgumentTypeError(f"sequential: infer must be a callable infer(key, model, *args, **kwargs) -> result, "
                                f"or an MCMC kernel; got {type(infer).__name__}.")
    if options:
        raise ArgumentError(f"sequential: infer_options {sorted(options)} go with an MCMC kernel; bind them into the "
                            "callable instead (functools.partial).")
    return infer


def _passes_keywords(infer: Callable) -> bool:
    """Whether ``infer`` takes any keyword (``**kwargs``), so that it can pass the prior's arrays
    on to the model (``prior.PRIOR_KEYWORD``); a callable with named data keywords only gets the
    prior as a constant (:func:`~inference.sequential.prior.with_prior`) instead."""
    try:
        params = inspect.signature(infer).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == PRIOR_KEYWORD for p in params)


def sequential(key: Any, infer: Any, model: Any, batches: Sequence[Mapping[str, Any]], *args: Any,
               sites: Sequence[str] | None = None, estimator: Estimator | None = None, num_draws: int = 1000,
               infer_options: Mapping[str, Any] | None = None, progress: bool | None = None,
               **kwargs: Any) -> SequentialResult:
    """Sequential Bayesian updating over ``batches`` (module docstring).

    Args:
        key: a JAX key; task t uses ``fold_in(key, t)`` (same key, same result).
        infer: ``infer(key, model, *args, **kwargs) -> result`` (NUTS, SMC, VI, Laplace, ... bound
            with their options), or an MCMC kernel run by ``mcmc.sample`` with ``infer_options``.
            From the second task on, an ``infer`` that takes ``**kwargs`` receives the fitted prior's
            arrays as the model keyword ``prior.PRIOR_KEYWORD`` (pass every keyword on to the model
            and the inference compiles once for all tasks of the same shapes); one with named
            keywords only gets a new model with the prior as a constant (recompiles per task).
        model: the model; its prior of ``sites`` is used for the first task only.
        batches: one mapping of the model's keyword arguments (the task's data) per task.
        sites: the latent sites carried from task to task (default: all continuous latent sites).
        estimator: :class:`Gaussian` (default), :class:`GaussianMixture`, :class:`Flow`,
            :class:`BetaMoments`; ``Gaussian(exact=True)`` for exact moments.
        num_draws: draws of each posterior the estimator is fitted to.

    Example:
        >>> from inference import sequential as seq, vi
        >>> @ppl.model
        ... def m(y=None):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     with ppl.plate("n", 2):
        ...         ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> batches = [{"y": jnp.array([1.0, 2.0])}, {"y": jnp.array([0.0, 1.0])}]
        >>> laplace = lambda key, model, *a, **kw: vi.laplace(model, *a, **kw)
        >>> res = seq.sequential(jax.random.key(0), laplace, m, batches, estimator=seq.Gaussian(exact=True))
        >>> round(float(res.posterior.density.mean[0]), 6), round(float(res.posterior.density.cov[0, 0]), 6)   # N(4/5, 1/5)
        (0.8, 0.2)
    """
    key = check_key(key, "sequential")
    run_infer = _as_infer(infer, dict(infer_options or {}))
    batches = list(batches)
    if not batches:
        raise ArgumentError("sequential: batches is empty; give one mapping of the model's data per task.")
    for t, b in enumerate(batches):
        if not isinstance(b, Mapping):
            raise ArgumentTypeError(f"sequential: batch {t} is a {type(b).__name__}; each batch is a mapping of the "
                                    "model's keyword arguments (e.g. {'X': X_t, 'y': y_t}).")
    estimator = Gaussian() if estimator is None else estimator
    if not isinstance(estimator, Estimator):
        raise ArgumentTypeError(f"sequential: estimator must be a sequential.Estimator (Gaussian(), GaussianMixture(k), "
                                f"Flow(), BetaMoments()), got {type(estimator).__name__}.")
    layout = layout_of(model, *args, sites=sites, **{**kwargs, **batches[0]})
    traced = _passes_keywords(run_infer)
    bar = Progress(progress_default() if progress is None else progress, "sequential", len(batches))
    results, priors, task_draws = [], [], []
    prior: FittedPrior | None = None
    try:
        for t, batch in enumerate(batches):
            k_inf, k_fit = jax.random.split(jax.random.fold_in(key, t))
            if prior is None:
                m_t, extra = model, {}
            elif traced:  # one model per prior structure, its numbers an argument: compiled once (not per task)
                structure, arrays = split_prior(prior)
                m_t, extra = prior_as_argument(model, structure), {PRIOR_KEYWORD: arrays}
            else:  # infer takes no such keyword: the prior is a constant of a new model (recompiles)
                m_t, extra = with_prior(model, prior), {}
            res = run_infer(k_inf, m_t, *args, **{**kwargs, **batch, **extra})
            prior, draws = refit(k_fit, res, layout, estimator, num_draws)
            results.append(res)
            priors.append(prior)
            task_draws.append(draws)
            bar(t + 1)
    finally:
        bar.close()
    return SequentialResult(results, priors, task_draws, layout, model)
