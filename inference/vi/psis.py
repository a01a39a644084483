"""Pareto-smoothed importance sampling diagnostic: the k̂ of a set of importance log weights.

k̂ is the shape of the generalised Pareto distribution fitted to the largest weights (Vehtari
et al., "Pareto smoothed importance sampling", 2024): below 0.5 the importance estimates are
reliable, up to 0.7 usable, above 0.7 the proposal (a fitted guide) misses mass of the target.
The estimator is NumPyro's (``numpyro.infer.importance``), not a copy.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["pareto_k"]


def pareto_k(log_weights: Any) -> float:
    """PSIS k̂ of importance log weights (1-d; zero weights, −inf, are dropped).

    Example:
        >>> lw = jax.random.normal(jax.random.key(0), (2000,)) * 0.1   # nearly equal weights
        >>> vi.pareto_k(lw) < 0.5
        True
        >>> vi.pareto_k(jnp.full(100, -2.7))   # equal weights: the proposal is the target
        -inf
    """
    from numpyro.infer.importance import _psis_khat  # NumPyro's estimator (Vehtari et al. 2024)

    lw = np.asarray(log_weights, dtype=float).reshape(-1)
    if np.any(np.isnan(lw)):
        return float("inf")
    lw = lw[np.isfinite(lw)]
    if lw.size < 10:
        return float("inf")
    if np.ptp(lw) <= 1e-10 * max(1.0, float(np.max(np.abs(lw)))):  # equal weights (to rounding): q is p
        # (a Gaussian fit of a Gaussian posterior): there is no tail to fit, NumPyro's fit gives inf
        return float("-inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_psis_khat(lw))
