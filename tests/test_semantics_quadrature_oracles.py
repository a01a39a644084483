"""Quadrature against conjugate evidences within the stated bound; oracles against each other."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from scipy import integrate as sp_integrate
from scipy import stats as sp_stats

import ppl
import semantics
from ppl import dist
from semantics import oracles
from semantics import strategies as S


@ppl.model
def normal_normal(y):
    mu = ppl.sample("mu", dist.Normal(0.5, 2.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.5), obs=y)


@ppl.model
def beta_bernoulli(y):
    p = ppl.sample("p", dist.Beta(2.0, 3.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Bernoulli(probs=p), obs=y)


@ppl.model
def gamma_poisson(y):
    lam = ppl.sample("lam", dist.Gamma(3.0, 2.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Poisson(lam), obs=y)


def _within_bound(g, log_z):
    z = math.exp(log_z)
    assert abs(g.total_mass() - z) <= g.error_bound + 1e-15 * z, (g.total_mass(), z, g.error_bound)
    assert g.error_bound < 1e-4 * z  # the bound is informative, not vacuous


def test_normal_normal_evidence_and_moments():
    y = jnp.array([1.0, 0.3, 2.0, -0.4])
    g = semantics.integrate(normal_normal, y)
    ref = oracles.normal_normal(0.5, 2.0, 1.5, np.asarray(y))
    _within_bound(g, ref.log_evidence)
    assert abs(g.mean("mu") - ref.mean) < 1e-10 and abs(g.var("mu") - ref.var) < 1e-10
    assert g.expectation_error(lambda v: v["mu"]) < 1e-4  # the coarse rule's error, an upper estimate


def test_beta_bernoulli_evidence_and_moments():
    y = jnp.array([1, 0, 1, 1, 1])
    g = semantics.integrate(beta_bernoulli, y)
    ref = oracles.beta_bernoulli(2.0, 3.0, np.asarray(y))
    _within_bound(g, ref.log_evidence)
    assert abs(g.mean("p") - ref.mean) < 1e-12 and abs(g.var("p") - ref.var) < 1e-12
    assert g.tail == 0.0  # the whole support [0, 1] is integrated


def test_gamma_poisson_evidence_with_tail_term():
    y = jnp.array([1, 4, 2])
    g = semantics.integrate(gamma_poisson, y)
    ref = oracles.gamma_poisson(3.0, 2.0, np.asarray(y))
    _within_bound(g, ref.log_evidence)
    assert g.tail > 0.0  # the prior's right tail beyond the box is accounted for
    assert abs(g.mean("lam") - ref.mean) < 1e-8


def test_mixed_discrete_and_continuous():
    @ppl.model
    def mix(y):
        z = ppl.sample("z", dist.Bernoulli(probs=0.3))
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.sample("y", dist.Normal(jnp.where(z == 1, a, -a), 1.0), obs=y)

    g = semantics.integrate(mix, 0.5, n=32)
    # given z, y ~ N(0, 2) either way: Z = N(0.5; 0, 2), and P(z = 1 | y) = 0.3
    z_true = math.exp(oracles.normal_normal(0.0, 1.0, 1.0, [0.5]).log_evidence)
    assert abs(g.total_mass() - z_true) <= g.error_bound + 1e-15
    post = g.normalize().marginal("z")
    assert abs(post.weight({"z": 1}) - 0.3) < 1e-10
    assert abs(g.mean("a") - (0.3 * 0.25 - 0.7 * 0.25)) < 1e-10


def test_continuous_bounds_are_required_without_variance():
    @ppl.model
    def hc():
        ppl.sample("tau", dist.HalfCauchy(1.0))

    with pytest.raises(ValueError, match="bounds="):
        semantics.integrate(hc)
    g = semantics.integrate(hc, bounds={"tau": (0.0, 1e4)}, n=200)
    assert abs(g.total_mass() - 1.0) <= g.error_bound + 1e-12


@given(S.linear_gaussian_chains(max_T=2))
@settings(max_examples=6)
def test_linear_gaussian_chain_quadrature_matches_kalman(spec):
    p = spec.params
    kf = oracles.kalman_filter(np.asarray(p["y"]), **p["kalman"])
    g = semantics.integrate(spec.model, *spec.args)
    z = math.exp(kf.log_evidence)
    assert abs(g.total_mass() - z) <= g.error_bound + 1e-12 * z
    last = f"x{p['T']}"
    assert abs(g.mean(last) - kf.means[-1, 0]) < 1e-6
    assert abs(g.var(last) - kf.variances[-1, 0]) < 1e-6


def test_three_dimensional_chain():
    spec_y = jnp.array([0.3, -0.5, 1.0])

    @ppl.model
    def chain(ys):
        x = 0.0
        for t in range(3):
            x = ppl.sample(f"x{t + 1}", dist.Normal(0.8 * x, 1.0))
            ppl.sample(f"y{t + 1}", dist.Normal(x, 1.0), obs=ys[t])

    g = semantics.integrate(chain, spec_y)
    kf = oracles.kalman_filter(np.asarray(spec_y), A=0.8, Q=1.0, H=1.0, R=1.0, m0=0.0, P0=0.0)
    assert abs(g.log_total_mass() - kf.log_evidence) < 1e-6
    assert abs(g.total_mass() - math.exp(kf.log_evidence)) <= g.error_bound


# -- oracles --------------------------------------------------------------------------------------


@given(S.linear_gaussian_chains())
@settings(max_examples=15)
def test_kalman_matches_dense_gaussian(spec):
    p = spec.params
    y = np.asarray(p["y"])
    kf = oracles.kalman_filter(y, **p["kalman"])
    means, covs, lz = oracles.dense_gaussian_lgssm(y, **p["kalman"])
    assert abs(kf.log_evidence - lz) < 1e-10
    np.testing.assert_allclose(kf.means[-1], means[-1], atol=1e-10)
    np.testing.assert_allclose(kf.covs[-1], covs[-1], atol=1e-10)
    # and the model's joint density is the dense Gaussian's at any point
    xs = {f"x{t + 1}": 0.1 * t for t in range(p["T"])}
    x = np.array(list(xs.values()))
    A, q, r = p["a"], p["q"], p["r"]
    lp = sum(sp_stats.norm.logpdf(x[t], A * (x[t - 1] if t else 0.0), math.sqrt(q)) for t in range(p["T"]))
    lp += sum(sp_stats.norm.logpdf(y[t], x[t], math.sqrt(r)) for t in range(p["T"]))
    assert abs(float(spec.model.log_density(xs, *spec.args)) - lp) < 1e-10


def test_kalman_multivariate_matches_dense():
    A = np.array([[0.9, 0.1], [0.0, 0.8]])
    H = np.array([[1.0, 0.5]])
    y = np.array([[0.3], [-0.1], [0.5], [1.0]])
    kf = oracles.kalman_filter(y, A=A, Q=0.5, H=H, R=0.25, m0=[0.1, 0.0], P0=0.3)
    means, covs, lz = oracles.dense_gaussian_lgssm(y, A=A, Q=0.5, H=H, R=0.25, m0=[0.1, 0.0], P0=0.3)
    assert abs(kf.log_evidence - lz) < 1e-12
    np.testing.assert_allclose(kf.means[-1], means[-1], atol=1e-12)
    np.testing.assert_allclose(kf.covs[-1], covs[-1], atol=1e-12)


def test_conjugate_oracles_against_numerical_integrals():
    nn = oracles.normal_normal(0.0, 1.0, 1.0, [1.0])
    assert abs(nn.log_evidence - sp_stats.norm.logpdf(1.0, 0.0, math.sqrt(2.0))) < 1e-14
    bb = oracles.beta_bernoulli(1, 1, [1, 0, 1])
    assert abs(math.exp(bb.log_evidence) - 1 / 12) < 1e-15
    gp = oracles.gamma_poisson(2.0, 1.0, [3])
    z, _ = sp_integrate.quad(lambda l: sp_stats.gamma.pdf(l, 2.0) * sp_stats.poisson.pmf(3, l), 0, np.inf)
    assert abs(math.exp(gp.log_evidence) - z) < 1e-12
    # Dirichlet–Categorical: K = 2 is Beta–Bernoulli; K = 3 against a 2-d integral over the simplex
    dc2 = oracles.dirichlet_categorical([2.0, 3.0], [1, 0, 1])
    bb2 = oracles.beta_bernoulli(2.0, 3.0, [0, 1, 0])  # p = P(category 0)
    assert abs(dc2.log_evidence - bb2.log_evidence) < 1e-13
    alpha, y = np.array([1.5, 2.0, 1.0]), [0, 2, 2, 1]
    dc3 = oracles.dirichlet_categorical(alpha, y)
    dens = lambda p1, p0: sp_stats.dirichlet.pdf([p0, p1, 1 - p0 - p1], alpha) * p0 * p1 * (1 - p0 - p1) ** 2 if p0 + p1 < 1 else 0.0  # noqa: E731
    z3, _ = sp_integrate.dblquad(dens, 0, 1, 0, lambda p0: 1 - p0, epsabs=1e-13)
    assert abs(math.exp(dc3.log_evidence) - z3) < 1e-9
    np.testing.assert_allclose(dc3.mean, (alpha + [1, 1, 2]) / (alpha.sum() + 4))


def test_hmm_forward_filtering_against_enumeration_of_a_generated_hmm():
    # forward filtering = enumerated posterior of the last state
    from hypothesis import find

    spec = find(S.hmms(), lambda s: len(s.params["y"]) == 3 and s.params["init"].size == 3)
    p = spec.params
    f = np.vectorize(float)
    fw = oracles.hmm_forward(f(p["init"]), f(p["trans"]), f(p["emit"]), list(p["y"]))
    last = semantics.enumerate(spec.model, *spec.args).normalize().pushforward(lambda c: c["hmm/s"][-1])
    np.testing.assert_allclose([last.weight(k) for k in range(3)], fw.filtering[-1], atol=1e-13)
