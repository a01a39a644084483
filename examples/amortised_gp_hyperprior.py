"""A Gaussian-process predictive with a hyperprior, amortised by a distribution transformer.

Model family: log-lengthscale ``u ~ prior`` (a two-component Gaussian mixture), inputs
``x_i ~ Uniform(-3, 3)``, outputs ``y ~ MVN(0, K_u(x) + 0.1² I)`` with the squared-exponential
kernel of lengthscale ``exp(u)``, up to 10 points.  The network sees the points ``(x_i, y_i)`` as a
set (the GP is exchangeable and marginally consistent, so masking points is exact) and returns the
posterior mixture of ``u``; it is trained on simulated tasks with the simulated ``u`` as the
posterior draw (no inference needed to train).  On a new data set and a new prior the example
compares, against quadrature on a fine grid of ``u`` (exact up to the grid):
- the posterior density of the log-lengthscale;
- the GP predictive mean and sd at test inputs, averaged over each posterior of ``u``.

Run ``.venv/bin/python examples/amortised_gp_hyperprior.py [--quick] [--out FILE]``: it loads the
shipped weights ``examples/data/amortised_gp.eqx``; ``--retrain [STEPS]`` trains them anew.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl
from inference import amortised
from ppl import dist

WEIGHTS = Path(__file__).resolve().parent / "data" / "amortised_gp.eqx"
N_MAX, NOISE = 10, 0.1
PRIOR_SAMPLER = amortised.random_gmm_sampler(2, 1, loc_range=(-1.5, 1.0), log_scale_range=(-2.0, 0.0), concentration=1.0)


def gram(x1, x2, log_ell):
    return jnp.exp(-0.5 * (x1[:, None] - x2[None, :]) ** 2 / jnp.exp(2 * log_ell))


@ppl.model
def gp_family(prior, n):
    u = ppl.sample("log_ell", prior.distribution())
    x = ppl.sample("x", dist.Uniform(-3.0, 3.0).expand([n]))
    cov = gram(x, x, u[0]) + NOISE**2 * jnp.eye(n)
    y = ppl.sample("y", dist.MultivariateNormal(jnp.zeros(n), covariance_matrix=cov))
    return ppl.deterministic("xy", jnp.stack([x, y], axis=-1))


def retrain(steps: int, seed: int = 0) -> amortised.DistributionTransformer:
    dt = amortised.DistributionTransformer(jax.random.key(seed), dim=1, data_dim=2, width=32, depth=2, heads=4)
    opt = optax.adam(optax.cosine_decay_schedule(2e-3, steps, alpha=0.05))
    res = amortised.train(jax.random.key(seed + 1), dt, gp_family, PRIOR_SAMPLER, N_MAX, param="log_ell", data="xy",
                          num_steps=steps, batch_size=128, optimizer=opt, min_data=3, progress=True)
    print(f"trained {steps} steps; final loss {res.history[-100:].mean():.4f}")
    return res.transformer


def quadrature_posterior(prior, x, y, grid):
    """p(u | x, y) on the grid (normalised by the trapezoidal rule)."""
    def loglik(u):
        return dist.MultivariateNormal(jnp.zeros(x.shape[0]), covariance_matrix=gram(x, x, u) + NOISE**2 * jnp.eye(x.shape[0])).log_prob(y)

    lp = prior.log_prob(grid[:, None]) + jax.vmap(loglik)(grid)
    p = jnp.exp(lp - lp.max())
    return p / jnp.trapezoid(p, grid)


def predictive(dens, grid, x, y, xs):
    """Mean and sd of the GP predictive at xs, mixed over the density of u on the grid."""
    def one(u):
        K = gram(x, x, u) + NOISE**2 * jnp.eye(x.shape[0])
        ks = gram(xs, x, u)
        m = ks @ jnp.linalg.solve(K, y)
        v = 1.0 - jnp.sum(ks * jnp.linalg.solve(K, ks.T).T, axis=1) + NOISE**2
        return m, v

    m, v = jax.vmap(one)(grid)
    w = dens[:, None] * jnp.gradient(grid)[:, None]
    w = w / w.sum()
    mean = jnp.sum(w * m, axis=0)
    return mean, jnp.sqrt(jnp.sum(w * (v + m**2), axis=0) - mean**2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a coarser grid (used by the tests)")
    ap.add_argument("--retrain", type=int, nargs="?", const=6000, default=None)
    ap.add_argument("--out", default="amortised_gp_hyperprior.png")
    a = ap.parse_args()
    if a.retrain:
        WEIGHTS.parent.mkdir(exist_ok=True)
        amortised.save(WEIGHTS, retrain(a.retrain))
    dt = amortised.load(WEIGHTS)

    grid = jnp.linspace(-3.5, 2.5, 600 if a.quick else 3000)
    xs = jnp.linspace(-3.0, 3.0, 60 if a.quick else 200)
    # a new prior (not one of the training draws) and a data set of 8 points with lengthscale 0.6
    prior = amortised.GMM.from_weights([0.3, 0.7], [[-1.2], [0.6]], [[0.3], [0.5]])
    k1, k2 = jax.random.split(jax.random.key(3))
    x = jax.random.uniform(k1, (8,), minval=-3.0, maxval=3.0)
    y = jax.random.multivariate_normal(k2, jnp.zeros(8), gram(x, x, jnp.log(0.6)) + NOISE**2 * jnp.eye(8))
    exact = quadrature_posterior(prior, x, y, grid)
    post = dt(prior, jnp.stack([x, y], -1))
    approx = jnp.exp(post.log_prob(grid[:, None]))
    def kl_from_exact(q):
        return float(jnp.trapezoid(jnp.where(exact > 0, exact * (jnp.log(jnp.where(exact > 0, exact, 1.0)) - jnp.log(q + 1e-300)), 0.0), grid))

    kl, kl_prior = kl_from_exact(approx), kl_from_exact(jnp.exp(prior.log_prob(grid[:, None])))
    m_ex, s_ex = predictive(exact, grid, x, y, xs)
    m_ap, s_ap = predictive(approx, grid, x, y, xs)
    print(f"KL(quadrature || transformer) of the log-lengthscale posterior: {kl:.4f} (the prior's: {kl_prior:.4f})")
    print(f"predictive: max |mean difference| {float(jnp.max(jnp.abs(m_ex - m_ap))):.4f}, "
          f"max |sd difference| {float(jnp.max(jnp.abs(s_ex - s_ap))):.4f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
    ax[0].plot(grid, jnp.exp(prior.log_prob(grid[:, None])), color="grey", lw=1, label="prior")
    ax[0].plot(grid, exact, "k-", lw=2, label="quadrature")
    ax[0].plot(grid, approx, "C1--", lw=2, label="transformer")
    ax[0].axvline(np.log(0.6), color="grey", lw=0.8)
    ax[0].set_xlabel("log lengthscale"); ax[0].legend(fontsize=8); ax[0].set_title(f"posterior of u, KL {kl:.3f}")
    for m, s, style, lab in ((m_ex, s_ex, "k-", "quadrature"), (m_ap, s_ap, "C1--", "transformer")):
        ax[1].plot(xs, m, style, label=lab)
        ax[1].plot(xs, m + 2 * s, style, lw=0.7); ax[1].plot(xs, m - 2 * s, style, lw=0.7)
    ax[1].plot(x, y, "o", color="C0"); ax[1].legend(fontsize=8); ax[1].set_title("GP predictive (mean ± 2 sd)")
    fig.tight_layout()
    fig.savefig(a.out, dpi=80)
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
