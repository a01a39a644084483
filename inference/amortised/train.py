"""Training a distribution transformer on tasks simulated from a user's model family.

A *task* is ``prior ~ prior_sampler``, ``(θ*, x) ~ model(prior, *args)``: the model draws its
parameter site from the prior mixture and its data site given the parameter.  The loss is the
negative log density, under the predicted posterior ``dt(prior, x)``, of posterior draws:

- by default θ* itself (given x, the simulated θ* *is* an exact posterior draw, so
  ``E[-log q(θ* | prior, x)]`` is minimised by the exact posterior — the loss needs no
  inference at all and works for any simulator);
- with ``exact_posterior(prior, x, mask) -> GMM`` (a conjugate family), ``num_draws`` draws from
  the exact posterior (the paper's loss; lower variance).

Training is one jitted step (a batch of tasks, ``optax``) in the chunked ``lax.scan`` loop of
``inference._run`` with its progress display.  With ``min_data`` each task keeps a random number
``n ∈ [min_data, N]`` of its N data points (the rest masked out), so the network serves every
data set size up to N; this is exact for models whose data points are exchangeable and
marginally consistent (i.i.d. given θ, or a Gaussian process).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl.errors import ArgumentError, ModelError

from .._run.chunking import choose_chunk_size
from .._run.loop import host_loop, scan_chunk
from .._run.progress import Progress, progress_default
from .gmm import GMM
from .transformer import DistributionTransformer

__all__ = ["TrainResult", "train", "simulate_tasks", "heldout_loglik", "normal_mean_posterior"]


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained ``transformer``, the loss ``history`` (one value
    per step: the batch's mean negative log density of posterior draws), the steps done and
    whether Ctrl-C interrupted the run (the network is then the one after ``num_steps`` steps)."""

    transformer: DistributionTransformer
    history: np.ndarray
    num_steps: int
    interrupted: bool = False


def simulate_tasks(key: Any, model: Any, prior_sampler: Callable, num_tasks: int, *args: Any, param: str = "theta",
                   data: str = "x", min_data: int | None = None, **kwargs: Any) -> tuple[GMM, Any, Any, Any]:
    """``num_tasks`` tasks ``(priors, theta, x, mask)`` (leading task axis): ``prior =
    prior_sampler(key)``, a run of ``model(prior, *args, **kwargs)``, its ``param`` site as θ
    ``(D,)`` and its ``data`` site as ``x`` ``(N, data_dim)``; ``mask`` keeps ``n ~ U{min_data..N}``
    points (all when ``min_data`` is None).

    Example:
        >>> import ppl
        >>> from ppl import dist
        >>> from inference.amortised import GMM, simulate_tasks
        >>> @ppl.model
        ... def family(prior, n):
        ...     mu = ppl.sample("theta", prior.distribution())
        ...     with ppl.plate("data", n):
        ...         ppl.sample("x", dist.Normal(mu[0], 1.0))
        >>> prior = lambda k: GMM.from_weights([1.0], [[0.0]], [[1.0]])
        >>> priors, theta, x, mask = simulate_tasks(jax.random.key(0), family, prior, 3, 5)
        >>> theta.shape, x.shape, mask.shape
        ((3, 1), (3, 5, 1), (3, 5))
    """

    def one(k):
        k1, k2, k3 = jax.random.split(k, 3)
        prior = prior_sampler(k1)
        if not isinstance(prior, GMM):
            raise ArgumentError(f"amortised: prior_sampler must return an inference.amortised.GMM; it returned {type(prior).__name__}")
        tr = model.simulate(k2, prior, *args, **kwargs)
        sites = {**tr.deterministic, **tr.choices}
        for site in (param, data):
            if site not in sites:
                raise ModelError(f"amortised: the model has no site {site!r} (its sites: {sorted(sites)}); "
                                 f"name the parameter and data sites with param= and data=")
        theta = jnp.reshape(tr[param], (-1,))
        if theta.shape[0] != prior.dim:
            raise ModelError(f"amortised: site {param!r} has {theta.shape[0]} elements but the prior mixture is on R^{prior.dim}")
        x = jnp.asarray(tr[data])
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2:
            raise ModelError(f"amortised: site {data!r} must be (N,) or (N, data_dim) (N exchangeable data points); given shape {tuple(x.shape)}")
        n_max = x.shape[0]
        lo = n_max if min_data is None else int(min_data)
        if not 1 <= lo <= n_max:
            raise ArgumentError(f"amortised: min_data must be in 1..{n_max} (the data site's length); given {min_data}")
        n = jax.random.randint(k3, (), lo, n_max + 1)
        return prior, theta, x, jnp.arange(n_max) < n

    return jax.vmap(one)(jax.random.split(key, int(num_tasks)))


