"""Adaptive tempered SMC for static models, built from the blocks and ``inference.mcmc`` kernels.

Targets the path γ_β(x) = p(x) L(x)^β, β from 0 (the prior) to 1 (the posterior), on the model's
unconstrained view (``ppl.unconstrained``: x flat, the prior's Jacobian included).  The tempered
target is itself a *model*, :func:`tempered_model`: the user's model run under a handler that
scales the log density of every observed site and factor by β (its first argument).  So any
gradient kernel of :mod:`inference.mcmc` (:class:`~inference.mcmc.RWM`,
:class:`~inference.mcmc.MALA`, :class:`~inference.mcmc.HMC`, :class:`~inference.mcmc.NUTS`)
bound to ``(tempered_model(model), (β, *args))`` leaves γ_β invariant, unchanged.  Each step:

    β' = next_beta(...)            bisection on the conditional ESS (Zhou, Johansen & Aston 2016)
    temper(β → β')                 weights × L(x)^(β' − β)
    resample                       (always, or when ESS < ρN)
    rejuvenate                     the MCMC kernel bound to the tempered model at β', with its
                                   tuning params set from the particles: inverse mass matrix =
                                   the particles' (diagonal, or dense) covariance, step size
                                   steered towards the kernel's own ``target_accept_prob`` by
                                   the previous step's mean acceptance rate

The log evidence estimate is the population's log Ẑ.  With a fixed schedule (``betas=``) Ẑ is
exactly unbiased; the adaptive schedule depends on the particles, which adds a bias of order 1/N.

**Summed-out discrete sites (issue 14).**  A model with finite discrete latent sites z, which
its unconstrained view sums out, is tempered as the *marginal* model on the continuous x:
log γ_β(x) = log p_0(x) + β (log p_1(x) − log p_0(x)) with p_1(x) = Σ_z p(x, z, y) (the view's
density) and p_0(x) = Σ_z p(x, z) (the view of :func:`prior_model`, the likelihood left out),
both with x's Jacobian.  The increments stay linear in β (ℓ = log p_1 − log p_0 = log p(y | x)),
so :func:`next_beta` is unchanged; Z_1/Z_0 = p(y).  The kernel is bound to that path
(:class:`TemperedView`, through ``BoundGradient(..., view=)``), not to :func:`tempered_model`,
whose view at β sums z out under p(y | x, z)^β — another path, whose weights these are not.
Models without such sites run the code they ran before (draws bit for bit the same: tested).
"""

from __future__ import annotations

import functools
import math
import weakref
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl
from ppl.core import Messenger
from inference import mcmc
from inference._calling import check_option_clash, given_options, is_algorithm, model_keywords
from inference._lapack import map_batch
from inference._health import checkable, enforce
from inference._run.cache import PROGRAMS
from inference._run.concrete import join, split, with_concrete_retry
from inference._result import WeightedDraws
from ppl.checks import validate
from ppl.errors import ArgumentError, ModelError

from . import blocks
from .particles import Particles, map_particles

__all__ = ["TemperedResult", "tempered_smc", "next_beta", "tempered_model", "TemperedTarget", "temper_likelihood",
           "TemperedView", "prior_model", "drop_likelihood"]


class temper_likelihood(Messenger):
    """Scale the log density of every observed sample site and every factor inside by ``beta``.

    Latent sites keep their prior density, so a model run inside denotes p(x) L(x)^β.  Sites are
    recognised as observed when they reach this handler (observations given with ``obs=`` or by
    ``ppl.condition`` applied to the model inside).

    Example:
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> from inference.smc.tempering import temper_likelihood
        >>> with temper_likelihood(beta=0.3):
        ...     tr = normal_mean.simulate(jax.random.key(0), 0.5)   # log p(x) + 0.3 log L(x)
        >>> plain = normal_mean.simulate(jax.random.key(0), 0.5)
        >>> bool(jnp.isclose(tr.log_density, plain.log_probs["mu"] + 0.3 * plain.log_probs["y"]))
        True
    """

    def __init__(self, fn: Any = None, beta: Any = 1.0):
        super().__init__(fn)
        self.beta = beta

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "factor" or (msg["type"] == "sample" and msg["is_observed"]):
            msg["scale"] = self.beta if msg["scale"] is None else msg["scale"] * self.beta


