"""NumPyro examples/baseball.py: Efron and Morris' 18 players, hits in their first 45 at-bats.

Four models of the hit probability: fully pooled, not pooled, partially pooled (Beta prior with
learnt mean and concentration), partially pooled on the logit scale.  Ported: imports only.
"""

import jax.numpy as jnp  # noqa: F401
import numpy as np

import numpyro.distributions as dist  # unchanged: ppl's distributions are NumPyro's

import ppl as numpyro  # PORT: was `import numpyro`

HITS = np.array([18, 17, 16, 15, 14, 14, 13, 12, 11, 11, 10, 10, 10, 10, 10, 9, 8, 7], dtype=np.float32)
AT_BATS = np.full(18, 45.0, dtype=np.float32)


def fully_pooled(at_bats, hits=None):
    phi_prior = dist.Uniform(0, 1)
    phi = numpyro.sample("phi", phi_prior)
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def not_pooled(at_bats, hits=None):
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        phi_prior = dist.Uniform(0, 1)
        phi = numpyro.sample("phi", phi_prior)
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def partially_pooled(at_bats, hits=None):
    m = numpyro.sample("m", dist.Uniform(0, 1))
    kappa = numpyro.sample("kappa", dist.Pareto(1, 1.5))
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        phi_prior = dist.Beta(m * kappa, (1 - m) * kappa)
        phi = numpyro.sample("phi", phi_prior)
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def partially_pooled_with_logit(at_bats, hits=None):
    loc = numpyro.sample("loc", dist.Normal(-1, 1))
    scale = numpyro.sample("scale", dist.HalfCauchy(1))
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        alpha = numpyro.sample("alpha", dist.Normal(loc, scale))
        return numpyro.sample("obs", dist.Binomial(at_bats, logits=alpha), obs=hits)


def data():
    return (AT_BATS,), {"hits": HITS}


CASES = {
    "baseball_fully_pooled": (fully_pooled, data),
    "baseball_not_pooled": (not_pooled, data),
    "baseball_partially_pooled": (partially_pooled, data),
    "baseball_partially_pooled_with_logit": (partially_pooled_with_logit, data),
}
