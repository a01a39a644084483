"""Statistical checks of the SMC drivers (fixed seeds, the suite's false-alarm budget).

Ẑ/Z (never log Ẑ) has mean 1 against closed-form evidences (Kalman filter, conjugate model);
filtering means match the Kalman filter; each resampler's jax.random sampler draws from the
distribution its exact ``log_prob`` states.  Every decision's level is declared in
``tests/_budget.py`` (section "smc").  Each case has its own planted-bug twin, a subtle bug in
*that* case's block planted in the shipped source (``_smc_plant.plant``), run through the same
check with the same seed, which must fail.

On the level of the mean-one tests of Ẑ/Z.  ``z_test`` with an estimated sd is a one-sample
t-test: exact for normal samples, a large-sample approximation for Ẑ/Z, which is right-skewed.
Here every likelihood is bounded (Gaussian observation densities), so Ẑ/Z is bounded and has
all its moments; by the Edgeworth expansion the t statistic's tail at a threshold t differs
from Student's by a factor of about 1 + γ(2t² + 1)/(6√n) (γ the skewness).  The cases are sized
so that the skewness is small: observed on the shipped code, 0.6 (small linear Gaussian model,
N = 128, n = 1000), 1.6 (Nile, N = 256, n = 400), 0.1 (fixed-schedule tempering, n = 400),
|γ| < 0.3 (adaptive tempering, n = 60); the factor is then below 2, and each test is run at a
quarter of its declared level (:func:`ratio_mean_one`), so the declared level bounds the real
one.  (With N = 64 and outlying data, as this file once had, the skewness was 8.5: no t-test
level would have meant anything.)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from inference import smc
from inference.smc import blocks
from ppl import dist
from semantics import oracles
from semantics.stats import chi2_test, z_test

from _budget import BUDGET
from _data import load_json
from _smc_plant import plant

pytestmark = [pytest.mark.statistical, pytest.mark.slow]

NILE = load_json("nile.json")

#: the t-test on Ẑ/Z runs at this fraction of its declared level (skewness margin, see above)
SKEW_MARGIN = 4.0


def ratio_mean_one(r, alpha):
    """Ẑ/Z samples pass a t-test of mean 1 at level alpha / SKEW_MARGIN (and are finite: an
    overflowing sd must not pass)."""
    r = np.asarray(r)
    with np.errstate(over="ignore"):
        finite = bool(np.all(np.isfinite(r))) and bool(np.isfinite(np.var(r)))
    return finite and z_test(r, 1.0, alpha / SKEW_MARGIN).ok



R_FILE, B_FILE, P_FILE = "inference/smc/resampling.py", "inference/smc/blocks.py", "inference/smc/particles.py"


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


def _simulate_small(T=10, seed=3):
    """Data drawn from the model itself (numpy), so Ẑ/Z is well behaved: with outlying data
    (an earlier version scaled white noise by 1.5) Ẑ/Z at N = 64 had skewness 8.5, too heavy a
    tail for the t-test's level to mean anything."""
    rng = np.random.default_rng(seed)
    x, ys = rng.normal(SMALL["m0"], math.sqrt(SMALL["P0"])), []
    for _ in range(T):
        x = SMALL["A"] * x + rng.normal(0.0, math.sqrt(SMALL["Q"]))
        ys.append(x + rng.normal(0.0, math.sqrt(SMALL["R"])))
    return jnp.asarray(np.array(ys))


SMALL_Y = _simulate_small()
N_SMALL = 128  # Ẑ/Z's skewness ≈ 0.6 on the shipped code (1000 runs)


def _small_ratio(scheme="systematic", ess_threshold=None, reps=1000):
    x0, step = lgssm(**SMALL)
    kf = oracles.kalman_filter(np.asarray(SMALL_Y), H=1.0, **SMALL)
    return np.exp(_ratios(x0, step, SMALL_Y, N_SMALL, reps, 0, scheme, ess_threshold) - kf.log_evidence)