def tempered_model(model: Any) -> ppl.Model:
    """The model ``tempered(beta, *args, **kwargs)`` denoting p(x) L(x)^β (same latent sites).

    Its unconstrained potential is −log p_u(x) − β ℓ(x), so ``kernel.bind(tempered_model(m),
    (beta, *args))`` is an MCMC kernel leaving the tempered posterior invariant.  (With summed-out
    discrete sites z its view is log Σ_z p(x, z) p(y | x, z)^β, which is not the path
    :func:`tempered_smc` follows on such a model: see :class:`TemperedView`.)

    Example:
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> tm = smc.tempered_model(normal_mean)
        >>> kernel = mcmc.HMC(num_steps=10).bind(tm, (0.5, 0.5))     # targets p(mu) p(y | mu)^0.5
    """
    m = ppl.as_model(model)

    def tempered(beta, *args, **kwargs):
        with temper_likelihood(beta=beta):
            return m(*args, **kwargs)

    return ppl.Model(tempered, name=m.name)


class drop_likelihood(Messenger):
    """Leave the likelihood out: every observed sample site and every factor inside contributes
    nothing (its log density is replaced by 0, not multiplied by 0, so an observation impossible
    at some values gives 0 rather than 0·(−∞) = NaN).  A model run inside denotes its prior p(x, z).

    Example:
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> from inference.smc.tempering import drop_likelihood
        >>> with drop_likelihood():
        ...     tr = normal_mean.simulate(jax.random.key(0), 0.5)
        >>> bool(tr.log_density == tr.log_probs["mu"])
        True
    """

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "factor" or (msg["type"] == "sample" and msg["is_observed"]):
            msg["log_prob"] = jnp.zeros(())


def prior_model(model: Any) -> ppl.Model:
    """The model ``prior(*args, **kwargs)`` denoting the prior p(x, z) of ``model`` (same latent
    sites; the observations and factors left out by :class:`drop_likelihood`).  Its unconstrained
    view sums the finite discrete latent sites z out like the model's own: its ``log_density`` is
    log Σ_z p(x, z) (Jacobian included), the start p_0 of tempered SMC's path on such a model.

    Example:
        >>> @ppl.model
        ... def coin(y):
        ...     z = ppl.sample("z", dist.Bernoulli(0.25))
        ...     mu = ppl.sample("mu", dist.Normal(2.0 * z, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> view = ppl.unconstrained(smc.tempering.prior_model(coin), 0.5)     # p_0(mu) = Σ_z p(z) p(mu | z)
        >>> want = jnp.log(0.75 * jnp.exp(dist.Normal(0.0, 1.0).log_prob(1.0)) + 0.25 * jnp.exp(dist.Normal(2.0, 1.0).log_prob(1.0)))
        >>> bool(jnp.isclose(view.log_density(jnp.array([1.0])), want))
        True
    """
    m = ppl.as_model(model)

    def prior(*args, **kwargs):
        with drop_likelihood():
            return m(*args, **kwargs)

    return ppl.Model(prior, name=m.name)


def _finite_or_minus_inf(v: jax.Array) -> jax.Array:
    return jnp.where(jnp.isnan(v), -jnp.inf, v)


