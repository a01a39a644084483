"""Value tests of public ``semantics`` names that no other test named: ``transition_matrix`` /
``TransitionMatrix`` and ``LawResult``, ``Path``, ``GridMeasure`` / ``GridBlock``, the oracles'
result types (``Conjugate``, ``KalmanResult``, ``HMMResult``), ``Decision``, ``StatResult`` /
``SBCResult`` and the ``mixtures`` strategy.

References: the independence Metropolis–Hastings matrix written out by hand, closed-form
conjugate and one-step Kalman formulas, brute-force sums over hidden state sequences, and
quadrature of a Beta integral known in closed form.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from scipy import special, stats

import ppl
import semantics
from inference import mcmc
from inference.mcmc.trace_kernels import TraceState
from ppl import dist
from semantics import laws, oracles
from semantics import stats as sstats
from semantics import strategies as S

pytestmark = pytest.mark.exact

PRIOR = np.array([0.2, 0.5, 0.3])
LIK = np.array([0.9, 0.2, 0.6])


@ppl.model
def three():
    z = ppl.sample("z", dist.Categorical(probs=jnp.asarray(PRIOR)))
    ppl.sample("x", dist.Bernoulli(probs=jnp.asarray(LIK)[z]), obs=1)


def test_transition_matrix_of_independence_mh_by_hand():
    """Regenerate("z") proposes z' from the prior: K(i, j) = q_j min(1, L_j / L_i) (j ≠ i)."""
    b = mcmc.Regenerate("z").bind(three, (), {})
    tm = semantics.transition_matrix(lambda key, tr: b.step(key, TraceState(tr))[0].trace, three)
    assert isinstance(tm, laws.TransitionMatrix) and tm.escaped == []
    order = [int(s["z"]) for s in tm.states]
    K = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            if i != j:
                K[i, j] = PRIOR[j] * min(1.0, LIK[j] / LIK[i])
        K[i, i] = 1.0 - K[i].sum()
    np.testing.assert_allclose(tm.K, K[np.ix_(order, order)], atol=1e-12)
    post = PRIOR * LIK / (PRIOR * LIK).sum()
    np.testing.assert_allclose(tm.pi, post[order], atol=1e-12)
    # the law built on it, and its result type
    res = semantics.invariant(lambda key, tr: b.step(key, TraceState(tr))[0].trace, three)
    assert isinstance(res, semantics.LawResult) and res.ok and bool(res) and res.assert_() is res
    bad = semantics.invariant(lambda key, tr: _with_z(0), three)  # always jump to z = 0
    assert not bad.ok and not bool(bad)
    with pytest.raises(laws.LawViolation):
        bad.assert_()


def _with_z(v):
    new, _ = ppl.as_model(three).generate(jax.random.key(0), {"z": jnp.asarray(v)})
    return new


def test_paths_carry_exact_probabilities_and_draws():
    paths = semantics.enumerate_paths(lambda key: ppl.randomness.draw(key, dist.Bernoulli(probs=0.25), name="c")
                                      + 2 * ppl.randomness.draw(key, dist.Bernoulli(probs=0.5), name="d"))
    assert all(isinstance(p, semantics.Path) for p in paths)
    got = {int(p.value): (p.prob, [n for n, _ in p.draws]) for p in paths}
    assert got == {0: (Fraction(3, 8), ["c", "d"]), 1: (Fraction(1, 8), ["c", "d"]),
                   2: (Fraction(3, 8), ["c", "d"]), 3: (Fraction(1, 8), ["c", "d"])}
    assert all(math.isclose(math.exp(p.log_prob), float(p.prob), rel_tol=1e-12) for p in paths)


@ppl.model
def beta_coin():
    p = ppl.sample("p", dist.Beta(2.0, 3.0))
    k = ppl.sample("k", dist.Bernoulli(probs=0.5))
    ppl.sample("y", dist.Bernoulli(probs=p), obs=k)


@pytest.mark.slow
def test_grid_measure_blocks_and_integrals():
    """Z = Σ_k ½ E[p^k (1−p)^(1−k)] = ½ (2/5 + 3/5) = ½; E[p] under the posterior = ½ (E[p²] + E[p(1−p)]) / Z."""
    g = semantics.integrate(beta_coin, bounds={"p": (0.0, 1.0)})
    assert isinstance(g, semantics.GridMeasure)
    assert all(isinstance(b, semantics.quadrature.GridBlock) for b in g.blocks)
    assert sorted(int(b.discrete["k"]) for b in g.blocks) == [0, 1] and all(b.names == ("p",) for b in g.blocks)
    assert g.total_mass() == pytest.approx(0.5, abs=1e-10)
    ep2 = special.beta(4, 3) / special.beta(2, 3)
    epq = special.beta(3, 4) / special.beta(2, 3)
    assert g.expectation(lambda v: v["p"]) == pytest.approx(0.5 * (ep2 + epq) / 0.5, abs=1e-10)
    # each block is one discrete execution; its mass is that branch's integral
    mass = {int(b.discrete["k"]): float(np.exp(special.logsumexp(b.log_weights))) for b in g.blocks}
    assert mass[1] == pytest.approx(0.5 * 2 / 5, abs=1e-10) and mass[0] == pytest.approx(0.5 * 3 / 5, abs=1e-10)


