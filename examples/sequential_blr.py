"""Sequential Bayesian linear regression over five tasks, against the batch conjugate posterior.

w ~ N(0, I/alpha), y | X, w ~ N(X w, noise² I).  The data arrive in five tasks; after each, the
posterior is sampled by NUTS, a Gaussian is fitted to the draws on the unconstrained space and
becomes the prior of the next task (``inference.sequential``).  The exact path (``vi.laplace``,
exact here, with ``Gaussian(exact=True)``) is run alongside.  Both are compared with the batch
posterior on all the tasks seen so far, computed in closed form; the script checks that the final
KL(exact ‖ sequential NUTS) is small and that the exact path equals the batch posterior.

Run: ``python examples/sequential_blr.py [--quick] [--out PATH]`` (about 30 s on a laptop CPU;
``--quick``: 3 tasks, fewer draws).  The plot shows each weight's posterior mean ± 2 sd after each task.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from inference import mcmc, vi
from inference import sequential as seq
from ppl import dist

ALPHA, NOISE, D, T, N = 1.0, 0.5, 2, 5, 8


@ppl.model
def blr(X, y=None):
    w = ppl.sample("w", dist.Normal(jnp.zeros(D), 1.0 / np.sqrt(ALPHA)).to_event(1))
    with ppl.plate("n", X.shape[0]):
        ppl.sample("y", dist.Normal(X @ w, NOISE), obs=y)


def tasks(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    w = np.array([1.0, -0.7])
    out = []
    for t in range(T):
        X = rng.normal(size=(N, D)) + np.array([0.5 * t, -0.3 * t])  # the inputs drift task to task
        out.append({"X": jnp.asarray(X), "y": jnp.asarray(X @ w + NOISE * rng.normal(size=N))})
    return out


def batch_posterior(batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    X = np.concatenate([np.asarray(b["X"]) for b in batches])
    y = np.concatenate([np.asarray(b["y"]) for b in batches])
    cov = np.linalg.inv(ALPHA * np.eye(D) + X.T @ X / NOISE**2)
    return cov @ X.T @ y / NOISE**2, cov


def kl_gauss(m0, S0, m1, S1) -> float:
    """KL(N(m0, S0) ‖ N(m1, S1))."""
    S1i = np.linalg.inv(S1)
    d = m1 - m0
    return 0.5 * float(np.trace(S1i @ S0) + d @ S1i @ d - len(m0) + np.linalg.slogdet(S1)[1] - np.linalg.slogdet(S0)[1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer warmup steps and draws")
    ap.add_argument("--out", default="docs/tutorials/img/sequential-blr.png", help="where to save the plot")
    a = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    nw, ns = (150, 400) if a.quick else (500, 2000)
    batches = tasks()[:3] if a.quick else tasks()
    nuts = seq.sequential(jax.random.key(0), mcmc.NUTS(), blr, batches, infer_options=dict(num_warmup=nw, num_samples=ns),
                          num_draws=ns)
    laplace = lambda key, model, *args, **kw: vi.laplace(model, *args, **kw)  # noqa: E731
    exact = seq.sequential(jax.random.key(0), laplace, blr, batches, estimator=seq.Gaussian(exact=True))
    rows = []
    for t in range(len(batches)):
        m, S = batch_posterior(batches[: t + 1])
        q = nuts.priors[t].density
        e = exact.priors[t].density
        rows.append(dict(task=t + 1, batch_mean=m, batch_sd=np.sqrt(np.diag(S)), seq_mean=np.asarray(q.mean),
                         seq_sd=np.sqrt(np.diag(np.asarray(q.cov))), kl=kl_gauss(m, S, np.asarray(q.mean), np.asarray(q.cov)),
                         exact_err=float(max(np.abs(np.asarray(e.mean) - m).max(), np.abs(np.asarray(e.cov) - S).max()))))
        print(f"task {t + 1}: KL(batch || sequential NUTS) = {rows[-1]['kl']:.4f}   exact path |error| = {rows[-1]['exact_err']:.1e}")
    assert rows[-1]["exact_err"] < 1e-8, "the exact path must equal the batch posterior"
    assert rows[-1]["kl"] < 0.2, "the sequential NUTS posterior drifted from the batch posterior"

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, D, figsize=(9, 3.2), sharex=True)
    ts = np.arange(1, len(rows) + 1)
    for j, ax in enumerate(axes):
        bm = np.array([r["batch_mean"][j] for r in rows])
        bs = np.array([r["batch_sd"][j] for r in rows])
        ax.fill_between(ts, bm - 2 * bs, bm + 2 * bs, alpha=0.3, label="batch posterior (exact) ± 2 sd")
        ax.plot(ts, bm, "k-")
        ax.errorbar(ts + 0.08, [r["seq_mean"][j] for r in rows], yerr=[2 * r["seq_sd"][j] for r in rows], fmt="o",
                    label="sequential: NUTS + fitted Gaussian")
        ax.set_title(f"w[{j}]")
        ax.set_xlabel("tasks seen")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"saved {a.out}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
