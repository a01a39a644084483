"""Issue 16: a run's ArviZ data, LOO/WAIC/compare, plots and the summary table.

The reference for LOO is NumPyro: the same draws are fed to ``numpyro.infer.log_likelihood`` on
the same model written in NumPyro, and PSIS-LOO computed from both must agree to 1e-6 (exact:
the same draws, float64; PSIS is deterministic).
"""

from __future__ import annotations

import re

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import ppl
from inference import mcmc
from ppl import dist

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIGMA = jnp.array([15.0, 10, 16, 11, 9, 11, 10, 18])
Y = jnp.array([28.0, 8, -3, 7, -1, 1, 18, 12])
NAMES = ["Choate", "Deerfield", "Phillips Andover", "Phillips Exeter", "Hotchkiss", "Lawrenceville",
         "St. Paul's", "Mt. Hermon"]


@ppl.model
def schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta = ppl.sample("theta", dist.Normal(mu, tau))
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


@ppl.model
def pooled(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    with ppl.plate("school", sigma.shape[0]):
        ppl.sample("y", dist.Normal(mu, sigma), obs=y)


def _run(model, key, kernel):
    return mcmc.sample(jax.random.key(key), kernel, model, SIGMA, y=Y, num_warmup=100, num_samples=100,
                       num_chains=2, progress=False)


@pytest.fixture(scope="module")
def runs():
    return _run(schools, 0, mcmc.NUTS()), _run(pooled, 1, mcmc.RWM())  # RWM compiles faster


def test_loo_equals_numpyros_on_the_same_draws(runs):
    import numpyro
    import numpyro.distributions as nd
    from numpyro.infer import log_likelihood

    def np_schools(sigma, y=None):
        mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
        with numpyro.plate("school", sigma.shape[0]):
            theta = numpyro.sample("theta", nd.Normal(mu, tau))
            numpyro.sample("y", nd.Normal(theta, sigma), obs=y)

    run = runs[0]
    ours = run.to_arviz()
    ll_np = log_likelihood(np_schools, {k: jnp.asarray(v) for k, v in run.samples.items()}, SIGMA, y=Y,
                           batch_ndims=2)["y"]
    ref = az.from_dict(posterior={k: np.asarray(v) for k, v in run.samples.items()},
                       log_likelihood={"y": np.asarray(ll_np)})
    a, b = az.loo(ours, pointwise=True), az.loo(ref, pointwise=True)
    assert abs(a["elpd_loo"] - b["elpd_loo"]) < 1e-6 and abs(a["p_loo"] - b["p_loo"]) < 1e-6
    np.testing.assert_allclose(np.asarray(a["loo_i"]), np.asarray(b["loo_i"]), rtol=0, atol=1e-6)
    assert abs(az.waic(ours)["elpd_waic"] - az.waic(ref)["elpd_waic"]) < 1e-6


def test_groups_dims_coords_and_stats(runs):
    run = runs[0]
    pp = ppl.predictive(schools, run.samples, SIGMA, key=jax.random.key(3))      # (chains, draws, school)
    prior = ppl.predictive(schools, None, SIGMA, key=jax.random.key(4), num_samples=50)
    idata = run.to_arviz(posterior_predictive=pp, prior=prior, coords={"school": NAMES})
    for g in ("posterior", "sample_stats", "log_likelihood", "observed_data", "posterior_predictive", "prior",
              "prior_predictive"):
        assert g in idata.groups(), g
    assert idata.posterior["theta"].dims == ("chain", "draw", "school")
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "school")
    assert list(idata.posterior["school"].values) == NAMES
    np.testing.assert_array_equal(idata.observed_data["y"].values, np.asarray(Y))
    np.testing.assert_array_equal(idata.log_likelihood["y"].values, np.asarray(run.log_likelihood()["y"]))
    assert idata.posterior_predictive["y"].shape == (2, 100, 8) and idata.prior["mu"].shape == (1, 50)
    assert "y" in idata.prior_predictive and "y" not in idata.prior
    for s in ("diverging", "tree_depth", "energy", "step_size", "acceptance_rate"):
        assert idata.sample_stats[s].shape == (2, 100), s
    # a flat (chains * draws) predictive is laid out per chain; a wrong size is refused by name
    flat = run.predictive(jax.random.key(5), schools, SIGMA)
    assert run.to_arviz(posterior_predictive=flat).posterior_predictive["y"].shape == (2, 100, 8)
    # a key: the run draws the observed sites itself (the data stay in observed_data)
    auto = run.to_arviz(posterior_predictive=jax.random.key(6)).posterior_predictive["y"].values
    assert auto.shape == (2, 100, 8) and np.all(auto != np.asarray(Y))
    # ... the same draws as predicting with the data left out (y=None), same key
    same = ppl.predictive(schools, {k: run.samples[k] for k in ("mu", "tau", "theta")}, SIGMA, key=jax.random.key(6))
    np.testing.assert_array_equal(auto, np.asarray(same["y"]))
    with pytest.raises(ppl.ArgumentError, match=re.escape("'y' has shape (7, 8)")):
        run.to_arviz(posterior_predictive={"y": np.zeros((7, 8))})
    with pytest.raises(ppl.ArgumentError, match=r"coords\['school'\] has 3 values but dim 'school' has size 8"):
        run.to_arviz(coords={"school": NAMES[:3]})


