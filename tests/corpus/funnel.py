"""NumPyro examples/funnel.py: Neal's funnel, sampled through ``LocScaleReparam(0)``.

``reparam_model = reparam(model, config={"x": LocScaleReparam(0)})`` as in the example (the
centred funnel is the example's bad case: its NUTS posterior is biased, in NumPyro and here).
Ported: imports only.
"""

import jax.numpy as jnp

import numpyro.distributions as dist  # unchanged: ppl's distributions are NumPyro's
from numpyro.infer.reparam import LocScaleReparam  # unchanged: ppl.reparam takes NumPyro's reparameterisers

import ppl as numpyro  # PORT: was `import numpyro`
from ppl import reparam  # PORT: was `from numpyro.handlers import reparam`


def model(dim=10):
    y = numpyro.sample("y", dist.Normal(0, 3))
    numpyro.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


reparam_model = reparam(model, config={"x": LocScaleReparam(0)})


def data():
    return (), {"dim": 4}


CASES = {"funnel_reparam": (reparam_model, data)}
