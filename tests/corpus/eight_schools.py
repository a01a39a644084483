"""NumPyro's README model: eight schools, centred, non-centred with ``reparam``.

The README's non-centred version wraps the centred model in
``numpyro.handlers.reparam(config={"theta": TransformReparam()})`` with a
``TransformedDistribution`` prior; ours is the same with ``ppl.reparam``.  Ported: imports only.
"""

import numpy as np

import numpyro.distributions as dist  # unchanged: ppl's distributions are NumPyro's
from numpyro.infer.reparam import TransformReparam  # unchanged: ppl.reparam takes NumPyro's reparameterisers

import ppl as numpyro  # PORT: was `import numpyro`
from ppl import reparam  # PORT: was `from numpyro.handlers import reparam`

J = 8
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=np.float32)
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=np.float32)


def eight_schools_noncentered(J, sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        with reparam(config={"theta": TransformReparam()}):
            theta = numpyro.sample(
                "theta",
                dist.TransformedDistribution(
                    dist.Normal(0.0, 1.0), dist.transforms.AffineTransform(mu, tau)
                ),
            )
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def data():
    return (J, SIGMA), {"y": Y}


CASES = {"eight_schools_noncentered": (eight_schools_noncentered, data)}
