"""Value tests of public SMC names that no other test exercised: the small blocks and helpers
(``temper``, ``reweight``, ``init_states``, ``ess``, ``log_mean_exp``, ``map_particles``,
``resampled_log_weights``, ``offspring_counts``), the residual scheme and the scheme base class,
``next_beta``, ``tempered_model`` / ``temper_likelihood``, ``trajectories``, ``stage_args``, and
the result types of the drivers.

Every reference is computed here with NumPy/SciPy or by hand (closed forms, ``np.bincount``,
hand enumeration of the residual scheme, Brent's root finder for the tempering step), never by
the code under test.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special, stats

import ppl
from inference import mcmc, smc
from ppl import dist

pytestmark = pytest.mark.exact

LW = np.array([0.3, -1.2, 0.0, 2.1, -0.4])
XS = np.array([0.5, -1.0, 2.0, 0.1, 1.5])


def loglik(x):
    return -0.5 * (x - 1.0) ** 2 * 4.0  # N(y=1 | x, sd 1/2) up to a constant


def _np_loglik(x):
    return -0.5 * (np.asarray(x) - 1.0) ** 2 * 4.0


# ---------------------------------------------------------------------------------------------
# reweighting blocks


def test_temper_multiplies_the_weights_by_the_likelihood_power():
    p = smc.Particles.from_states(jnp.asarray(XS), jnp.asarray(LW))
    out = smc.temper(p, loglik, 0.3, 0.75)
    np.testing.assert_allclose(np.asarray(out.log_weights), LW + 0.45 * _np_loglik(XS), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(out.states), XS)  # states untouched
    # two steps 0 → 0.4 → 1 are one step 0 → 1, which is the posterior's importance weight
    two = smc.temper(smc.temper(p, loglik, 0.0, 0.4), loglik, 0.4, 1.0)
    np.testing.assert_allclose(np.asarray(two.log_weights), LW + _np_loglik(XS), atol=1e-12)


def test_temper_from_the_prior_gives_the_tempered_posterior_on_a_finite_space():
    """Particles = every value of a finite prior, weighted by its prior mass: after tempering to
    β their normalised weights are p(x) L(x)^β / Σ p L^β (by hand), whatever the start β₀."""
    xs = np.array([-1.0, 0.0, 1.0, 2.0])
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    for b0, b1 in ((0.0, 0.5), (0.2, 0.5), (0.5, 1.0)):
        lw0 = np.log(prior) + b0 * _np_loglik(xs)
        p = smc.temper(smc.Particles.from_states(jnp.asarray(xs), jnp.asarray(lw0)), loglik, b0, b1)
        target = prior * np.exp(b1 * _np_loglik(xs))
        np.testing.assert_allclose(np.asarray(p.weights), target / target.sum(), rtol=1e-12)
        # and the evidence estimate is Σ_x p(x) L(x)^β / N
        assert float(p.log_evidence) == pytest.approx(math.log(target.sum() / 4), abs=1e-12)


def test_reweight_with_a_function_or_an_array_and_init_states():
    p = smc.init_states({"x": jnp.asarray(1.5), "v": jnp.array([1.0, 2.0])}, 4)
    assert p.num_particles == 4 and np.asarray(p.states["v"]).shape == (4, 2)
    np.testing.assert_array_equal(np.asarray(p.log_weights), np.zeros(4))  # weight 1 each
    np.testing.assert_array_equal(np.asarray(p.ancestors), np.arange(4))
    inc = np.array([0.1, -0.2, 0.3, 0.0])
    q = smc.reweight(p, jnp.asarray(inc))
    np.testing.assert_allclose(np.asarray(q.log_weights), inc, atol=1e-15)
    r = smc.reweight(q, lambda s: s["x"] * s["v"][1])
    np.testing.assert_allclose(np.asarray(r.log_weights), inc + 3.0, atol=1e-15)


def test_ess_log_mean_exp_and_resampled_log_weights_by_hand():
    w = np.exp(LW)
    assert float(smc.ess(jnp.asarray(LW))) == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-12)
    assert float(smc.ess(jnp.zeros(7))) == pytest.approx(7.0, rel=1e-12)
    assert float(smc.ess(jnp.array([0.0, -jnp.inf, -jnp.inf]))) == pytest.approx(1.0, rel=1e-12)
    assert float(smc.log_mean_exp(jnp.asarray(LW))) == pytest.approx(math.log(w.mean()), abs=1e-12)
    m = np.stack([LW, LW[::-1] - 3.0])
    np.testing.assert_allclose(np.asarray(smc.log_mean_exp(jnp.asarray(m), axis=1)), np.log(np.exp(m).mean(1)), atol=1e-12)
    np.testing.assert_allclose(np.asarray(smc.log_mean_exp(jnp.asarray(m), axis=0)), np.log(np.exp(m).mean(0)), atol=1e-12)
    assert float(smc.log_mean_exp(jnp.full(3, -jnp.inf))) == -math.inf
    a = jnp.array([3, 3, 0, 1, 3])
    out = np.asarray(smc.resampled_log_weights(jnp.asarray(LW), a))
    np.testing.assert_allclose(out, np.full(5, math.log(w.mean())), atol=1e-12)  # keeps Ẑ


def test_map_particles_applies_the_function_to_each_particle():
    states = {"a": jnp.arange(5.0), "b": jnp.arange(10.0).reshape(5, 2)}
    out = smc.map_particles(lambda k, s: s["a"] * s["b"].sum() + 0.0 * jax.random.uniform(k), jax.random.key(0), states)
    np.testing.assert_allclose(np.asarray(out), [i * (4 * i + 1) for i in range(5)])
    # each particle gets its own key: independent draws, not one draw repeated
    u = np.asarray(smc.map_particles(lambda k, _: jax.random.uniform(k), jax.random.key(1), jnp.zeros(4)))
    assert u.shape == (4,) and len(set(u.tolist())) == 4


# ---------------------------------------------------------------------------------------------
# resampling


def test_offspring_counts_are_bincounts():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, size=6)
    np.testing.assert_array_equal(np.asarray(smc.offspring_counts(jnp.asarray(a))), np.bincount(a, minlength=6))
    np.testing.assert_array_equal(np.asarray(smc.offspring_counts(jnp.array([2, 2, 2, 0]))), [1, 0, 3, 0])
    # fewer ancestors than particles (num_particles given)
    np.testing.assert_array_equal(np.asarray(smc.offspring_counts(jnp.array([4, 4, 1]), num_particles=7)), [0, 1, 0, 0, 2, 0, 0])
    # batched: (T, N) and (B, T, N), each row its own bincount
    b = rng.integers(0, 5, size=(3, 4, 5))
    ref = np.stack([[np.bincount(r, minlength=5) for r in m] for m in b])
    np.testing.assert_array_equal(np.asarray(smc.offspring_counts(jnp.asarray(b))), ref)
    np.testing.assert_array_equal(np.asarray(smc.offspring_counts(jnp.asarray(b[0]))), ref[0])
    np.testing.assert_array_equal(np.asarray(jax.jit(smc.offspring_counts)(jnp.asarray(b))), ref)


@pytest.mark.parametrize("name", ["multinomial", "systematic", "stratified", "residual"])
def test_every_scheme_has_mean_offspring_n_w(name):
    """Σ_a P(a) counts(a) = N W exactly, with the scheme's own support and probabilities."""
    lw = jnp.log(jnp.array([0.45, 0.05, 0.3, 0.2]))
    d = smc.resampling.SCHEMES[name](lw)
    assert isinstance(d, smc.ResamplingDistribution)
    sup = d.enumerate_support()
    probs = np.exp(np.asarray(d.log_prob(sup)))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    mean = (probs[:, None] * np.asarray(smc.offspring_counts(sup))).sum(0)
    np.testing.assert_allclose(mean, [1.8, 0.2, 1.2, 0.8], atol=1e-12)
    np.testing.assert_allclose(np.asarray(d.mean_offspring()), [1.8, 0.2, 1.2, 0.8], atol=1e-12)