#: each case's own twin: a subtle bug in the block that case exercises
LGSSM_CASES = {
    # the copy step of resampling takes the next particle's state (ancestor index off by one)
    "systematic": (None, B_FILE, ("return Particles(index_particles(particles.states, a), resampled_log_weights(lw, a), a)",
                                  "return Particles(index_particles(particles.states, (a + 1) % N), resampled_log_weights(lw, a), a)")),
    # multinomial ancestors drawn with flattened logits 0.7 log W (a softmax temperature bug)
    "multinomial": (None, R_FILE, ("return jax.random.categorical(key, jnp.log(self.weights), shape=(self.num_particles,)).astype(jnp.int32)",
                                   "return jax.random.categorical(key, 0.7 * jnp.log(self.weights), shape=(self.num_particles,)).astype(jnp.int32)")),
    # ESS-triggered: the compiled branch that does not resample renormalises the weights
    "stratified": (0.5, B_FILE, ("lambda k: Particles(particles.states, lw, identity),",
                                 "lambda k: Particles(particles.states, lw - log_mean_exp(lw), identity),")),
    # residual resampling's random tail drawn from W instead of the residual weights
    "residual": (None, R_FILE, ("r = jnp.where(R > 0, resid / jnp.maximum(R, 1.0), 1.0 / N)", "r = jnp.where(R > 0, self.weights, 1.0 / N)")),
}


#: Cases whose law the default run checks elsewhere, so ``make test`` deselects them (marker
#: ``extended``; ``make test-all`` runs them): E[Ẑ/Z] = 1 with multinomial, residual and
#: systematic resampling is checked exactly in test_smc_exact.py, and their jax.random samplers
#: against that exact law in test_resampler_sample_matches_its_log_prob; with systematic
#: resampling (the default) also statistically on the Nile data below; the systematic twin's bug
#: (the copy step takes the next particle) fails test_smc_exact's test_particle_filter_three_steps
#: (docs/design/testing.md, "Deselected from make test").  Stratified stays: the case
#: (ESS-triggered, the compiled branch that does not resample) is the only check of its bug.
EXTENDED = ("multinomial", "residual", "systematic")
LGSSM_PARAMS = [pytest.param(s, marks=pytest.mark.extended) if s in EXTENDED else s for s in sorted(LGSSM_CASES)]


@pytest.mark.parametrize("scheme", LGSSM_PARAMS)
def test_evidence_ratio_has_mean_one_on_a_linear_gaussian_model(scheme):
    alpha = BUDGET.level("smc/lgssm_evidence")
    assert ratio_mean_one(_small_ratio(scheme, LGSSM_CASES[scheme][0]), alpha)


@pytest.mark.parametrize("scheme", LGSSM_PARAMS)
def test_planted_bug_evidence_ratio_on_a_linear_gaussian_model(monkeypatch, scheme):
    alpha = BUDGET.level("smc/lgssm_evidence")
    thr, file, edit = LGSSM_CASES[scheme]
    plant(monkeypatch, file, edit)
    assert not ratio_mean_one(_small_ratio(scheme, thr), alpha)


# ---------------------------------------------------------------------------------------------
# the Nile local-level model


def _nile():
    p = NILE["params"]
    # x_1 ~ N(a1, P1) is x_0 ~ N(a1, P1 - sigma2_eta) moved one step
    spec = dict(A=1.0, Q=p["sigma2_eta"], R=p["sigma2_eps"], m0=p["a1"], P0=p["P1"] - p["sigma2_eta"])
    return spec, jnp.asarray(NILE["y"])


def _nile_ratios():
    spec, ys = _nile()
    kf = oracles.kalman_filter(np.asarray(ys), H=1.0, **spec)
    x0, step = lgssm(**spec)
    return np.exp(_ratios(x0, step, ys, 256, 400, 1) - kf.log_evidence)


