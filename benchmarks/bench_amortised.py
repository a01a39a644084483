"""Distribution transformer vs NUTS vs tempered SMC on the same sequential Gaussian task (issue 20).

Task: theta ~ a two-component GMM prior, x_i ~ Normal(theta, 1); 10 updates of 5 points each.
Per update, the transformer maps the previous posterior and the new batch to the next posterior
(the shipped network, ``examples/data/amortised_normal_mean.eqx``); NUTS and tempered SMC (ours)
condition the original prior on all data so far (masked to fixed shapes, so one compile serves
every update).  Accuracy per update against the exact posterior (conjugate):
- KL(exact ‖ q), Monte Carlo over 20 000 exact draws; for NUTS/SMC q is a Gaussian KDE of their
  draws (Scott's bandwidth; the KDE adds its own error, a lower bound it is not);
- KS distance between the method's draws (4000) and the exact CDF (every method, no density needed).
Times exclude the first (compiling) call, reported separately.

Run: ``/work/main/.venv/bin/python benchmarks/bench_amortised.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as sst

import ppl
from inference import amortised, mcmc, smc
from ppl import dist

ROOT = Path(__file__).resolve().parents[1]
T, NB, NOISE = 10, 5, 1.0


def exact_cdf(g, x):
    w, m, s = (np.asarray(v, np.float64) for v in (g.weights, g.loc[:, 0], g.scale[:, 0]))
    return np.sum(w * sst.norm.cdf((np.asarray(x)[:, None] - m) / s), axis=1)


def accuracy(exact, draws=None, q=None, key=0):
    ex = exact.sample(jax.random.key(1000 + key), 20000)
    lp = np.asarray(exact.log_prob(ex), np.float64)
    if q is None:
        kde = sst.gaussian_kde(np.asarray(draws, np.float64))
        lq = np.log(kde(np.asarray(ex[:, 0], np.float64)) + 1e-300)
    else:
        lq = np.asarray(q.log_prob(ex), np.float64)
        draws = np.asarray(q.sample(jax.random.key(2000 + key), 4000)[:, 0])
    ks = sst.kstest(np.asarray(draws, np.float64), lambda x: exact_cdf(exact, x)).statistic
    return float(np.mean(lp - lq)), float(ks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    prior = amortised.GMM.from_weights([0.5, 0.5], [[-2.0], [2.0]], [[1.0], [1.0]])
    data = 1.3 + NOISE * jax.random.normal(jax.random.key(7), (T * NB, 1))
    dt = amortised.load(ROOT / "examples" / "data" / "amortised_normal_mean.eqx")

    @ppl.model
    def model(x, mask):
        theta = ppl.sample("theta", prior.distribution())
        with ppl.plate("data", x.shape[0]):
            ppl.sample("x", dist.Normal(theta[0], NOISE).mask(mask), obs=x[:, 0])

    rows = {"transformer": [], "NUTS": [], "SMC": []}
    compile_s = {}
    q = prior
    n_warm, n_samp = (200, 500) if a.quick else (500, 2000)
    for t in range(T):
        mask = jnp.arange(T * NB) < NB * (t + 1)
        exact = amortised.normal_mean_posterior(prior, data, mask, NOISE)
        batch = data[NB * t: NB * (t + 1)]
        if t == 0:
            t0 = time.perf_counter(); jax.block_until_ready(dt(q, batch)); compile_s["transformer"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        q = jax.block_until_ready(dt(q, batch))
        rows["transformer"].append((time.perf_counter() - t0, *accuracy(exact, q=q, key=t)))

        def nuts(k):
            r = mcmc.sample(k, mcmc.NUTS(), model, data, mask, num_warmup=n_warm, num_samples=n_samp, num_chains=2, progress=False)
            return np.asarray(r.samples["theta"]).reshape(-1)

        def tsmc(k):
            r = smc.tempered_smc(k, model, data, mask, num_particles=2000 if not a.quick else 500, kernel="hmc", num_leapfrog=5)
            return np.asarray(r.samples["theta"]).reshape(-1)

        for name, f in (("NUTS", nuts), ("SMC", tsmc)):
            if t == 0:
                t0 = time.perf_counter(); f(jax.random.key(99)); compile_s[name] = time.perf_counter() - t0
            t0 = time.perf_counter()
            d = f(jax.random.key(t))
            el = time.perf_counter() - t0
            rows[name].append((el, *accuracy(exact, draws=d[: 4000], key=t)))
        print(f"update {t + 1}: " + "  ".join(f"{n} {1e3 * r[-1][0]:.2f} ms KL {r[-1][1]:.4f} KS {r[-1][2]:.3f}" for n, r in rows.items()), flush=True)

    print("\n| method | first call (compile + run) | time per update (median) | mean KL(exact ‖ q) | mean KS distance |")
    print("|---|---|---|---|---|")
    for n, r in rows.items():
        r = np.array(r)
        print(f"| {n} | {compile_s[n]:.2f} s | {1e3 * np.median(r[:, 0]):.2f} ms | {r[:, 1].mean():.4f} | {r[:, 2].mean():.3f} |")


if __name__ == "__main__":
    main()