def test_scheme_classes_are_the_registered_schemes_and_resample_with_them():
    """``smc.Multinomial`` etc. are what ``resample(..., scheme=<name>)`` uses: passing the class
    or its name gives the same ancestors on the same key."""
    p = smc.Particles(jnp.arange(4.0), jnp.log(jnp.array([0.45, 0.05, 0.3, 0.2])), jnp.arange(4))
    for name, cls in [("multinomial", smc.Multinomial), ("systematic", smc.Systematic),
                      ("stratified", smc.Stratified), ("residual", smc.Residual)]:
        assert smc.resampling.SCHEMES[name] is cls
        by_cls, _ = smc.resample(jax.random.key(7), p, cls)
        by_name, _ = smc.resample(jax.random.key(7), p, name)
        np.testing.assert_array_equal(np.asarray(by_cls.ancestors), np.asarray(by_name.ancestors))


def test_residual_scheme_by_hand():
    """N = 3, W = (0.5, 0.3, 0.2): N W = (1.5, 0.9, 0.6), one deterministic copy of particle 0,
    then R = 2 i.i.d. draws from the residuals (0.5, 0.9, 0.6) / 2."""
    W = np.array([0.5, 0.3, 0.2])
    d = smc.Residual(jnp.log(jnp.asarray(W)))
    r = np.array([0.25, 0.45, 0.3])
    hand = {(0, i, j): r[i] * r[j] for i, j in itertools.product(range(3), repeat=2)}
    sup = [tuple(int(v) for v in a) for a in np.asarray(d.enumerate_support())]
    assert sorted(sup) == sorted(hand)
    # (the last vector breaks the deterministic part: probability 0)
    lp = np.asarray(d.log_prob(jnp.asarray(sup + [(1, 0, 0)])))
    np.testing.assert_allclose(np.exp(lp[:-1]), [hand[a] for a in sup], rtol=1e-12)
    assert lp[-1] == -math.inf
    # resample accepts the class itself and draws the same ancestors as the name
    p = smc.Particles.from_states(jnp.arange(3.0), jnp.log(jnp.asarray(W)))
    by_cls, _ = smc.resample(jax.random.key(5), p, smc.Residual)
    by_name, _ = smc.resample(jax.random.key(5), p, "residual")
    np.testing.assert_array_equal(np.asarray(by_cls.ancestors), np.asarray(by_name.ancestors))
    assert int(by_cls.ancestors[0]) == 0  # the deterministic copy comes first


