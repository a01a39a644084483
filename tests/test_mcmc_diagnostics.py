"""Value tests of the convergence diagnostics: split-R̂, bulk and tail ESS, ``summary`` and the
divergence counts of a run.

References, none computed by the code under test:

* ArviZ (``az.rhat(method="rank")``, ``az.ess(method="bulk"/"tail")``, ``az.summary``), an
  implementation independent of ours (ours wraps ``numpyro.diagnostics``).  R̂ agrees to 1e-10.
  ArviZ's ESS adds one more autocorrelation term at the truncation point ("improved" Geyer
  estimator, Vehtari et al. 2021) and caps ESS at N·log10(N); NumPyro's follows the Stan 2.18
  manual without the extra term, so on long chains the two agree to a few per cent only.  The
  cap (τ̂ >= 1/log10 N, Stan's too) is applied to NumPyro's estimate by ours: without it short
  chains gave ESS above N log10 N and even negative ESS.
* A plain-loop implementation, in this file, of the estimator as the Stan 2.18 reference manual
  writes it (the one NumPyro cites): split chains, rank-normalise, ρ̂_t = 1 − (W − mean_m
  γ̂_{m,t}) / var⁺, Geyer's initial positive and monotone sequences, ESS = MN / max(τ̂, 1/log10 MN).  Ours must
  agree with it to 1e-10 on every fixed array.
* Closed forms: for a Gaussian AR(1) chain with coefficient ρ, ESS/N → (1 − ρ)/(1 + ρ) (bulk);
  the indicator chain 1{x ≤ q_p} has lag-k covariance Φ₂(q_p, q_p; ρ^k) − p² (tail).  These two
  are the only statistical decisions here (declared in ``tests/_budget.py``).

Planted bugs that must fail here (``tests/mutants/mutants_diagnostics.py``): bulk ESS twice too
large, R̂ without its folded part, tail ESS at the wrong quantiles, chains not split, an
autocorrelation lag off by one, a wrong summary quantile, divergences of the last chain dropped.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import signal, stats

from _budget import BUDGET
from inference import mcmc

import arviz as az  # noqa: E402  (in the test extra: the reference is the point of these tests)

pytestmark = pytest.mark.exact


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# ---------------------------------------------------------------------------------------------
# fixed arrays


def _ar1(seed: int, chains: int, draws: int, rho: float, *, mean=0.0, scale=1.0) -> np.ndarray:
    """Stationary Gaussian AR(1) chains x_t = ρ x_{t−1} + e_t (marginal variance 1/(1 − ρ²))."""
    e = np.random.default_rng(seed).normal(size=(chains, draws))
    e[:, 0] /= math.sqrt(1 - rho**2)
    x = signal.lfilter([1.0], [1.0, -rho], e, axis=1)
    return np.asarray(mean).reshape(-1, 1) + np.asarray(scale).reshape(-1, 1) * x


def _iid(seed: int, *shape) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


CASES = {
    "iid-4x500": lambda: _iid(1, 4, 500),
    "iid-2x64": lambda: _iid(2, 2, 64),
    "ar0.9-4x1000": lambda: _ar1(3, 4, 1000, 0.9),
    "ar0.5-3x301-odd": lambda: _ar1(4, 3, 301, 0.5),
    "short-4x8": lambda: _iid(5, 4, 8),
    "shifted-means": lambda: _ar1(6, 4, 400, 0.3, mean=[0.0, 0.0, 0.0, 0.6]),
    "different-spreads": lambda: _ar1(7, 4, 400, 0.3, scale=[1.0, 1.0, 1.0, 2.5]),
    "skewed-exp": lambda: np.exp(_ar1(8, 4, 250, 0.6)),
}


# ---------------------------------------------------------------------------------------------
# an independent reference: the Stan 2.18 manual's estimator, written as plain loops


def _split_ref(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    half = n // 2
    return np.concatenate([x[:, :half], x[:, n - half:]], axis=0)  # the middle draw of odd n dropped


def _z_ref(x: np.ndarray) -> np.ndarray:
    """Rank-normalise the pooled draws: Φ⁻¹((r − 3/8) / (S + 1/4)), average ranks for ties."""
    r = stats.rankdata(x.ravel(), method="average").reshape(x.shape)
    return stats.norm.ppf((r - 0.375) / (x.size + 0.25))


def _ess_ref(x: np.ndarray) -> float:
    """ESS of (M chains, N draws) by Geyer's initial monotone sequence (Stan 2.18 manual §16)."""
    M, N = x.shape
    means = x.mean(axis=1)
    W = np.mean([np.sum((x[m] - means[m]) ** 2) / (N - 1) for m in range(M)])
    var_plus = W * (N - 1) / N + (np.sum((means - means.mean()) ** 2) / (M - 1) if M > 1 else 0.0)
    if M == 1:
        W = var_plus  # one chain: ρ̂_t is the plain autocorrelation

    def acov(m, t):  # biased (divide by N) autocovariance of chain m at lag t
        d = x[m] - means[m]
        return float(np.dot(d[: N - t], d[t:])) / N

    rho = [1.0] + [1.0 - (W - np.mean([acov(m, t) for m in range(M)])) / var_plus for t in range(1, N)]
    pairs = [rho[2 * k] + rho[2 * k + 1] for k in range(N // 2)]
    tau_pairs = [pairs[0]]
    for p in pairs[1:]:
        if p < 0:  # initial positive sequence: stop at the first negative pair
            break
        # initial monotone sequence, from the second pair on (as NumPyro; Stan also caps the
        # second pair by the first, which differs only for antithetic chains, ρ̂₂ + ρ̂₃ > 1 + ρ̂₁)
        tau_pairs.append(min(p, tau_pairs[-1]) if len(tau_pairs) > 1 else p)
    tau = -1.0 + 2.0 * sum(tau_pairs)
    tau = max(tau, 1.0 / math.log10(M * N))  # Stan's and ArviZ's bound: ESS <= MN log10(MN)
    return M * N / tau


def _bulk_ref(x: np.ndarray) -> float:
    return _ess_ref(_z_ref(_split_ref(x)))


def _tail_ref(x: np.ndarray) -> float:
    """min over p ∈ {0.05, 0.95} of the ESS of 1{x ≤ q_p}, q_p the quantile of all the draws."""
    out = []
    for p in (0.05, 0.95):
        q = np.quantile(x, p)
        out.append(_ess_ref(_split_ref((x <= q).astype(float))))
    return min(out)


def _rhat_ref(x: np.ndarray) -> float:
    """max(bulk, folded) split-R̂ on rank-normalised draws, sqrt(var⁺ / W) each."""

    def rhat(z):
        M, N = z.shape
        W = np.mean(z.var(axis=1, ddof=1))
        B_over_N = z.mean(axis=1).var(ddof=1)
        return math.sqrt((W * (N - 1) / N + B_over_N) / W)

    s = _split_ref(x)
    folded = np.abs(s - np.median(s))
    return max(rhat(_z_ref(s)), rhat(_z_ref(folded)))


# ---------------------------------------------------------------------------------------------
# R̂


@pytest.mark.parametrize("case", sorted(CASES))
def test_r_hat_matches_arviz(case):
    x = CASES[case]()
    ours = float(mcmc.r_hat(x))
    assert ours == pytest.approx(float(_quiet(az.rhat, x, method="rank")), rel=1e-10, abs=0)
    assert ours == pytest.approx(_rhat_ref(x), rel=1e-10, abs=0)


def test_r_hat_per_component_matches_arviz():
    x = np.stack([_ar1(10 + j, 4, 300, 0.5, mean=[0, 0, 0, 0.3 * j]) for j in range(3)], axis=-1)  # (4, 300, 3)
    ours = mcmc.r_hat(x)
    assert ours.shape == (3,)
    ref = [float(_quiet(az.rhat, x[..., j], method="rank")) for j in range(3)]
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_r_hat_of_one_chain_is_the_split_r_hat():
    # ArviZ returns NaN for one chain; Stan and ours compute the split-R̂ of its two halves
    for x in (_iid(11, 1, 200), _ar1(12, 1, 301, 0.8)):
        assert float(mcmc.r_hat(x)) == pytest.approx(_rhat_ref(x), rel=1e-10)
    # a chain that drifts: its halves disagree
    drift = _iid(13, 1, 200) + np.linspace(0.0, 3.0, 200)
    assert float(mcmc.r_hat(drift)) > 1.2


def test_r_hat_flags_shifted_means():
    x = _iid(14, 4, 1000)
    assert float(mcmc.r_hat(x)) < 1.01
    x[3] += 0.5  # one chain half a standard deviation off
    assert float(mcmc.r_hat(x)) > 1.01
    x[3] += 2.5
    assert float(mcmc.r_hat(x)) > 1.3


def test_r_hat_needs_its_folded_part_on_chains_of_different_spread():
    """Same mean, different variances: the bulk (location) R̂ misses it, the folded one does not.

    Chains built from one grid of normal quantiles (deterministic): chain m is s_m × a fixed
    permutation of the grid, so every chain has mean 0 and median 0 exactly."""
    n = 1000
    grid = stats.norm.ppf((np.arange(n) + 0.5) / n)
    perm = np.random.default_rng(15).permutation(n)
    x = np.stack([s * grid[perm] for s in (1.0, 1.0, 1.0, 2.0)])
    bulk = float(_quiet(az.rhat, x, method="z_scale"))
    folded = float(_quiet(az.rhat, x, method="folded"))
    assert bulk < 1.005 and folded > 1.05  # the construction does what it says
    assert float(mcmc.r_hat(x)) == pytest.approx(folded, rel=1e-10)
    # and on the AR(1) case of the same kind
    y = CASES["different-spreads"]()
    assert float(_quiet(az.rhat, y, method="folded")) > float(_quiet(az.rhat, y, method="z_scale")) + 0.01
    assert float(mcmc.r_hat(y)) == pytest.approx(float(_quiet(az.rhat, y, method="folded")), rel=1e-10)


# ---------------------------------------------------------------------------------------------
# ESS


@pytest.mark.parametrize("case", sorted(CASES))
def test_ess_bulk_matches_the_reference_estimator(case):
    x = CASES[case]()
    assert float(mcmc.ess_bulk(x)) == pytest.approx(_bulk_ref(x), rel=1e-10)


@pytest.mark.parametrize("case", sorted(CASES))
def test_ess_tail_matches_the_reference_estimator(case):
    x = CASES[case]()
    assert float(mcmc.ess_tail(x)) == pytest.approx(_tail_ref(x), rel=1e-10)


@pytest.mark.parametrize("case", ["iid-4x500", "ar0.9-4x1000", "ar0.5-3x301-odd", "shifted-means", "different-spreads", "skewed-exp"])
def test_ess_agrees_with_arviz_on_long_chains(case):
    """ArviZ's estimator has one more autocorrelation term (and a cap irrelevant here): a few
    per cent on these chains, far from a factor 2 (or 1/2)."""
    x = CASES[case]()
    assert float(mcmc.ess_bulk(x)) == pytest.approx(float(_quiet(az.ess, x, method="bulk")), rel=0.03)
    assert float(mcmc.ess_tail(x)) == pytest.approx(float(_quiet(az.ess, x, method="tail")), rel=0.03)


def test_ess_per_component_and_nan_handling():
    x = np.stack([_ar1(20 + j, 4, 300, 0.2 * j) for j in range(3)], axis=-1)
    x[2, 17, 1] = np.nan  # one missing value: that component only is NaN
    for fn, ref in ((mcmc.ess_bulk, _bulk_ref), (mcmc.ess_tail, _tail_ref)):
        out = fn(x)
        assert out.shape == (3,) and np.isnan(out[1])
        np.testing.assert_allclose(out[[0, 2]], [ref(x[..., 0]), ref(x[..., 2])], rtol=1e-10)
    r = mcmc.r_hat(x)
    assert np.isnan(r[1]) and np.all(np.isfinite(r[[0, 2]]))
    # ArviZ agrees that a NaN draw makes every diagnostic NaN
    assert np.isnan(_quiet(az.rhat, x[..., 1], method="rank")) and np.isnan(_quiet(az.ess, x[..., 1], method="bulk"))


def test_constant_chains_give_nan():
    """No spread, nothing to estimate: NaN, as the `posterior` R package returns (ArviZ reports
    R̂ NaN too, and ESS = number of draws)."""
    x = np.full((4, 100), 2.5)
    assert np.isnan(mcmc.r_hat(x)) and np.isnan(mcmc.ess_bulk(x)) and np.isnan(mcmc.ess_tail(x))
    assert np.isnan(_quiet(az.rhat, x, method="rank"))


def test_ess_is_never_negative_and_capped_as_arviz_on_short_chains():
    """NumPyro's estimator has no bound on the autocorrelation time; on 4 chains of 6 draws (three
    stuck near 5, one near 0) its tail τ was negative and the health report said "ESS is -720".
    Now bounded as ArviZ and Stan bound it (τ >= 1/log10 N): both ESS equal ArviZ's here."""
    x = np.array([[4.82, 4.4, 5.73, 5.1, 4.55, 4.86], [4.3, 6.34, 4.46, 5.8, 4.73, 5.91],
                  [0.17, -1.03, 0.17, 0.69, -0.22, 0.39], [5.01, 4.2, 5.91, 4.51, 5.19, 4.07]])
    assert float(mcmc.ess_tail(x)) == pytest.approx(float(_quiet(az.ess, x, method="tail")), rel=1e-6)
    rng = np.random.default_rng(1)
    for _ in range(300):  # short chains in different modes: never below 0, never above N log10 N
        n = int(rng.integers(4, 40))
        y = rng.normal(size=(4, n)) * rng.uniform(0.01, 1, (4, 1)) + 5 * rng.integers(0, 3, (4, 1))
        N = 4 * (n // 2 * 2)
        for e in (float(mcmc.ess_bulk(y)), float(mcmc.ess_tail(y))):
            assert np.isnan(e) or 0 < e <= N * np.log10(N) + 1e-9


@pytest.mark.parametrize("draws", [1, 2, 3])
def test_too_few_draws_give_nan_not_an_error(draws):
    """Fewer than 4 draws leave fewer than 2 per split chain (ArviZ's limit too): NaN."""
    x = _iid(30, 4, draws)
    assert np.isnan(mcmc.r_hat(x)) and np.isnan(mcmc.ess_bulk(x)) and np.isnan(mcmc.ess_tail(x))
    s = mcmc.summary({"a": x})
    assert s["a"]["mean"] == pytest.approx(x.mean()) and np.isnan(s["a"]["ess_bulk"])


def test_four_draws_are_enough():
    x = _iid(31, 4, 4)
    assert np.isfinite(mcmc.ess_bulk(x)) and np.isfinite(mcmc.r_hat(x))
    assert float(mcmc.ess_bulk(x)) == pytest.approx(_bulk_ref(x), rel=1e-10)


@pytest.mark.statistical
def test_ess_of_ar1_chains_matches_the_closed_form():
    """Gaussian AR(1), ρ = 0.5, 4 chains × 10 000 draws.

    Bulk: ESS → N (1 − ρ)/(1 + ρ) (rank-normalising a Gaussian chain is ~ the identity).
    Tail: τ = 1 + 2 Σ_k (Φ₂(q, q; ρ^k) − p²) / (p (1 − p)) for the indicator 1{x ≤ q_p}, p = 0.05
    (the same at p = 0.95 by symmetry).  The ratios estimate/closed form have sd 0.028 (bulk) and
    0.030 (tail, mean 0.979: the minimum of two estimates), measured over 200 seeds; the bound is
    |ratio − 1| < z·sd + |bias| at the declared level's z."""
    z = stats.norm.isf(BUDGET.level("mcmc/diagnostics_ar1_ess") / 2)
    rho, M, N = 0.5, 4, 10_000
    x = _ar1(40, M, N, rho)
    bulk_true = M * N * (1 - rho) / (1 + rho)
    p = 0.05
    q = stats.norm.ppf(p)
    tau = 1.0
    for k in range(1, 60):
        r = rho**k
        cov = stats.multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, r], [r, 1.0]]).cdf([q, q]) - p * p
        tau += 2 * cov / (p * (1 - p))
    tail_true = M * N / tau
    assert abs(float(mcmc.ess_bulk(x)) / bulk_true - 1) < z * 0.028 + 0.004
    assert abs(float(mcmc.ess_tail(x)) / tail_true - 1) < z * 0.030 + 0.021


