"""Logistic regression on the German credit data (the Inference Gym recipe, as in NumPyro's
``examples/covtype``-style benchmarks): 24 standardised features and an intercept, the first
200 of the 1000 rows.  Ported: imports only.
"""

import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import numpyro.distributions as dist  # unchanged: ppl's distributions are NumPyro's

import ppl as numpyro  # PORT: was `import numpyro`


def model(features, labels):
    N, dim = features.shape
    coefs = numpyro.sample("coefs", dist.Normal(jnp.zeros(dim), jnp.ones(dim)))
    logits = jnp.dot(features, coefs)
    return numpyro.sample("obs", dist.Bernoulli(logits=logits), obs=labels)


def data():
    root = Path(os.environ.get("PPL_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    raw = np.asarray(json.loads((root / "german_credit_numeric.json").read_text())["raw"], dtype=np.float64)
    x = raw[:, :24]
    x = (x - x.mean(0)) / x.std(0)
    X = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)[:200].astype(np.float32)
    y = (raw[:200, 24] - 1).astype(np.float32)
    return (X, y), {}


CASES = {"german_credit_logistic": (model, data)}
