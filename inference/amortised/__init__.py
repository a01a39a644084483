"""Amortised inference: a distribution transformer maps a prior Gaussian mixture and a data set
to the posterior Gaussian mixture in one jitted call (issue 20).

Train it once on tasks simulated from a model family (:func:`train`); then
``posterior = dt(prior, data)`` costs milliseconds, for any prior mixture (no retraining when
the prior changes), and ``dt.sequential(prior, batches)`` applies it batch after batch (today's
posterior as tomorrow's prior).  The posterior is a :class:`GMM`: a NumPyro
``MixtureSameFamily`` (:meth:`GMM.distribution`) or a one-site ``ppl.Model``
(:meth:`GMM.as_model`).  Save and load trained networks with :func:`save` / :func:`load`.
See ``docs/tutorials/amortised.md``.

Example:
    >>> from inference import amortised
    >>> prior = amortised.GMM.from_weights([0.5, 0.5], [[-2.0], [2.0]], [[1.0], [1.0]])
    >>> exact = amortised.normal_mean_posterior(prior, jnp.full((4, 1), 2.0))
    >>> bool(exact.weights[1] > 0.99)
    True
"""

from .families import normal_mean_family, random_gmm_sampler
from .gmm import GMM
from .train import TrainResult, heldout_loglik, normal_mean_posterior, simulate_tasks, train
from .transformer import DistributionTransformer, load, save

__all__ = ["GMM", "DistributionTransformer", "train", "TrainResult", "simulate_tasks", "heldout_loglik",
           "normal_mean_posterior", "save", "load", "random_gmm_sampler", "normal_mean_family"]
