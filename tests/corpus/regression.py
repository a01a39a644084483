"""NumPyro's Bayesian regression tutorial (WaffleDivorce: divorce ~ marriage + age), on
generated standardised data of the same size (50 states).  Ported: imports only.
"""

import numpy as np

import numpyro.distributions as dist  # unchanged: ppl's distributions are NumPyro's

import ppl as numpyro  # PORT: was `import numpyro`


def model(marriage=None, age=None, divorce=None):
    a = numpyro.sample("a", dist.Normal(0.0, 0.2))
    M, A = 0.0, 0.0
    if marriage is not None:
        bM = numpyro.sample("bM", dist.Normal(0.0, 0.5))
        M = bM * marriage
    if age is not None:
        bA = numpyro.sample("bA", dist.Normal(0.0, 0.5))
        A = bA * age
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    mu = a + M + A
    numpyro.sample("obs", dist.Normal(mu, sigma), obs=divorce)


def data():
    rng = np.random.default_rng(17)
    n = 50
    age = rng.normal(size=n)
    marriage = -0.7 * age + 0.7 * rng.normal(size=n)
    divorce = -0.6 * age + 0.1 * marriage + 0.8 * rng.normal(size=n)
    f = lambda x: ((x - x.mean()) / x.std()).astype(np.float32)  # noqa: E731
    return (), {"marriage": f(marriage), "age": f(age), "divorce": f(divorce)}


CASES = {"divorce_regression": (model, data)}