def test_nile_evidence_ratio_has_mean_one():
    alpha = BUDGET.level("smc/nile_evidence")
    r = _nile_ratios()
    assert ratio_mean_one(r, alpha), z_test(r, 1.0, alpha / SKEW_MARGIN).message


def test_planted_bug_nile_evidence_log_mean_exp_over_N_minus_1(monkeypatch):
    # log Ẑ's average over N − 1 particles: each of the 99 resamplings inflates Ẑ by N/(N − 1)
    alpha = BUDGET.level("smc/nile_evidence")
    plant(monkeypatch, P_FILE, ("return jax.scipy.special.logsumexp(lw, axis=axis) - math.log(N)",
                                "return jax.scipy.special.logsumexp(lw, axis=axis) - math.log(N - 1)"))
    assert not ratio_mean_one(_nile_ratios(), alpha)


def _filter_errors(reps=30, N=2000):
    """(reps, T) standardised errors (m̂_t − m_t) / sd_t of the filtering means against Kalman."""
    spec, ys = _nile()
    kf = oracles.kalman_filter(np.asarray(ys), H=1.0, **spec)
    x0, step = lgssm(**spec)
    run = jax.jit(jax.vmap(lambda k: smc.particle_filter(k, step, x0, ys, N).filter_means))
    means = np.asarray(run(jax.random.split(jax.random.key(2), reps)))  # (reps, T)
    return (means - kf.means[:, 0]) / np.sqrt(kf.variances[:, 0])


def _filter_means_ok(err, alpha):
    """A t-test at every time step, each at the declared per-step level (100 decisions).  The
    filtering mean of N = 2000 particles is a smooth average, close to normal across runs."""
    return all(z_test(err[:, t], 0.0, alpha).ok for t in range(err.shape[1]))


def test_nile_filtering_means_match_the_kalman_filter():
    alpha = BUDGET.level("smc/nile_filter_means")
    assert _filter_means_ok(_filter_errors(), alpha)


def test_planted_bug_filtering_means_without_the_weights(monkeypatch):
    # the filtering mean averages the particles without their weights (the predictive mean)
    alpha = BUDGET.level("smc/nile_filter_means")
    plant(monkeypatch, "inference/smc/filter.py", ("W = particles.weights\n", "W = jnp.full_like(particles.weights, 1.0 / particles.num_particles)\n"))
    assert not _filter_means_ok(_filter_errors(), alpha)


# ---------------------------------------------------------------------------------------------
# tempered SMC on a conjugate model

Y_CONJ = np.array([1.3, 0.7, 2.1, 1.6, 0.9])


@ppl.model
def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


POST = oracles.normal_normal(0.0, 2.0, 1.0, Y_CONJ)
T_FILE = "inference/smc/tempering.py"


def _tempered_runs(reps, betas=None, kernel="rwm", N=128):
    """Per run: Ẑ/Z, the weighted posterior mean and variance of mu, the ESS history, the schedule."""
    y = jnp.asarray(Y_CONJ)

    def one(k):
        r = smc.tempered_smc(k, normal_mean, y, num_particles=N, betas=betas, kernel=kernel, num_mcmc_steps=2)
        mu, W = r.samples["mu"], r.particles.weights
        m = W @ mu
        return r.log_evidence, m, W @ (mu - m) ** 2, r.ess, r.betas, r.num_steps

    le, m, v, ess, betas_, n = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(4), reps))
    return dict(ratio=np.exp(np.asarray(le) - POST.log_evidence), mean=np.asarray(m), var=np.asarray(v),
                ess=np.asarray(ess) / N, betas=np.asarray(betas_), steps=np.asarray(n))


FIXED = [0.05, 0.2, 0.5, 1.0]


def _fixed_ok(out, alpha):
    """Fixed schedule, so the final population is properly weighted for p(mu, y) exactly:
    E[Ẑ/Z] = 1 and E[(Ẑ/Z) Σ W_i mu_i] = E[mu | y] (unnormalised, hence unbiased, t-tests)."""
    r = out["ratio"]
    return ratio_mean_one(r, alpha) and z_test(r * out["mean"], POST.mean, alpha / SKEW_MARGIN).ok


