"""Statistical helpers: budget, power, fixed-seed tests and SBC, each with a planted bug that must fail."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from pathlib import Path

from scipy import stats as sp_stats

from semantics import stats
from _budget import BUDGET

ALPHA = BUDGET.level("semantics/stats_helpers")


def test_budget_counts_every_declared_decision_at_its_level():
    assert stats.SUITE_FALSE_ALARM == 1e-6
    assert stats.alpha_per_test(100) == pytest.approx(1e-8)
    b = stats.Budget(total=1e-6, planned=100)
    b.declare("a", 3).declare("b", alpha=1e-9).declare("c", 2, z=6.0)
    assert b.level("a") == pytest.approx(1e-8) and b.level("b") == 1e-9
    assert b.level("c") == pytest.approx(2 * sp_stats.norm.sf(6.0))
    assert b.total() == pytest.approx(3e-8 + 1e-9 + 4 * sp_stats.norm.sf(6.0))
    assert b.ok()
    b.declare("a", 3)  # the same declaration again is fine
    with pytest.raises(ValueError, match="already declared"):
        b.declare("a", 4)  # a different one under the same name is not
    with pytest.raises(KeyError, match="not declared"):
        b.level("undeclared")
    # a fixed |z| < 4 threshold on 21 parameters (posteriordb's old check) breaks the budget
    b.declare("posteriordb", 21, z=4.0)
    assert not b.ok() and "posteriordb" in b.report()


def test_the_ad_hoc_budget_and_the_older_register_form():
    """``stats.BUDGET`` is a user's ad-hoc budget at the default level; ``register`` declares a
    budgeted decision taken once, idempotently, and returns its level."""
    assert isinstance(stats.BUDGET, stats.Budget)
    assert stats.BUDGET.alpha == stats.SUITE_FALSE_ALARM / stats.SUITE_PLANNED_TESTS
    b = stats.Budget(total=1e-6, planned=10)
    assert b.register("x") == pytest.approx(1e-7) and b.register("x") == pytest.approx(1e-7)
    assert b.total() == pytest.approx(1e-7) and b.decisions["x"].count == 1


def test_the_suites_budget_holds_and_every_declared_decision_is_used():
    """The union bound over the suite's declared decisions stays under the budget, and no
    declaration is stale (each name appears in some test module)."""
    assert BUDGET.ok(), BUDGET.report(top=20)
    sources = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    unused = [name for name in BUDGET.decisions if f'"{name}' not in sources and f"'{name}" not in sources]
    assert not unused, f"declared but used by no test: {unused}"
    # tests read their levels from the registry, never from a private budget
    private = "BUDGET." + "register("  # spelt so that this module does not match itself
    registering = [p.name for p in Path(__file__).parent.glob("test_*.py") if private in p.read_text()]
    assert not registering, f"these modules register levels outside tests/_budget.py: {registering}"


def test_sample_size_from_power():
    n = stats.sample_size(0.1, sd=1.0, alpha=1e-8, power=0.999)
    # at that n, a shift of 0.1 gives z ≥ z_{α/2} + z_{power} in expectation
    from scipy import stats as sp

    assert 0.1 * math.sqrt(n) >= sp.norm.isf(5e-9) + sp.norm.isf(0.001)
    assert 0.1 * math.sqrt(n - 1) < sp.norm.isf(5e-9) + sp.norm.isf(0.001)
    assert stats.sample_size(0.05) > stats.sample_size(0.1)


def _bernoulli_mean(p):
    def sampler(key, n):
        return jax.vmap(lambda k: ppl.randomness.draw(k, dist.Bernoulli(probs=p)))(jax.random.split(key, n))

    return sampler


def test_mean_check_and_its_planted_bug():
    n = stats.sample_size(0.02, sd=0.5, alpha=ALPHA, power=0.999)
    assert stats.check_mean(_bernoulli_mean(0.3), 0.3, n=n, seed=1, alpha=ALPHA).ok
    bug = stats.check_mean(_bernoulli_mean(0.32), 0.3, n=n, seed=1, alpha=ALPHA)  # off by 0.02
    assert not bug.ok and "expected 0.3" in bug.message
    with pytest.raises(AssertionError, match="z_test"):
        bug.assert_()


def test_chi2_check_and_its_planted_bug():
    probs = np.array([0.2, 0.3, 0.5])

    def good(key, n):
        return jax.random.categorical(key, jnp.log(jnp.asarray(probs)), shape=(n,))

    def bad(key, n):  # planted bug: last two categories swapped
        return jax.random.categorical(key, jnp.log(jnp.asarray(probs[[0, 2, 1]])), shape=(n,))

    assert stats.check_frequencies(good, probs, n=20_000, seed=2, alpha=ALPHA).ok
    assert not stats.check_frequencies(bad, probs, n=20_000, seed=2, alpha=ALPHA).ok
    assert not stats.chi2_test([1, 0, 5], [0.5, 0.5, 0.0]).ok  # mass in an impossible bin


# Normal–Normal: θ ~ N(0, 1), y | θ ~ N(θ, 1) → θ | y ~ N(y/2, 1/2)
def prior_predictive(key):
    k1, k2 = jax.random.split(key)
    theta = jax.random.normal(k1)
    return theta, theta + jax.random.normal(k2)


def exact_posterior(key, y, L):
    return y / 2 + jnp.sqrt(0.5) * jax.random.normal(key, (L,))


def overconfident_posterior(key, y, L):  # planted bug: variance 1/4 instead of 1/2
    return y / 2 + 0.5 * jax.random.normal(key, (L,))


def shifted_posterior(key, y, L):  # planted bug: the mean is off by 0.3 posterior sd
    return y / 2 + 0.3 * jnp.sqrt(0.5) + jnp.sqrt(0.5) * jax.random.normal(key, (L,))


def test_sbc_passes_for_the_exact_posterior_and_fails_for_planted_bugs():
    ok = stats.sbc(prior_predictive, exact_posterior, num_simulations=2000, num_draws=19, seed=3, alpha=ALPHA)
    assert ok.ok, ok.message
    assert ok.details["ranks"].min() >= 0 and ok.details["ranks"].max() <= 19
    for bug in (overconfident_posterior, shifted_posterior):
        r = stats.sbc(prior_predictive, bug, num_simulations=2000, num_draws=19, seed=3, alpha=ALPHA)
        assert not r.ok, (bug.__name__, r.message)


def test_sbc_ranks_count_the_draws_strictly_below_the_truth():
    """rank = #{l : θ_l < θ*}, exactly: draws at θ* + (−0.5, −0.02, 0, 0.02, 0.5) rank 2 for every
    simulation (a tie does not count, nor does a draw just above the truth)."""
    offsets = jnp.array([-0.5, -0.02, 0.0, 0.02, 0.5])

    def prior(key):
        th = jax.random.uniform(key)
        return th, th

    r = stats.sbc(prior, lambda k, y, L: y + offsets, num_simulations=50, num_draws=5, seed=0, alpha=ALPHA)
    assert np.all(r.details["ranks"] == 2), r.details["ranks"]
    assert r.details["counts"].tolist() == [0, 0, 50, 0, 0, 0]


def test_sbc_unvectorised_path():
    r = stats.sbc(prior_predictive, exact_posterior, num_simulations=200, num_draws=9, seed=4, alpha=ALPHA, bins=5, vectorized=False)
    assert r.ok and r.details["counts"].sum() == 200


def test_sbc_many_is_sbc_of_each_component_from_one_run():
    """Components: the exact posterior, the overconfident twin, the shifted twin, on the same y;
    each entry equals ``sbc`` of that component (same keys, same ranks), the sampler called once."""
    calls = []

    def prior3(key):
        th, y = prior_predictive(key)
        return jnp.stack([th, th, th]), y

    def post3(key, y, L):
        calls.append(1)
        return jnp.stack([f(key, y, L) for f in (exact_posterior, overconfident_posterior, shifted_posterior)], axis=1)

    for vectorized in (True, False):
        n = 2000 if vectorized else 30
        calls.clear()
        many = stats.sbc_many(prior3, post3, num_simulations=n, num_draws=19, seed=3, alpha=ALPHA, bins=5, vectorized=vectorized)
        assert len(calls) == (1 if vectorized else n)
        assert len(many) == 3
        for p, r in enumerate(many):
            one = stats.sbc(lambda k: (prior3(k)[0][p], prior3(k)[1]), lambda k, y, L: post3(k, y, L)[:, p],
                            num_simulations=n, num_draws=19, seed=3, alpha=ALPHA, bins=5, vectorized=vectorized)
            np.testing.assert_array_equal(r.details["ranks"], one.details["ranks"])
            assert (r.ok, r.pvalue) == (one.ok, one.pvalue)
        if vectorized:
            assert [r.ok for r in many] == [True, False, False]
    with pytest.raises(ppl.ArgumentError, match="sbc_many"):
        stats.sbc_many(prior3, lambda k, y, L: post3(k, y, L)[:, :2], num_simulations=10, num_draws=4, alpha=ALPHA)
    with pytest.raises(ppl.ArgumentError, match="use sbc_many"):
        stats.sbc(prior3, post3, num_simulations=10, num_draws=4, alpha=ALPHA)


def test_z_test_rejects_samples_it_cannot_summarise():
    # a "forget Z" bug gives ratios so large that their variance overflows: that must not pass
    huge = np.full(10, 1e275) * np.arange(1, 11)
    assert not stats.z_test(huge, 1.0).ok
    assert not stats.z_test(np.array([1.0, np.inf, 1.0]), 1.0).ok
    assert not stats.z_test(np.array([1.0, np.nan, 1.0]), 1.0).ok
    assert stats.z_test(np.array([0.9, 1.1, 1.0, 0.95, 1.05]), 1.0).ok
