"""Mass-matrix adaptation by Fisher divergence and the low-rank metric (inference/mcmc/metric.py,
inference/mcmc/adaptation_fisher.py).

- Exact: the low-rank metric's O(d·k) operations are the dense matrix's (velocity A r, momentum
  factor F with F Fᵀ = A⁻¹, noise factor S with S Sᵀ = A, solve A⁻¹ v); the Fisher estimates
  are exact for Gaussian targets (diagonal: sqrt(var x / var ∇U) = the variances; low-rank: the
  covariance itself from more than d draws with exact scores); the schedule's windows.
- Statistical: NUTS and HMC with an adapted (fixed) low-rank metric leave a Gaussian with a random
  dense covariance invariant: M chains start at exact draws, take two steps, and four statistics
  with exact null laws are tested at the budgeted level ``mcmc/adaptation_low_rank_invariance``
  (4 statistics × 2 kernels).  The planted-bug twin draws the momentum with the wrong factor
  (Λ^{-0.45} instead of Λ^{-1/2}; the kinetic energy unchanged) and must be rejected with the same
  seed.  The chains must also move (Hoeffding, ``mcmc/adaptation_moves``).
- Functional: warmup with each adaptation on a correlated Gaussian yields a metric that whitens
  it (fixed seed, a deterministic check), in one compiled program (a second run and a resume
  compile nothing).
- Dense adaptation's regularisation (Stan's shrinkage) keeps the metric positive definite when
  a window has fewer draws than dimensions.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import hmc_util
from scipy import stats as st

import ppl
from inference import mcmc
from inference.mcmc import metric as metric_mod
from inference.mcmc.adaptation_fisher import FisherAdaptation, fisher_diagonal, fisher_schedule, low_rank_metric
from inference.mcmc.metric import LowRankMetric
from ppl import dist
from ppl.errors import ArgumentError
from semantics import stats
from semantics.stats import sample_size
from _budget import BUDGET
from _compiles import CompileCounter


def _random_cov(key, d, cond):
    q, _ = jnp.linalg.qr(jax.random.normal(key, (d, d)))
    return (q * jnp.logspace(0.0, math.log10(cond), d)) @ q.T


def _random_low_rank(key, d, k):
    k1, k2, k3 = jax.random.split(key, 3)
    U, _ = jnp.linalg.qr(jax.random.normal(k1, (d, k)))
    U = U.at[:, -1].set(0.0)  # a padded (zero) column, as the estimate leaves them
    lam = jnp.exp(2.0 * jax.random.normal(k2, (k,)))
    sigma = jnp.exp(jax.random.normal(k3, (d,)))
    return LowRankMetric(sigma, U, lam)


# -- exact ------------------------------------------------------------------------------------------


@pytest.mark.exact
def test_low_rank_metric_operations_are_the_dense_matrix():
    A = _random_low_rank(jax.random.key(1), 7, 3)
    D = A.dense()
    np.testing.assert_allclose(D, D.T, atol=1e-12)
    I = jnp.eye(7)
    r = jax.random.normal(jax.random.key(2), (4, 7))
    np.testing.assert_allclose(A.velocity(r), r @ D.T, rtol=1e-12)
    np.testing.assert_allclose(metric_mod.velocity(A, r[0]), D @ r[0], rtol=1e-12)
    np.testing.assert_allclose(metric_mod.kinetic_energy(A, r[0]), 0.5 * r[0] @ D @ r[0], rtol=1e-12)
    F = jax.vmap(A.momentum, out_axes=1)(I)  # r = F ξ ~ N(0, F Fᵀ) must be N(0, M = A⁻¹)
    np.testing.assert_allclose(F @ F.T, jnp.linalg.inv(D), rtol=1e-9, atol=1e-12)
    S = jax.vmap(A.noise, out_axes=1)(I)  # S ξ ~ N(0, A)
    np.testing.assert_allclose(S @ S.T, D, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(A.solve(r[1]), jnp.linalg.solve(D, r[1]), rtol=1e-9)
    # the gradient kernels' entry points dispatch on it
    from inference.mcmc.gradient import _momentum, _scaled_noise

    p = mcmc.GradParams.make(0.1, A)
    k = jax.random.key(3)
    np.testing.assert_allclose(_momentum(k, p.mass_matrix_sqrt), F @ jax.random.normal(k, (7,)), rtol=1e-9)
    np.testing.assert_allclose(_scaled_noise(p, r[2]), S @ r[2], rtol=1e-9)


@pytest.mark.exact
def test_fisher_estimates_are_exact_for_gaussian_targets():
    # diagonal: for N(m, diag(v)) the score is −(x − m)/v, so var(∇U) = 1/v and the estimate is v
    v = jnp.array([0.01, 1.0, 300.0])
    np.testing.assert_allclose(fisher_diagonal(v, 1.0 / v), v, rtol=1e-12)
    # low rank: n > d draws of a dense Gaussian and their exact scores give the covariance back
    # (Seyboldt et al., Theorem 2.4), with room for every direction and no eigenvalue dropped
    d, n = 6, 40
    C = _random_cov(jax.random.key(4), d, 1e3)
    x = 3.0 + jax.random.normal(jax.random.key(5), (n, d)) @ jnp.linalg.cholesky(C).T
    g = (x - 3.0) @ jnp.linalg.inv(C)  # ∇U for U = ½ (x − 3)ᵀ C⁻¹ (x − 3)
    A = low_rank_metric(x, g, jnp.ones(n), max_rank=d, gamma=1e-12, cutoff=1.0)
    np.testing.assert_allclose(A.dense(), C, rtol=1e-6, atol=1e-8 * float(jnp.max(C)))
    # rows with weight 0 are ignored (the buffer's empty rows)
    junk = jnp.concatenate([x, 1e3 * jnp.ones((5, d))]), jnp.concatenate([g, -7.0 * jnp.ones((5, d))])
    B = low_rank_metric(*junk, jnp.concatenate([jnp.ones(n), jnp.zeros(5)]), max_rank=d, gamma=1e-12, cutoff=1.0)
    np.testing.assert_allclose(B.dense(), C, rtol=1e-6, atol=1e-8 * float(jnp.max(C)))
    # with rank 2 and nutpie's cutoff, the metric keeps the two directions furthest from 1, and
    # every other eigenvalue of the (σ-scaled) metric is exactly 1
    # a buffer with fewer rows than the rank (a run without warmup traces it): static shapes kept
    A1 = low_rank_metric(x[:1], g[:1], jnp.ones(1), max_rank=4)
    assert A1.vectors.shape == (d, 4) and A1.values.shape == (4,)
    A2 = low_rank_metric(x, g, jnp.ones(n), max_rank=2)
    assert A2.vectors.shape == (d, 2)
    lam = np.asarray(A2.values)
    assert np.all((lam > 2.0) | (lam < 0.5) | (lam == 1.0))


@pytest.mark.exact
def test_schedule_windows_cover_warmup_but_its_last_15_percent():
    w = fisher_schedule(1000)
    assert w[0] == (0, 10) and w[29] == (290, 300)  # early windows of 10 over 30 %
    assert all(b == a2 for (_, b), (a2, _) in zip(w, w[1:]))  # contiguous
    assert [b - a for a, b in w[30:]] == [80, 120, 350]  # growing by 1.5, the last absorbs the rest
    assert w[-1][1] == 850  # step size alone over the last 150 steps
    assert fisher_schedule(19) == []
    for n in (20, 37, 150, 2000):
        w = fisher_schedule(n)
        assert w[0][0] == 0 and w[-1][1] == n - max(round(0.15 * n), 1) and all(b > a for a, b in w)


@pytest.mark.exact
def test_estimate_rows_reach_back_until_the_estimate_has_more_draws_than_dimensions():
    """``estimate_min_rows`` (issue 15, h15c): each low-rank estimate starts at the latest earlier
    window beginning at least that many steps before the current window (0: the previous window,
    nutpie's foreground/background pair), so a 100-d target gets estimates from > d draws from
    step d + 1 on instead of from <= 20 draws for the first 30 % of warmup."""
    n, d = 1000, 100
    w = fisher_schedule(n)
    old = FisherAdaptation(None, d, kind="low_rank")._plan(n)
    new = FisherAdaptation(None, d, kind="low_rank", estimate_min_rows=d + 1)._plan(n)
    for i, (a, b) in enumerate(w[1:], 1):  # 0: nutpie's pair, exactly as before
        assert old[3][a] == w[i - 1][0] and np.all(old[3][a:b] == old[3][a])
    t = np.arange(n)
    rows = (t - new[3] + 1)[new[0]]  # rows an estimate at step t can use (in a window)
    assert np.all(rows[t[new[0]] >= d + 1] >= d + 1) and np.all(new[3][new[0] & (t <= d)] == 0)
    assert (t - old[3] + 1)[new[0]][290] <= 20  # before: 20 rows at step 290
    assert new[4] == old[4] == 470  # the buffer's capacity is unchanged at this length
    # a short warmup: the buffer grows to what the estimates reach back to, never past warmup
    assert FisherAdaptation(None, d, kind="low_rank", estimate_min_rows=d + 1)._plan(200)[4] <= 200
    with pytest.raises(ArgumentError, match="estimate_min_rows must be a non-negative integer, got -1"):
        FisherAdaptation(None, 2, kind="low_rank", estimate_min_rows=-1)
    with pytest.raises(ArgumentError, match="mass_matrix_estimate_rows must be None, or an integer >= 0 with .*got 5"):
        mcmc.NUTS(adapt_mass_matrix="fisher_diag", mass_matrix_estimate_rows=5)
    with pytest.raises(ArgumentError, match="early_max_tree_depth must be None, or a positive integer with .*got 0"):
        mcmc.NUTS(adapt_mass_matrix="low_rank", early_max_tree_depth=0)
    with pytest.raises(ArgumentError, match="HMC: early_max_tree_depth .*kernel without trees.*got 3"):
        mcmc.HMC(adapt_mass_matrix="low_rank", early_max_tree_depth=3)  # not silently ignored
    with pytest.raises(ArgumentError, match="early_max_tree_depth must be None or a positive integer, got 0"):
        FisherAdaptation(None, 2, kind="low_rank", early_max_tree_depth=0)


def test_early_tree_depth_cap_holds_until_the_first_full_estimate_then_lifts():
    """``early_max_tree_depth`` (issue 15, h15c): NUTS's trees in warmup stop at that depth until
    the step after the first estimate from more than d draws (here d = 8, estimates every draw:
    step 9), then run to ``max_tree_depth``; without the cap the same first steps go deeper (the
    test can fail), and sampling is never capped."""
    d = 8
    L = jnp.linalg.cholesky(_random_cov(jax.random.key(3), d, 1e4))

    @ppl.model
    def g8():
        ppl.sample("x", dist.MultivariateNormal(jnp.zeros(d), scale_tril=L))

    def depths(**kw):
        run = mcmc.sample(jax.random.key(0), mcmc.NUTS(adapt_mass_matrix="low_rank", **kw), g8, num_warmup=60,
                          num_samples=20, num_chains=2, progress=False)
        return np.asarray(run.warmup_info["tree_depth"]), np.asarray(run.info["tree_depth"])

    fa = mcmc.NUTS(adapt_mass_matrix="low_rank").bind(g8, num_warmup=60).adaptation
    assert fa._depth_lift(60) == min(d + 1, 18)
    w, s = depths(early_max_tree_depth=2)
    assert w[:, : d + 1].max() <= 2 and w[:, d + 1:].max() > 2 and s.max() > 2
    w0, _ = depths(early_max_tree_depth=10)  # no cap: the first steps go deeper
    assert w0[:, : d + 1].max() > 2


@pytest.mark.exact
def test_bad_options_are_refused_by_name():
    with pytest.raises(ArgumentError, match="adapt_mass_matrix.*'fisher_diag'.*got 'lowrank'"):
        mcmc.NUTS(adapt_mass_matrix="lowrank")
    with pytest.raises(ArgumentError, match="dense_mass=True.*'low_rank'"):
        mcmc.NUTS(adapt_mass_matrix="low_rank", dense_mass=True)
    with pytest.raises(ArgumentError, match="mass_matrix_rank must be None .* or a positive integer, got 0"):
        mcmc.HMC(adapt_mass_matrix="low_rank", mass_matrix_rank=0)
    with pytest.raises(ArgumentError, match="kind must be one of"):
        FisherAdaptation(None, 2, kind="dense")
    assert mcmc.NUTS(adapt_mass_matrix="dense").dense_mass  # Stan's dense windows
    with pytest.raises(ArgumentError, match="mass_matrix_update_every must be None, or a positive integer with .*got 5"):
        mcmc.NUTS(mass_matrix_update_every=5)  # Stan's windows have no per-draw updates
    with pytest.raises(ArgumentError, match="mass_matrix_update_every.*got 0"):
        mcmc.NUTS(adapt_mass_matrix="low_rank", mass_matrix_update_every=0)
    with pytest.raises(ArgumentError, match="step_size_restart must be 'average' .*or 'none'.*got 'search'"):
        mcmc.NUTS(adapt_mass_matrix="fisher_diag", step_size_restart="search")
    with pytest.raises(ArgumentError, match="step_size_restart.*got 'none'"):
        mcmc.NUTS(step_size_restart="none")
    with pytest.raises(ArgumentError, match="mass_matrix_min_draws must be None, or an integer >= 0 with .*got -1"):
        mcmc.NUTS(adapt_mass_matrix="low_rank", mass_matrix_min_draws=-1)
    with pytest.raises(ArgumentError, match="mass_matrix_min_draws.*got 0"):
        mcmc.NUTS(adapt_mass_matrix="fisher_diag", mass_matrix_min_draws=0)
    with pytest.raises(ArgumentError, match="update_every must be None or a positive integer, got 0"):
        FisherAdaptation(None, 2, update_every=0)


# -- statistical: invariance with an adapted low-rank metric -----------------------------------------

D_GAUSS = 6
COV = _random_cov(jax.random.key(7), D_GAUSS, 1e3)
CHOL = jnp.linalg.cholesky(COV)
EVALS, EVECS = jnp.linalg.eigh(COV)
ALPHA = BUDGET.level("mcmc/adaptation_low_rank_invariance")
#: the twin (momentum factor Λ^{-0.45} for Λ^{-1/2}) shifts E[top²] by 0.25 (measured at M = 32 000,
#: z ≈ 28 for NUTS; sd of top² is √2: standardised effect 0.18); M is sized for half of it, 0.1,
#: at the budgeted level with power 0.999
M, STEPS = sample_size(0.1, sd=1.0, alpha=ALPHA, power=0.999), 2
MOVED_MIN = 0.2
# right kernels move more than 0.5 of the chains here (NUTS ~1, HMC ~0.9)
assert math.exp(-2 * M * (0.5 - MOVED_MIN) ** 2) <= BUDGET.level("mcmc/adaptation_moves")


@ppl.model
def gaussian():
    ppl.sample("x", dist.MultivariateNormal(jnp.zeros(D_GAUSS), scale_tril=CHOL))


def adapted_metric():
    """A low-rank metric as warmup would leave it: estimated from 30 exact draws and scores."""
    x = jax.random.normal(jax.random.key(8), (30, D_GAUSS)) @ CHOL.T
    return low_rank_metric(x, x @ jnp.linalg.inv(COV), jnp.ones(30), max_rank=2)


FIXED = dict(adapt_step_size=False, adapt_mass_matrix=False, find_heuristic_step_size=False)


@functools.partial(jax.jit, static_argnums=0)
def run_from_exact(kernel, params, key):
    b = kernel.bind(gaussian).kernel
    k0, k1 = jax.random.split(key)
    x0 = jax.random.normal(k0, (M, D_GAUSS)) @ CHOL.T
    state = jax.vmap(b.state_at)(x0)

    def body(state, k):
        state, _ = jax.vmap(lambda kk, s: b.step(kk, s, params))(jax.random.split(k, M), state)
        return state, None

    state, _ = jax.lax.scan(body, state, jax.random.split(k1, STEPS))
    return state.x, jnp.any(state.x != x0, axis=1)


def pvalues(x) -> dict:
    x = np.asarray(x, float)
    z = np.linalg.solve(np.asarray(CHOL), x.T).T  # N(0, I) rows if x ~ N(0, COV)
    top = x @ np.asarray(EVECS[:, -1]) / math.sqrt(float(EVALS[-1]))
    low = x @ np.asarray(EVECS[:, 0]) / math.sqrt(float(EVALS[0]))
    two = lambda q, k: 2 * min(st.chi2.cdf(q, k), st.chi2.sf(q, k))  # noqa: E731
    return {
        "|z|^2": two(float(np.sum(z**2)), M * D_GAUSS),
        "top^2": two(float(np.sum(top**2)), M),
        "low^2": two(float(np.sum(low**2)), M),
        "top mean": float(2 * st.norm.sf(abs(top.mean()) * math.sqrt(M))),
    }


def _wrong_momentum(self, xi):
    return self._core(xi, -0.45) / self.scale  # Λ^{-0.45} for Λ^{-1/2}: r ~ N(0, M') with M' ≠ M


CASES = [  # (kernel, the twin's kernel: another static configuration, so another compiled program)
    (mcmc.NUTS(step_size=0.6, **FIXED), mcmc.NUTS(step_size=0.6, max_tree_depth=9, **FIXED)),
    (mcmc.HMC(step_size=0.5, num_steps=3, **FIXED), mcmc.HMC(step_size=0.5, num_steps=3, max_delta_energy=999.0, **FIXED)),
]


@pytest.mark.statistical
@pytest.mark.slow
@pytest.mark.parametrize("kernel,twin", CASES, ids=["nuts", "hmc"])
def test_low_rank_metric_leaves_dense_gaussian_invariant_and_twin_fails(kernel, twin, monkeypatch):
    A = adapted_metric()
    assert np.sum(np.abs(np.log(np.asarray(A.values))) > 0.5) >= 1  # the low-rank part is used
    params = mcmc.GradParams.make(jnp.asarray(kernel.step_size), A)
    key = jax.random.key(20261202)
    x, moved = run_from_exact(kernel, params, key)
    p = pvalues(x)
    assert min(p.values()) >= ALPHA, f"draws left the target (alpha = {ALPHA:.2g}): {p}"
    assert float(np.mean(np.asarray(moved))) > MOVED_MIN
    monkeypatch.setattr(LowRankMetric, "momentum", _wrong_momentum)
    p_bug = pvalues(run_from_exact(twin, params, key)[0])
    assert min(p_bug.values()) < ALPHA, f"planted bug (momentum factor) not detected: {p_bug}"


# issue 15, fourth pass (h15): the same law when the metric carries A as a dense matrix (k ≥ d/2:
# the leapfrog's velocity is one d×d product); the twin's matrix is built from Λ^0.9 while the
# momenta stay N(0, A⁻¹) (the same size of error as the momentum twin above, so the same M)
ALPHA_DENSE = BUDGET.level("mcmc/adaptation_low_rank_dense_velocity_invariance")
assert math.exp(-2 * M * (0.5 - MOVED_MIN) ** 2) <= BUDGET.level("mcmc/adaptation_moves_dense_velocity")


def _wrong_matrix(self):
    m = LowRankMetric(self.scale, self.vectors, self.values**0.9).dense()
    return LowRankMetric(self.scale, self.vectors, self.values, m)


@pytest.mark.statistical
@pytest.mark.slow
def test_low_rank_dense_velocity_leaves_dense_gaussian_invariant_and_twin_fails(monkeypatch):
    A = adapted_metric()
    Ad = A.with_matrix()
    np.testing.assert_allclose(Ad.velocity(jnp.eye(D_GAUSS)), A.dense(), rtol=1e-10, atol=1e-12)
    kernel, twin = CASES[0]
    key = jax.random.key(20261203)
    x, moved = run_from_exact(kernel, mcmc.GradParams.make(jnp.asarray(kernel.step_size), Ad), key)
    p = pvalues(x)
    assert min(p.values()) >= ALPHA_DENSE, f"draws left the target (alpha = {ALPHA_DENSE:.2g}): {p}"
    assert float(np.mean(np.asarray(moved))) > MOVED_MIN
    monkeypatch.setattr(LowRankMetric, "with_matrix", _wrong_matrix)
    p_bug = pvalues(run_from_exact(twin, mcmc.GradParams.make(jnp.asarray(kernel.step_size), A.with_matrix()), key)[0])
    assert min(p_bug.values()) < ALPHA_DENSE, f"planted bug (dense velocity of another A) not detected: {p_bug}"


# -- functional: warmup whitens a correlated Gaussian ---------------------------------------------------


@pytest.mark.parametrize("kind", ["fisher_diag", "low_rank"])
def test_warmup_metric_whitens_the_target(kind):
    """After 300 warmup steps on a 6-d Gaussian (condition number 1e3), the inverse mass matrix
    A makes A^{-1/2} C A^{-1/2} well conditioned (low rank: below 6, where c² = 4 is what the
    cutoff leaves; diagonal: within 3× of the correlation matrix's condition number)."""
    run = mcmc.sample(jax.random.key(0), mcmc.NUTS(adapt_mass_matrix=kind), gaussian, num_warmup=300, num_samples=20,
                      num_chains=2, progress=False)
    for c in range(2):
        A = jax.tree.map(lambda v: v[c], run.state.params.inverse_mass_matrix)
        D = A.dense() if isinstance(A, LowRankMetric) else jnp.diag(A)
        L = jnp.linalg.cholesky(D)
        W = jax.scipy.linalg.solve_triangular(L, jax.scipy.linalg.solve_triangular(L, COV, lower=True).T, lower=True)
        cond = float(jnp.linalg.cond(W))
        best = float(jnp.linalg.cond(COV / jnp.sqrt(jnp.outer(jnp.diag(COV), jnp.diag(COV)))))
        # low rank: eigenvalues within [1/c, c] (nutpie's cutoff c = 2) are left at 1, so up to c² = 4
        bound = 3.0 * best if kind == "fisher_diag" else 6.0
        assert cond < bound, f"{kind}: condition number {cond:.3g} after warmup (target 1e3; bound {bound:.3g})"
    assert np.all(np.isfinite(np.asarray(run.samples["x"])))
    # one compiled program: a second run and a resume compile nothing (the adaptation's schedule
    # and buffers are static; its branches are decided by the step)
    with CompileCounter() as c:
        again = mcmc.sample(jax.random.key(1), mcmc.NUTS(adapt_mass_matrix=kind), gaussian, num_warmup=300, num_samples=20,
                            num_chains=2, progress=False)
        more = again.resume(jax.random.key(2), num_samples=20)
    assert c.n == 0, f"{kind}: {c.n} compilations on a second run and a resume"
    assert more.samples["x"].shape == (2, 20, D_GAUSS)


# -- dense adaptation: regularisation ---------------------------------------------------------------------


@pytest.mark.exact
def test_dense_regularisation_is_stans_shrinkage_and_positive_definite():
    """Stan's (and NumPyro's) regularisation of the dense estimate from n draws:
    (n / (n + 5)) Σ + 1e-3 (5 / (n + 5)) I, positive definite even with n = 10 draws in d = 50."""
    d, n = 50, 10
    _, update, final = hmc_util.welford_covariance(diagonal=False)
    x = jax.random.normal(jax.random.key(9), (n, d)) * jnp.logspace(-2, 2, d)
    state = (jnp.zeros(d), jnp.zeros((d, d)), 0)
    for row in x:
        state = update(row, state)
    cov, sqrt, _ = final(state, regularize=True)
    sample = jnp.cov(x.T)
    np.testing.assert_allclose(cov, n / (n + 5.0) * sample + 1e-3 * 5.0 / (n + 5.0) * jnp.eye(d), rtol=1e-9, atol=1e-12)
    assert float(jnp.linalg.eigvalsh(cov)[0]) > 0
    assert np.all(np.isfinite(np.asarray(sqrt)))


# -- SBC: warmup with the low-rank adaptation, then sampling, is calibrated ----------------------------


@pytest.mark.statistical
@pytest.mark.slow
def test_low_rank_adapted_nuts_is_calibrated_and_twin_without_jacobian_is_not():
    """SBC of NUTS(adapt_mass_matrix="low_rank") on test_mcmc_sbc's model (mu ~ N(0, 1),
    sigma ~ HalfNormal(1), three observations): 600 simulations, each one chain with 200 warmup
    steps of the Fisher adaptation; χ² on 4 rank bins for mu and sigma at the declared level
    ``mcmc/adaptation_sbc``.  Twin: the same kernel forgetting sigma's log-Jacobian."""
    import test_mcmc_sbc as sbc

    def run(kernel):  # mu's and sigma's SBC from one run of the chains (stats.sbc_many: the same keys as sbc)
        return stats.sbc_many(
            sbc.prior_predictive,
            lambda k, y, n: sbc.nuts_draws(kernel, k, y),
            num_simulations=sbc.S, num_draws=sbc.L, seed=12, bins=sbc.BINS,
            alpha=BUDGET.level("mcmc/adaptation_sbc"),
        )

    kernel = mcmc.NUTS(adapt_mass_matrix="low_rank", mass_matrix_rank=2)
    for r, name in zip(run(kernel), ("mu", "sigma")):
        assert r.ok, f"{name}: {r.message}"
    bug = run(sbc.NUTSNoJacobian(adapt_mass_matrix="low_rank", mass_matrix_rank=2))[1]
    assert not bug.ok, bug.message


# second SBC model (issue 15 asks for two): a regression whose intercept and slope are correlated
# at about -0.98 a posteriori (x far from 0), the case the Fisher adaptations are for
X_REG = jnp.array([4.0, 5.0, 6.0])


@ppl.model
def correlated_regression(y=None):
    a = ppl.sample("a", dist.Normal(0.0, 1.0))
    b = ppl.sample("b", dist.Normal(0.0, 1.0))
    with ppl.plate("data", X_REG.shape[0]):
        ppl.sample("y", dist.Normal(a + b * X_REG, 0.5), obs=y)


@dataclasses.dataclass(frozen=True)
class _QuarterPotentialNUTS(mcmc.NUTS):
    """Bug: samples p(a, b | y)^(1/4) (the potential quartered): draws about twice too wide."""

    def target_potential(self, view):
        return lambda z: 0.25 * view.potential(z)


@functools.partial(jax.jit, static_argnums=0)
def _regression_draws(kernel, key, y):
    """(19, 2) draws of (a, b) given y: 200 warmup steps of the kernel's adaptation, then 19
    draws thinned by 4 (one chain; SBC vmaps the simulations into chains)."""
    b = kernel.bind(correlated_regression, (y,), {}, 200)
    k0, k1, k2 = jax.random.split(key, 3)
    state = b.init(k0)
    state, _ = jax.lax.scan(lambda s, xs: (b.warmup_step(xs[1], s, xs[0])[0], None), state,
                            (jnp.arange(200), jax.random.split(k1, 200)))

    def draw(s, k):
        s = jax.lax.fori_loop(0, 4, lambda i, s: b.step(jax.random.fold_in(k, i), s)[0], s)
        v = b.samples(s)
        return s, jnp.stack([v["a"], v["b"]])

    return jax.lax.scan(draw, state, jax.random.split(k2, 19))[1]


@pytest.mark.statistical
@pytest.mark.slow
def test_fisher_adapted_nuts_is_calibrated_on_a_correlated_regression_and_widened_twin_is_not():
    """SBC of NUTS with the low-rank and the diagonal Fisher adaptations on
    ``correlated_regression``: 600 simulations, χ² on 4 rank bins for a and b at the declared
    level ``mcmc/adaptation_sbc_regression`` (2 kernels × 2 parameters).  Twin: the low-rank
    kernel sampling the posterior to the power 1/4 (too wide), which must fail on b."""

    def run(kernel):  # a's and b's SBC from one run of the chains (stats.sbc_many: the same keys as sbc)
        def prior(k):
            tr = correlated_regression.simulate(k)
            return jnp.stack([tr["a"], tr["b"]]), tr["y"]

        return stats.sbc_many(prior, lambda k, y, n: _regression_draws(kernel, k, y),
                              num_simulations=600, num_draws=19, seed=15, bins=4,
                              alpha=BUDGET.level("mcmc/adaptation_sbc_regression"))

    for kernel in (mcmc.NUTS(adapt_mass_matrix="low_rank", mass_matrix_rank=2),
                   mcmc.NUTS(adapt_mass_matrix="fisher_diag")):
        for r, name in zip(run(kernel), ("a", "b")):
            assert r.ok, f"{kernel.adapt_mass_matrix} {name}: {r.message}"
    bug = run(_QuarterPotentialNUTS(adapt_mass_matrix="low_rank", mass_matrix_rank=2))[1]
    assert not bug.ok, bug.message


@pytest.mark.exact
def test_low_rank_directions_wait_for_more_draws_than_dimensions():
    """A window estimate from n ≤ d draws keeps the diagonal part alone (``low_rank_min_draws``
    = d + 1 by default); with the threshold off, the same 10 draws give directions."""
    d = 12
    C = _random_cov(jax.random.key(10), d, 1e3)
    U = lambda x: 0.5 * x @ jnp.linalg.solve(C, x)  # noqa: E731
    vg = jax.value_and_grad(U)
    xs = jax.random.normal(jax.random.key(11), (10, d)) @ jnp.linalg.cholesky(C).T
    for min_draws, directions in ((None, False), (0, True)):
        fa = FisherAdaptation(vg, d, kind="low_rank", max_rank=3, low_rank_min_draws=min_draws, find_heuristic_step_size=False)
        a = fa.init(jax.random.key(0), mcmc.GradState(xs[0], *vg(xs[0])), 100)
        states = jax.vmap(lambda x: mcmc.GradState(x, *vg(x)))(xs)

        def body(a, ts):  # the first window: steps 0..9
            t, s = ts
            return fa.update(a, t, s, {"accept_prob": jnp.asarray(0.8)}), None

        a, _ = jax.jit(lambda a: jax.lax.scan(body, a, (jnp.arange(10), states)))(a)
        A = fa.params(a).inverse_mass_matrix
        assert not np.allclose(np.asarray(A.scale), 1.0)  # the diagonal part was estimated
        assert bool(np.any(np.asarray(A.values) != 1.0)) == directions


@pytest.mark.exact
def test_update_every_reestimates_from_the_previous_and_current_window_at_each_draw():
    """``update_every=1`` (nutpie's per-draw updates): after warmup step t of a window the metric
    is the estimate from the draws since the previous window's start; with the default (window
    ends only) it stays at the last window end's estimate.  ``step_size_restart=False`` (nutpie):
    dual averaging is not restarted at window ends."""
    d = 3
    C = _random_cov(jax.random.key(12), d, 1e2)
    U = lambda x: 0.5 * x @ jnp.linalg.solve(C, x)  # noqa: E731
    vg = jax.value_and_grad(U)
    xs = jax.random.normal(jax.random.key(13), (25, d)) @ jnp.linalg.cholesky(C).T
    states = jax.vmap(lambda x: mcmc.GradState(x, *vg(x)))(xs)

    def warm(fa):  # the adaptation state after each of 24 warmup steps (one compiled scan)
        # (the chain starts at xs[24], so that its first draw xs[0] moved: only moves are estimated from)
        a = fa.init(jax.random.key(0), mcmc.GradState(xs[24], *vg(xs[24])), 100)

        def body(a, ts):
            t, s = ts
            a = fa.update(a, t, s, {"accept_prob": jnp.asarray(0.6)})
            return a, (fa.params(a).inverse_mass_matrix, a.ss_state[3])

        return jax.jit(lambda a: jax.lax.scan(body, a, (jnp.arange(24), jax.tree.map(lambda v: v[:24], states)))[1])(a)

    ones = jnp.ones(25)
    for kind in ("low_rank", "fisher_diag"):
        kw = dict(kind=kind, max_rank=d, low_rank_min_draws=0, find_heuristic_step_size=False)
        per_draw, _ = warm(FisherAdaptation(vg, d, update_every=1, **kw))
        at_ends, _ = warm(FisherAdaptation(vg, d, **kw))
        for t, rows in ((14, 15), (9, 10), (23, 14)):  # windows (0, 10), (10, 20), (20, 30): rows from the previous start
            A = jax.tree.map(lambda v: v[t], per_draw)
            lo = 0 if t < 20 else 10
            sel = xs[lo:t + 1]
            if kind == "low_rank":
                want = low_rank_metric(sel, jax.vmap(jax.grad(U))(sel), ones[:rows], max_rank=d).dense()
                np.testing.assert_allclose(A.dense(), want, rtol=2e-4, err_msg=f"{kind} t={t}")
            else:
                g = jax.vmap(jax.grad(U))(sel)
                np.testing.assert_allclose(A, fisher_diagonal(jnp.var(sel, 0), jnp.var(g, 0)), rtol=2e-4, err_msg=f"{kind} t={t}")
        # window ends only: after step 14 the metric is still the one of the end of window (0, 10)
        jax.tree.map(lambda v: np.testing.assert_array_equal(v[14], v[9]), at_ends)
        assert not np.allclose(jax.tree.leaves(per_draw)[0][15], jax.tree.leaves(per_draw)[0][14])  # moved with the draw
    # dual averaging: restarted at the window end (count back to 1) or not (nutpie)
    for restart, count in ((True, 5), (False, 15)):
        fa = FisherAdaptation(vg, d, kind="fisher_diag", step_size_restart=restart, find_heuristic_step_size=False)
        assert int(warm(fa)[1][14]) == count, restart


def test_search_first_searches_the_step_size_once_at_the_first_metric_estimate():
    """``step_size_search_first`` (nutpie's ``StepSizeStrategy::init`` at its first metric change):
    at the first estimate from ≥ 3 draws (step 2 with per-draw updates, 9 at window ends only) the
    step size is exactly :func:`search_step_size` from the initial step size with the *new* metric
    at the point that step reached, and dual averaging restarts there (its count back to 0); no
    step before it and none after it is touched (the same run without the search agrees)."""
    from inference.mcmc.adaptation import search_step_size

    d = 3
    C = _random_cov(jax.random.key(14), d, 1e2)
    U = lambda x: 0.5 * x @ jnp.linalg.solve(C, x)  # noqa: E731
    vg = jax.value_and_grad(U)
    xs = jax.random.normal(jax.random.key(15), (25, d)) @ jnp.linalg.cholesky(C).T
    states = jax.vmap(lambda x: mcmc.GradState(x, *vg(x)))(xs)
    kw = dict(kind="low_rank", max_rank=d, low_rank_min_draws=0, find_heuristic_step_size=False, step_size=0.3,
              step_size_restart=False)
    assert FisherAdaptation(vg, d, update_every=1, **kw)._first_change(100) == 2
    assert FisherAdaptation(vg, d, **kw)._first_change(100) == 9
    assert FisherAdaptation(vg, d, **kw)._first_change(10) == -1  # no window: no search

    def warm(fa):
        a = fa.init(jax.random.key(0), jax.tree.map(lambda v: v[0], states), 100)

        def body(a, ts):
            t, s = ts
            a = fa.update(a, t, s, {"accept_prob": jnp.asarray(0.6)})
            return a, (a.step_size, a.ss_state[3], fa.params(a).inverse_mass_matrix)

        return jax.jit(lambda a: jax.lax.scan(body, a, (jnp.arange(12), jax.tree.map(lambda v: v[:12], states)))[1])(a)

    eps, count, A = warm(FisherAdaptation(vg, d, update_every=1, step_size_search_first=True, **kw))
    eps0, count0, A0 = warm(FisherAdaptation(vg, d, update_every=1, **kw))
    A2 = jax.tree.map(lambda v: v[2], A)
    key_first = jax.random.split(jax.random.key(0))[1]
    want = search_step_size(vg, jnp.asarray(0.3), A2, (xs[2], None, *vg(xs[2])), key_first)
    np.testing.assert_allclose(eps[2], want, rtol=1e-6)
    assert float(want) != pytest.approx(float(eps0[2]), rel=1e-3)  # the search changed it
    k = np.log2(float(want) / 0.3)
    assert abs(k - round(k)) < 1e-5 and round(k) != 0  # doubled or halved from the initial step size
    np.testing.assert_array_equal(eps[:2], eps0[:2])
    np.testing.assert_array_equal(np.asarray(count), np.concatenate([[1, 2], np.arange(10)]))
    np.testing.assert_array_equal(np.asarray(count0), np.arange(1, 13))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), A, A0)  # the metrics are untouched


