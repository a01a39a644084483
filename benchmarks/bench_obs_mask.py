"""obs_mask imputation: ours and NumPyro's NUTS on the same conjugate model, against the exact answer.

Model: mu ~ N(0, 2), y_i ~ N(mu, 1), 200 entries of which 40 are missing.  The missing entries'
posterior mean is E[mu | y_obs] (closed form).  Run: ``python benchmarks/bench_obs_mask.py``
(ours with this python; NumPyro through /work/bench-venv in a subprocess).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

N, MISSING, PRIOR_SD = 200, 40, 2.0


def data():
    rng = np.random.default_rng(0)
    y = rng.normal(0.7, 1.0, N)
    mask = np.ones(N, bool)
    mask[rng.choice(N, MISSING, replace=False)] = False
    return np.where(mask, y, np.nan), mask


def exact(y, mask):
    prec = 1 / PRIOR_SD**2 + mask.sum()
    return float(np.nansum(y) / prec), float(np.sqrt(1 / prec + 1))


NUMPYRO = textwrap.dedent(
    """
    import json, sys, time, numpy as np, jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS
    y, mask = (np.asarray(v, dtype=t) for v, t in zip(json.loads(sys.stdin.read()), (float, bool)))
    y = np.where(mask, y, 0.0)  # NumPyro reads the masked-out entries
    def model(y, mask):
        mu = numpyro.sample("mu", dist.Normal(0.0, %r))
        with numpyro.plate("n", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)
    t = time.time()
    m = MCMC(NUTS(model), num_warmup=500, num_samples=2000, progress_bar=False)
    m.run(jax.random.PRNGKey(0), jnp.asarray(y), jnp.asarray(mask))
    d = np.asarray(m.get_samples()["y_unobserved"])[:, ~mask]
    print(json.dumps({"mean": float(d.mean()), "sd": float(d.std()), "seconds": time.time() - t}))
    """
    % PRIOR_SD
)


def ours(y, mask):
    import time

    import jax
    import jax.numpy as jnp

    import ppl
    from inference import mcmc
    from ppl import dist

    @ppl.model
    def model(y, mask):
        mu = ppl.sample("mu", dist.Normal(0.0, PRIOR_SD))
        with ppl.plate("n", y.shape[0]):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)

    t = time.time()
    run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), model, jnp.asarray(y), jnp.asarray(mask),
                      num_warmup=500, num_samples=2000, progress=False)
    d = np.asarray(run.samples["y_unobserved"]).reshape(-1, N)[:, ~mask]
    return {"mean": float(d.mean()), "sd": float(d.std()), "seconds": time.time() - t}


def main() -> None:
    y, mask = data()
    m, s = exact(y, mask)
    print(f"exact: missing entries' posterior mean {m:.4f}, sd {s:.4f}")
    print("ours   :", ours(y, mask))
    out = subprocess.run(["/work/bench-venv/bin/python", "-c", NUMPYRO], input=json.dumps([y.tolist(), mask.tolist()]),
                         capture_output=True, text=True)
    print("numpyro:", out.stdout.strip() or out.stderr[-500:])


if __name__ == "__main__":
    sys.exit(main())
