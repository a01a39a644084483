"""Forgetting in a small Bayesian neural network: split two-moons, a Gaussian prior from draws.

A 2-8-1 tanh network classifies two moons (generated here, no scikit-learn needed).  The data
are split into two tasks by the first input (left half, right half), as in Kessler et al.'s
split tasks.  Sequential: NUTS on task 1, a full-covariance Gaussian fitted to the draws on the
unconstrained space as the prior of task 2, NUTS on task 2.  Batch: NUTS on both tasks at once.
The network's posterior is multimodal (sign and permutation symmetries, a curved ridge); a
Gaussian keeps only a blurred ellipse of it, so the sequential posterior forgets part of task 1:
its accuracy on task 1's test points falls below the batch fit's.

Run: ``python examples/sequential_bnn.py [--quick] [--out PATH]`` (about 40 s on a laptop CPU;
``--quick`` fewer draws).  The plot shows the three predictive decision maps.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from inference import mcmc
from inference import sequential as seq
from ppl import dist

H = 8


def moons(n: int, rng: np.random.Generator, noise: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    t = rng.uniform(0, np.pi, n)
    c = rng.integers(0, 2, n)
    x = np.where(c[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    return x + noise * rng.normal(size=x.shape), c.astype(float)


@ppl.model
def bnn(X, y=None):
    w1 = ppl.sample("w1", dist.Normal(jnp.zeros((2, H)), 1.0).to_event(2))
    b1 = ppl.sample("b1", dist.Normal(jnp.zeros(H), 1.0).to_event(1))
    w2 = ppl.sample("w2", dist.Normal(jnp.zeros(H), 1.0).to_event(1))
    b2 = ppl.sample("b2", dist.Normal(0.0, 1.0))
    logits = jnp.tanh(X @ w1 + b1) @ w2 + b2
    with ppl.plate("n", X.shape[0]):
        ppl.sample("y", dist.Bernoulli(logits=logits), obs=y)


def predict(draws: dict, X: np.ndarray) -> np.ndarray:
    """Posterior predictive P(y = 1 | x), averaged over the draws."""
    f = lambda w1, b1, w2, b2: jax.nn.sigmoid(jnp.tanh(X @ w1 + b1) @ w2 + b2)  # noqa: E731
    return np.asarray(jnp.mean(jax.vmap(f)(draws["w1"], draws["b1"], draws["w2"], draws["b2"]), 0))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer warmup steps and draws")
    ap.add_argument("--out", default="docs/tutorials/img/sequential-bnn.png", help="where to save the plot")
    a = ap.parse_args(argv)
    nw, ns = (100, 100) if a.quick else (400, 600)
    rng = np.random.default_rng(0)
    X, y = moons(200, rng)
    Xt, yt = moons(400, rng)
    split, split_t = X[:, 0] < 0.5, Xt[:, 0] < 0.5
    batches = [{"X": jnp.asarray(X[split]), "y": jnp.asarray(y[split])},
               {"X": jnp.asarray(X[~split]), "y": jnp.asarray(y[~split])}]
    opts = dict(num_warmup=nw, num_samples=ns)
    res = seq.sequential(jax.random.key(0), mcmc.NUTS(), bnn, batches, infer_options=opts, num_draws=ns,
                         estimator=seq.Gaussian(jitter=1e-6))
    batch = mcmc.sample(jax.random.key(1), mcmc.NUTS(), bnn, jnp.asarray(X), y=jnp.asarray(y), progress=False, **opts)
    fits = {"after task 1": res.results[0].sample(jax.random.key(2), ns),
            "sequential, after task 2": res.results[1].sample(jax.random.key(3), ns),
            "batch (both tasks)": batch.sample(jax.random.key(4), ns)}
    acc = {}
    for name, d in fits.items():
        p = predict(d, Xt)
        acc[name] = (float(np.mean((p[split_t] > 0.5) == yt[split_t])), float(np.mean((p[~split_t] > 0.5) == yt[~split_t])))
        print(f"{name:26s} accuracy on task 1: {acc[name][0]:.3f}   on task 2: {acc[name][1]:.3f}")
    forgetting = acc["batch (both tasks)"][0] - acc["sequential, after task 2"][0]
    print(f"forgetting of task 1 (batch − sequential accuracy on task 1): {forgetting:+.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = np.linspace(-1.5, 2.5, 80)
    G = np.stack(np.meshgrid(g, np.linspace(-1.0, 1.5, 60)), -1).reshape(-1, 2)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
    for ax, (name, d) in zip(axes, fits.items()):
        ax.contourf(g, np.linspace(-1.0, 1.5, 60), predict(d, G).reshape(60, 80), levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
        for m, mk in ((split, "o"), (~split, "s")):
            ax.scatter(X[m, 0], X[m, 1], c=y[m], cmap="RdBu_r", marker=mk, s=10, edgecolors="k", linewidths=0.3)
        ax.axvline(0.5, color="k", lw=0.8, ls="--")
        ax.set_title(f"{name}\nacc task 1 {acc[name][0]:.2f}, task 2 {acc[name][1]:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"saved {a.out}")
    return {"accuracy": acc, "forgetting": forgetting}


if __name__ == "__main__":
    main()