def _loss(dt, priors, theta, x, mask, key, exact_posterior, num_draws):
    post = jax.vmap(dt)(priors, x, mask)
    if exact_posterior is None:
        return -jnp.mean(post.log_prob(theta))
    exact = jax.vmap(exact_posterior)(priors, x, mask)
    draws = jax.vmap(lambda k, g: g.sample(k, num_draws))(jax.random.split(key, theta.shape[0]), exact)  # (B, S, D)
    return -jnp.mean(jax.vmap(lambda q, d: q.log_prob(d))(post, draws))


def train(key: Any, dt: DistributionTransformer, model: Any, prior_sampler: Callable, *args: Any, param: str = "theta",
          data: str = "x", num_steps: int = 1000, batch_size: int = 64, optimizer: Any = None, learning_rate: float = 1e-3,
          min_data: int | None = None, exact_posterior: Callable | None = None, num_draws: int = 16,
          chunk_size: int | None = None, progress: bool | None = None, **kwargs: Any) -> TrainResult:
    """Fit ``dt`` to tasks simulated from ``model(prior, *args, **kwargs)`` with priors from
    ``prior_sampler(key) -> GMM``; returns a :class:`TrainResult` (the network in ``.transformer``).

    Each step draws ``batch_size`` fresh tasks (:func:`simulate_tasks`) and takes one optax step
    (``optimizer``, default Adam with ``learning_rate``) on the loss described in the module
    docstring; steps run in compiled chunks of ``chunk_size`` (``lax.scan``), step t with the key
    ``fold_in(key, t)``, so the result depends on the key only.

    Example:
        >>> import ppl
        >>> from ppl import dist
        >>> from inference import amortised
        >>> @ppl.model
        ... def family(prior, n):
        ...     mu = ppl.sample("theta", prior.distribution())
        ...     with ppl.plate("data", n):
        ...         ppl.sample("x", dist.Normal(mu[0], 1.0))
        >>> prior = lambda k: amortised.GMM.from_weights([1.0], jax.random.normal(k, (1, 1)), [[1.0]])
        >>> dt = amortised.DistributionTransformer(jax.random.key(0), dim=1, data_dim=1, width=16, depth=1, heads=2)
        >>> res = amortised.train(jax.random.key(1), dt, family, prior, 4, num_steps=10, batch_size=4)
        >>> res.history.shape, bool(np.isfinite(res.history).all())
        ((10,), True)
    """
    if not isinstance(dt, DistributionTransformer):
        raise ArgumentError(f"amortised.train: dt must be a DistributionTransformer; given {type(dt).__name__}")
    num_steps, batch_size, num_draws = int(num_steps), int(batch_size), int(num_draws)
    if num_steps < 1 or batch_size < 1 or num_draws < 1:
        raise ArgumentError(f"amortised.train: num_steps, batch_size and num_draws must be positive; given {num_steps}, {batch_size}, {num_draws}")
    optimizer = optax.adam(learning_rate) if optimizer is None else optimizer
    params, static = eqx.partition(dt, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    chunk = int(chunk_size) if chunk_size else choose_chunk_size(num_steps, phases=(num_steps,))

    def step(k_t, carry, t):
        p, st = carry
        k_task, k_draw = jax.random.split(k_t)
        tasks = simulate_tasks(k_task, model, prior_sampler, batch_size, *args, param=param, data=data,
                               min_data=min_data, **kwargs)
        loss_fn = lambda pp: _loss(eqx.combine(pp, static), *tasks, k_draw, exact_posterior, num_draws)  # noqa: E731
        value, g = jax.value_and_grad(loss_fn)(p)
        updates, st2 = optimizer.update(g, st, p)
        return (optax.apply_updates(p, updates), st2), value

    @eqx.filter_jit
    def run_chunk(carry, k, t0, n_end):
        return scan_chunk(step, k, carry, t0, n_end, chunk)

    display = Progress(progress_default() if progress is None else bool(progress), "amortised.train", num_steps)
    history: list[np.ndarray] = []
    n_end = np.int32(num_steps)

    def collect(vals, t0, m):
        history.append(np.asarray(vals)[:m])

    def after(carry, done, last):
        display(done, f"loss {float(history[-1][-1]):.4g}")
        return False

    try:
        (params, opt_state), done, interrupted = host_loop(
            lambda c, t0: run_chunk(c, key, np.int32(t0), n_end), (params, opt_state), 0, num_steps, chunk, collect, after)
    finally:
        display.close()
    hist = np.concatenate(history) if history else np.zeros((0,))
    if interrupted:
        warnings.warn(f"amortised.train: interrupted; returning the network after {done} of {num_steps} steps.", stacklevel=2)
    if not np.all(np.isfinite(hist)):
        warnings.warn("amortised.train: the loss became non-finite; lower the learning rate or check the prior sampler's scales.",
                      stacklevel=2)
    return TrainResult(eqx.combine(params, static), hist, int(done), interrupted)


def normal_mean_posterior(prior: GMM, x: Any, mask: Any = None, noise_scale: Any = 1.0) -> GMM:
    """The exact posterior of θ ∈ R^D under a GMM prior when ``x_i ~ Normal(θ, noise_scale)``
    (independent coordinates, known noise) for the unmasked rows of ``x`` ``(N, D)``: component
    k updates conjugately (precision ``1/s² + n/σ²``) and its weight is multiplied by the
    marginal likelihood of the data under it.  A GMM with as many components as the prior.

    Example:
        >>> from inference.amortised import GMM, normal_mean_posterior
        >>> post = normal_mean_posterior(GMM.from_weights([1.0], [[0.0]], [[1.0]]), jnp.array([[2.0]]))
        >>> post.loc.tolist(), round(float(post.scale[0, 0] ** 2), 6)
        ([[1.0]], 0.5)
    """
    x = jnp.asarray(x)
    x = x[:, None] if x.ndim == 1 else x
    m = jnp.ones(x.shape[0], bool) if mask is None else jnp.asarray(mask, bool)
    w = m.astype(x.dtype)[:, None]
    n = jnp.sum(w, axis=0)  # (1,)
    sx = jnp.sum(w * x, axis=0)  # (D,)
    sxx = jnp.sum(w * x * x, axis=0)
    var_n = jnp.asarray(noise_scale, x.dtype) ** 2
    prec = 1.0 / prior.scale**2 + n / var_n  # (K, D)
    loc = (prior.loc / prior.scale**2 + sx / var_n) / prec
    # log ∫ N(θ; m, s²) Π_i N(x_i; θ, σ²) dθ per coordinate, in closed form
    logml = (-0.5 * n * jnp.log(2 * jnp.pi * var_n) - 0.5 * jnp.log(prior.scale**2 * prec)
             - 0.5 * (sxx / var_n + prior.loc**2 / prior.scale**2 - loc**2 * prec))
    return GMM(jax.nn.log_softmax(prior.logits) + jnp.sum(logml, axis=-1), loc, jnp.sqrt(1.0 / prec))


_simulate_tasks = eqx.filter_jit(simulate_tasks)  # compiled once per (model, sampler, sizes)


@eqx.filter_jit
def _scores(dt, exact_posterior, num_draws, priors, x, mask, k):
    """Mean log density of exact posterior draws under the predicted and the exact posterior, per
    task (compiled once per network structure, exact posterior and shapes)."""
    post = jax.vmap(dt)(priors, x, mask)
    exact = jax.vmap(exact_posterior)(priors, x, mask)
    draws = jax.vmap(lambda kk, g: g.sample(kk, num_draws))(jax.random.split(k, x.shape[0]), exact)
    lq = jax.vmap(lambda q, d: q.log_prob(d))(post, draws)
    lp = jax.vmap(lambda q, d: q.log_prob(d))(exact, draws)
    return jnp.mean(lq, axis=1), jnp.mean(lp, axis=1)


def heldout_loglik(key: Any, dt: DistributionTransformer, model: Any, prior_sampler: Callable, exact_posterior: Callable,
                   *args: Any, num_tasks: int = 200, num_draws: int = 100, param: str = "theta", data: str = "x",
                   min_data: int | None = None, **kwargs: Any) -> dict:
    """Held-out accuracy: on ``num_tasks`` fresh tasks, the mean log density of ``num_draws``
    exact posterior draws under the predicted posterior (``"predicted"``) and under the exact
    posterior itself (``"exact"``, the best any approximation can do on average); their
    difference estimates the mean KL(exact ‖ predicted) (``"kl"``), with its standard error.

    Example:
        >>> import ppl
        >>> from ppl import dist
        >>> from inference import amortised
        >>> fam = ppl.model(lambda prior, n: ppl.sample("x", dist.Normal(ppl.sample("theta", prior.distribution())[0], 1.0).expand([n])))
        >>> prior = lambda k: amortised.GMM.from_weights([1.0], [[0.0]], [[1.0]])
        >>> dt = amortised.DistributionTransformer(jax.random.key(0), dim=1, data_dim=1, width=8, depth=1, heads=2)
        >>> r = amortised.heldout_loglik(jax.random.key(1), dt, fam, prior, amortised.normal_mean_posterior, 3, num_tasks=4, num_draws=5)
        >>> r["predicted"] <= r["exact"] + 3 * r["kl_se"]
        True
    """
    k1, k2 = jax.random.split(key)
    priors, theta, x, mask = _simulate_tasks(k1, model, prior_sampler, int(num_tasks), *args, param=param, data=data,
                                             min_data=min_data, **kwargs)

    lq, lp = (np.asarray(v, np.float64) for v in _scores(dt, exact_posterior, int(num_draws), priors, x, mask, k2))
    d = lp - lq
    return {"predicted": float(lq.mean()), "exact": float(lp.mean()), "kl": float(d.mean()),
            "kl_se": float(d.std(ddof=1) / np.sqrt(len(d)))}
