"""Issue 14: the enumerated marginal gives data of probability zero a log density of −inf, as
``ppl.core.site_log_prob`` does (``ppl.checks.exact_zeros``), not NumPyro's clamped finite value.

NumPyro clamps ``Bernoulli`` / ``Binomial(probs=)`` away from 0 and 1; the enumeration used its
``log_prob`` as it is, so data impossible under every value of the summed-out site got a finite
marginal (−1416.8 for y = 1 under probs 0, float64) where ``semantics.enumerate`` gives −inf.
The law (float64): the marginal equals the log total mass of ``semantics.enumerate`` — −inf
exactly when that is −inf, else to 1e-10 (and finite: an impossible branch next to possible ones
is dropped, not a NaN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from ppl import dist


def bern_all_zero():
    @ppl.model
    def m():
        with ppl.plate("d", 3):
            z = ppl.sample("z", dist.Bernoulli(0.3))
            ppl.sample("y", dist.Bernoulli(probs=jnp.array([0.0, 0.0])[z]), obs=jnp.array([1, 0, 1]))
    return m


def bern_one_branch():  # y = 0 impossible under z = 0 (probs 1): only z = 1 explains those elements
    @ppl.model
    def m():
        with ppl.plate("d", 3):
            z = ppl.sample("z", dist.Bernoulli(0.3))
            ppl.sample("y", dist.Bernoulli(probs=jnp.array([1.0, 0.5])[z]), obs=jnp.array([1, 0, 0]))
    return m


def binomial_ends():
    @ppl.model
    def m():
        with ppl.plate("d", 3):
            z = ppl.sample("z", dist.Bernoulli(0.4))
            ppl.sample("y", dist.Binomial(3, probs=jnp.array([1.0, 0.0])[z]), obs=jnp.array([3, 0, 1]))
    return m


def categorical_zero_times_bernoulli_zero():  # z = 0 has prior 0; z = 1, 2 make y = 1 impossible
    @ppl.model
    def m():
        with ppl.plate("d", 2):
            z = ppl.sample("z", dist.Categorical(probs=jnp.array([0.0, 0.5, 0.5])))
            ppl.sample("y", dist.Bernoulli(probs=jnp.array([0.5, 0.0, 0.0])[z]), obs=jnp.array([1, 0]))
    return m


def categorical_observed_zero():  # Categorical(probs=) is exact through numpyro's log(probs)
    @ppl.model
    def m():
        with ppl.plate("d", 2):
            z = ppl.sample("z", dist.Bernoulli(0.5))
            ppl.sample("y", dist.Categorical(probs=jnp.array([[1.0, 0.0], [0.7, 0.3]])[z]), obs=jnp.array([1, 0]))
            ppl.sample("v", dist.Categorical(probs=jnp.array([1.0, 0.0])), obs=jnp.array([0, 0]))
    return m


def mixed_with_continuous():  # a continuous site too, given; one element impossible under z = 1
    @ppl.model
    def m():
        c = ppl.sample("c", dist.Normal(0.0, 1.0))
        with ppl.plate("d", 3):
            z = ppl.sample("z", dist.Bernoulli(0.6))
            ppl.sample("y", dist.Bernoulli(probs=jnp.where(z == 1, 0.0, jax.nn.sigmoid(c))), obs=jnp.array([1, 0, 1]))
    return m


CASES = {
    "bernoulli_all_zero": (bern_all_zero, {}),
    "bernoulli_one_branch": (bern_one_branch, {}),
    "binomial_ends": (binomial_ends, {}),
    "categorical_zero_times_bernoulli_zero": (categorical_zero_times_bernoulli_zero, {}),
    "categorical_observed_zero": (categorical_observed_zero, {}),
    "mixed_with_continuous": (mixed_with_continuous, {"c": 0.4}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_marginal_with_probability_zero_data_is_the_enumerated_mass(case):
    build, vals = CASES[case]
    m = build()
    vals = {k: jnp.asarray(v) for k, v in vals.items()}
    want = float(semantics.enumerate(ppl.substitute(m, vals) if vals else m).log_total_mass())
    for got in (ppl.marginal_log_density(m, vals), jax.jit(lambda v: ppl.marginal_log_density(m, v))(vals)):
        got = float(got)
        assert not np.isnan(got), case
        if want == -np.inf:
            assert got == -np.inf, f"{case}: impossible data got a finite marginal {got}"
        else:
            assert abs(got - want) < 1e-10 * max(1.0, abs(want)), (case, got, want)


def test_gradient_next_to_an_impossible_branch_is_finite_and_exact():
    m = mixed_with_continuous()
    g = jax.grad(lambda c: ppl.marginal_log_density(m, {"c": c}))(jnp.asarray(0.4))
    # elements 0 and 2 (y = 1): only z = 0 possible, log(0.4 sigmoid(c)) each; element 1: log(0.4 (1 - s) + 0.6)
    s = jax.nn.sigmoid(0.4)
    want = 2 * (1 - s) - 0.4 * s * (1 - s) / (0.4 * (1 - s) + 0.6) - 0.4  # with the prior's -c
    assert abs(float(g) - float(want)) < 1e-10
