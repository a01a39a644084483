"""Eight schools with NUTS: centred vs non-centred, divergences, summary, save and resume.

Run with ``.venv/bin/python examples/mcmc_eight_schools.py`` (about half a minute on a laptop
CPU, most of it compilation; a second run reuses the persistent compilation cache).
"""

from __future__ import annotations

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from inference import mcmc
from ppl import dist

# Eight schools (Rubin 1981): estimated coaching effects and their standard errors.
Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


@ppl.model
def centred(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta = ppl.sample("theta", dist.Normal(mu, tau))
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


@ppl.model
def non_centred(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta_trans = ppl.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = ppl.deterministic("theta", mu + tau * theta_trans)
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


def main() -> None:
    for name, model in [("centred", centred), ("non-centred", non_centred)]:
        run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), model, SIGMA, y=Y,
                          num_warmup=1000, num_samples=1000, num_chains=4)
        print(f"\n== {name}: divergences per chain {run.diagnostics['divergences']}, "
              f"mean tree depth {np.round(run.diagnostics['mean_tree_depth'], 2)}")
        print(run.summary())

    # save the non-centred run, load it back, and continue: the same draws as without the restart
    path = os.path.join(tempfile.mkdtemp(), "eight_schools.npz")
    run.save(path)
    loaded = mcmc.load(path, mcmc.NUTS(), non_centred, SIGMA, y=Y)
    a, b = run.resume(jax.random.key(1)), loaded.resume(jax.random.key(1))
    assert np.array_equal(np.asarray(a.samples["tau"]), np.asarray(b.samples["tau"]))
    print(f"\nsaved to {path}, loaded and resumed: {b}")


if __name__ == "__main__":
    main()
