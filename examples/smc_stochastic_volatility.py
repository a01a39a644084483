"""A particle filter for stochastic volatility on S&P 500 returns, and PMMH over its persistence.

The model (Inference Gym's ``stochastic_volatility_sp500_small``): a latent log-volatility

    x_0 ~ N(m, s / sqrt(1 - p²)),   x_t ~ N(m + p (x_{t-1} - m), s),   y_t ~ N(0, exp(x_t / 2)).

1. A bootstrap particle filter (``smc.particle_filter``) at fixed parameters: log-evidence,
   filtered volatility, ESS.
2. The log-evidence profile over the persistence p (one filter per value, vmapped).
3. PMMH (``smc.PMMH``, the particle filter's Ẑ inside Metropolis–Hastings) over p, with
   ``mcmc.sample`` running 2 chains.

The data (100 mean-centred daily S&P 500 price changes ending 2020-06-24, from the Inference Gym,
Apache-2.0) are embedded below.  Run with ``.venv/bin/python examples/smc_stochastic_volatility.py``
(about a minute on a laptop CPU, mostly compilation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from inference import mcmc, smc
from ppl import dist

RETURNS = jnp.array([
    25.15, 50.42, 38.85, 12.84, -16.32, 26.13, 7.41, 23.45, -3.76, 7.97, -8.12, 17.61, -11.17,
    -33.73, -110.11, -95.93, -10.07, -135.88, -22.79, 137.76, -85.11, 128.50, -104.43, -49.82,
    -224.06, 137.42, -139.10, -258.99, 232.13, -323.14, 144.81, -129.34, 13.04, -102.72, -65.77,
    211.68, 29.98, 156.26, -86.85, 86.93, -40.31, -112.34, 58.15, -36.50, 176.78, -2.52, 92.32,
    41.59, -26.44, 86.18, -60.95, 17.94, 76.76, -49.65, -84.85, 64.50, 0.24, 40.69, 43.49,
    -13.34, 77.87, -25.33, -79.97, 13.78, 27.45, -18.27, 34.52, 50.36, 2.14, -58.32, -48.37,
    34.25, 12.95, 91.96, -29.22, 50.42, -21.35, 8.69, 38.07, 46.11, -4.65, 16.33, 13.17, 26.84,
    43.80, -8.77, 83.33, 40.21, -23.46, -15.29, -186.29, 40.96, 27.03, 59.90, -9.50, 3.60,
    -15.85, 21.87, 15.18, -79.21
])
M, S = 8.0, 0.4          # mean log-volatility (exp(8/2) ≈ 55, the returns' scale) and shock scale


def sv_model(p, m=M, s=S):
    """(initial model, step model) of the stochastic volatility model at parameters (p, m, s)."""

    @ppl.model
    def x0():
        return ppl.sample("x0", dist.Normal(m, s / jnp.sqrt(1 - p**2)))

    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(m + p * (x_prev - m), s))
        ppl.sample("y", dist.Normal(0.0, jnp.exp(x / 2)), obs=y_t)
        return x, x

    return x0, step


def main(num_samples: int = 400) -> None:
    # 1. a particle filter at p = 0.9
    x0, step = sv_model(0.9)
    res = jax.jit(lambda k: smc.particle_filter(k, step, x0, RETURNS, 2000, name="sv"))(jax.random.key(0))
    vol = np.exp(np.asarray(res.filter_means) / 2)
    print(f"log Ẑ(p=0.9) = {float(res.log_evidence):.2f}; resampled at every step; min ESS = {float(res.ess.min()):.0f}")
    print("filtered volatility exp(E[x_t]/2), every 10th day:", np.round(vol[::10], 1))

    # 2. the log-evidence profile over the persistence
    ps = jnp.array([0.5, 0.7, 0.8, 0.9, 0.95, 0.99])

    def log_z(p, key):
        x0, step = sv_model(p)
        return smc.particle_filter(key, step, x0, RETURNS, 1000).log_evidence

    prof = jax.jit(jax.vmap(log_z, in_axes=(0, None)))(ps, jax.random.key(1))
    for p, lz in zip(np.asarray(ps), np.asarray(prof)):
        print(f"  p = {p:.2f}: log Ẑ = {lz:.2f}")

    # 3. PMMH over p: prior p = 2 Beta(20, 1.5) - 1, random-walk proposal on p
    @ppl.model
    def prior(ys):
        ppl.sample("u", dist.Beta(20.0, 1.5))           # p = 2u - 1

    def log_evidence(key, theta, ys):
        x0, step = sv_model(2 * theta["u"] - 1)
        return smc.particle_filter(key, step, x0, ys, 200).log_evidence

    @ppl.model
    def rw(tr):
        ppl.sample("u", dist.TruncatedNormal(tr.choices["u"], 0.02, low=0.5, high=1.0))

    run = mcmc.sample(jax.random.key(2), smc.PMMH(log_evidence, proposal=rw), prior, RETURNS,
                      num_warmup=max(num_samples // 4, 10), num_samples=num_samples, num_chains=2, progress=False)
    p = 2 * np.asarray(run.samples["u"]) - 1
    acc = float(np.mean(np.asarray(run.info["accepted"])))
    print(f"PMMH: posterior mean persistence {p.mean():.3f} (sd {p.std():.3f}), acceptance {acc:.2f}")


if __name__ == "__main__":
    main()
