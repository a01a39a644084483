"""Approximate marginalisation: a guide with auxiliary variables, used through its marginal.

A *hierarchical* guide q(z, λ) draws auxiliary choices λ (at the addresses ``aux``) and the
latent choices z that the model scores; its marginal q(z) = ∫ q(z, λ) dλ has no closed form.
:func:`marginal` wraps such a guide so that, inside an objective, ``vi.sample(marginal, ...)``
returns a trace holding only z, whose ``log_density`` is the importance-sampling estimate

    log q̂(z) = log (1/(K+1)) Σ_{k=0..K} q(z, λ_k) / τ(λ_k | z),

λ_0 the auxiliary value that produced z (a draw of q(λ | z)), λ_1..λ_K ~ τ(· | z) drawn from a
*proposal* (reverse model) τ.  This is the sampling-importance-resampling view of the marginal
(the auxiliary draw of q is one of K+1 candidates): E[1 / q̂(z)] = 1 / q(z) when (z, λ_0) ~ q
(Sobolev & Vetrov 2019; Lew et al. 2022), so

    E[log p(x, z) − log q̂(z)] ≤ log p(x)

for every K and every τ, tightening with K towards the ELBO of the marginal q(z).  K = 0 is
hierarchical VI's bound with τ as its reverse model (Ranganath et al. 2016).  The proposal's
draws are random choices of the objective like any other (their gradient strategy chosen per
site), so both q's and τ's parameters are trained.

``Marginal.log_density(z, ...)`` scores a value not drawn from q: log of (1/K) Σ_k
q(z, λ_k) / τ(λ_k | z), λ_k ~ τ, whose exponential is unbiased for q(z).

Example:
    >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
    >>> @ppl.model
    ... def guide(x):
    ...     lam = ppl.sample("lam", dist.Normal(ppl.param("m", 0.0), 1.0))
    ...     ppl.sample("z", dist.Normal(lam, 0.5))
    >>> reverse = ppl.model(lambda z, x: ppl.sample("lam", dist.Normal(ppl.param("r", 0.5) * z["z"], 0.8)))
    >>> q = vi.marginal(guide, aux=["lam"], proposal=reverse, num_particles=4)
    >>> obj = vi.iwhvi(model, guide, aux=["lam"], proposal=reverse, num_particles=4)
    >>> q.num_particles, q.aux
    (4, ('lam',))
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

import ppl
from ppl.model import Trace

from .program import _current, particles, sample
from .terms import VIError

__all__ = ["Marginal", "marginal"]


def _log_marginal_estimate(log_w0: Any, log_wk: Any) -> jax.Array:
    """log (1/(K+1)) (w_0 + Σ_k w_k): the auxiliary draw of q is one of the K+1 candidates."""
    if log_wk is None:
        return log_w0
    all_w = jnp.concatenate([jnp.reshape(log_w0, (1,)), log_wk])
    return jax.nn.logsumexp(all_w) - math.log(all_w.shape[0])


class Marginal:
    """The marginal q(z) of a guide q(z, λ) over its auxiliary addresses (see module docstring).

    Use it inside objectives: ``vi.sample(marginal, *args)`` returns a :class:`ppl.Trace` of the
    non-auxiliary choices whose ``log_density`` is the estimate log q̂(z) (its ``log_probs`` has
    the single entry ``"marginal"``); :meth:`log_density` scores a given value.

    Attributes:
        guide: the joint guide q(z, λ).
        aux: the auxiliary addresses λ.
        proposal: τ, a model called as ``proposal(z, *args, **kwargs)`` (z the dict of
            non-auxiliary choices) that samples every auxiliary address.
        num_particles: K, the number of proposal draws per estimate.
    """

    def __init__(self, guide: Any, aux: Sequence[str], proposal: Any, num_particles: int = 1):
        if isinstance(aux, str):
            aux = [aux]
        self.aux = tuple(aux)
        if not self.aux:
            raise VIError("vi.marginal: aux must name at least one auxiliary address of the guide.")
        self.guide = ppl.as_model(guide)
        if proposal is None:
            raise VIError("vi.marginal: a proposal τ(aux | z) is needed to estimate the marginal density.")
        self.proposal = ppl.as_model(proposal)
        self.num_particles = int(num_particles)
        if self.num_particles < 0:
            raise VIError(f"vi.marginal: num_particles must be at least 0, got {num_particles}.")

    def __repr__(self) -> str:
        return f"<vi.Marginal over {list(self.aux)}, K={self.num_particles}>"

    def _split(self, choices: dict, who: str) -> tuple[dict, dict]:
        missing = [a for a in self.aux if a not in choices]
        if missing:
            raise VIError(
                f"vi.marginal: the {who} has no auxiliary site {missing[0]!r} "
                f"(its choices: {sorted(choices)})."
            )
        lam = {a: choices[a] for a in self.aux}
        z = {k: v for k, v in choices.items() if k not in self.aux}
        return z, lam

    def _log_w(self, z: dict, args: tuple, kwargs: dict, detach: bool) -> jax.Array:
        """log q(z, λ) − log τ(λ | z) for one fresh λ ~ τ(· | z)."""
        t = sample(self.proposal, z, *args, detach=detach, **kwargs)
        extra = [k for k in t.latent if k not in self.aux]
        if extra:
            raise VIError(f"vi.marginal: the proposal samples {extra[0]!r}, which is not an auxiliary address {list(self.aux)}.")
        _, lam = self._split(t.latent, "proposal")
        return self.guide.log_density({**z, **lam}, *args, **kwargs) - t.log_density

    def _log_ws(self, z: dict, args: tuple, kwargs: dict, detach: bool) -> Any:
        if self.num_particles == 0:
            return None
        return particles(self.num_particles, lambda: self._log_w(z, args, kwargs, detach))

    def _vi_sample(self, args: tuple, kwargs: dict, baseline: Any, detach: bool) -> Trace:
        ctx = _current("sample")
        tr = sample(self.guide, *args, baseline=baseline, detach=detach, **kwargs)
        z, lam0 = self._split(tr.latent, "guide")
        ctx.detach += int(bool(detach))  # detached: the densities' parameters are constants too
        try:
            log_w0 = tr.log_density - self.proposal.log_density(lam0, z, *args, **kwargs)
            log_q = _log_marginal_estimate(log_w0, self._log_ws(z, args, kwargs, detach))
        finally:
            ctx.detach -= int(bool(detach))
        return Trace(
            choices=z,
            log_probs={"marginal": log_q},
            deterministic=dict(tr.deterministic),
            params=dict(tr.params),
            active={},
            retval=tr.retval,
            args=tuple(args),
            kwargs=dict(kwargs),
        )

    def log_density(self, choices: dict, *args: Any, **kwargs: Any) -> jax.Array:
        """log of (1/K) Σ_k q(z, λ_k)/τ(λ_k | z), λ_k ~ τ: its exponential is unbiased for q(z).

        Usable only inside an objective (the λ_k are random choices); needs K ≥ 1.

        Example:
            >>> @ppl.model
            ... def guide(x):
            ...     lam = ppl.sample("lam", dist.Normal(ppl.param("m", 0.0), 1.0))
            ...     ppl.sample("z", dist.Normal(lam, 0.5))
            >>> reverse = ppl.model(lambda z, x: ppl.sample("lam", dist.Normal(ppl.param("r", 0.5) * z["z"], 0.8)))
            >>> q = vi.marginal(guide, aux=["lam"], proposal=reverse, num_particles=4)
            >>> est = vi.objective(lambda x: q.log_density({"z": 0.3}, x))
            >>> float(est.estimate(jax.random.key(0), est.init_params(jax.random.key(1), 1.0), 1.0)) < 0.0
            True
        """
        _current("Marginal.log_density")
        if self.num_particles < 1:
            raise VIError("vi.Marginal.log_density needs num_particles >= 1 (draws of the proposal).")
        z = dict(choices)
        bad = [a for a in self.aux if a in z]
        if bad:
            raise VIError(f"vi.Marginal.log_density: {bad[0]!r} is auxiliary; pass only the marginal's choices.")
        lw = self._log_ws(z, args, kwargs, False)
        return jax.nn.logsumexp(lw) - math.log(self.num_particles)


def marginal(guide: Any, aux: Sequence[str], proposal: Any, num_particles: int = 1) -> Marginal:
    """The marginal of `guide` over its auxiliary addresses `aux`, its density estimated with
    `num_particles` draws of `proposal` (see :class:`Marginal` and the module docstring).

    Example:
        >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
        >>> @ppl.model
        ... def guide(x):
        ...     lam = ppl.sample("lam", dist.Normal(ppl.param("m", 0.0), 1.0))
        ...     ppl.sample("z", dist.Normal(lam, 0.5))
        >>> reverse = ppl.model(lambda z, x: ppl.sample("lam", dist.Normal(ppl.param("r", 0.5) * z["z"], 0.8)))
        >>> q = vi.marginal(guide, aux=["lam"], proposal=reverse, num_particles=4)
        >>> @vi.objective
        ... def my_iwhvi(x):
        ...     tr = vi.sample(q, x)
        ...     return model.log_density(tr.choices, x) - tr.log_density
        >>> u = my_iwhvi.init_params(jax.random.key(0), 1.0)
        >>> my_iwhvi.grad(jax.random.key(1), u, 1.0)[0].shape
        ()
    """
    return Marginal(guide, aux, proposal, num_particles)
