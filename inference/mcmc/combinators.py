"""Kernel combinators: deterministic cycles and random mixtures.

If each of K₁, …, Kₙ leaves π invariant then so do their composition K₁K₂⋯Kₙ (:func:`cycle`)
and every mixture Σᵢ wᵢ Kᵢ with weights independent of the state (:func:`mixture`); a mixture
of π-reversible kernels is π-reversible.  Combined kernels must share one state type (e.g. all
trace kernels, whose state is the trace), so Gibbs over address blocks is
``cycle(Gibbs("z"), Regenerate("mu"), ...)``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
from numpyro import distributions as dist

from ppl import randomness
from ppl.core import is_concrete
from ppl.errors import ModelError

from ._base import BoundBase, Kernel, phase_step, split

__all__ = ["cycle", "mixture", "Cycle", "Mixture"]


@dataclasses.dataclass(frozen=True)
class Cycle(Kernel):
    """Apply each kernel in turn (a systematic scan); invariant when each part is.

    Example:
        >>> kern = mcmc.cycle(mcmc.Gibbs("z"), mcmc.Regenerate("mu"))
    """

    kernels: tuple

    @property
    def adaptive(self) -> bool:  # type: ignore[override]
        return any(k.adaptive for k in self.kernels)

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundCycle([k.bind(model, args, kwargs, num_warmup) for k in self.kernels])


class _BoundComposite(BoundBase):
    """A bound kernel made of bound kernels ``parts`` sharing one state type: ``init`` and the
    read-outs are the first part's; ``_run`` (the composite's transition) steps the parts, each
    through :func:`~inference.mcmc._base.phase_step` (so each adapts during warmup)."""

    def __init__(self, parts: list):
        self.parts = parts
        first = parts[0]
        self.init, self.samples, self.log_density, self.explain = (
            first.init,
            first.samples,
            first.log_density,
            first.explain,
        )
        if all(hasattr(p, "active") for p in parts):
            self.active = first.active

    def _run(self, key, state, t=None, warm=True):
        raise NotImplementedError

    def step(self, key, state, params=None):
        """One composite move with every part's tuning frozen (``params`` is not used: each
        part's tuning travels in the state)."""
        return self._run(key, state)

    def warmup_step(self, key, state, t):
        return self._run(key, state, t)

    def phase_step(self, key, state, t, warm):
        return self._run(key, state, t, warm)


class _BoundCycle(_BoundComposite):
    def _run(self, key, state, t=None, warm=True):
        info = {}
        for i, (p, k) in enumerate(zip(self.parts, split(key, len(self.parts)))):
            state, inf = p.step(k, state) if t is None else phase_step(p, k, state, t, warm)
            info.update({f"{i}/{n}": v for n, v in inf.items()})
        return state, info


def cycle(*kernels: Kernel) -> Cycle:
    """The composition that applies ``kernels`` in order at every step (see :class:`Cycle`)."""
    if len(kernels) == 1 and isinstance(kernels[0], (list, tuple)):
        kernels = tuple(kernels[0])
    if not kernels:
        raise ModelError("cycle: give at least one kernel.")
    return Cycle(tuple(kernels))


@dataclasses.dataclass(frozen=True)
class Mixture(Kernel):
    """At each step, pick kernel i with probability ``probs[i]`` and apply it; invariant (and
    reversible) when each component is.  The choice is drawn through ``ppl.randomness``.

    Example:
        >>> kern = mcmc.mixture([mcmc.Regenerate("a"), mcmc.Regenerate("b")], [0.5, 0.5])
    """

    kernels: tuple
    probs: tuple

    @property
    def adaptive(self) -> bool:  # type: ignore[override]
        return any(k.adaptive for k in self.kernels)

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundMixture([k.bind(model, args, kwargs, num_warmup) for k in self.kernels], self.probs)


class _BoundMixture(_BoundComposite):
    def __init__(self, parts: list, probs: tuple):
        super().__init__(parts)
        self.probs = probs

    def _run(self, key, state, t=None, warm=True):
        k_choice, k_step = split(key, 2)
        i = randomness.draw(k_choice, dist.Categorical(probs=jnp.asarray(self.probs)), (), "mcmc/mixture")

        def branch(p):
            def f(s):
                s2, inf = p.step(k_step, s) if t is None else phase_step(p, k_step, s, t, warm)
                return s2, inf

            return f

        if is_concrete(i):
            state, info = branch(self.parts[int(i)])(state)
        else:
            try:
                state, info = jax.lax.switch(i, [branch(p) for p in self.parts], state)
            except TypeError as e:
                raise ModelError(
                    "mixture: the component kernels must return the same state and info "
                    f"structures ({e})."
                ) from None
        info = dict(info)
        info["component"] = jnp.asarray(i)
        return state, info


def mixture(kernels: Sequence[Kernel], probs: Sequence[float] | None = None) -> Mixture:
    """A random mixture of ``kernels`` with weights ``probs`` (uniform by default)."""
    kernels = tuple(kernels)
    if not kernels:
        raise ModelError("mixture: give at least one kernel.")
    if probs is None:
        probs = (1.0 / len(kernels),) * len(kernels)
    probs = tuple(float(p) for p in probs)
    if len(probs) != len(kernels):
        raise ModelError(f"mixture: {len(kernels)} kernels but {len(probs)} probabilities.")
    if any(p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-9:
        raise ModelError(f"mixture: probs must be non-negative and sum to 1, got {probs}.")
    return Mixture(kernels, probs)