# -- issue 15, third pass (g15): what kept kilpisjarvi's chains healthy with nutpie's settings -------------


@pytest.mark.exact
def test_estimators_take_only_the_draws_that_moved():
    """A rejected proposal repeats the position before it; nutpie leaves such draws out of its
    estimators, and so do we (``moved_only``, default True): a warmup whose first draw is
    repeated by 8 rejections gives exactly the estimate from the 8 distinct draws; with
    ``moved_only=False`` (the twin) the repeats pull the estimate towards that draw."""
    d = 3
    C = _random_cov(jax.random.key(16), d, 1e2)
    U = lambda x: 0.5 * x @ jnp.linalg.solve(C, x)  # noqa: E731
    vg = jax.value_and_grad(U)
    xs = jax.random.normal(jax.random.key(17), (8, d)) @ jnp.linalg.cholesky(C).T
    rep = jnp.concatenate([jnp.repeat(xs[:1], 9, axis=0), xs[1:]])  # x0 then 8 rejections, x1 ... x7
    states = jax.vmap(lambda x: mcmc.GradState(x, *vg(x)))(rep)
    x_init = -xs[0]  # the chain's start: the first draw moved from it

    def warm(fa):  # the metric after 16 warmup steps, window (10, 20) running: rows from step 0
        a = fa.init(jax.random.key(0), mcmc.GradState(x_init, *vg(x_init)), 100)

        def body(a, ts):
            t, s = ts
            return fa.update(a, t, s, {"accept_prob": jnp.asarray(0.8)}), None

        a, _ = jax.jit(lambda a: jax.lax.scan(body, a, (jnp.arange(16), states)))(a)
        return fa.params(a).inverse_mass_matrix

    for kind in ("low_rank", "fisher_diag"):
        kw = dict(kind=kind, max_rank=d, low_rank_min_draws=0, find_heuristic_step_size=False, update_every=1)
        got, twin = warm(FisherAdaptation(vg, d, **kw)), warm(FisherAdaptation(vg, d, moved_only=False, **kw))
        g = jax.vmap(jax.grad(U))(xs)
        if kind == "low_rank":
            want = low_rank_metric(xs, g, jnp.ones(8), max_rank=d).dense()
            np.testing.assert_allclose(got.dense(), want, rtol=2e-4, err_msg=kind)
            assert not np.allclose(twin.dense(), want, rtol=5e-2), kind
        else:
            want = fisher_diagonal(jnp.var(xs, 0), jnp.var(g, 0))
            np.testing.assert_allclose(got, want, rtol=2e-4, err_msg=kind)
            assert not np.allclose(twin, want, rtol=5e-2), kind


