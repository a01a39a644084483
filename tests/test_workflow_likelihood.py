"""Issue 16: pointwise log-likelihood (``ppl.log_likelihood``, ``Run.log_likelihood``) and the batch
layout of ``ppl.predictive``.

Exact (float64): summed over the observations, the pointwise log-likelihood equals the model's
``log_density`` at the draw minus its prior (latent) terms, on generated models (Bayes nets,
HMMs written with ``ppl.scan``, linear-Gaussian chains, mixtures in a plate); each pointwise term
equals the closed-form density computed with SciPy, masks and scales included.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

import ppl
from ppl import dist
from semantics.strategies import hmms, linear_gaussian_chains, mixtures

pytestmark = pytest.mark.exact

KEY = jax.random.key(0)
SIGMA = jnp.array([15.0, 10, 16, 11, 9, 11, 10, 18])
Y = jnp.array([28.0, 8, -3, 7, -1, 1, 18, 12])


@ppl.model
def schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta = ppl.sample("theta", dist.Normal(mu, tau))
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


@settings(max_examples=4)
@given(st.one_of(hmms(), linear_gaussian_chains(), mixtures()))  # bayes_nets index CPTs in Python: eager only
def test_summed_log_likelihood_is_log_density_minus_prior_terms(spec):
    m = spec.model
    trs = jax.jit(jax.vmap(lambda k: m.simulate(k, *spec.args)))(jax.random.split(KEY, 5))
    latent = trs.latent
    assume(trs.observed and latent)  # a likelihood, and draws to evaluate it at
    ll = ppl.log_likelihood(m, latent, *spec.args)
    total = sum(jnp.sum(v.reshape(5, -1), axis=1) for v in ll.values())
    prior = sum(jnp.sum(trs.log_probs[k].reshape(5, -1), axis=1) for k in latent)  # the latent terms, per draw
    ref = jax.jit(jax.vmap(lambda c: m.log_density(c, *spec.args)))(latent) - prior
    np.testing.assert_allclose(np.asarray(total), np.asarray(ref), rtol=0, atol=1e-12)
    assert set(ll) == set(trs.observed)


def test_pointwise_terms_match_scipy_with_plates_masks_and_conditioning():
    draws = {"mu": jnp.linspace(-2, 2, 6).reshape(2, 3), "tau": jnp.full((2, 3), 2.0),
             "theta": jnp.arange(48.0).reshape(2, 3, 8) / 7}
    ll = ppl.log_likelihood(schools, draws, SIGMA, y=Y)["y"]
    assert ll.shape == (2, 3, 8)                       # (chains, draws, school)
    ref = stats.norm.logpdf(np.asarray(Y), np.asarray(draws["theta"]), np.asarray(SIGMA))
    np.testing.assert_allclose(np.asarray(ll), ref, rtol=1e-12)
    # observed through ppl.condition instead of obs=: the same terms
    ll_c = ppl.log_likelihood(ppl.condition(schools, {"y": Y}), draws, SIGMA)["y"]
    np.testing.assert_allclose(np.asarray(ll_c), ref, rtol=1e-12)
    # masked-out observations contribute 0; a scale multiplies the terms
    keep = jnp.arange(8) % 2 == 0
    masked = ppl.mask(ppl.condition(schools, {"y": Y}), mask=keep)
    np.testing.assert_allclose(np.asarray(ppl.log_likelihood(masked, draws, SIGMA)["y"]), np.where(keep, ref, 0.0),
                               rtol=1e-12)
    scaled = ppl.scale(ppl.condition(schools, {"y": Y}), scale=3.0)
    np.testing.assert_allclose(np.asarray(ppl.log_likelihood(scaled, draws, SIGMA)["y"]), 3.0 * ref, rtol=1e-12)


def test_scan_sites_have_one_term_per_step():
    @ppl.model
    def ar(ys):
        def step(c, y_t):
            x = ppl.sample("x", dist.Normal(0.5 * c, 1.0))
            ppl.sample("y", dist.Normal(x, 0.5), obs=y_t)
            return x, None

        ppl.scan(step, 0.0, xs=ys, name="ts")

    ys = jnp.array([0.3, -1.0, 2.0])
    xs = jnp.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])
    ll = ppl.log_likelihood(ar, {"ts/x": xs}, ys)["ts/y"]
    np.testing.assert_allclose(np.asarray(ll), stats.norm.logpdf(np.asarray(ys), np.asarray(xs), 0.5), rtol=1e-12)


def test_errors_name_the_site():
    draws = {"mu": jnp.zeros(4), "tau": jnp.ones(4), "theta": jnp.zeros((4, 8))}
    with pytest.raises(ppl.AddressError, match="latent site 'theta' has no draws"):
        ppl.log_likelihood(schools, {"mu": jnp.zeros(4), "tau": jnp.ones(4)}, SIGMA, y=Y)
    with pytest.raises(ppl.ModelError, match="observes nothing"):
        ppl.log_likelihood(schools, draws, SIGMA)
    with pytest.raises(ppl.AddressError, match="'thetta'.*'theta'"):
        ppl.log_likelihood(schools, {**draws, "thetta": jnp.zeros((4, 8))}, SIGMA, y=Y)
    bad = {**draws, "theta": jnp.zeros((2, 2, 8))}
    msg = re.escape("'mu' has shape (4,) for a site shaped () (batch axes (4,)), but 'theta' has shape (2, 2, 8)")
    with pytest.raises(ppl.ModelError, match=msg):
        ppl.log_likelihood(schools, bad, SIGMA, y=Y)
    with pytest.raises(ppl.ModelError, match=r"fewer axes than the site itself"):
        ppl.log_likelihood(schools, {**draws, "theta": jnp.zeros(())}, SIGMA, y=Y)


def test_predictive_takes_a_runs_chains_draws_layout():
    draws = {"mu": jnp.zeros((2, 3)), "tau": jnp.ones((2, 3)), "theta": jnp.zeros((2, 3, 8))}
    pp = ppl.predictive(schools, draws, SIGMA, key=KEY)
    assert pp["y"].shape == (2, 3, 8)
    # the same draws flattened give the same predictions (same key, same per-draw keys)
    flat = ppl.predictive(schools, {k: v.reshape((6,) + v.shape[2:]) for k, v in draws.items()}, SIGMA, key=KEY)
    np.testing.assert_array_equal(np.asarray(pp["y"]).reshape(6, 8), np.asarray(flat["y"]))
    # mismatched layouts: a clear error naming both sites and their shapes
    with pytest.raises(ppl.ModelError, match=r"'mu' has shape \(2, 3\).*'theta' has shape \(6, 8\)"):
        ppl.predictive(schools, {**draws, "theta": jnp.zeros((6, 8))}, SIGMA, key=KEY)
    # prior predictive and new inputs
    assert ppl.predictive(schools, None, SIGMA[:3], key=KEY, num_samples=7)["y"].shape == (7, 3)