def test_ess_orders_chains_by_their_autocorrelation():
    """Deterministic consequence of the estimator: the same innovations filtered with a larger ρ
    give a smaller ESS, and an i.i.d. chain has ESS close to its length."""
    e = _iid(41, 4, 2000)
    prev = None
    for rho in (0.0, 0.3, 0.6, 0.9):
        x = signal.lfilter([1.0], [1.0, -rho], e, axis=1)
        ess = float(mcmc.ess_bulk(x))
        if prev is not None:
            assert ess < prev
        prev = ess
    assert float(mcmc.ess_bulk(e)) == pytest.approx(8000, rel=0.1)


# ---------------------------------------------------------------------------------------------
# summary


def test_summary_values():
    x = CASES["skewed-exp"]()
    v = np.stack([CASES["iid-4x500"]()[:, :250], x], axis=-1)  # (4, 250, 2)
    s = mcmc.summary({"x": x, "v": v})
    assert isinstance(s, mcmc.Summary) and set(s) == {"x", "v"}
    ref = _quiet(az.summary, {"x": x}, kind="all", round_to="none", stat_focus="mean")
    st = s["x"]
    assert float(st["mean"]) == pytest.approx(ref.loc["x", "mean"], rel=1e-12)
    assert float(st["sd"]) == pytest.approx(ref.loc["x", "sd"], rel=1e-12)
    assert float(st["r_hat"]) == pytest.approx(ref.loc["x", "r_hat"], rel=1e-10)
    assert float(st["ess_bulk"]) == pytest.approx(_bulk_ref(x), rel=1e-10)
    assert float(st["ess_tail"]) == pytest.approx(_tail_ref(x), rel=1e-10)
    eti = _quiet(az.summary, {"x": x}, kind="stats", round_to="none", stat_focus="median", hdi_prob=0.9)
    assert float(st["5%"]) == pytest.approx(eti.loc["x", "eti_5%"], rel=1e-12)
    assert float(st["50%"]) == pytest.approx(eti.loc["x", "median"], rel=1e-12)
    assert float(st["95%"]) == pytest.approx(eti.loc["x", "eti_95%"], rel=1e-12)
    # a vector site: one value per component, each that of the component alone
    assert s["v"]["mean"].shape == (2,)
    for j in range(2):
        one = mcmc.summary({"c": v[..., j]})["c"]
        for k in ("mean", "sd", "5%", "50%", "95%", "r_hat", "ess_bulk", "ess_tail"):
            assert float(s["v"][k][j]) == pytest.approx(float(one[k]), rel=1e-12), k