# ---------------------------------------------------------------------------------------------
# tempering helpers


def _cess_np(logW, ll, delta):
    W = np.exp(logW - special.logsumexp(logW))
    v = np.exp(delta * ll)
    return (W * v).sum() ** 2 / (W * v * v).sum()


def test_next_beta_solves_the_conditional_ess_equation():
    rng = np.random.default_rng(3)
    ll = rng.normal(scale=3.0, size=200)
    lw = rng.normal(scale=0.5, size=200)
    for beta, target in ((0.0, 0.5), (0.3, 0.8)):
        b = float(smc.next_beta(jnp.asarray(lw), jnp.asarray(ll), beta, target=target, iters=50))
        root = optimize.brentq(lambda d: _cess_np(lw, ll, d) - target, 1e-12, 1.0 - beta, xtol=1e-14)
        assert b == pytest.approx(beta + root, abs=1e-9)
    # a small likelihood: the whole way to 1 keeps the ESS above target
    assert float(smc.next_beta(jnp.asarray(lw), jnp.asarray(1e-3 * ll), 0.2, target=0.5)) == 1.0


@ppl.model
def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
    ppl.factor("penalty", -0.5 * mu**2)


Y = jnp.array([0.3, 1.1, -0.4])


def test_tempered_model_scales_likelihood_and_factors_only():
    mu = 0.7
    prior = stats.norm(0, 2).logpdf(mu)
    lik = stats.norm(mu, 1).logpdf(np.asarray(Y)).sum() - 0.5 * mu**2
    tm = smc.tempered_model(normal_mean)
    for beta in (0.0, 0.35, 1.0):
        assert float(tm.log_density({"mu": mu}, beta, Y)) == pytest.approx(prior + beta * lik, abs=1e-12)
    # the handler on its own, composed with ppl.scale: scales multiply
    with smc.temper_likelihood(beta=0.5):
        tr = ppl.substitute(normal_mean, {"mu": mu}).simulate(jax.random.key(0), Y)
    assert float(tr.log_density) == pytest.approx(prior + 0.5 * lik, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# genealogies and stages


def test_trajectories_trace_the_lineages_back():
    rng = np.random.default_rng(4)
    T, N = 5, 4
    anc = rng.integers(0, N, size=(T, N))
    choices = {"x": rng.normal(size=(T, N)), "v": rng.normal(size=(T, N, 2))}
    out = smc.trajectories({k: jnp.asarray(v) for k, v in choices.items()}, jnp.asarray(anc))  # int64 under x64
    out32 = smc.trajectories({k: jnp.asarray(v) for k, v in choices.items()}, jnp.asarray(anc, jnp.int32))
    np.testing.assert_array_equal(np.asarray(out["v"]), np.asarray(out32["v"]))
    # by hand: particle i at the end; at step t its lineage is at b_t, b_{t-1} = anc[t][b_t]
    for i in range(N):
        b = i
        for t in reversed(range(T)):
            assert float(out["x"][i, t]) == choices["x"][t, b]
            np.testing.assert_array_equal(np.asarray(out["v"][i, t]), choices["v"][t, b])
            b = anc[t][b]


def test_stage_args_concatenate_the_batches():
    b = [np.array([1.0, 2.0]), np.array([3.0]), np.array([4.0, 5.0])]
    st = smc.stage_args(b, args=("X",))
    assert [s[0] for s in st] == ["X"] * 3
    for k, expect in enumerate(([1, 2], [1, 2, 3], [1, 2, 3, 4, 5])):
        np.testing.assert_array_equal(np.asarray(st[k][1]), expect)
    pairs = smc.stage_args([(np.zeros((2, 3)), np.ones(2)), (np.ones((1, 3)), np.zeros(1))])
    assert np.asarray(pairs[1][0][0]).shape == (3, 3) and np.asarray(pairs[1][0][1]).tolist() == [1, 1, 0]


# ---------------------------------------------------------------------------------------------
# the drivers' result types


def test_resample_move_result_without_resampling_is_plain_importance_sampling():
    """No moves and no resampling (threshold 0): each particle's log weight is the log
    likelihood of all the data at its prior draw; Ẑ after each stage is the mean likelihood of
    the data so far."""
    res = smc.resample_move(jax.random.key(0), normal_mean, [Y[:1], Y[1:]], 16, None, ess_threshold=0.0)
    assert isinstance(res, smc.ResampleMoveResult)
    mu = np.asarray(res.particles.states["mu"])
    ll_all = np.array([stats.norm(m, 1).logpdf(np.asarray(Y)).sum() - 0.5 * m * m for m in mu])
    ll_one = np.array([stats.norm(m, 1).logpdf(float(Y[0])) - 0.5 * m * m for m in mu])
    np.testing.assert_allclose(np.asarray(res.particles.log_weights), ll_all, atol=1e-10)
    np.testing.assert_allclose(np.asarray(res.log_evidence_history), [special.logsumexp(ll_one) - math.log(16),
                                                                       special.logsumexp(ll_all) - math.log(16)], atol=1e-10)
    assert float(res.log_evidence) == pytest.approx(float(res.log_evidence_history[-1]), abs=0)


@pytest.mark.slow
def test_particle_filter_and_tempered_smc_results():
    def step(x, y):
        x = ppl.sample("x", dist.Normal(x, 1.0))
        ppl.sample("y", dist.Normal(x, 1.0), obs=y)
        return x, x

    ys = jnp.array([0.2, -0.5, 1.0])
    r = smc.particle_filter(jax.random.key(1), step, jnp.asarray(0.0), ys, 8, record="all")
    assert isinstance(r, smc.SMCResult)
    # the history ends at the final estimate; the paths are the genealogies of the final particles
    assert float(r.log_evidence_history[-1]) == pytest.approx(float(r.log_evidence), abs=1e-12)
    (path,) = r.paths.values()  # the one latent site, (N, T): each final particle's lineage
    assert np.asarray(path).shape == (8, 3)
    np.testing.assert_array_equal(np.asarray(path)[:, -1], np.asarray(r.particles.states))

    betas = jnp.array([0.25, 1.0])
    t = smc.tempered_smc(jax.random.key(2), normal_mean, Y, num_particles=32, betas=betas, num_mcmc_steps=1, max_steps=4)
    assert isinstance(t, smc.TemperedResult)
    assert int(t.num_steps) == 2
    np.testing.assert_allclose(np.asarray(t.betas), [0.25, 1.0])  # a fixed schedule is kept as given
    assert np.asarray(t.samples["mu"]).shape == (32,)


def test_tempered_smc_takes_the_kernel_in_the_conventional_place():
    betas = jnp.array([0.5, 1.0])
    kw = dict(num_particles=16, betas=betas, num_mcmc_steps=1)
    a = smc.tempered_smc(jax.random.key(3), normal_mean, Y, kernel=mcmc.HMC(num_steps=3), **kw)
    b = smc.tempered_smc(jax.random.key(3), mcmc.HMC(num_steps=3), normal_mean, Y, **kw)
    np.testing.assert_array_equal(np.asarray(a.samples["mu"]), np.asarray(b.samples["mu"]))
    assert float(a.log_evidence) == float(b.log_evidence)
    with pytest.raises(ppl.ArgumentError, match="given twice"):
        smc.tempered_smc(jax.random.key(3), mcmc.HMC(), normal_mean, Y, kernel="mala", **kw)

    @ppl.model
    def clash(y, scheme=None):
        ppl.sample("y", dist.Normal(ppl.sample("mu", dist.Normal(0.0, 1.0)), 1.0), obs=y)

    with pytest.raises(ppl.ArgumentError, match="'scheme'"):
        smc.tempered_smc(jax.random.key(3), clash, Y, scheme="multinomial", **kw)
    assert np.isfinite(float(smc.tempered_smc(jax.random.key(3), clash, Y, **kw).log_evidence))  # scheme not set
    with pytest.raises(ppl.ArgumentError, match="num_particles"):
        smc.tempered_smc(jax.random.key(3), normal_mean, Y, num_particles=1)