def test_oracle_result_types_by_hand():
    c = oracles.normal_normal(0.0, 1.0, 1.0, [1.0])
    assert isinstance(c, oracles.Conjugate)
    assert (c.mean, c.var) == pytest.approx((0.5, 0.5), abs=1e-15)
    assert c.log_evidence == pytest.approx(stats.norm(0, math.sqrt(2)).logpdf(1.0), abs=1e-12)
    # one Kalman step from a known x_0 = 0: x_1 ~ N(0, Q), y_1 = x_1 + N(0, R)
    k = oracles.kalman_filter([0.3], A=0.9, Q=1.0, H=1.0, R=0.25, m0=0.0, P0=0.0)
    assert isinstance(k, oracles.KalmanResult)
    gain = 1.0 / 1.25
    assert float(k.means[0, 0]) == pytest.approx(gain * 0.3, abs=1e-12)
    assert float(k.variances[0, 0]) == pytest.approx(1.0 - gain, abs=1e-12)
    assert k.log_evidence == pytest.approx(stats.norm(0, math.sqrt(1.25)).logpdf(0.3), abs=1e-12)
    # HMM: brute force over the 2³ hidden sequences
    init, trans, emit, y = np.array([0.6, 0.4]), np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([[0.9, 0.1], [0.3, 0.7]]), [0, 1, 1]
    h = oracles.hmm_forward(init, trans, emit, y)
    assert isinstance(h, oracles.HMMResult)
    joint = {}
    for s in itertools.product(range(2), repeat=3):
        p = init[s[0]] * emit[s[0], y[0]]
        for t in (1, 2):
            p *= trans[s[t - 1], s[t]] * emit[s[t], y[t]]
        joint[s] = p
    Z = sum(joint.values())
    assert h.log_evidence == pytest.approx(math.log(Z), abs=1e-12)
    last = [sum(p for s, p in joint.items() if s[2] == v) / Z for v in (0, 1)]
    np.testing.assert_allclose(h.filtering[-1], last, atol=1e-12)


def test_decision_and_stat_result_types():
    d = sstats.Decision("x/y", 1e-9, count=3, kind="fixed")
    assert d.total == pytest.approx(3e-9, rel=1e-15)
    b = sstats.Budget(total=1e-6)
    b.declare("a", 2, z=4.0)
    assert isinstance(b.decisions["a"], sstats.Decision)
    assert b.decisions["a"].alpha == pytest.approx(2 * stats.norm.sf(4.0), rel=1e-12)
    assert b.total() == pytest.approx(4 * stats.norm.sf(4.0), rel=1e-12)
    # a t-test by hand: x̄ = 0.55, s = sd(ddof=1), t = (x̄ − 0.5)/(s/√n), p from Student t(n − 1)
    x = np.array([0.1, 0.9, 0.4, 0.8, 0.55, 0.45])
    r = sstats.z_test(x, 0.5, alpha=0.01)
    assert isinstance(r, sstats.StatResult) and r.ok and bool(r)
    t = (x.mean() - 0.5) / (x.std(ddof=1) / math.sqrt(6))
    assert r.statistic == pytest.approx(t, rel=1e-12)
    assert r.pvalue == pytest.approx(2 * stats.t(5).sf(abs(t)), rel=1e-12)
    bad = sstats.z_test(x + 10, 0.5, alpha=0.01)
    assert not bad.ok
    with pytest.raises(AssertionError, match="z_test"):
        bad.assert_()


def test_sbc_result_ranks_of_an_exact_sampler():
    """An exact conjugate posterior sampler: ranks in 0..L, counts summing to the simulations."""
    prior = lambda k: (lambda th: (th, th + jax.random.normal(k)))(jax.random.normal(jax.random.fold_in(k, 1)))  # noqa: E731
    post = lambda k, y, L: y / 2 + jnp.sqrt(0.5) * jax.random.normal(k, (L,))  # noqa: E731
    r = sstats.sbc(prior, post, num_simulations=50, num_draws=9, seed=3, alpha=1e-9)
    assert isinstance(r, sstats.SBCResult) and isinstance(r, sstats.StatResult)
    ranks = np.asarray(r.details["ranks"])
    assert ranks.shape == (50,) and ranks.min() >= 0 and ranks.max() <= 9
    assert int(np.sum(r.details["counts"])) == 50
    np.testing.assert_array_equal(np.asarray(r.details["counts"]), np.bincount(ranks, minlength=10))


@pytest.mark.slow
@given(S.mixtures())
@settings(max_examples=5)
def test_mixtures_strategy_models_match_their_oracle(spec):
    """The oracle is the exact measure; its mass is Π_i Σ_k w_k emit[k, y_i] (by hand)."""
    mu = semantics.enumerate(spec.model, *spec.args)
    mu.assert_equal(spec.oracle(), exact=True)
    p = spec.params
    w = [Fraction(v) for v in np.asarray(p["w"]).ravel()]
    emit = [[Fraction(v) for v in row] for row in np.asarray(p["emit"])]
    Z = math.prod(sum(w[k] * emit[k][y] for k in range(len(w))) for y in p["y"])
    assert spec.oracle().exact_total_mass() == Z