def test_summary_quantiles_by_hand():
    """Draws 0, 1, ..., 399 in four chains: linear-interpolation quantiles 19.95, 199.5, 379.05;
    mean 199.5, sd sqrt(400·401/12) (ddof = 1)."""
    x = np.random.default_rng(50).permutation(400).astype(float).reshape(4, 100)
    st = mcmc.summary({"a": x})["a"]
    assert (float(st["5%"]), float(st["50%"]), float(st["95%"])) == pytest.approx((19.95, 199.5, 379.05), abs=1e-9)
    assert float(st["mean"]) == pytest.approx(199.5, abs=1e-12)
    assert float(st["sd"]) == pytest.approx(math.sqrt(400 * 401 / 12), rel=1e-12)


def test_summary_table_rows():
    x = np.arange(2 * 5 * 2 * 3, dtype=float).reshape(2, 5, 2, 3)
    s = mcmc.summary({"w": x})
    rows = dict(s.rows())
    assert list(rows) == [f"w[{i},{j}]" for i in range(2) for j in range(3)]
    assert rows["w[1,2]"]["mean"] == pytest.approx(x[..., 1, 2].mean())
    text = str(s).splitlines()
    assert text[0].split() == ["mean", "sd", "5%", "50%", "95%", "r_hat", "ess_bulk", "ess_tail"]
    assert len(text) == 7 and text[6].startswith("w[1,2]")