def test_tempered_smc_fixed_schedule_is_unbiased_for_evidence_and_posterior_mean():
    assert _fixed_ok(_tempered_runs(400, betas=FIXED), BUDGET.level("smc/tempered_fixed"))


def test_planted_bug_tempered_smc_fixed_schedule_off_by_one(monkeypatch):
    # the schedule's previous temperatures shifted by one: the first step's increment is lost
    plant(monkeypatch, T_FILE, ("prev = jnp.concatenate([jnp.zeros((1,), dtype), sched[:-1]])",
                                "prev = jnp.concatenate([sched[:1], sched[:-1]])"))
    assert not _fixed_ok(_tempered_runs(400, betas=FIXED), BUDGET.level("smc/tempered_fixed"))


def _adaptive_problems(out, alpha) -> list[str]:
    """Adaptive HMC tempering: the schedule meets its conditional ESS at every step (a
    deterministic check: populations are resampled every step, so cESS = ESS/N) and ends at
    β = 1 exactly; Ẑ/Z has mean 1, and the posterior mean and variance of mu are right (t-tests
    over the runs; the self-normalised estimates' O(1/N) bias is under 0.6 of their standard
    error at 60 runs of N = 128)."""
    problems = []
    for i in range(len(out["steps"])):
        n = int(out["steps"][i])
        if not (np.all(np.abs(out["ess"][i, : n - 1] - 0.5) < 1e-5) and out["ess"][i, n - 1] >= 0.5 - 1e-5):
            problems.append(f"run {i}: ESS/N along the schedule {out['ess'][i, :n]} misses the target 0.5")
        if out["betas"][i, n - 1] != 1.0:
            problems.append(f"run {i}: the schedule ends at β = {out['betas'][i, n - 1]!r}")
    if not ratio_mean_one(out["ratio"], alpha):
        problems.append("E[Ẑ/Z] ≠ 1: " + z_test(out["ratio"], 1.0, alpha / SKEW_MARGIN).message)
    for what, x, want in (("mean", out["mean"], POST.mean), ("variance", out["var"] / POST.var, 1.0)):
        t = z_test(x, want, alpha)
        if not t.ok:
            problems.append(f"posterior {what}: {t.message}")
    return problems


def test_tempered_smc_adaptive_hmc_schedule_evidence_and_posterior():
    assert _adaptive_problems(_tempered_runs(60, kernel="hmc"), BUDGET.level("smc/tempered_adaptive")) == []


def test_planted_bug_tempered_smc_rejuvenating_at_the_previous_temperature(monkeypatch):
    # the move after reweighting to β' leaves γ_β (the previous step's target) invariant
    plant(monkeypatch, T_FILE, ("bound = kern.bind(target.tempered, (new_beta,) + target.args, target.kwargs)",
                                "bound = kern.bind(target.tempered, (beta,) + target.args, target.kwargs)"))
    problems = _adaptive_problems(_tempered_runs(60, kernel="hmc"), BUDGET.level("smc/tempered_adaptive"))
    assert any("posterior" in p for p in problems), problems


# ---------------------------------------------------------------------------------------------
# tempered SMC on a model with summed-out discrete sites (issue 14: the marginal model)

Y_MIX = np.array([0.1, 2.5, 3.0, -1.0])


@ppl.model
def spike_mixture(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(0.3))
        ppl.sample("y", dist.Normal(mu * z, 1.0), obs=y)


