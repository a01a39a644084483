"""NUTS with default settings against posteriordb's reference posterior of eight schools
(non-centred), with the criterion of ../shared/data/README.md: for every parameter
|Δmean| / sqrt(sd²/ESS + mcse_ref²) < 4 and the sd within 10%, and R̂ < 1.01.

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

DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "posteriordb" / "eight_schools-eight_schools_noncentered"
DATA = json.loads((DIR / "data.json").read_text())
REF = json.loads((DIR / "reference_summary.json").read_text())


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


def scores(run) -> dict:
    """name -> (z of the mean, relative sd error, r_hat) for every reference parameter."""
    summ = run.summary()
    out = {}
    for name, ref in REF.items():
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
