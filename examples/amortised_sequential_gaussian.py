"""Sequential Bayesian inference with a distribution transformer: an unknown mean, known noise.

The model family: ``theta ~ prior`` (a two-component Gaussian mixture), ``x_i ~ Normal(theta, 1)``.
A transformer trained once on simulated (prior, data) tasks maps the prior mixture and a batch of
5 points to the posterior mixture in one jitted call; applied 10 times (each posterior the next
prior) it is compared, at every step, with the exact posterior given all data so far (conjugate:
``amortised.normal_mean_posterior``).  Two different priors show that a new prior needs no
retraining.  The plot has one row per prior and one panel per update.

Run with ``.venv/bin/python examples/amortised_sequential_gaussian.py [--quick] [--out FILE]``; it
loads the shipped weights ``examples/data/amortised_normal_mean.eqx`` (about 1 s);
``--retrain [STEPS]`` trains them again (about 5 min on a laptop CPU) and overwrites the file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from inference import amortised

WEIGHTS = Path(__file__).resolve().parent / "data" / "amortised_normal_mean.eqx"
NOISE, N_BATCH, T = 1.0, 5, 10
#: the training tasks: 2-component priors on R, up to 10 data points
PRIOR_SAMPLER = amortised.random_gmm_sampler(2, 1, loc_range=(-3.0, 3.0), log_scale_range=(-3.0, 0.5), concentration=0.5)


def retrain(steps: int, seed: int = 0) -> amortised.DistributionTransformer:
    dt = amortised.DistributionTransformer(jax.random.key(seed), dim=1, data_dim=1, width=32, depth=2, heads=4)
    exact = lambda prior, x, mask: amortised.normal_mean_posterior(prior, x, mask, NOISE)  # noqa: E731
    opt = optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.05))
    res = amortised.train(jax.random.key(seed + 1), dt, amortised.normal_mean_family(NOISE), PRIOR_SAMPLER, 10,
                          num_steps=steps, batch_size=64, optimizer=opt, min_data=1, exact_posterior=exact, progress=True)
    print(f"trained {steps} steps; final loss {res.history[-100:].mean():.4f}")
    return res.transformer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer grid points in the plot (used by the tests)")
    ap.add_argument("--retrain", type=int, nargs="?", const=4000, default=None, help="train anew for STEPS steps and save")
    ap.add_argument("--out", default="amortised_sequential_gaussian.png")
    a = ap.parse_args()
    if a.retrain:
        WEIGHTS.parent.mkdir(exist_ok=True)
        amortised.save(WEIGHTS, retrain(a.retrain))
    dt = amortised.load(WEIGHTS)

    theta_true = 1.3
    batches = theta_true + NOISE * jax.random.normal(jax.random.key(7), (T, N_BATCH, 1))
    priors = {"bimodal prior": amortised.GMM.from_weights([0.5, 0.5], [[-2.0], [2.0]], [[1.0], [1.0]]),
              "narrow, wrong prior": amortised.GMM.from_weights([0.9, 0.1], [[-1.0], [0.5]], [[0.3], [0.8]])}
    seq = dt.sequential  # one compiled call (equinox.filter_jit)
    grid = jnp.linspace(-4.0, 4.0, 200 if a.quick else 800)
    rows = {}
    for name, prior in priors.items():
        posts = seq(prior, batches)
        t0 = time.perf_counter()
        jax.block_until_ready(seq(prior, batches))
        ms = 1e3 * (time.perf_counter() - t0) / T
        kls = []
        for t in range(T):
            exact = amortised.normal_mean_posterior(prior, batches[: t + 1].reshape(-1, 1), None, NOISE)
            draws = exact.sample(jax.random.key(100 + t), 4000)
            kls.append(float(jnp.mean(exact.log_prob(draws) - posts[t].log_prob(draws))))
        rows[name] = (prior, posts, kls)
        print(f"{name}: {ms:.2f} ms per update; KL(exact || predicted) per update: " + " ".join(f"{k:.3f}" for k in kls))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = [0, 1, 3, 6, 9]
    fig, axes = plt.subplots(len(rows), len(show), figsize=(3 * len(show), 2.6 * len(rows)), sharex=True)
    for r, (name, (prior, posts, kls)) in enumerate(rows.items()):
        for c, t in enumerate(show):
            ax = axes[r, c]
            exact = amortised.normal_mean_posterior(prior, batches[: t + 1].reshape(-1, 1), None, NOISE)
            ax.plot(grid, jnp.exp(exact.log_prob(grid[:, None])), "k-", lw=2, label="exact")
            ax.plot(grid, jnp.exp(posts[t].log_prob(grid[:, None])), "C1--", lw=2, label="transformer")
            ax.axvline(theta_true, color="grey", lw=0.8)
            ax.set_title(f"{name}\nafter {N_BATCH * (t + 1)} points, KL {kls[t]:.3f}", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out, dpi=80)
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
