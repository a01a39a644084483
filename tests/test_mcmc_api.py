"""Value tests of public MCMC names that no other test named: the kernel protocol's base class
``Kernel`` (a kernel written by a user runs in the driver), and the combinator types ``Cycle``
and ``Mixture`` (what ``cycle``/``mixture`` build, and their exact one-step laws).

The user kernel is a deterministic shift, so every recorded draw is known by hand; the mixture's
one-step law is summed exactly by the enumerator of ``semantics`` over its component choice.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from inference import mcmc
from ppl import dist

pytestmark = pytest.mark.exact


@dataclasses.dataclass(frozen=True)
class Shift(mcmc.Kernel):
    """x ← x + delta at every step (a deterministic 'kernel': the protocol, not a valid sampler)."""

    delta: float = 1.0

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundShift(self.delta)


class _BoundShift:
    def __init__(self, delta):
        self.delta = delta

    def init(self, key, init=None):
        return jnp.asarray(0.0 if init is None else init["x"], dtype=jnp.float64)

    def step(self, key, state):
        return state + self.delta, {"shift": jnp.asarray(self.delta)}

    def warmup_step(self, key, state, t):
        return self.step(key, state)

    def samples(self, state):
        return {"x": state}

    def log_density(self, state):
        return jnp.asarray(0.0)

    def explain(self, state):
        return ""


@ppl.model
def anything():
    ppl.sample("x", dist.Normal(0.0, 1.0))


def test_a_user_kernel_runs_in_the_driver():
    """3 warmup steps (not recorded), then 5 recorded draws: x = 4, 5, ..., 8 in every chain."""
    run = mcmc.sample(jax.random.key(0), Shift(1.0), anything, num_warmup=3, num_samples=5, num_chains=2, progress=False)
    np.testing.assert_array_equal(np.asarray(run.samples["x"]), np.tile(np.arange(4.0, 9.0), (2, 1)))
    np.testing.assert_array_equal(np.asarray(run.info["shift"]), np.ones((2, 5)))
    assert not Shift().adaptive


def test_cycle_applies_each_kernel_in_turn():
    c = mcmc.cycle(Shift(1.0), Shift(10.0))
    assert isinstance(c, mcmc.Cycle) and c == mcmc.Cycle((Shift(1.0), Shift(10.0))) and hash(c) == hash(mcmc.cycle([Shift(1.0), Shift(10.0)]))
    run = mcmc.sample(jax.random.key(1), c, anything, num_warmup=0, num_samples=4, num_chains=1, progress=False)
    np.testing.assert_array_equal(np.asarray(run.samples["x"]), [[11.0, 22.0, 33.0, 44.0]])
    with pytest.raises(ppl.ModelError, match="at least one"):
        mcmc.cycle()


def test_mixture_picks_one_kernel_with_its_probability():
    m = mcmc.mixture([Shift(1.0), Shift(10.0)], [0.25, 0.75])
    assert isinstance(m, mcmc.Mixture) and m.probs == (0.25, 0.75)
    assert mcmc.mixture([Shift(1.0), Shift(2.0), Shift(3.0)]).probs == pytest.approx((1 / 3,) * 3, abs=0)
    bound = m.bind(anything)
    law = semantics.enumerate_block(lambda k: bound.step(k, jnp.asarray(0.0))[0])
    assert {float(a): law.exact[a] for a in law.atoms} == {1.0: Fraction(1, 4), 10.0: Fraction(3, 4)}
    # two steps: 2, 11 (either order) or 20, with probabilities 1/16, 6/16, 9/16
    two = semantics.enumerate_block(lambda k: bound.step(jax.random.split(k)[1], bound.step(jax.random.split(k)[0], jnp.asarray(0.0))[0])[0])
    assert {float(a): two.exact[a] for a in two.atoms} == {2.0: Fraction(1, 16), 11.0: Fraction(6, 16), 20.0: Fraction(9, 16)}
    with pytest.raises(ppl.ModelError, match="sum to 1"):
        mcmc.mixture([Shift(1.0), Shift(2.0)], [0.5, 0.6])
