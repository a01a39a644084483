"""ppl: a probabilistic programming language for JAX.

Write a model as a Python function that calls the primitives (:func:`sample`, :func:`param`,
:func:`plate`, :func:`factor`, :func:`deterministic`); decorate it with :func:`model`; then use
its operations (``simulate``, ``log_density``, ``generate``, ``update``, ``regenerate``), the
handlers (``condition``, ``do``, ``substitute``, ...), the combinators (``scan``, ``cond``,
``switch``) and the unconstrained view (:func:`unconstrained`).  Distributions are NumPyro's,
re-exported as ``ppl.dist``.  Importing ``ppl`` changes nothing in the process; settings
(the persistent compilation cache, environment variables) are in :mod:`ppl.config`.

Example:
    >>> import jax, jax.numpy as jnp, ppl
    >>> from ppl import dist
    >>> @ppl.model
    ... def eight_schools(sigma, y=None):
    ...     mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    ...     tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    ...     with ppl.plate("school", sigma.shape[0]):
    ...         theta = ppl.sample("theta", dist.Normal(mu, tau))
    ...         ppl.sample("y", dist.Normal(theta, sigma), obs=y)
    >>> tr = eight_schools.simulate(jax.random.key(0), jnp.ones(8))
"""

from __future__ import annotations

import numpyro.distributions as dist
from numpyro.distributions import constraints

from . import config, randomness
from .combinators import cond, scan, switch
from .core import deterministic, factor, param, plate, sample
from .errors import (
    AddressError,
    ArgumentError,
    ArgumentKeyError,
    ArgumentTypeError,
    CheckFailed,
    MixedLibraryError,
    ModelError,
    NaNLogDensityError,
    OutsideModelError,
    PPLError,
    SupportError,
)
from . import initialization
from .initialization import InitStrategy, init_to_mean, init_to_median, init_to_sample, init_to_uniform
from .errors import InferenceFailure, InferenceWarning, ParameterError  # issue 18
from .handlers import Site, block, condition, do, mask, replay, scale, scope, seed, substitute, trace
from .model import Model, Selection, Trace, as_model, call, model, select
from .predictive import predictive
from .reparam import auto_noncentre_sites, reparam  # issue 17b
from .likelihood import log_likelihood  # issue 16
from .transforms import UnconstrainedView, unconstrained

# issue 14: finite discrete latent sites summed out exactly
from . import enum
from .enum import infer_discrete, marginal_log_density

__version__ = "0.1.0"

__all__ = [
    "dist",
    "constraints",
    "randomness",
    "config",
    # primitives
    "sample",
    "param",
    "plate",
    "factor",
    "deterministic",
    # models
    "model",
    "Model",
    "Trace",
    "call",
    "as_model",
    "select",
    "Selection",
    # combinators
    "scan",
    "cond",
    "switch",
    # handlers
    "seed",
    "trace",
    "condition",
    "substitute",
    "Site",
    "replay",
    "do",
    "block",
    "scale",
    "mask",
    "scope",
    # views
    "unconstrained",
    "UnconstrainedView",
    "predictive",
    # reparameterisation (issue 17b)
    "reparam",
    "auto_noncentre_sites",
    "log_likelihood",  # issue 16
    # errors
    "PPLError",
    "ArgumentError",
    "ArgumentKeyError",
    "ArgumentTypeError",
    "CheckFailed",
    "ModelError",
    "AddressError",
    "SupportError",
    "NaNLogDensityError",
    "OutsideModelError",
    # issue 17a: NumPyro primitives/handlers used with a ppl model; init strategies
    "MixedLibraryError",
    "initialization",
    "InitStrategy",
    "init_to_uniform",
    "init_to_median",
    "init_to_mean",
    "init_to_sample",
    # issue 18: results that check their own health
    "ParameterError",
    "InferenceFailure",
    "InferenceWarning",
    # issue 14: discrete latent sites summed out exactly
    "enum",
    "marginal_log_density",
    "infer_discrete",
]
