"""NumPyro examples/ordinal_regression.py, model 2: an ordered-logistic regression whose
cut-points have a proper prior (an ``OrderedTransform`` of Normals).  Data generated as in the
example (one predictor, 3 classes), 200 rows.  Ported: imports only.
"""

import numpy as np

import numpyro.distributions as dist  # unchanged: ppl's distributions are NumPyro's
from numpyro.distributions import TransformedDistribution, transforms

import ppl as numpyro  # PORT: was `import numpyro`


def model2(X, Y, nclasses=3):
    b_X_eta = numpyro.sample("b_X_eta", dist.Normal(0, 5))
    c_y = numpyro.sample(
        "c_y",
        TransformedDistribution(
            dist.Normal(0, 1).expand([nclasses - 1]), transforms.OrderedTransform()
        ),
    )
    with numpyro.plate("obs", X.shape[0]):
        eta = X * b_X_eta
        numpyro.sample("Y", dist.OrderedLogistic(eta, c_y), obs=Y)


def data():
    rng = np.random.default_rng(3)
    n, nclasses = 200, 3
    Y = rng.integers(0, nclasses, size=n)
    X = rng.normal(size=n) + Y * 1.0
    return (X.astype(np.float32), Y.astype(np.int32)), {"nclasses": nclasses}


CASES = {"ordinal_regression": (model2, data)}
