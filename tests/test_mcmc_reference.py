"""NUTS with default settings against posteriordb's reference posteriors: eight schools
(non-centred), kidiq (kid_score ~ mom_iq; strongly correlated intercept and slope) and mesquite
(log weight on seven predictors), the last two with flat priors written as
``dist.ImproperUniform``; 21 parameters in all.

For every parameter, three decisions at level 1e-9 each (tests/_budget.py, each declared with
its count of 21), in place of the fixed |z| < 4 (a level of 6e-5 per parameter, 1.3e-3 in all)
and "sd within 10%" (about 4.5 standard errors at an ESS of 1000) of ../shared/data/README.md:

- the mean: z = Δmean / sqrt(sd²/ESS_bulk + mcse_ref²) (``mcmc/reference_means``);
- the sd: z = Δsd / sqrt(se² + se_ref²), se = sd·sqrt((κ − 1) / (4 ESS)) by the delta method
  with κ the draws' kurtosis (``mcmc/reference_sds``);
- R̂ ≤ 1 + 31/ESS_bulk (``mcmc/reference_rhat``): for chains that mix, split-R̂ − 1 is about
  (χ²₇/7)/(2 n_e) with n_e = ESS/8 the effective size of each of the 8 half-chains, and the
  χ²₇ quantile at 1 − 5e-9 is 52, so 4·52/7 ≈ 30 (an approximation: R̂ is a convergence check).

The planted-bug twin forgets the log-Jacobian of tau's transform (a classic bug: it targets the
wrong density in unconstrained space) and must fail the same criterion.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

import pytest
from scipy import stats as st

import ppl
from _budget import BUDGET
from _data import data_path
from inference import mcmc
from ppl import dist

pytestmark = [pytest.mark.statistical, pytest.mark.slow]

Z_MEAN = st.norm.isf(BUDGET.level("mcmc/reference_means") / 2)
Z_SD = st.norm.isf(BUDGET.level("mcmc/reference_sds") / 2)
#: R̂ ≤ 1 + RHAT_SLOPE / ESS_bulk (see the module docstring); the χ²₇ quantile at the budgeted level
RHAT_SLOPE = 4 * st.chi2.isf(BUDGET.level("mcmc/reference_rhat"), 7) / 7

PDB = data_path("posteriordb")


def posterior(name: str) -> tuple[dict, dict]:
    """(data, reference summary) of a posteriordb posterior."""
    d = PDB / name
    return json.loads((d / "data.json").read_text()), json.loads((d / "reference_summary.json").read_text())


DATA, REF = posterior("eight_schools-eight_schools_noncentered")


@ppl.model
def eight_schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta_trans = ppl.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = ppl.deterministic("theta", mu + tau * theta_trans)
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


SIGMA = jnp.asarray(DATA["sigma"], dtype=float)
Y = jnp.asarray(DATA["y"], dtype=float)


def scores(run, reference: dict | None = None) -> dict:
    """name -> (z of the mean, z of the sd, R̂ − 1 − RHAT_SLOPE/ESS) for every reference parameter."""
    summ = run.summary()
    out = {}
    for name, ref in (REF if reference is None else reference).items():
        site, idx = (name.split("[")[0], int(name.split("[")[1][:-1]) - 1) if "[" in name else (name, None)
        st_ = {k: (v[idx] if idx is not None else v) for k, v in summ[site].items()}
        draws = np.asarray(run.samples[site], float)
        draws = (draws[..., idx] if idx is not None else draws).ravel()
        d = draws - draws.mean()
        kurt = float(np.mean(d**4) / np.mean(d**2) ** 2)
        ess = float(st_["ess_bulk"])
        se = np.sqrt(st_["sd"] ** 2 / ess + ref["mcse_mean"] ** 2)
        se_sd = np.sqrt(st_["sd"] ** 2 * (kurt - 1) / (4 * ess) + ref["sd"] ** 2 * (kurt - 1) / (4 * ref.get("ess_approx", 10_000)))
        out[name] = (
            float((st_["mean"] - ref["mean"]) / se),
            float((st_["sd"] - ref["sd"]) / se_sd),
            float(st_["r_hat"] - 1 - RHAT_SLOPE / ess),
        )
    return out


def failures(sc: dict) -> list:
    return [(n, s) for n, s in sc.items() if not (abs(s[0]) < Z_MEAN and abs(s[1]) < Z_SD and s[2] < 0)]


@dataclasses.dataclass(frozen=True)
class NUTSNoJacobian(mcmc.NUTS):
    """Bug: the potential forgets log|dtau/dx| = x_tau (tau = exp(x_tau), flat index 1)."""

    def target_potential(self, view):
        return lambda z: view.potential(z) + z[1]


def test_nuts_reproduces_eight_schools_reference():
    run = mcmc.sample(jax.random.key(2024), mcmc.NUTS(), eight_schools, SIGMA, y=Y, num_warmup=1000, num_samples=1000, num_chains=4, progress=False)
    assert run.samples["theta"].shape == (4, 1000, 8)
    sc = scores(run)
    assert not failures(sc), failures(sc)
    assert int(np.sum(run.diagnostics["divergences"])) <= 20


def test_planted_bug_nuts_without_jacobian_fails_the_reference():
    view = ppl.unconstrained(eight_schools, SIGMA, y=Y)
    assert list(view.sites)[1] == "tau"
    run = mcmc.sample(jax.random.key(2024), NUTSNoJacobian(), eight_schools, SIGMA, y=Y, num_warmup=500, num_samples=500, num_chains=4, progress=False)
    assert failures(scores(run))


# -- kidiq and mesquite: flat priors through dist.ImproperUniform ------------------------------------

FLAT_POS = dist.ImproperUniform(dist.constraints.positive, (), ())


@ppl.model
def kidiq(mom_iq, kid_score):
    beta = ppl.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (2,)))
    sigma = ppl.sample("sigma", dist.HalfCauchy(2.5))
    with ppl.plate("kids", mom_iq.shape[0]):
        ppl.sample("kid_score", dist.Normal(beta[0] + beta[1] * mom_iq, sigma), obs=kid_score)


@ppl.model
def mesquite(X, log_weight):
    beta = ppl.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (X.shape[1],)))
    sigma = ppl.sample("sigma", FLAT_POS)
    with ppl.plate("shrubs", X.shape[0]):
        ppl.sample("log_weight", dist.Normal(X @ beta, sigma), obs=log_weight)


def kidiq_data():
    d, ref = posterior("kidiq-kidscore_momiq")
    return (jnp.asarray(d["mom_iq"], dtype=float), jnp.asarray(d["kid_score"], dtype=float)), ref


def mesquite_data():
    d, ref = posterior("mesquite-logmesquite")
    cols = [np.ones(d["N"])] + [np.log(np.asarray(d[k], dtype=float)) for k in ("diam1", "diam2", "canopy_height", "total_height", "density")]
    X = np.stack(cols + [np.asarray(d["group"], dtype=float)], axis=1)
    return (jnp.asarray(X), jnp.log(jnp.asarray(d["weight"], dtype=float))), ref


def test_nuts_reproduces_kidiq_reference():
    args, ref = kidiq_data()
    run = mcmc.sample(jax.random.key(11), mcmc.NUTS(), kidiq, *args, num_warmup=1000, num_samples=1000, num_chains=4, progress=False)
    sc = scores(run, ref)
    assert not failures(sc), failures(sc)


def test_nuts_reproduces_mesquite_reference():
    args, ref = mesquite_data()
    run = mcmc.sample(jax.random.key(12), mcmc.NUTS(), mesquite, *args, num_warmup=1000, num_samples=1000, num_chains=4, progress=False)
    sc = scores(run, ref)
    assert not failures(sc), failures(sc)