def _spike_mixture_exact():
    """log p(y), E[mu | y], E[Σ_j z_j | y] in closed form: given z, y ~ N(0, I + 4 z zᵀ) and
    E[mu | y, z] = 4 zᵀy / (1 + 4 zᵀz); summed over the 16 values of z."""
    n = len(Y_MIX)
    lw, mu, ones = [], [], []
    for bits in range(2**n):
        z = np.array([(bits >> j) & 1 for j in range(n)], float)
        cov = np.eye(n) + 4.0 * np.outer(z, z)
        _, logdet = np.linalg.slogdet(cov)
        quad = Y_MIX @ np.linalg.solve(cov, Y_MIX)
        lw.append(np.sum(z * np.log(0.3) + (1 - z) * np.log(0.7)) - 0.5 * (n * np.log(2 * np.pi) + logdet + quad))
        mu.append(4.0 * z @ Y_MIX / (1.0 + 4.0 * z @ z))
        ones.append(z.sum())
    lw = np.array(lw)
    log_z = np.logaddexp.reduce(lw)
    w = np.exp(lw - log_z)
    return log_z, w @ np.array(mu), w @ np.array(ones)


MIX_LOG_Z, MIX_MEAN, MIX_ONES = _spike_mixture_exact()
FIXED_MIX = [0.05, 0.2, 0.5, 1.0]


def _marginal_runs(reps=400, N=128):
    """Per run: Ẑ/Z, Σ W mu and Σ W Σ_j z_j, z drawn by ppl.infer_discrete given each particle."""
    y = jnp.asarray(Y_MIX)

    def one(k):
        k_smc, k_z = jax.random.split(k)
        r = smc.tempered_smc(k_smc, spike_mixture, y, num_particles=N, betas=jnp.asarray(FIXED_MIX), num_mcmc_steps=2)
        z = jax.vmap(lambda kk, mu: ppl.infer_discrete(spike_mixture, {"mu": mu}, y, key=kk)["z"])(
            jax.random.split(k_z, N), r.samples["mu"])
        W = r.particles.weights
        return r.log_evidence, W @ r.samples["mu"], W @ jnp.sum(z, -1)

    le, m, ones = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), reps))
    return dict(ratio=np.exp(np.asarray(le) - MIX_LOG_Z), mean=np.asarray(m), ones=np.asarray(ones))


def _marginal_problems(out, alpha) -> list[str]:
    """Fixed schedule on the marginal path: E[Ẑ/Z] = 1, and the unnormalised (unbiased)
    E[(Ẑ/Z) Σ W mu] = E[mu | y], E[(Ẑ/Z) Σ W Σ_j z_j] = E[Σ_j z_j | y]."""
    r = out["ratio"]
    problems = [] if ratio_mean_one(r, alpha) else ["E[Ẑ/Z] ≠ 1: " + z_test(r, 1.0, alpha / SKEW_MARGIN).message]
    for what, x, want in (("mean of mu", r * out["mean"], MIX_MEAN), ("mean of Σ z", r * out["ones"], MIX_ONES)):
        t = z_test(x, want, alpha / SKEW_MARGIN)
        if not t.ok:
            problems.append(f"posterior {what}: {t.message}")
    return problems


def test_tempered_smc_on_summed_out_sites_is_unbiased_for_evidence_and_posterior():
    assert _marginal_problems(_marginal_runs(), BUDGET.level("smc/tempered_marginal")) == []


def test_planted_bug_tempered_smc_rejuvenating_on_tempered_models_path(monkeypatch):
    # the kernel bound to tempered_model at β' (log Σ_z p(x, z) p(y | x, z)^β'), not to the path
    # the weights follow ((1 − β') log Σ_z p(x, z) + β' log Σ_z p(x, z, y)): E[Ẑ/Z] ≈ 0.84
    plant(monkeypatch, T_FILE, ("step_kernel = target.bind(kern, new_beta)",
                                "step_kernel = kern.bind(target.tempered, (new_beta,) + target.args, target.kwargs).kernel"))
    problems = _marginal_problems(_marginal_runs(), BUDGET.level("smc/tempered_marginal"))
    assert any("Ẑ/Z" in p for p in problems), problems