# ---------------------------------------------------------------------------------------------
# a run's summary and divergence counts


@pytest.fixture(scope="module")
def hmc_run():
    """HMC with a step size near the leapfrog's stability limit on N(0, 1) and a low divergence
    threshold: some transitions diverge, a different number in each chain."""
    import jax

    import ppl
    from ppl import dist

    @ppl.model
    def normal():
        ppl.sample("z", dist.Normal(0.0, 1.0))

    kernel = mcmc.HMC(step_size=1.9, num_steps=3, adapt_step_size=False, adapt_mass_matrix=False,
                      find_heuristic_step_size=False, max_delta_energy=0.5)
    return mcmc.sample(jax.random.key(3), kernel, normal, num_warmup=30, num_samples=200, num_chains=4, progress=False)


def test_run_divergences_are_counted_per_chain(hmc_run):
    run = hmc_run
    assert isinstance(run, mcmc.Run)
    flags = np.asarray(run.info["diverging"])  # the raw per-step flags, (chains, draws)
    assert flags.shape == (4, 200)
    d = run.diagnostics
    np.testing.assert_array_equal(d["divergences"], flags.sum(axis=1))
    np.testing.assert_array_equal(d["warmup_divergences"], np.asarray(run.warmup_info["diverging"]).sum(axis=1))
    # the check has teeth: divergences happen, in different numbers per chain, and in the last draws
    assert len(set(d["divergences"].tolist())) > 1 and flags[-1].sum() > 0 and flags[:, -20:].sum() > 0


