"""Statistical checks of the SMC drivers (fixed seeds, the suite's false-alarm budget).

Ẑ/Z (never log Ẑ) has mean 1 against closed-form evidences (Kalman filter, conjugate model);
filtering means match the Kalman filter; each resampler's jax.random sampler draws from the
distribution its exact ``log_prob`` states.  Each check has a planted-bug twin that must fail.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from inference import smc
from inference.smc import blocks
from ppl import dist
from semantics import oracles
from semantics.stats import BUDGET, chi2_test, z_test

NILE = json.loads((Path(__file__).resolve().parents[2] / "shared" / "data" / "nile.json").read_text()) if (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "nile.json"
).exists() else json.loads(Path("/work/shared/data/nile.json").read_text())

def mean_one(r, alpha):
    """Ẑ/Z samples pass a z-test of mean 1 (and are finite: an overflowing sd must not pass)."""
    r = np.asarray(r)
    with np.errstate(over="ignore"):
        finite = bool(np.all(np.isfinite(r))) and bool(np.isfinite(np.var(r)))
    return finite and z_test(r, 1.0, alpha).ok


FORGET_Z = lambda lw, a: jnp.zeros_like(lw)  # noqa: E731  renormalise and forget Z
NO_RESET = lambda lw, a: lw[a]  # noqa: E731  resample without resetting the weights


def lgssm(A, Q, R, m0, P0):
    """x_0 ~ N(m0, P0); x_t = A x_{t-1} + N(0, Q); y_t = x_t + N(0, R): (initial model, step)."""

    @ppl.model
    def x0():
        return ppl.sample("x0", dist.Normal(m0, math.sqrt(P0)))

    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(A * x_prev, math.sqrt(Q)))
        ppl.sample("y", dist.Normal(x, math.sqrt(R)), obs=y_t)
        return x, x

    return x0, step


def _ratios(x0, step, ys, N, reps, seed, scheme="systematic", ess_threshold=None):
    run = jax.jit(jax.vmap(lambda k: smc.particle_filter(k, step, x0, ys, N, scheme=scheme, ess_threshold=ess_threshold).log_evidence))
    return np.asarray(run(jax.random.split(jax.random.key(seed), reps)))


# ---------------------------------------------------------------------------------------------
# a small linear Gaussian model

SMALL = dict(A=0.9, Q=0.5, R=1.0, m0=0.0, P0=1.0)
SMALL_Y = jnp.asarray(np.random.default_rng(3).normal(size=10) * 1.5)


def _small_ratio(scheme="systematic", ess_threshold=None, reps=1000):
    x0, step = lgssm(**SMALL)
    kf = oracles.kalman_filter(np.asarray(SMALL_Y), H=1.0, **SMALL)
    return np.exp(_ratios(x0, step, SMALL_Y, 64, reps, 0, scheme, ess_threshold) - kf.log_evidence)


@pytest.mark.parametrize("scheme,thr", [("systematic", None), ("multinomial", None), ("stratified", 0.5), ("residual", None)])
def test_evidence_ratio_has_mean_one_on_a_linear_gaussian_model(scheme, thr):
    alpha = BUDGET.register(f"smc/lgssm_evidence/{scheme}")
    assert mean_one(_small_ratio(scheme, thr), alpha)


@pytest.mark.parametrize("bug", [FORGET_Z, NO_RESET], ids=["forget_Z", "no_weight_reset"])
def test_planted_bug_evidence_ratio_on_a_linear_gaussian_model(monkeypatch, bug):
    alpha = BUDGET.register("smc/lgssm_evidence/systematic")
    monkeypatch.setattr(blocks, "resampled_log_weights", bug)
    assert not mean_one(_small_ratio("systematic"), alpha)


# ---------------------------------------------------------------------------------------------
# the Nile local-level model


def _nile():
    p = NILE["params"]
    # x_1 ~ N(a1, P1) is x_0 ~ N(a1, P1 - sigma2_eta) moved one step
    spec = dict(A=1.0, Q=p["sigma2_eta"], R=p["sigma2_eps"], m0=p["a1"], P0=p["P1"] - p["sigma2_eta"])
    return spec, jnp.asarray(NILE["y"])


def test_nile_evidence_ratio_has_mean_one():
    alpha = BUDGET.register("smc/nile_evidence")
    spec, ys = _nile()
    kf = oracles.kalman_filter(np.asarray(ys), H=1.0, **spec)
    x0, step = lgssm(**spec)
    r = np.exp(_ratios(x0, step, ys, 256, 400, 1) - kf.log_evidence)
    assert mean_one(r, alpha), z_test(r, 1.0, alpha).message


def test_planted_bug_nile_evidence_forgetting_Z(monkeypatch):
    alpha = BUDGET.register("smc/nile_evidence")
    spec, ys = _nile()
    kf = oracles.kalman_filter(np.asarray(ys), H=1.0, **spec)
    x0, step = lgssm(**spec)
    monkeypatch.setattr(blocks, "resampled_log_weights", FORGET_Z)
    r = np.exp(_ratios(x0, step, ys, 256, 400, 1) - kf.log_evidence)
    assert not mean_one(r, alpha)


def _filter_errors(reps=30, N=2000):
    """(reps, T) standardised errors (m̂_t − m_t) / sd_t of the filtering means against Kalman."""
    spec, ys = _nile()
    kf = oracles.kalman_filter(np.asarray(ys), H=1.0, **spec)
    x0, step = lgssm(**spec)
    run = jax.jit(jax.vmap(lambda k: smc.particle_filter(k, step, x0, ys, N).filter_means))
    means = np.asarray(run(jax.random.split(jax.random.key(2), reps)))  # (reps, T)
    return (means - kf.means[:, 0]) / np.sqrt(kf.variances[:, 0])


def _filter_means_ok(err, alpha):
    """A z-test at every time step (Bonferroni over the T steps)."""
    T = err.shape[1]
    return all(z_test(err[:, t], 0.0, alpha / T).ok for t in range(T))


def test_nile_filtering_means_match_the_kalman_filter():
    alpha = BUDGET.register("smc/nile_filter_means")
    err = _filter_errors()
    assert _filter_means_ok(err, alpha)
    assert np.all(np.abs(err) < 0.5)  # every run is close, not only on average


def test_planted_bug_filtering_means_without_weight_reset(monkeypatch):
    alpha = BUDGET.register("smc/nile_filter_means")
    monkeypatch.setattr(blocks, "resampled_log_weights", NO_RESET)
    assert not _filter_means_ok(_filter_errors(), alpha)


# ---------------------------------------------------------------------------------------------
# tempered SMC on a conjugate model

Y_CONJ = np.array([1.3, 0.7, 2.1, 1.6, 0.9])


@ppl.model
def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


def _tempered_ratios(reps, betas=None, kernel="rwm"):
    Z = oracles.normal_normal(0.0, 2.0, 1.0, Y_CONJ)
    y = jnp.asarray(Y_CONJ)
    run = jax.jit(jax.vmap(lambda k: smc.tempered_smc(k, normal_mean, y, num_particles=128, betas=betas, kernel=kernel, num_mcmc_steps=2).log_evidence))
    return np.exp(np.asarray(run(jax.random.split(jax.random.key(4), reps))) - Z.log_evidence)


def test_tempered_smc_fixed_schedule_evidence_ratio_has_mean_one():
    alpha = BUDGET.register("smc/tempered_fixed")
    assert mean_one(_tempered_ratios(400, betas=[0.05, 0.2, 0.5, 1.0]), alpha)


def test_tempered_smc_adaptive_hmc_evidence_and_posterior():
    alpha = BUDGET.register("smc/tempered_adaptive")
    assert mean_one(_tempered_ratios(60, kernel="hmc"), alpha)
    post = oracles.normal_normal(0.0, 2.0, 1.0, Y_CONJ)
    res = smc.tempered_smc(jax.random.key(5), normal_mean, jnp.asarray(Y_CONJ), num_particles=1000)
    mu = np.asarray(res.samples["mu"])
    W = np.asarray(res.particles.weights)
    m = float(W @ mu)
    assert abs(m - post.mean) < 6 * math.sqrt(post.var / 500), (m, post.mean)
    assert abs(float(W @ (mu - m) ** 2) / post.var - 1) < 0.25
    assert float(res.betas[int(res.num_steps) - 1]) == 1.0


def test_planted_bug_tempered_smc_forgetting_Z(monkeypatch):
    alpha = BUDGET.register("smc/tempered_fixed")
    monkeypatch.setattr(blocks, "resampled_log_weights", FORGET_Z)
    assert not mean_one(_tempered_ratios(400, betas=[0.05, 0.2, 0.5, 1.0]), alpha)


# ---------------------------------------------------------------------------------------------
# each resampler's sampler draws from its stated distribution


def _frequencies(sampler_cls, law_cls, n=20000):
    lw = jnp.log(jnp.array([0.45, 0.3, 0.15, 0.1]))
    law = law_cls(lw)
    S = np.asarray(law.enumerate_support())
    probs = np.exp(np.asarray(law.log_prob(jnp.asarray(S))))
    draws = np.asarray(sampler_cls(lw).sample(jax.random.key(6), (n,)))
    index = {tuple(s): i for i, s in enumerate(S)}
    counts = np.zeros(len(S) + 1)
    for d in draws:
        counts[index.get(tuple(d), len(S))] += 1
    return counts, np.append(probs, 0.0)


@pytest.mark.parametrize("name", ["multinomial", "systematic", "stratified", "residual"])
def test_resampler_sample_matches_its_log_prob(name):
    alpha = BUDGET.register(f"smc/resampler_freq/{name}")
    cls = smc.resampling.SCHEMES[name]
    counts, probs = _frequencies(cls, cls)
    chi2_test(counts, probs, alpha).assert_()


def test_planted_bug_resampler_sample_against_another_law():
    alpha = BUDGET.register("smc/resampler_freq/stratified")
    counts, probs = _frequencies(smc.Multinomial, smc.Stratified)
    assert not chi2_test(counts, probs, alpha).ok


# ---------------------------------------------------------------------------------------------
# one random call per site for the whole population draws independent particles


def _shared_key_errors(anchor=True, n=4000):
    """Standardised draws x_i − μ_i of Normal(μ_i, 1) made by ``shared_key_draws`` under vmap."""
    from inference.smc.particles import shared_key_draws

    key = jax.random.key(11)
    mu = jnp.linspace(-3.0, 3.0, n)

    def one(i, m):
        # half the sites' laws depend on the particle (batched), half do not (only the anchor is)
        x = shared_key_draws(key, dist.Normal(m, 1.0), (), i if anchor else None)
        z = shared_key_draws(jax.random.fold_in(key, 1), dist.Normal(0.0, 1.0), (), i if anchor else None)
        return x - m, z

    e, z = jax.vmap(one)(jnp.arange(n), mu)
    return np.concatenate([np.asarray(e), np.asarray(z)])


def _standard_normal_ok(e, alpha):
    # E[e] = 0 (sd 1) and E[e²] = 1 (sd √2), Bonferroni over the two z-tests
    return z_test(e, 0.0, alpha / 2, sd=1.0).ok and z_test(e**2, 1.0, alpha / 2, sd=math.sqrt(2.0)).ok


def test_shared_key_draws_are_independent_across_particles():
    alpha = BUDGET.register("smc/shared_key_draws")
    assert _standard_normal_ok(_shared_key_errors(), alpha)


def test_planted_bug_shared_key_draws_without_the_anchor_fail():
    # without a batched anchor, a site whose law does not depend on the particle is drawn once
    # and shared by every particle
    alpha = BUDGET.register("smc/shared_key_draws")
    assert not _standard_normal_ok(_shared_key_errors(anchor=False), alpha)
