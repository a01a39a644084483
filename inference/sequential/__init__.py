"""Sequential Bayesian inference: today's posterior, fitted by a density estimator, as tomorrow's
prior (issue 20; Kessler et al., "On sequential Bayesian inference for continual learning").

* :mod:`~inference.sequential.estimators`: Gaussian (draws or exact moments), Gaussian mixture
  by EM, normalising flow (flowjax), Beta by exact moments, on the unconstrained space;
* :mod:`~inference.sequential.prior`: the fitted density as a ppl model with the same sites
  (:func:`prior_model`), or as a replacement of a model's prior terms (:func:`with_prior`);
* :mod:`~inference.sequential.driver`: :func:`sequential`, condition / infer / refit per task.

See ``docs/design/sequential.md`` and ``docs/tutorials/sequential.md``.

Example:
    >>> from inference import sequential as seq
    >>> seq.Gaussian(), seq.GaussianMixture(3).num_components
    (Gaussian(jitter=0.0, exact=False), 3)
"""

from .estimators import (BetaMoments, Estimator, FittedBeta, FittedFlow, FittedGaussian, FittedMixture, Flow, Gaussian,
                         GaussianMixture, em_gaussian_mixture)
from .prior import FittedPrior, Layout, SiteSpec, fit_prior, layout_of, prior_model, with_prior
from .driver import SequentialResult, refit, sequential

__all__ = [
    "Estimator", "Gaussian", "GaussianMixture", "Flow", "BetaMoments",
    "FittedGaussian", "FittedMixture", "FittedFlow", "FittedBeta", "em_gaussian_mixture",
    "Layout", "SiteSpec", "FittedPrior", "layout_of", "fit_prior", "prior_model", "with_prior",
    "sequential", "SequentialResult", "refit",
]