def test_compare_and_plots(runs):
    hier, pool = (r.to_arviz() for r in runs)
    cmp = az.compare({"hierarchical": hier, "pooled": pool})
    assert set(cmp.index) == {"hierarchical", "pooled"} and np.all(np.isfinite(cmp["elpd_loo"]))
    pp = ppl.predictive(schools, runs[0].samples, SIGMA, key=jax.random.key(3))
    az.plot_ppc(runs[0].to_arviz(posterior_predictive=pp), num_pp_samples=10)
    az.plot_trace(hier, var_names=["mu"])
    plt.close("all")


def test_summary_table_and_frame(runs, capsys):
    run = runs[0]
    run.print_summary()
    out = capsys.readouterr().out
    assert "theta[7]" in out and "r_hat" in out and "Number of divergences" in out
    frame = run.summary(as_frame=True)
    s = run.summary()
    assert list(frame.columns) == ["mean", "sd", "5%", "50%", "95%", "r_hat", "ess_bulk", "ess_tail"]
    assert frame.loc["theta[3]", "mean"] == pytest.approx(float(s["theta"]["mean"][3]), rel=1e-12)
    assert frame.loc["mu", "ess_bulk"] == pytest.approx(float(s["mu"]["ess_bulk"]), rel=1e-12)


def test_vi_result_to_arviz_has_the_log_likelihood():
    import optax

    from inference import vi

    @ppl.model
    def guide(sigma, y=None):
        ppl.sample("mu", dist.Normal(ppl.param("loc", 0.0), ppl.param("scale", 1.0, constraint=dist.constraints.positive)))

    res = vi.fit(jax.random.key(0), vi.elbo(pooled, guide), optax.adam(0.1), SIGMA, y=Y, num_steps=50, progress=False)
    idata = res.to_arviz(jax.random.key(1), num_samples=200, coords={"school": NAMES})
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "school") and idata.log_likelihood["y"].shape == (1, 200, 8)
    mu = idata.posterior["mu"].values[0]
    ref = -0.5 * ((np.asarray(Y) - mu[:, None]) / np.asarray(SIGMA)) ** 2 - np.log(np.asarray(SIGMA) * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0], ref, rtol=1e-10)
    assert np.isfinite(az.loo(idata)["elpd_loo"])


def test_smc_result_to_arviz_has_the_log_likelihood():
    from inference.smc import Particles, SMCResult

    mu = jnp.linspace(-3.0, 3.0, 6)
    res = SMCResult(particles=Particles.from_states(jnp.zeros(6), log_weights=jnp.log(jnp.arange(1.0, 7.0))),
                    log_evidence=jnp.asarray(0.0), paths={"mu": mu})
    idata = res.to_arviz(jax.random.key(0), 50, model=pooled, args=(SIGMA,), kwargs={"y": Y})
    drawn = idata.posterior["mu"].values[0]
    assert set(np.unique(drawn)) <= set(np.asarray(mu).tolist())
    ll = ppl.log_likelihood(pooled, {"mu": drawn}, SIGMA, y=Y)["y"]
    np.testing.assert_array_equal(idata.log_likelihood["y"].values[0], np.asarray(ll))
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "school")
    with pytest.raises(ppl.ArgumentError, match="pass a key"):
        res.to_arviz(model=pooled, args=(SIGMA,), kwargs={"y": Y})
