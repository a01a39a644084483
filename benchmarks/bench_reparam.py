"""Automatic non-centring (``ppl.reparam(model, "auto")``) against the centred model, NUTS.

Two models whose centred form is the textbook bad geometry:

- ``eight_schools``: the *centred* eight schools (posteriordb data), theta ~ Normal(mu, tau);
- ``funnel``: Neal's funnel, y ~ Normal(0, 3), x ~ Normal(0, exp(y / 2)) in 9 dimensions (no data).

For each, ``centred`` runs the model as written and ``auto`` runs ``ppl.reparam(model, "auto")``
(the sites picked: theta, x).  NUTS with default settings, 4 chains x (500 warmup + 1000 draws),
float32, seed 0.  Columns: sites non-centred, divergences (all chains), min bulk ESS over the
*original* scalar parameters (mu, tau, theta / y, x: the deterministic sites of the reparameterised
model), warm wall time (second run, no compilation), min-ESS per second (warm), and the funnel's
posterior mean and sd of y (exact: 0 and 3) as a check that the centred run's numbers are biased.

Run: ``/work/main/.venv/bin/python -m benchmarks.bench_reparam``; results go to stdout and
``benchmarks/results/reparam.json``.  The machine was shared (2 cores, several processes) when
the numbers in RESULTS.md were taken: treat times as rough.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size

import ppl
from inference import mcmc
from ppl import dist

ROOT = Path(__file__).resolve().parents[1]


@ppl.model
def eight_schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta = ppl.sample("theta", dist.Normal(mu, tau))
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


@ppl.model
def funnel(dim=10):
    y = ppl.sample("y", dist.Normal(0.0, 3.0))
    ppl.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


def _data():
    d = json.loads((ROOT.parent / "shared" / "data" / "posteriordb" / "eight_schools-eight_schools_noncentered" / "data.json").read_text())
    return {"eight_schools": ((jnp.asarray(d["sigma"], float),), {"y": jnp.asarray(d["y"], float)}),
            "funnel": ((), {})}


def _min_ess(samples: dict, names: tuple) -> float:
    out = np.inf
    for n in names:
        v = np.asarray(samples[n], np.float64)
        v = v.reshape(v.shape[0], v.shape[1], -1)
        out = min(out, min(float(effective_sample_size(v[..., i])) for i in range(v.shape[-1])))
    return out


def run(num_warmup: int = 500, num_samples: int = 1000, num_chains: int = 4) -> list[dict]:
    rows = []
    data = _data()
    for name, model, params in (("eight_schools", eight_schools, ("mu", "tau", "theta")), ("funnel", funnel, ("y", "x"))):
        args, kwargs = data[name]
        for variant in ("centred", "auto"):
            m = model if variant == "centred" else ppl.reparam(model, "auto")
            picked = sorted(ppl.auto_noncentre_sites(model, *args, **kwargs)) if variant == "auto" else []
            go = lambda k: mcmc.sample(jax.random.key(k), mcmc.NUTS(), m, *args, num_warmup=num_warmup,  # noqa: E731
                                       num_samples=num_samples, num_chains=num_chains, progress=False, **kwargs)
            t0 = time.perf_counter(); go(1); wall = time.perf_counter() - t0
            t0 = time.perf_counter(); r = go(0); warm = time.perf_counter() - t0
            ess = _min_ess(r.samples, params)
            row = dict(model=name, variant=variant, noncentred=picked,
                       divergences=int(np.sum(r.diagnostics["divergences"])), min_ess=round(ess, 1),
                       wall_s=round(wall, 2), warm_s=round(warm, 2), min_ess_per_s=round(ess / warm, 1))
            if name == "funnel":
                row["y_mean"] = round(float(np.mean(r.samples["y"])), 3)
                row["y_sd"] = round(float(np.std(r.samples["y"])), 3)
            rows.append(row)
            print(row, flush=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "reparam.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    run()
