"""Issue 17 (part A): what a NumPyro user expects of ``ppl`` on the first day.

Each section tests one item of the issue against what the code did before (every test here
failed on the tree before the issue's commits):

- ``sample_shape=`` on ``ppl.sample``: the site is ``d`` expanded to ``sample_shape + batch``,
  its sample dims left of every plate dim, its log density summed over every copy (the law is
  checked exactly with :func:`semantics.enumerate` against the same model written with a plate).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from inference import mcmc
from ppl import dist

# ---------------------------------------------------------------------------------------------
# sample_shape


def test_sample_shape_value_shape_and_log_density_sum():
    @ppl.model
    def m():
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0), sample_shape=(2,))
        with ppl.plate("p", 4):
            x = ppl.sample("x", dist.Normal(0.0, 2.0), sample_shape=(3,))
        ppl.sample("v", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)), sample_shape=5)
        return mu, x

    tr = m.simulate(jax.random.key(0))
    # sample dims first, then the plate's dim, then the event
    assert tr.choices["mu"].shape == (2,)
    assert tr.choices["x"].shape == (3, 4)
    assert tr.choices["v"].shape == (5, 2)
    assert not np.allclose(tr.choices["x"][0], tr.choices["x"][1])  # independent copies
    c = {k: np.asarray(v) for k, v in tr.choices.items()}
    want = (
        dist.Normal(0.0, 1.0).log_prob(c["mu"]).sum()
        + dist.Normal(0.0, 2.0).log_prob(c["x"]).sum()
        + dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)).log_prob(c["v"]).sum()
    )
    np.testing.assert_allclose(m.log_density(c), want, rtol=1e-12)
    np.testing.assert_allclose(tr.log_density, want, rtol=1e-12)


def test_sample_shape_law_equals_a_plate_exactly():
    """The measure of a site with sample_shape=(2,) is that of two independent copies."""

    @ppl.model
    def shaped():
        p = ppl.sample("p", dist.Bernoulli(probs=0.3))
        ppl.sample("x", dist.Bernoulli(probs=0.2 + 0.5 * p), sample_shape=(2,))

    @ppl.model
    def plated():
        p = ppl.sample("p", dist.Bernoulli(probs=0.3))
        with ppl.plate("copies", 2):
            ppl.sample("x", dist.Bernoulli(probs=0.2 + 0.5 * p))

    a, b = semantics.enumerate(shaped), semantics.enumerate(plated)
    assert len(a) == 8
    assert sorted(a.atoms) == sorted(b.atoms)
    for atom in a.atoms:
        assert a.log_weight(atom) == pytest.approx(b.log_weight(atom), abs=1e-12)
    assert a.log_total_mass() == pytest.approx(0.0, abs=1e-12)


def test_sample_shape_observed_and_bad_shape():
    @ppl.model
    def m(y=None):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y, sample_shape=(3,))

    y = np.array([0.1, -0.4, 2.0])
    np.testing.assert_allclose(
        m.log_density({"mu": 0.5}, y=y),
        dist.Normal(0.0, 1.0).log_prob(0.5) + dist.Normal(0.5, 1.0).log_prob(y).sum(),
        rtol=1e-12,
    )
    with pytest.raises(ppl.errors.ModelError, match="'y'.*sample_shape"):
        ppl.model(lambda: ppl.sample("y", dist.Normal(0.0, 1.0), sample_shape="3")).simulate(jax.random.key(0))
    with pytest.raises(ppl.errors.ModelError, match="'y'"):  # data of the wrong shape is named
        m.log_density({"mu": 0.5}, y=np.zeros(4))


def test_sample_shape_under_predictive_and_nuts():
    @ppl.model
    def m(y=None):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0), sample_shape=(2,))
        with ppl.plate("obs", 3):
            ppl.sample("y", dist.Normal(mu.sum(), 1.0), obs=y, sample_shape=(2,))

    pred = ppl.predictive(m, None, key=jax.random.key(0), num_samples=7)
    assert pred["mu"].shape == (7, 2) and pred["y"].shape == (7, 2, 3)
    y = np.full((2, 3), 1.0)
    run = mcmc.sample(jax.random.key(1), mcmc.NUTS(), m, y, num_warmup=100, num_samples=100, progress=False)
    assert run.samples["mu"].shape == (1, 100, 2)
    # NUTS targets the same density (checked exactly above); its draws move and stay finite
    assert np.isfinite(run.samples["mu"]).all() and np.unique(run.samples["mu"][0, :, 0]).size > 50
    post = ppl.predictive(m, {"mu": run.samples["mu"][0]}, key=jax.random.key(2))
    assert post["y"].shape == (100, 2, 3)