# ---------------------------------------------------------------------------------------------
# each resampler's sampler draws from its stated distribution


def _frequencies(cls, n=20000, min_expected=50.0):
    """Counts of n ancestor vectors drawn by the scheme's ``jax.random`` sampler, against the
    probabilities its exact ``log_prob`` gives on its enumerated support.  Outcomes expected
    fewer than `min_expected` times are pooled into one cell (so Pearson's χ² approximation holds
    out to the budgeted level); a draw outside the support gets a cell of probability zero,
    which rejects outright."""
    lw = jnp.log(jnp.array([0.45, 0.3, 0.15, 0.1]))
    law = cls(lw)
    S = np.asarray(law.enumerate_support())
    probs = np.exp(np.asarray(law.log_prob(jnp.asarray(S))))
    draws = np.asarray(cls(lw).sample(jax.random.key(6), (n,)))
    index = {tuple(s): i for i, s in enumerate(S)}
    counts = np.zeros(len(S) + 1)
    for d in draws:
        counts[index.get(tuple(d), len(S))] += 1
    rare = n * probs < min_expected
    counts = np.concatenate([counts[:-1][~rare], [counts[:-1][rare].sum()], counts[-1:]])
    probs = np.concatenate([probs[~rare], [probs[rare].sum()], [0.0]])
    return counts, probs


#: one subtle bug per scheme in its jax.random sampler (the exact law left as shipped)
SAMPLER_TWINS = {
    "multinomial": ("return jax.random.categorical(key, jnp.log(self.weights), shape=(self.num_particles,)).astype(jnp.int32)",
                    "return jax.random.categorical(key, 0.8 * jnp.log(self.weights), shape=(self.num_particles,)).astype(jnp.int32)"),
    "systematic": ("u = (jnp.arange(N) + jax.random.uniform(key, ())) / N",
                   "u = (jnp.arange(N) + jax.random.uniform(key, ()) * N / (N + 1)) / N"),
    "stratified": ("u = (jnp.arange(N) + jax.random.uniform(key, (N,))) / N",
                   "u = jnp.arange(N) / N + jax.random.uniform(key, (N,)) / (N + 1)"),
    # off by one: the first random slot takes a deterministic copy
    "residual": ("return jnp.where(i < n_det, det, tail[jnp.clip(i - n_det, 0, N - 1)])",
                 "return jnp.where(i <= n_det, det, tail[jnp.clip(i - n_det, 0, N - 1)])"),
}


@pytest.mark.parametrize("name", sorted(SAMPLER_TWINS))
def test_resampler_sample_matches_its_log_prob(name):
    counts, probs = _frequencies(smc.resampling.SCHEMES[name])
    chi2_test(counts, probs, BUDGET.level("smc/resampler_freq")).assert_()


@pytest.mark.parametrize("name", sorted(SAMPLER_TWINS))
def test_planted_bug_resampler_sampler(monkeypatch, name):
    plant(monkeypatch, R_FILE, SAMPLER_TWINS[name])
    counts, probs = _frequencies(smc.resampling.SCHEMES[name])
    assert not chi2_test(counts, probs, BUDGET.level("smc/resampler_freq")).ok


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
    # E[e] = 0 (sd 1) and E[e²] = 1 (sd √2): two z-tests with known sd (declared as 2 decisions)
    return z_test(e, 0.0, alpha, sd=1.0).ok and z_test(e**2, 1.0, alpha, sd=math.sqrt(2.0)).ok


def test_shared_key_draws_are_independent_across_particles():
    alpha = BUDGET.level("smc/shared_key_draws")
    assert _standard_normal_ok(_shared_key_errors(), alpha)


def test_planted_bug_shared_key_draws_without_the_anchor_fail():
    # without a batched anchor, a site whose law does not depend on the particle is drawn once
    # and shared by every particle
    alpha = BUDGET.level("smc/shared_key_draws")
    assert not _standard_normal_ok(_shared_key_errors(anchor=False), alpha)
