"""Value tests of public VI names that no other test exercised: ``vi.expectation``,
``vi.STRATEGIES``, ``vi.Marginal`` (through ``vi.marginal``), ``vi.sample_posterior`` and
``vi.VIResult``.

References are sums over the guide's six atoms written out by hand, and closed forms (a
Gaussian guide with a Gaussian auxiliary variable whose marginal is known); the randomness of the
objective is summed exactly by the enumerator of ``semantics``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
import semantics
from inference import vi
from ppl import dist

pytestmark = pytest.mark.exact

Y = 0.8


@ppl.model
def model(y):
    a = ppl.sample("a", dist.Bernoulli(probs=0.3))
    b = ppl.sample("b", dist.Categorical(probs=jnp.array([0.2, 0.5, 0.3])))
    ppl.sample("y", dist.Normal(a + 0.5 * b, 1.0), obs=y)


@ppl.model
def guide(y):
    la = ppl.param("la", 0.2)
    lb = ppl.param("lb", jnp.array([0.1, -0.3, 0.4]))
    a = ppl.sample("a", dist.Bernoulli(logits=la))
    ppl.sample("b", dist.Categorical(logits=lb + 0.7 * a))


def _atoms(u):
    """[(q(z), log w(z))] over the six values z = (a, b), by hand (NumPy, no library density)."""
    la, lb = float(u["la"]), np.asarray(u["lb"], dtype=float)
    out = []
    for a in (0, 1):
        qa = 1 / (1 + math.exp(-la)) if a else 1 / (1 + math.exp(la))
        lg = lb + 0.7 * a
        qb = np.exp(lg - np.logaddexp.reduce(lg))
        for b in (0, 1, 2):
            lp = math.log(0.3 if a else 0.7) + math.log([0.2, 0.5, 0.3][b]) + stats.norm(a + 0.5 * b, 1).logpdf(Y)
            q = qa * qb[b]
            out.append((q, lp - math.log(q)))
    return out


def _exact_moments(obj, u):
    paths = semantics.enumerate_paths(lambda key: obj.estimate(key, u, Y))
    m1 = math.fsum(math.exp(p.log_prob) * float(p.value) for p in paths)
    m2 = math.fsum(math.exp(p.log_prob) * float(p.value) ** 2 for p in paths)
    return m1, m2, len(paths)


@pytest.fixture(scope="module")
def params():
    u = vi.elbo(model, guide).init_params(jax.random.key(0), Y)
    return {**u, "la": u["la"] - 0.4}


@pytest.mark.slow
def test_expectation_is_the_mean_of_independent_runs(params):
    """F = mean of K = 2 independent log weights: E[F] is the ELBO and E[F²] = Var_q/2 + ELBO²
    (a single run, or two equal ones, would give Var_q + ELBO²)."""
    atoms = _atoms(params)
    mean = math.fsum(q * lw for q, lw in atoms)
    var = math.fsum(q * (lw - mean) ** 2 for q, lw in atoms)
    obj = vi.Objective(
        lambda y: vi.expectation(lambda: vi.log_weight(model, vi.sample(guide, y), y), num_samples=2),
        {"a": "reinforce", "b": "reinforce"},
    )
    m1, m2, n = _exact_moments(obj, params)
    assert n == 36  # two independent draws of (a, b)
    assert m1 == pytest.approx(mean, abs=1e-12)
    assert m2 == pytest.approx(var / 2 + mean**2, abs=1e-12)
    # and its gradient is the ELBO's: unbiased against the exact gradient of the hand sum
    def hand(uu):
        la, lb = uu["la"], uu["lb"]
        tot = 0.0
        for a in (0, 1):
            lqa = jax.nn.log_sigmoid(la) if a else jax.nn.log_sigmoid(-la)
            lqb = jax.nn.log_softmax(lb + 0.7 * a)
            for b in (0, 1, 2):
                lq = lqa + lqb[b]
                lp = math.log(0.3 if a else 0.7) + math.log([0.2, 0.5, 0.3][b]) + stats.norm(a + 0.5 * b, 1).logpdf(Y)
                tot = tot + jnp.exp(lq) * (lp - lq)
        return tot

    truth = jax.grad(hand)({"la": params["la"], "lb": params["lb"]})
    semantics.laws.assert_unbiased_gradient(lambda key: obj.grad(key, params, Y)[1], truth, tol=1e-9)


@pytest.mark.slow
def test_every_strategy_gives_the_exact_elbo_in_expectation(params):
    assert set(vi.STRATEGIES) == {"reparam", "reinforce", "enum", "mvd"}
    mean = math.fsum(q * lw for q, lw in _atoms(params))
    for s in vi.STRATEGIES:
        if s == "reparam":  # not for discrete sites: refused, naming the site
            with pytest.raises(vi.VIError, match="'a'"):
                _exact_moments(vi.elbo(model, guide).with_strategies({"a": s}), params)
            continue
        m1, _, _ = _exact_moments(vi.elbo(model, guide).with_strategies({"a": s, "b": s}), params)
        assert m1 == pytest.approx(mean, abs=1e-12), s
    with pytest.raises(vi.VIError, match="reparam"):
        vi.elbo(model, guide).with_strategies({"a": "score"})


# ---------------------------------------------------------------------------------------------
# a guide with an auxiliary variable: λ ~ N(0, 1), z ~ N(λ, 1/2); q(z) = N(0, √1.25)


@ppl.model
def aux_guide():
    lam = ppl.sample("lam", dist.Normal(0.0, 1.0))
    ppl.sample("z", dist.Normal(lam, 0.5))


@ppl.model
def exact_reverse(z):
    """τ(λ | z) = q(λ | z) = N(4z/5, 1/√5): then q(z, λ)/τ(λ | z) = q(z) for every λ."""
    ppl.sample("lam", dist.Normal(0.8 * z["z"], 1.0 / math.sqrt(5.0)))


def test_marginal_density_is_exact_with_the_exact_reverse_model():
    q = vi.marginal(aux_guide, aux=["lam"], proposal=exact_reverse, num_particles=3)
    assert isinstance(q, vi.Marginal)
    log_q = stats.norm(0.0, math.sqrt(1.25)).logpdf
    for z0 in (-1.3, 0.2, 2.0):
        obj = vi.Objective(lambda z0=z0: q.log_density({"z": jnp.asarray(z0)}))
        for seed in (0, 1):
            assert float(obj.estimate(jax.random.key(seed), {})) == pytest.approx(log_q(z0), abs=1e-12)
    # a draw of the marginal: only z, scored by the (here exact) estimate of log q(z)
    draw = vi.Objective(lambda: (lambda tr: tr.log_density - jax.scipy.stats.norm.logpdf(tr["z"], 0.0, math.sqrt(1.25)))(vi.sample(q)))
    assert float(draw.estimate(jax.random.key(2), {})) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# sample_posterior and VIResult


@ppl.model
def gauss_guide():
    loc = ppl.param("loc", 0.0)
    scale = ppl.param("scale", 1.0, constraint=dist.constraints.positive)
    ppl.sample("z", dist.Normal(loc, scale))
    ppl.sample("k", dist.Bernoulli(probs=0.5))


def test_sample_posterior_uses_the_given_params():
    """The same key with (loc, scale) = (0, 1) and (2, 0.5): the draws are 2 + 0.5 × the first
    (NumPyro's Normal is loc + scale·ε), so the parameters were substituted and nothing else."""
    key = jax.random.key(7)
    std = vi.sample_posterior(key, gauss_guide, {"loc": 0.0, "scale": 1.0}, num_samples=50)
    moved = vi.sample_posterior(key, gauss_guide, {"loc": 2.0, "scale": 0.5}, num_samples=50)
    assert set(std) == {"z", "k"} and np.asarray(std["z"]).shape == (50,)
    np.testing.assert_allclose(np.asarray(moved["z"]), 2.0 + 0.5 * np.asarray(std["z"]), atol=1e-12)
    np.testing.assert_array_equal(np.asarray(moved["k"]), np.asarray(std["k"]))
    assert len(set(np.asarray(std["z"]).tolist())) == 50  # independent draws, not one repeated
    res = vi.VIResult(params={"loc": 2.0, "scale": 0.5}, uparams={}, history=np.zeros(0), num_steps=0,
                      stopped_early=False, objective=vi.elbo(gauss_guide, gauss_guide))
    again = res.sample_posterior(key, gauss_guide, num_samples=50)
    np.testing.assert_array_equal(np.asarray(again["z"]), np.asarray(moved["z"]))