def _whitened_condition(A, C):
    D = np.asarray(A.dense(), np.float64)
    Li = np.linalg.inv(np.linalg.cholesky(D))
    ev = np.linalg.eigvalsh(Li @ C @ Li.T)
    return ev.max() / ev.min()


@pytest.mark.exact
def test_float32_estimate_from_fewer_draws_than_dimensions_is_not_noise(monkeypatch):
    """From n ≤ d draws the Gram matrices are singular, and below float64 the rounding noise in
    their null space exceeds nutpie's γ = 1e-5: the directions no draw spans got random
    eigenvalues.  γ is raised there to ``RANK_DEFICIENT_GAMMA`` × eps × the mean eigenvalue.
    Measured in float32 on exact draws and scores (the whitened condition number of the target
    under the estimate; float64 gives 3.5e3 and 33): a 100-d Gaussian of condition 1e4 from 20
    draws 3.5e3 (0.8-1.1e5 without the floor, worse than no metric), a 3-d one with correlation
    −0.9999 from 3 draws 28 (13-249 without, depending on the draws).  With n > d nothing changes (γ as nutpie's)."""
    from inference.mcmc import adaptation_fisher as af

    rng = np.random.default_rng(100)  # benchmarks/bench_adaptation.py's gauss100
    q, _ = np.linalg.qr(rng.normal(size=(100, 100)))
    C100 = (q * np.logspace(0, 4, 100)) @ q.T
    C100 = (C100 + C100.T) / 2
    C3 = np.array([[1.0, -0.9999, 0.0], [-0.9999, 1.0, 0.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(0)
    x100 = rng.normal(size=(20, 100)) @ np.linalg.cholesky(C100).T
    x3 = rng.normal(size=(3, 3)) @ np.linalg.cholesky(C3).T
    x3_many = rng.normal(size=(50, 3)) @ np.linalg.cholesky(C3).T

    def cond(x, C):
        f = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
        A = low_rank_metric(f(x), f(x @ np.linalg.inv(C)), jnp.ones(len(x), jnp.float32), max_rank=C.shape[0])
        return _whitened_condition(A, C)

    got = (cond(x100, C100), cond(x3, C3), cond(x3_many, C3))
    assert got[0] < 1e4 and got[1] < 60 and got[2] < 1.5, got
    monkeypatch.setattr(af, "RANK_DEFICIENT_GAMMA", 0.0)  # the twin: nutpie's γ alone in float32
    twin = (cond(x100, C100), cond(x3, C3), cond(x3_many, C3))
    assert twin[0] > 3e4, twin  # (the 3-d case's twin depends on the draws: 13-250 measured)
    assert twin[2] == pytest.approx(got[2], rel=1e-6)  # more draws than dimensions: untouched


@pytest.mark.exact
def test_low_rank_defaults_resolve_per_dimension():
    """``NUTS(adapt_mass_matrix="low_rank")``'s defaults (issue 15, third pass): every direction up
    to 100, updates every max(1, round(d / 10)) draws, directions from the first window, one dual
    averaging after a search at the first estimate; what the user sets wins; Stan's windows and ``fisher_diag`` keep theirs."""
    o = mcmc.NUTS(adapt_mass_matrix="low_rank").fisher_options
    assert o(3) == {"mass_matrix_rank": 3, "mass_matrix_update_every": 1, "mass_matrix_min_draws": 0,
                    "step_size_restart": "search_first", "mass_matrix_estimate_rows": 4,
                    "early_max_tree_depth": 4}
    assert (o(26)["mass_matrix_update_every"], o(100)["mass_matrix_update_every"], o(400)["mass_matrix_rank"]) == (3, 10, 100)
    mine = mcmc.NUTS(adapt_mass_matrix="low_rank", mass_matrix_rank=5, mass_matrix_update_every=7,
                     mass_matrix_min_draws=9, step_size_restart="average").fisher_options(26)
    assert mine == {"mass_matrix_rank": 5, "mass_matrix_update_every": 7, "mass_matrix_min_draws": 9,
                    "step_size_restart": "average", "mass_matrix_estimate_rows": 27,
                    "early_max_tree_depth": 4}
    assert mcmc.NUTS(adapt_mass_matrix="fisher_diag").fisher_options(26)["step_size_restart"] == "average"
    # they reach the adaptation object the kernel builds
    fa = mcmc.NUTS(adapt_mass_matrix="low_rank").bind(gaussian).adaptation
    assert (fa.max_rank, fa.update_every, fa.low_rank_min_draws, fa.step_size_restart, fa.step_size_search_first,
            fa.estimate_min_rows, fa.early_max_tree_depth) == (D_GAUSS, 1, 0, False, True, D_GAUSS + 1, 4)
    wa = mcmc.NUTS().bind(gaussian).adaptation
    assert type(wa).__name__ == "WindowAdaptation"
