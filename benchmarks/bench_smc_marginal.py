"""Tempered SMC on models with summed-out discrete sites (issue 14, helper hsmc).

Cases
-----
``spikes``: the 4-point spike mixture of ``tests/test_smc_stats.py`` (mu ~ N(0, 2), z_i ~
Bernoulli(0.3), y_i ~ N(mu z_i, 1)); log Ẑ of adaptive HMC tempering (N = 1000) against the exact
log p(y) = −9.040 (the sum over the 16 values of z), 8 keys.

``mix<n>``: a 3-component Gaussian mixture, n points (weights fixed at 1/3, means mu ~ N(0, 10)^3,
unit scale), adaptive tempering with 5 HMC steps of 10 leapfrog per tempering step, N = 256:

- ``ours``: the model written with ``z ~ Categorical(w)`` in the plate, z summed out at every β
  (the potential costs two enumerations: p_0 and p_1);
- ``handwritten``: the same marginal model written by hand in our language (``ppl.factor`` of
  Σ_i logsumexp_k(log w_k + log N(y_i | mu_k, 1))), the same path (p_0 = p(mu) here).

Columns: first call (trace + compile + run) and best warm call of 3 (s), ratio ours / handwritten
(warm), log Ẑ of each (same key), tempering steps.

``probe``: what the new check costs a model *without* discrete sites (the abstract probe that
``tempered_smc`` runs before compiling): ms per call, and a warm call for scale.

Run: ``python -m benchmarks.bench_smc_marginal``.  One run; the machine is shared: noisy.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from inference import smc
from inference.smc import tempering
from ppl import dist


def _time(f, reps=3):
    t = time.perf_counter()
    out = f()
    jax.block_until_ready(out.log_evidence)
    first = time.perf_counter() - t
    warm = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f().log_evidence)
        warm.append(time.perf_counter() - t)
    return out, first, min(warm)


@ppl.model
def spikes(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(0.3))
        ppl.sample("y", dist.Normal(mu * z, 1.0), obs=y)


@ppl.model
def mix(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0).expand([3]).to_event(1))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Categorical(jnp.ones(3) / 3))
        ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y)


@ppl.model
def mix_hand(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0).expand([3]).to_event(1))
    lp = jax.scipy.special.logsumexp(jnp.log(1 / 3) + dist.Normal(mu, 1.0).log_prob(y[:, None]), axis=-1)
    ppl.factor("y", jnp.sum(lp))


@ppl.model
def plain(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0).expand([3]).to_event(1))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu[0], 1.0), obs=y)


def main():
    print(f"load average at start: {os.getloadavg()}")
    y4 = jnp.array([0.1, 2.5, 3.0, -1.0])
    les = [float(smc.tempered_smc(jax.random.key(k), spikes, y4, num_particles=1000, kernel="hmc").log_evidence)
           for k in range(8)]
    print(f"spikes: log Ẑ over 8 keys mean {np.mean(les):.3f} sd {np.std(les):.3f} (exact -9.040); {np.round(les, 3)}")
    for n in (100, 1000):
        ks = jax.random.split(jax.random.key(0), 3)
        y = jnp.concatenate([jax.random.normal(k, (n // 3 + 1,)) + m for k, m in zip(ks, [-5.0, 0.0, 5.0])])[:n]
        row = {}
        for name, model in (("ours", mix), ("handwritten", mix_hand)):
            out, first, warm = _time(lambda m=model: smc.tempered_smc(jax.random.key(1), m, y, num_particles=256, kernel="hmc",
                                                                      num_mcmc_steps=5, num_leapfrog=10))
            row[name] = warm
            print(f"mix{n} {name:12s} first {first:6.2f} s  warm {warm:6.3f} s  log Ẑ {float(out.log_evidence):10.3f}  "
                  f"steps {int(out.num_steps)}")
        print(f"mix{n} ours / handwritten (warm): {row['ours'] / row['handwritten']:.2f}")
    y = jnp.ones(50)
    tempering._check_summed_out(plain, (y,), {})
    t = time.perf_counter()
    for _ in range(20):
        tempering._check_summed_out(plain, (y,), {})
    probe = (time.perf_counter() - t) / 20
    _, _, warm = _time(lambda: smc.tempered_smc(jax.random.key(1), plain, y, num_particles=256))
    print(f"probe (no discrete sites): {1e3 * probe:.2f} ms per call; a warm tempered_smc call {1e3 * warm:.1f} ms")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