class TemperedView:
    """The tempered path of a model with summed-out discrete sites, at one β, as a target with
    the interface of its unconstrained view (``dim``, ``sites``, ``to_constrained``, ... are the
    model's view's): log γ_β(x) = log p_0(x) + β (log p_1(x) − log p_0(x)), where
    p_1(x) = Σ_z p(x, z, y) is the model's view's density and p_0(x) = Σ_z p(x, z) its prior
    view's (:func:`prior_model`), both in unconstrained space, both summed over z exactly.

    It is the path whose incremental weights are p_1/p_0 to the power β' − β (linear in β, so
    :func:`next_beta` applies), ending at the marginal posterior with Z_1/Z_0 = p(y).  (The view
    of :func:`tempered_model` at β is another path, log Σ_z p(x, z) p(y | x, z)^β, whose weights
    are not these.)  A gradient kernel bound to it (``BoundGradient(kernel, model, args, kwargs,
    view=...)``) leaves γ_β invariant: its potential is −log γ_β.

    Example:
        >>> @ppl.model
        ... def coin(y):
        ...     z = ppl.sample("z", dist.Bernoulli(0.25))
        ...     mu = ppl.sample("mu", dist.Normal(2.0 * z, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> target = smc.tempering.TemperedTarget(coin, (0.5,))
        >>> x = jnp.array([1.0])
        >>> v = target.view_at(0.3)
        >>> lp0, lp1 = target.prior_view.log_density(x), target.view.log_density(x)
        >>> bool(jnp.isclose(v.log_density(x), 0.7 * lp0 + 0.3 * lp1)), bool(v.potential(x) == -v.log_density(x))
        (True, True)
    """

    def __init__(self, view: Any, prior_view: Any, beta: Any):
        self.view, self.prior_view, self.beta = view, prior_view, beta

    def __getattr__(self, name: str) -> Any:  # the latent space is the model's view's
        if name in ("view", "prior_view", "beta"):
            raise AttributeError(name)
        return getattr(self.view, name)

    def _parts(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        lp0 = self.prior_view.log_density(x)
        return lp0, _finite_or_minus_inf(self.view.log_density(x) - lp0)

    def log_likelihood(self, x: jax.Array) -> jax.Array:
        """log p_1(x) − log p_0(x) = log p(y | x), z summed out (−∞ where not finite)."""
        return self._parts(x)[1]

    def log_density(self, x: jax.Array) -> jax.Array:
        """log γ_β(x) = log p_0(x) + β (log p_1(x) − log p_0(x)); exactly log p_0(x) at β = 0."""
        lp0, ll = self._parts(x)
        beta = jnp.asarray(self.beta, ll.dtype)
        return _finite_or_minus_inf(lp0 + jnp.where(beta == 0, jnp.zeros_like(ll), beta * ll))

    def potential(self, x: jax.Array) -> jax.Array:
        """−log γ_β(x): the potential a kernel bound to this view targets."""
        return -self.log_density(x)


class TemperedTarget:
    """The tempered path of a model on its unconstrained view: log γ_β(x) = log p_u(x) + β ℓ(x).

    With finite discrete latent sites (``view.discrete``), which the view sums out, the path is
    that of the *marginal* model on the continuous x (:class:`TemperedView`): p_0(x) = Σ_z p(x, z)
    (``prior_view``), p_1(x) = Σ_z p(x, z, y) (``view``), ℓ(x) = log p_1(x) − log p_0(x).
    """

    def __init__(self, model: Any, args: tuple = (), kwargs: dict | None = None):
        self.model = ppl.as_model(model)
        self.args, self.kwargs = tuple(args), dict(kwargs or {})
        self.view = ppl.unconstrained(self.model, *self.args, **self.kwargs)
        #: whether the view sums finite discrete latent sites out (then the path is the marginal's)
        self.marginal = bool(self.view.discrete)
        self.prior_view = (ppl.unconstrained(prior_model(self.model), *self.args, **self.kwargs)
                           if self.marginal else None)
        self.tempered = tempered_model(self.model)

    def view_at(self, beta: Any) -> TemperedView:
        """γ_β as a view a gradient kernel binds to (models with summed-out sites)."""
        return TemperedView(self.view, self.prior_view, beta)

    def bind(self, kern: Any, beta: Any) -> Any:
        """``kern`` (a gradient kernel of :mod:`inference.mcmc`) bound to γ_β: the transition
        kernel itself (a :class:`~inference.mcmc.gradient.BoundGradient`), its potential −log γ_β."""
        if self.marginal:
            return mcmc.BoundGradient(kern, self.model, self.args, self.kwargs, view=self.view_at(beta))
        return kern.bind(self.tempered, (beta,) + self.args, self.kwargs).kernel

    def log_likelihood(self, x: jax.Array) -> jax.Array:
        """ℓ(x): log density of the observations and factors at the latent values T(x) (with
        summed-out sites: log p(y | x) = log p_1(x) − log p_0(x), z summed out)."""
        if self.marginal:
            return self.view_at(1.0).log_likelihood(x)
        vals = self.view.to_constrained(x)
        vals = {k: v for k, v in vals.items() if k in self.view.sites}
        tr, _ = self.model.generate(jax.random.key(0), vals, *self.args, **self.kwargs)
        ll = tr.log_likelihood
        return jnp.where(jnp.isnan(ll), -jnp.inf, ll)

    def log_density(self, x: jax.Array, beta: Any) -> jax.Array:
        """log γ_β(x) = log p_u(x) + β ℓ(x) (p_u: the prior in unconstrained space)."""
        if self.marginal:
            return self.view_at(beta).log_density(x)
        view = ppl.unconstrained(self.tempered, beta, *self.args, **self.kwargs)
        lp = view.log_density(x)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    def prior_draw(self, key: Any) -> jax.Array:
        """x ~ the prior, pushed to unconstrained space (with summed-out sites: (x, z) drawn
        jointly and z dropped, so x ~ p_0)."""
        tr = self.model.simulate(key, *self.args, **self.kwargs)
        return self.view.to_unconstrained({n: tr.choices[n] for n in self.view.sites})


def next_beta(log_weights: jax.Array, log_lik: jax.Array, beta: Any, target: float = 0.5, iters: int = 30) -> jax.Array:
    """The largest β' ≤ 1 whose conditional ESS fraction (Σ W v)² / Σ W v², v = L^(β'−β), is ≥ target."""
    logW = jax.nn.log_softmax(log_weights)
    ll = jnp.where(jnp.isnan(log_lik), -jnp.inf, log_lik)

    def cess(delta):
        a = logW + delta * ll
        return jnp.exp(2 * jax.scipy.special.logsumexp(a) - jax.scipy.special.logsumexp(logW + 2 * delta * ll))

    hi = 1.0 - beta

    def bisect(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        ok = cess(mid) >= target
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iters, bisect, (jnp.zeros_like(hi), hi))
    delta = jnp.where(cess(hi) >= target, hi, jnp.maximum(lo, 1e-12 * jnp.ones_like(lo)))
    return jnp.minimum(beta + delta, 1.0)


def _as_kernel(kernel: Any, num_leapfrog: int) -> Any:
    if isinstance(kernel, str):
        table = {"rwm": lambda: mcmc.RWM(), "mala": lambda: mcmc.MALA(), "hmc": lambda: mcmc.HMC(num_steps=int(num_leapfrog)),
                 "nuts": lambda: mcmc.NUTS()}
        if kernel.lower() not in table:
            raise ArgumentError(f"tempered_smc: kernel must be one of {sorted(table)} or an inference.mcmc gradient kernel, got {kernel!r}.")
        kernel = table[kernel.lower()]()
    if not isinstance(kernel, (mcmc.RWM, mcmc.MALA, mcmc.HMC, mcmc.NUTS)):
        raise ArgumentError(
            "tempered_smc: kernel must be 'rwm', 'mala', 'hmc', 'nuts' or an instance of mcmc.RWM / MALA / HMC / NUTS, "
            f"got {kernel!r}."
        )
    # tuning params come from the particles (set explicitly at each step), never from the
    # kernel's warmup adaptation
    return kernel


class TemperedResult(WeightedDraws, eqx.Module):
    """Output of :func:`tempered_smc`; a :class:`inference._result.Result` whose ``draws`` are
    ``samples`` (weighted by ``weights``), ``info`` the log evidence and the schedule's histories,
    ``sample`` resamples by weight.

    Attributes:
        particles: final population (states: flat unconstrained vectors).
        samples: address -> (N, ...) constrained values of the final particles (equal weights
            after the last resampling; use ``particles.weights`` otherwise).
        log_evidence: log Ẑ.
        betas: (max_steps,) the schedule (padded with 1 after the last step).
        num_steps: number of tempering steps taken.
        ess: (max_steps,) ESS after each reweighting (before resampling).
        acceptance: (max_steps,) mean acceptance probability of each rejuvenation.
        forced: whether the last step forced β = 1 because ``max_steps`` ran out (the
            schedule did not reach 1 by its own ESS criterion).
        health: (property) what the checks found: :func:`inference.smc.health.tempered_health`.
    """

    particles: Particles
    samples: dict
    log_evidence: jax.Array
    betas: jax.Array
    num_steps: jax.Array
    ess: jax.Array
    acceptance: jax.Array
    forced: Any = None

    @property
    def health(self) -> Any:
        """The result's :class:`~inference._health.Health` (reached β = 1 by its own criterion,
        minimum ESS, evidence finite; issue 18)."""
        from .health import tempered_health

        return tempered_health(self)

    def _draws(self) -> dict:
        return dict(self.samples)

    def _log_weights(self) -> Any:
        return self.particles.log_weights

    def _info(self) -> dict:
        return {"log_evidence": self.log_evidence, "betas": self.betas, "num_steps": self.num_steps,
                "ess": self.ess, "acceptance": self.acceptance}


def tempered_smc(
    key: Any,
    model: Any,
    *args: Any,
    num_particles: int = 1000,
    target_ess: float = 0.5,
    betas: Any = None,
    kernel: Any = "rwm",
    num_mcmc_steps: int = 5,
    num_leapfrog: int = 10,
    scheme: Any = "systematic",
    ess_threshold: float | None = None,
    max_steps: int = 100,
    model_kwargs: Any = None,
    **kwargs: Any,
) -> TemperedResult:
    """Adaptive tempered SMC from the prior to the posterior of ``model(*args, **kwargs)``.

    Called as ``tempered_smc(key, model, *args, kernel=..., ...)`` or, in the library's one
    calling convention, ``tempered_smc(key, kernel, model, *args, ...)`` (a kernel instance in
    second place); the options are keyword-only, and a model parameter named like one of them
    is refused (``ppl.ArgumentError``).

    Args:
        key: a ``jax.random`` key.
        model: the model (its observations given by ``obs=`` or ``ppl.condition``).
        *args: the model's arguments (``**kwargs`` likewise).
        num_particles: N.
        target_ess: the conditional-ESS fraction each new β aims for (bisection).
        betas: a fixed increasing schedule ending at 1 instead (then Ẑ is exactly unbiased).
        kernel: the rejuvenation kernel: "rwm", "mala", "hmc" (``num_leapfrog`` steps) or
            "nuts", or an ``inference.mcmc`` instance of ``RWM``, ``MALA``, ``HMC``, ``NUTS``
            (``dense_mass=True`` for a dense particle covariance); ``num_mcmc_steps`` per
            tempering step.  Its step size and inverse mass matrix are set from the particles
            (``params`` of the kernel's step; its warmup adaptation is not used), the step size
            steered towards the kernel's own ``target_accept_prob`` (defaults: RWM 0.234,
            MALA 0.574, HMC and NUTS 0.8).
        num_mcmc_steps: kernel steps per tempering step.
        num_leapfrog: leapfrog steps of the "hmc" kernel.
        scheme: the resampling scheme (default: always resample after reweighting).
        ess_threshold: resample when the ESS falls below this fraction of N.
        max_steps: bound on the number of adaptive steps.
        model_kwargs: the model's keyword arguments as a dict, whatever their names (an unknown
            keyword given directly is an error with "did you mean"; see :mod:`inference._calling`).

    Returns:
        A :class:`TemperedResult`.  Preserves: every step's kernel leaves γ_β' invariant (it is
        an ``inference.mcmc`` kernel bound to :func:`tempered_model` at β') and every block keeps
        the weighted measure, so with a fixed schedule E[Ẑ] = p(y).

    Finite discrete latent sites (a mixture's assignments, an HMM's states) are summed out at
    every temperature, as the gradient samplers do (:mod:`ppl.enum`): the path is that of the
    marginal model on the continuous sites (:class:`TemperedView`), ``log_evidence`` estimates
    log p(y) with z summed out, and ``samples`` hold the continuous sites only.  Recover z from
    the particles with ``ppl.infer_discrete(model, {site: particle values}, *args, key=k)``
    (vmapped over the particles; weights ``particles.weights``).  A model that reduces a
    summed-out site across its plate (``jnp.sum(z)``) is refused by name, as by ``mcmc.sample``.

    The loop is one ``lax.while_loop`` (adaptive) or ``lax.scan`` (fixed schedule); the
    particle axis is split across devices when there are several (:mod:`inference.sharding`).
    It is compiled once per (model, settings, argument shapes): new data of the same shapes
    compiles nothing; NumPy data the model's body needs concrete (``len(np.unique(dept))``)
    stays concrete, keyed by its contents (:mod:`inference._run.concrete`).

    Example:
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> out = smc.tempered_smc(jax.random.key(0), normal_mean, 0.5, num_particles=64, kernel="hmc", num_leapfrog=3)
        >>> out.samples["mu"].shape, bool(jnp.isfinite(out.log_evidence))
        ((64,), True)

        With a discrete site summed out (log p(y) exactly: −9.04):

        >>> @ppl.model
        ... def spikes(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
        ...     with ppl.plate("data", y.shape[0]):
        ...         z = ppl.sample("z", dist.Bernoulli(0.3))
        ...         ppl.sample("y", dist.Normal(mu * z, 1.0), obs=y)
        >>> y = jnp.array([0.1, 2.5, 3.0, -1.0])
        >>> out = smc.tempered_smc(jax.random.key(0), spikes, y, num_particles=512, kernel="hmc", num_leapfrog=3)
        >>> bool(abs(out.log_evidence + 9.04) < 0.3), sorted(out.samples)
        (True, ['mu'])
        >>> z = jax.vmap(lambda k, mu: ppl.infer_discrete(spikes, {"mu": mu}, y, key=k)["z"])(
        ...     jax.random.split(jax.random.key(1), 512), out.samples["mu"])
        >>> z.shape
        (512, 4)
    """
    from inference import sharding

    if is_algorithm(model):  # the conventional order: tempered_smc(key, kernel, model, *args)
        if not args:
            raise ArgumentError("tempered_smc: after the kernel, a model is expected; got none.")
        if kernel != "rwm":
            raise ArgumentError(f"tempered_smc: the kernel was given twice ({model!r} and kernel={kernel!r}).")
        kernel, model, args = model, args[0], tuple(args[1:])
    check_option_clash("smc.tempered_smc", model, set(given_options(tempered_smc, dict(
        num_particles=num_particles, target_ess=target_ess, betas=betas, kernel=kernel, num_mcmc_steps=num_mcmc_steps,
        num_leapfrog=num_leapfrog, scheme=scheme, ess_threshold=ess_threshold, max_steps=max_steps)))
        - set(model_kwargs or ()))
    kwargs = model_keywords("smc.tempered_smc", tempered_smc, model, kwargs, model_kwargs)
    validate("smc.tempered_smc", key, num_particles=(num_particles, 2), num_mcmc_steps=(num_mcmc_steps, 1),
             num_leapfrog=(num_leapfrog, 1), max_steps=(max_steps, 1))  # issue 18
    kern = _as_kernel(kernel, num_leapfrog)
    _check_summed_out(model, args, kwargs)
    settings = (kern, int(num_particles), float(target_ess), betas is None, int(num_mcmc_steps), scheme,
                ess_threshold, int(max_steps), sharding.num_devices())
    sched_in = None if betas is None else jnp.asarray(betas)

    def attempt(concrete: bool):  # issue 17: one compiled program per (model, settings, shapes)
        treedef, statics, dyn = split((tuple(args), dict(kwargs)), concrete)
        try:
            # (the builder is in the key: a program is the code that traced it and its settings)
            run = PROGRAMS.get(ppl.as_model(model), ("smc.tempered_smc", _tempered_program, treedef, statics) + settings,
                               lambda: jax.jit(_tempered_program(model, treedef, statics, kern, *settings[1:-1])))
        except TypeError:  # an unhashable argument or option: traced without caching
            run = _tempered_program(model, treedef, statics, kern, *settings[1:-1])
        return run(key, dyn, sched_in)

    res = with_concrete_retry([model], (tuple(args), dict(kwargs)), attempt)
    return enforce(res.health, res) if checkable(res.log_evidence) else res  # issue 18: raise or warn


def _check_summed_out(model: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a model whose summed-out discrete sites are used other than element by element
    (:func:`ppl.enum.check_summed_out`), here where the inputs are concrete (the program binds
    its views to traced inputs, where the view skips the check).  Whether there are such sites
    is read from one abstract run (no compile); a model without them is not checked further.
    Both answers are kept per (model, argument structure, shapes and dtypes)."""
    if not ppl.enum._concrete((args, kwargs)):
        return
    m = ppl.as_model(model)
    leaves, treedef = jax.tree.flatten((tuple(args), dict(kwargs)))
    # the probe's answer per (model, argument structure, shapes, dtypes): a model without such
    # sites pays the probe (ms) once, not at every call
    key = (treedef, tuple((type(v).__name__, tuple(jnp.shape(v)), str(getattr(v, "dtype", ""))) for v in leaves))
    seen = _PROBED.setdefault(m, {})
    try:
        discrete = seen[key]
    except TypeError:  # an unhashable argument: probed every time
        discrete = None
    except KeyError:
        discrete = None
    if discrete is None:
        try:
            discrete = bool(ppl.enum._probe(m.fn, tuple(args), dict(kwargs), (ppl.enum._StandIn({}),)).discrete)
        except ModelError:
            raise
        except Exception:  # noqa: BLE001 - not readable abstractly here: the program reports its own errors
            return
        try:
            seen[key] = discrete
        except TypeError:
            pass
    if discrete is True:
        # (check_summed_out builds its stand-ins, a compile, before its own cache: 0.2 s a call
        # on a small mixture; a model that passed is not checked again at the same shapes)
        ppl.enum.check_summed_out(model, args, kwargs)
        try:
            seen[key] = "checked"
        except TypeError:
            pass


#: Model -> {argument structure and shapes: whether it has finite discrete latent sites}
_PROBED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _tempered_program(model, treedef, statics, kern, num_particles, target_ess, adaptive, num_mcmc_steps, scheme,
                      ess_threshold, max_steps):
    """The body of :func:`tempered_smc` as a function of ``(key, traced arguments, betas)``."""
    from inference import sharding

    def run(key, dyn, betas):
        args, kwargs = join(treedef, statics, dyn)
        target = TemperedTarget(model, args, kwargs)
        N = int(num_particles)
        d = target.view.dim
        k_init, k_loop = jax.random.split(key)
        x0 = map_particles(lambda k, _: target.prior_draw(k), k_init, jnp.zeros((N,)))
        particles = sharding.constrain_batch(Particles.from_states(x0))
        dtype = x0.dtype
        goal = float(kern.target_accept_prob)  # the kernel's own target acceptance rate
        dense = bool(kern.dense_mass)
        log_lik = functools.partial(map_batch, target.log_likelihood)  # vmap (or a loop: inference._lapack)

        def advance(p: Particles, ll, beta, new_beta, step_size, k):
            k_res, k_mv, _ = jax.random.split(k, 3)  # (the third key once fed the adaptation's init)
            p = blocks.reweight(p, (new_beta - beta) * ll)
            e = p.ess
            p, _ = blocks.resample(k_res, p, scheme, ess_threshold=ess_threshold)
            p = sharding.constrain_batch(p)
            x = p.states
            W = p.weights
            mean = W @ x
            if dense:
                inv_mass = (x - mean).T @ ((x - mean) * W[:, None]) + 1e-9 * jnp.eye(d, dtype=dtype)
            else:
                inv_mass = W @ (x - mean) ** 2 + 1e-9
            if target.marginal:  # summed-out sites: the kernel bound to the marginal path's γ_β'
                step_kernel = target.bind(kern, new_beta)
            else:
                bound = kern.bind(target.tempered, (new_beta,) + target.args, target.kwargs)
                # the transition kernel itself (its window adaptation unused), stepped with explicit params
                step_kernel = bound.kernel
            params = step_kernel.params(step_size, inv_mass)
            states = map_batch(step_kernel.state_at, x)

            def move(kk, st):
                return step_kernel.step(kk, st, params)

            p2, info = blocks.rejuvenate(k_mv, Particles(states, p.log_weights, p.ancestors), move, num_steps=num_mcmc_steps)
            p = sharding.constrain_batch(Particles(p2.states.x, p2.log_weights, p2.ancestors))
            acc = jnp.mean(info["accept_prob"])
            new_step = step_size * jnp.exp(2.0 * (acc - goal))
            return p, e, acc, new_step

        step0 = jnp.asarray((2.38 / math.sqrt(d)) if isinstance(kern, mcmc.RWM) else 1.0 / d**0.25, dtype=dtype)
        if betas is not None:
            sched = jnp.asarray(betas, dtype=dtype)
            prev = jnp.concatenate([jnp.zeros((1,), dtype), sched[:-1]])
            keys = jax.random.split(k_loop, sched.shape[0])

            def body(c, inp):
                p, ss = c
                b0, b1, k = inp
                p, e, acc, ss = advance(p, log_lik(p.states), b0, b1, ss, k)
                return (p, ss), (e, acc)

            (particles, _), (ess_h, acc_h) = jax.lax.scan(body, (particles, step0), (prev, sched, keys))
            hist_b, n, forced = sched, jnp.asarray(sched.shape[0]), jnp.asarray(False)
        else:
            zeros = jnp.zeros((max_steps,), dtype)

            def cond(c):
                p, beta, n, *_ = c
                return (beta < 1.0) & (n < max_steps)

            def body(c):
                p, beta, n, ss, k, hb, he, ha, _ = c
                k, sub = jax.random.split(k)
                ll = log_lik(p.states)
                nb = next_beta(p.log_weights, ll, beta, target_ess)
                forced = (n == max_steps - 1) & (nb < 1.0)
                nb = jnp.where(n == max_steps - 1, 1.0, nb)
                p, e, acc, ss = advance(p, ll, beta, nb, ss, sub)
                return p, nb, n + 1, ss, k, hb.at[n].set(nb), he.at[n].set(e), ha.at[n].set(acc), forced

            c0 = (particles, jnp.asarray(0.0, dtype), jnp.asarray(0), step0, k_loop, jnp.ones((max_steps,), dtype), zeros, zeros,
                  jnp.asarray(False))
            particles, _, n, _, _, hist_b, ess_h, acc_h, forced = jax.lax.while_loop(cond, body, c0)
        samples = jax.vmap(target.view.to_constrained)(particles.states)
        return TemperedResult(particles, samples, particles.log_evidence, hist_b, n, ess_h, acc_h, forced)

    return run
