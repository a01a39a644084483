"""Issue 14's two-component mixture, shared by the tests of the element-by-element check:
``fine`` uses its summed-out z element by element; ``counts`` also reduces z across its plate
(a factor of ``jnp.sum(z)``), a model every entry point that sums z out must refuse (REFUSED)."""

from __future__ import annotations

import jax.numpy as jnp

import ppl
from ppl import dist

REFUSED = "site 'few_ones' uses the summed-out discrete site"


def mixture(y, prior=None, reduce: bool = True) -> None:
    """The mixture's body: ``mu`` from `prior` (default Normal(0, 5) on 2 components), z per data
    point, and with `reduce` the factor coupling the elements."""
    mu = ppl.sample("mu", prior() if prior is not None else dist.Normal(0, 5).expand([2]).to_event(1))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(0.3))
        ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y)
    if reduce:
        ppl.factor("few_ones", -0.5 * jnp.sum(z))  # couples the elements: not summable one by one


@ppl.model
def counts(y):
    mixture(y)


@ppl.model
def fine(y):
    mixture(y, reduce=False)