def test_run_summary_is_the_summary_of_its_draws(hmc_run):
    run = hmc_run
    z = np.asarray(run.samples["z"])
    s = run.summary()
    assert float(s["z"]["mean"]) == pytest.approx(z.mean(), rel=1e-12)
    assert float(s["z"]["r_hat"]) == pytest.approx(float(_quiet(az.rhat, z, method="rank")), rel=1e-10)
    assert float(s["z"]["ess_bulk"]) == pytest.approx(_bulk_ref(z), rel=1e-10)
    assert float(s["z"]["ess_tail"]) == pytest.approx(_tail_ref(z), rel=1e-10)


@pytest.mark.parametrize("shape", [(8, 500), (8, 500, 3, 2), (2, 3), (1, 1, 2)])
def test_rank_normalisation_is_scipy_stats_bit_for_bit(shape):
    """The ranks and normal scores are computed on NumPy (importing scipy.stats cost a fresh
    process 0.3-1 s at its first health check, issue 14); they must be scipy.stats' values
    exactly: average ranks of ties, a NaN column all NaN, ±inf ranked at the ends."""
    from inference.mcmc import diagnostics as D

    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    if x.size > 20:
        x.reshape(-1)[:20] = np.repeat(np.arange(5.0), 4)  # ties
    ti = rng.integers(0, 3, size=shape).astype(float)
    y = rng.normal(size=(4, 50, 3))
    y[3, 7, 1], y[0, 0, 2], y[1, 2, 2], y[2, 2, 0], y[2, 3, 0], y[1, 1, 0] = np.nan, np.inf, -np.inf, 0.0, 0.0, -0.0
    for a in (x, ti, y):
        c, n = a.shape[:2]
        flat = a.reshape((c * n,) + a.shape[2:])
        r = stats.rankdata(flat, axis=0, method="average")
        assert np.array_equal(D._rankdata0(flat), r, equal_nan=True)
        z = stats.norm.ppf((r - 0.375) / (c * n + 0.25))
        assert np.array_equal(D._rank_normalize(a).reshape(z.shape), z, equal_nan=True)


def test_diagnostics_do_not_import_scipy_stats():
    """R̂ and ESS run without importing scipy.stats (a fresh process's first run paid it)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom inference.mcmc import diagnostics as D\n"
            "x = np.random.default_rng(0).normal(size=(4, 100, 2))\n"
            "D.r_hat(x); D.ess_bulk(x); D.ess_tail(x)\n"
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]
