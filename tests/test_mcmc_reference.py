"""NUTS with default settings against posteriordb's reference posterior of eight schools
(non-centred), with the criterion of ../shared/data/README.md: for every parameter
|Δmean| / sqrt(sd²/ESS + mcse_ref²) < 4 and the sd within 10%, and R̂ < 1.01.

Also kidiq (kid_score ~ mom_iq; strongly correlated intercept and slope) and mesquite (log
weight on seven predictors), both with flat priors written as ``dist.ImproperUniform``.

Twelve parameters at |z| < 4 each is a false-alarm budget of about 1e-3 for the means.  The
planted-bug twin forgets the log-Jacobian of tau's transform (a classic bug: it targets the
wrong density in unconstrained space) and must fail the same criterion.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from inference import mcmc
from ppl import dist

PDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "posteriordb"


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
    """name -> (z of the mean, relative sd error, r_hat) for every reference parameter."""
    summ = run.summary()
    out = {}
    for name, ref in (REF if reference is None else reference).items():
        site, idx = (name.split("[")[0], int(name.split("[")[1][:-1]) - 1) if "[" in name else (name, None)
        st = {k: (v[idx] if idx is not None else v) for k, v in summ[site].items()}
        se = np.sqrt(st["sd"] ** 2 / st["ess_bulk"] + ref["mcse_mean"] ** 2)
        out[name] = (float((st["mean"] - ref["mean"]) / se), float(st["sd"] / ref["sd"] - 1), float(st["r_hat"]))
    return out


def failures(sc: dict) -> list:
    return [(n, s) for n, s in sc.items() if not (abs(s[0]) < 4 and abs(s[1]) < 0.10 and s[2] < 1.01)]


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
