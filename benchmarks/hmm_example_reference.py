"""Reference posterior of posteriordb's ``hmm_example`` for ``tests/test_enum_hmm_reference.py``
(issue 14): posteriordb ships the model and data but no reference draws, so this script makes
one, independently of ppl: NumPyro's NUTS on the *hand-marginalised* model (the forward
algorithm written out in ``lax.scan``), 4 chains of 1000 warmup + 5000 draws, float64.  For
every scalar of ``theta`` (K×K transition rows) and ``mu`` it stores the mean, sd, bulk ESS
(``numpyro.diagnostics``) and MCSE sd/sqrt(ESS) in ``tests/enum_reference/hmm_example.json``.

Run from the repository root (NumPyro is installed in the project's environment):

    /work/main/.venv/bin/python benchmarks/hmm_example_reference.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.diagnostics import effective_sample_size  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "shared" / "data" / "posteriordb" / "hmm_example-hmm_example" / "data.json"
OUT = ROOT / "tests" / "enum_reference" / "hmm_example.json"
SETTINGS = dict(num_warmup=1000, num_samples=5000, num_chains=4, seed=0)


def hmm_forward(K, y):
    """posteriordb's hmm_example.stan: simplex rows theta[k] (flat), positive_ordered mu with
    normal(3, 1) and normal(10, 1) terms, a uniform first state (a constant)."""
    theta = numpyro.sample("theta", dist.Dirichlet(jnp.ones(K)).expand([K]).to_event(1))
    mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.positive_ordered_vector, (), (K,)))
    numpyro.factor("mu_prior", dist.Normal(jnp.array([3.0, 10.0]), 1.0).log_prob(mu).sum())
    emit = dist.Normal(mu, 1.0).log_prob(y[:, None])

    def fwd(la, e):
        return jax.nn.logsumexp(la[:, None] + jnp.log(theta), axis=0) + e, None

    la, _ = jax.lax.scan(fwd, -jnp.log(K) + emit[0], emit[1:])
    numpyro.factor("lik", jax.nn.logsumexp(la))


def main() -> None:
    data_file = DATA if DATA.exists() else Path("/work/shared/data/posteriordb/hmm_example-hmm_example/data.json")
    d = json.loads(data_file.read_text())
    K, y = int(d["K"]), jnp.asarray(d["y"], dtype=jnp.float64)
    t0 = time.time()
    mc = MCMC(NUTS(hmm_forward), num_warmup=SETTINGS["num_warmup"], num_samples=SETTINGS["num_samples"],
              num_chains=SETTINGS["num_chains"], chain_method="sequential", progress_bar=False)
    mc.run(jax.random.key(SETTINGS["seed"]), K, y)
    draws = mc.get_samples(group_by_chain=True)
    out = {"settings": SETTINGS, "sampler": f"numpyro {numpyro.__version__} NUTS, hand-marginalised forward algorithm",
           "seconds": round(time.time() - t0, 1), "params": {}}
    for name in ("theta", "mu"):
        a = np.asarray(draws[name])
        flat = a.reshape(a.shape[:2] + (-1,))
        for j, idx in enumerate(np.ndindex(*a.shape[2:])):
            x = flat[..., j]
            ess = float(effective_sample_size(x))
            sd = float(x.std())
            out["params"][f"{name}{list(idx)}"] = {"mean": float(x.mean()), "sd": sd, "ess": ess,
                                                   "mcse": sd / np.sqrt(ess)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
