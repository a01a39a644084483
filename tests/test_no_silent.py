"""Issue 18: the silent wrong answers, each a test that failed on the code before the fix.

Every inference result carries its health (:mod:`inference._health`): a failed result raises
``ppl.InferenceFailure`` (with ``err.result`` / ``err.health``), a degraded one warns with
``ppl.InferenceWarning``; healthy runs do neither (checked here too, so the checks cannot be
always-on alarms).  The checks are deterministic (fixed keys, exact thresholds): no statistical
decision, nothing declared in the false-alarm budget.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import ppl
from inference import causal, mcmc, smc, vi
from inference.causal.examples import smoking
from ppl import dist

KEY = jax.random.key(0)


@pytest.fixture
def no_inference_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ppl.InferenceWarning)
        yield


@ppl.model
def sharp(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 0.01), obs=y)


@ppl.model
def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


# ---------------------------------------------------------------------------------------------
# 1. tempered SMC: forced β = 1, likelihood zero everywhere


def test_tempered_smc_that_runs_out_of_steps_and_collapses_raises():
    """max_steps ran out: β = 1 was forced in one step, ESS 1, every draw the same point."""
    with pytest.raises(ppl.InferenceFailure, match=r"max_steps=3 ran out.*β = 1 was forced.*ESS fell to 1") as info:
        smc.tempered_smc(KEY, sharp, jnp.full((50,), 3.0), num_particles=64, max_steps=3, num_mcmc_steps=1)
    res, health = info.value.result, info.value.health
    assert health.status == "failed" and not health.details["reached_beta_1"] and health.details["forced_beta_1"]
    assert health.details["min_ess"] < 1.5
    assert res.samples["mu"].shape == (64,)  # what used to be returned as a posterior, silently


def test_tempered_smc_forced_but_not_collapsed_is_degraded_and_warns():
    """The policy on a result whose schedule was forced but kept several particles (built from
    its fields: a second compiled tempering run would cost more CI time than it proves)."""
    from inference._health import enforce
    from inference.smc import TemperedResult

    N = 64
    res = TemperedResult(smc.Particles.from_states(jnp.zeros((N, 1))), {"mu": jnp.zeros(N)}, jnp.asarray(-3.0),
                         jnp.array([0.2, 1.0, 1.0]), jnp.asarray(2), jnp.array([32.0, 12.0, 0.0]),
                         jnp.array([0.5, 0.4, 0.0]), jnp.asarray(True))
    h = res.health
    assert h.status == "degraded" and h.details["forced_beta_1"] and not h.details["reached_beta_1"]
    assert h.details["min_ess"] == 12.0 and "max_steps=2 ran out at β = 0.2" in h.degraded[0]
    with pytest.warns(ppl.InferenceWarning, match="forced"):
        assert enforce(h, res) is res
    ok = eqx_replace(res, forced=jnp.asarray(False))
    assert ok.health.status == "ok" and ok.health.details["reached_beta_1"]
    low = eqx_replace(ok, ess=jnp.array([32.0, 1.2, 0.0]))  # below max(2, 1% of N): degraded, named
    assert low.health.status == "degraded" and "ESS fell to 1.2 of 64" in low.health.degraded[0]
    dead = eqx_replace(ok, log_evidence=jnp.asarray(-jnp.inf))
    assert dead.health.status == "failed"


def eqx_replace(module, **changes):
    import dataclasses

    return dataclasses.replace(module, **changes)


def test_tempered_smc_with_zero_likelihood_everywhere_raises():
    @ppl.model
    def impossible():
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.factor("never", jnp.where(mu > 100.0, 0.0, -jnp.inf))

    with pytest.raises(ppl.InferenceFailure, match=r"log Ẑ = -inf.*every particle has weight zero") as info:
        smc.tempered_smc(KEY, impossible, num_particles=32, max_steps=4, num_mcmc_steps=1)
    assert info.value.health.status == "failed"


def test_healthy_tempered_smc_is_ok_and_silent(no_inference_warning):
    res = smc.tempered_smc(KEY, normal_mean, jnp.array([0.3, -0.2]), num_particles=32, num_mcmc_steps=1)
    assert res.health.status == "ok" and res.health.details["reached_beta_1"]
    assert str(res.health) == "smc.tempered_smc: ok"


# ---------------------------------------------------------------------------------------------
# 2. particle filter with every weight zero


def _bern_step(x, y):
    x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
    ppl.sample("y", dist.Bernoulli(probs=jax.nn.sigmoid(x)), obs=y)
    return x, None


def test_particle_filter_with_every_weight_zero_raises_naming_the_step():
    with pytest.raises(ppl.InferenceFailure, match=r"log Ẑ = -inf from step 1 on") as info:
        smc.particle_filter(KEY, _bern_step, 0.0, jnp.array([0.0, 1.5, 1.0]), 100, record="all")
    assert not np.isfinite(float(info.value.result.log_evidence))


def test_healthy_particle_filter_is_ok_and_silent(no_inference_warning):
    res = smc.particle_filter(KEY, _bern_step, 0.0, jnp.array([0.0, 1.0, 1.0]), 100)
    assert res.health.status == "ok" and res.health.details["min_ess"] > 2


# ---------------------------------------------------------------------------------------------
# 3. observations that would broadcast the likelihood beyond the plate


@ppl.model
def eight(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("data", 8):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("shape", [(8, 1), (2, 8)])
def test_observation_broadcasting_beyond_the_plate_is_refused(shape):
    """(8, 1) made an 8×8 likelihood (−272.04 instead of −43.44); (2, 8) counted it twice."""
    with pytest.raises(ppl.ModelError) as info:
        eight.log_density({"mu": 0.0}, jnp.zeros(shape))
    msg = str(info.value)
    assert "site 'y'" in msg and "'data' (size" in msg and str(shape) in msg and "(8,)" in msg


def test_observation_of_the_plate_shape_still_scores_exactly():
    y = jnp.linspace(-1.0, 1.0, 8)
    ref = stats.norm.logpdf(0.3) + stats.norm.logpdf(np.asarray(y), 0.3, 1.0).sum()
    assert float(normal_mean.log_density({"mu": 0.3}, y)) == pytest.approx(ref, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# 4. zero-probability data: −inf, not NumPyro's clamp


@pytest.mark.parametrize("d,y", [
    (dist.Bernoulli(probs=0.0), 1.0),
    (dist.Bernoulli(probs=1.0), 0.0),
    (dist.Binomial(total_count=3, probs=0.0), 2),
    (dist.Binomial(total_count=3, probs=1.0), 2),
    (dist.Categorical(probs=jnp.array([0.5, 0.0, 0.5])), 1),
])
def test_data_of_probability_zero_have_log_density_minus_inf(d, y):
    @ppl.model
    def m():
        ppl.sample("y", d, obs=y)

    assert float(m.log_density({})) == -np.inf
    assert float(jax.jit(lambda: m.log_density({}))()) == -np.inf  # traced the same way


def test_possible_data_keep_their_exact_log_density():
    @ppl.model
    def m(p):
        with ppl.plate("n", 3):
            ppl.sample("y", dist.Bernoulli(probs=p), obs=jnp.array([1.0, 0.0, 1.0]))
        ppl.sample("c", dist.Categorical(probs=jnp.array([0.2, 0.0, 0.8])), obs=2)

    assert float(m.log_density({}, 0.3)) == pytest.approx(2 * np.log(0.3) + np.log(0.7) + np.log(0.8), rel=1e-12)
    g = jax.grad(lambda p: m.log_density({}, p))(0.3)  # the gradient is untouched
    assert float(g) == pytest.approx(2 / 0.3 - 1 / 0.7, rel=1e-9)


def test_nuts_on_impossible_data_does_not_return_the_prior():
    @ppl.model
    def m():
        p = ppl.sample("p", dist.Beta(2.0, 2.0))
        ppl.sample("y", dist.Bernoulli(probs=0.0 * p), obs=1.0)

    with pytest.raises(mcmc.MCMCInitError, match="'y'"):
        mcmc.sample(KEY, mcmc.NUTS(), m, num_warmup=10, num_samples=10, progress=False)


# ---------------------------------------------------------------------------------------------
# 5. MCMC: an improper posterior; divergences; R̂ and ESS


def test_improper_posterior_is_detected_and_named():
    @ppl.model
    def flat():
        ppl.sample("x", dist.ImproperUniform(dist.constraints.real, (), ()))

    with pytest.raises(ppl.InferenceFailure, match=r"draws of 'x' ran off.*improper") as info:
        mcmc.sample(KEY, mcmc.NUTS(), flat, num_warmup=100, num_samples=20, progress=False)
    run = info.value.result
    assert run.health.status == "failed" and run.samples["x"].shape == (1, 20)


def test_divergences_warn_with_count_and_share_per_chain_and_summary_shows_them():
    kernel = mcmc.HMC(num_steps=5, step_size=50.0, adapt_step_size=False, find_heuristic_step_size=False)
    with pytest.warns(ppl.InferenceWarning, match=r"divergent transitions after warmup \(chain 0: \d+ \(\d+%\), chain 1"):
        run = mcmc.sample(KEY, kernel, normal_mean, jnp.array([0.1, 0.4]), num_warmup=0, num_samples=40,
                          num_chains=2, progress=False)
    div = run.health.details["divergences"]
    assert div.shape == (2,) and div.sum() > 0
    np.testing.assert_array_equal(div, run.diagnostics["divergences"])
    assert "health: mcmc.sample: degraded:" in str(run.summary())


class _FakeRun:
    """The fields run_health reads, for draws with a known answer (no sampler involved)."""

    def __init__(self, samples, info=None):
        self.samples, self.info, self.active, self.interrupted = samples, info or {}, {}, False
        self.num_chains, self.num_samples = next(iter(samples.values())).shape[:2]


def test_rhat_and_ess_beyond_their_thresholds_are_reported():
    from inference.mcmc.health import ESS_MIN, RHAT_MAX, run_health

    rng = np.random.default_rng(0)
    apart = rng.normal(size=(2, 400)) + np.array([[0.0], [3.0]])  # two chains that disagree
    h = run_health(_FakeRun({"a": apart}))
    assert any(f"R̂ of 'a'" in p and f"> {RHAT_MAX}" in p for p in h.degraded)
    sticky = np.repeat(rng.normal(size=(2, 20)), 20, axis=1)  # 800 draws, ~40 independent
    h = run_health(_FakeRun({"b": sticky}))
    assert any(f"ESS of 'b'" in p and f"< {ESS_MIN:g}" in p for p in h.degraded)
    good = rng.normal(size=(4, 500))
    assert run_health(_FakeRun({"c": good})).status == "ok"


def test_healthy_mcmc_run_is_ok_and_silent(no_inference_warning):
    run = mcmc.sample(KEY, mcmc.NUTS(), normal_mean, jnp.array([0.1, 0.4]), num_warmup=200, num_samples=400,
                      num_chains=2, progress=False)
    assert run.health.status == "ok"
    assert str(run.summary()).endswith("health: mcmc.sample: ok")


# ---------------------------------------------------------------------------------------------
# 6–8. positivity, a misspelt strategy address, fractional counts


def test_estimate_without_treated_units_names_the_empty_stratum():
    est = causal.identify(causal.diagram(smoking), effect_of="smoke", on="cancer", observed=["smoke", "tar", "cancer"])
    untreated = {"smoke": jnp.array([0, 0, 0, 0]), "tar": jnp.array([0, 1, 1, 0]), "cancer": jnp.array([0, 1, 1, 0])}
    with pytest.raises(ppl.ModelError, match=r"positivity fails for do\(smoke=1\).*smoke=1"):
        causal.estimate(est, untreated, do={"smoke": 1})
    with pytest.raises(ppl.ModelError, match=r"do\(smoke=1\)"):  # every level asked for: the empty one named
        causal.estimate(est, untreated)
    # the estimable level is still estimated
    assert np.asarray(causal.estimate(est, untreated, do={"smoke": 0})).sum() == pytest.approx(1.0)


def test_vi_fit_refuses_a_strategy_for_an_unknown_address():
    @ppl.model
    def guide(y):
        ppl.sample("mu", dist.Normal(ppl.param("loc", 0.0), 0.7))

    with pytest.raises(vi.VIError, match=r"strategies= names 'muu'.*did you mean 'mu'"):
        vi.fit(KEY, vi.elbo(normal_mean, guide), optax.adam(0.05), num_steps=5, data=jnp.array([1.0]),
               progress=False, strategies={"muu": "reinforce"})


def test_fractional_counts_are_refused_not_truncated():
    with pytest.raises(ppl.ArgumentError, match=r"mcmc.sample: num_chains must be >= 1, got 2.5"):
        mcmc.sample(KEY, mcmc.RWM(), normal_mean, jnp.zeros(2), num_chains=2.5)

    @ppl.model
    def m():
        with ppl.plate("p", 2.5):
            ppl.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ppl.ArgumentError, match=r"plate 'p': size must be >= 0, got 2.5"):
        m.simulate(KEY)


# ---------------------------------------------------------------------------------------------
# 9. a Normal guide for a positive site: the NaN objective names the site, not the learning rate


def test_vi_nan_objective_names_the_guide_site_with_the_wrong_support():
    @ppl.model
    def model(y):
        s = ppl.sample("sigma", dist.HalfNormal(1.0))
        with ppl.plate("data", y.shape[0]):
            ppl.sample("y", dist.Normal(0.0, s), obs=y)

    @ppl.model
    def guide(y):
        ppl.sample("sigma", dist.Normal(ppl.param("loc", 0.0), 1.0))

    with pytest.warns(ppl.InferenceWarning, match=r"not finite.*guide's site 'sigma' has support Real\(\) but the model's has Positive"):
        vi.fit(KEY, vi.elbo(model, guide), optax.adam(0.05), num_steps=20, data=jnp.array([0.3, -1.0]), progress=False)


# ---------------------------------------------------------------------------------------------
# 10. (f18) the same policy in resample-move SMC, particle MCMC and VI (fit, Laplace, Pathfinder)


@ppl.model
def capped(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    ppl.factor("cap", jnp.where(jnp.sum(y) > 10.0, -jnp.inf, 0.0))  # data summing above 10: impossible


def test_resample_move_with_zero_likelihood_everywhere_raises_naming_the_stage():
    with pytest.raises(ppl.InferenceFailure, match=r"smc.resample_move: failed: log Ẑ = -inf from stage 1 on") as info:
        smc.resample_move(KEY, capped, [jnp.array([1.0, 0.0]), jnp.array([15.0])], 50)
    assert info.value.health.status == "failed" and not np.isfinite(float(info.value.result.log_evidence))


def test_resample_move_whose_population_collapses_is_degraded_and_warns():
    with pytest.warns(ppl.InferenceWarning, match=r"smc.resample_move: degraded: the ESS fell to .* of 50 particles \(stage 1\)"):
        res = smc.resample_move(KEY, sharp, [jnp.array([0.3]), jnp.array([0.31])], 50)
    assert res.health.status == "degraded" and res.health.details["min_ess"] < 2


def test_healthy_resample_move_is_ok_and_silent(no_inference_warning):
    y = jnp.array([0.3, 1.1, -0.4])
    res = smc.resample_move(KEY, normal_mean, [y[:2], y[2:]], 50)
    assert res.health.status == "ok" and res.health.details["min_ess"] > 2


@ppl.model
def sigma_prior(ys):
    ppl.sample("sigma", dist.LogNormal(0.0, 0.5))


def test_pmmh_whose_chains_never_accept_raises():
    # log Ẑ is −inf at every θ but the start: every chain stays at its first θ (R̂ and ESS of a
    # constant chain are NaN, so the MCMC checks alone said "ok")
    def log_ev(key, theta, ys):
        return jnp.where(theta["sigma"] == 1.0, 0.0, -jnp.inf)

    @ppl.model
    def start_at_one(ys):
        ppl.sample("sigma", dist.Delta(1.0))

    pmmh = smc.PMMH(log_ev, proposal=None)
    with pytest.raises(ppl.InferenceFailure, match=r"smc.PMMH: accepted in chain 0: 0.0%, chain 1: 0.0% of 30 draws: every chain is stuck"):
        mcmc.sample(KEY, pmmh, sigma_prior, jnp.zeros(2), num_warmup=0, num_samples=30, num_chains=2, progress=False,
                    init={"sigma": 1.0})


def test_particle_gibbs_that_always_keeps_its_reference_is_failed_or_degraded():
    pg = smc.ParticleGibbs(init=0.0, num_particles=2)
    never = pg.run_health(type("R", (), {"info": {"kept_reference": np.ones((2, 30), bool)}})())
    assert never[0] and "every chain is stuck" in never[0][0] and not never[1]
    one = np.ones((2, 30), bool)
    one[1, :5] = False  # chain 0 stuck, chain 1 renews its path 5 times in 30
    some = pg.run_health(type("R", (), {"info": {"kept_reference": one}})())
    assert not some[0] and "renewed its path in chain 0: 0.0%, chain 1: 16.7%" in some[1][0]


def test_healthy_pmmh_passes_its_own_check():
    def log_ev(key, theta, ys):
        return jnp.sum(dist.Normal(0.0, theta["sigma"]).log_prob(ys))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ppl.InferenceWarning)  # R̂/ESS of a 30-draw run: not what is tested
        run = mcmc.sample(KEY, smc.PMMH(log_ev), sigma_prior, jnp.array([0.1, -0.3, 0.4]), num_warmup=0,
                          num_samples=20, num_chains=2, progress=False)
    assert not run.health.failed and np.all(run.health.details["accepted_share"] > 0.01)
    assert not any("PMMH" in p for p in run.health.problems)


def test_vi_fit_whose_parameters_diverge_raises():
    @ppl.model
    def m(x):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.sample("x", dist.Normal(mu, 1.0), obs=x)

    @ppl.model
    def g(x):
        ppl.sample("mu", dist.Normal(ppl.param("loc", 0.0), 0.7))

    with pytest.raises(ppl.InferenceFailure, match=r"vi.fit: failed: parameter 'loc' is not finite after the fit") as info:
        vi.fit(KEY, vi.elbo(m, g), optax.sgd(1e38), 1.0, num_steps=20, progress=False)
    assert info.value.health.details["non_finite_steps"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ppl.InferenceWarning)
        ok = vi.fit(KEY, vi.elbo(m, g), optax.adam(0.05), 1.0, num_steps=50, progress=False)
    assert ok.health.status == "ok" and ok.health.details["non_finite_steps"] == 0


@ppl.model
def student5(df):
    ppl.sample("x", dist.StudentT(df, 0.0, 1.0).expand([5]).to_event(1))


@pytest.mark.slow  # 23 s at load 11
def test_laplace_and_pathfinder_of_a_heavy_tailed_posterior_warn_with_pareto_k():
    with pytest.warns(ppl.InferenceWarning, match=r"vi.laplace: degraded: Pareto k̂ = .* > 0.7"):
        lap = vi.laplace(student5, 1.0)  # Cauchy: a Gaussian at the mode misses the tails
    assert lap.health.status == "degraded" and lap.pareto_k > 0.7
    with pytest.warns(ppl.InferenceWarning, match=r"vi.pathfinder: degraded: Pareto k̂ = .* > 0.7"):
        pf = vi.pathfinder(KEY, student5, 1.0, num_paths=1)
    assert pf.health.details["pareto_k"] == pf.pareto_k > 0.7


def test_laplace_and_pathfinder_of_a_near_gaussian_posterior_are_ok_and_silent(no_inference_warning):
    lap = vi.laplace(student5, 1e4)
    assert lap.health.status == "ok" and lap.pareto_k < 0.7
    assert vi.pathfinder(KEY, student5, 1e4, num_paths=1).health.status == "ok"
