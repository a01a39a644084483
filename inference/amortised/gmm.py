"""Gaussian mixtures with diagonal covariances: the prior and posterior representation of the
distribution transformer.

A :class:`GMM` holds ``logits`` ``(K,)``, ``loc`` ``(K, D)`` and ``scale`` ``(K, D)`` (standard
deviations, positive); its law is NumPyro's ``MixtureSameFamily(Categorical(logits),
Independent(Normal(loc, scale), 1))`` (:meth:`GMM.distribution`), which also gives its density
and its draws: nothing here re-implements a distribution.  :meth:`GMM.as_model` wraps it as a
``ppl.Model`` with one site, so a predicted posterior can be sampled, scored, or passed on as the
next prior.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro import distributions as ndist

from ppl.errors import ArgumentError

__all__ = ["GMM"]


class GMM(eqx.Module):
    """A K-component Gaussian mixture on R^D with diagonal covariances (a pytree).

    ``logits``: ``(K,)`` unnormalised log weights; ``loc``: ``(K, D)``; ``scale``: ``(K, D)``
    positive standard deviations.  Leading batch axes are allowed (a batch of mixtures, e.g. the
    stacked posteriors of :meth:`DistributionTransformer.sequential`); index them with ``gmm[i]``.

    Example:
        >>> from inference.amortised import GMM
        >>> g = GMM.from_weights([0.25, 0.75], [[-1.0], [2.0]], [[0.5], [1.0]])
        >>> [round(float(w), 6) for w in g.weights], g.num_components, g.dim
        ([0.25, 0.75], 2, 1)
        >>> round(float(g.mean()[0]), 6)
        1.25
        >>> g.sample(jax.random.key(0), 5).shape
        (5, 1)
    """

    logits: Any
    loc: Any
    scale: Any

    @classmethod
    def from_weights(cls, weights: Any, loc: Any, scale: Any) -> "GMM":
        """A mixture from weights (non-negative, normalised here), means and standard deviations;
        shapes and signs are checked, with errors that say what was given."""
        w, m, s = (jnp.asarray(v, dtype=jnp.result_type(float)) for v in (weights, loc, scale))
        if m.ndim == 1:  # (K,) means of a one-dimensional mixture
            m = m[:, None]
        if s.ndim == 1:
            s = s[:, None]
        if w.ndim != 1 or m.ndim != 2 or m.shape[0] != w.shape[0] or s.shape != m.shape:
            raise ArgumentError(
                f"GMM.from_weights: expected weights (K,), loc (K, D) and scale (K, D); "
                f"given weights {tuple(w.shape)}, loc {tuple(m.shape)}, scale {tuple(s.shape)}")
        if not isinstance(w, jax.core.Tracer):
            if np.any(np.asarray(w) < 0) or not np.asarray(w).sum() > 0:
                raise ArgumentError(f"GMM.from_weights: weights must be non-negative with a positive sum; given {np.asarray(w).tolist()}")
            if not np.all(np.asarray(s) > 0):
                raise ArgumentError(f"GMM.from_weights: scale must be positive (standard deviations); given {np.asarray(s).tolist()}")
        return cls(jnp.log(w / jnp.sum(w)), m, s)

    @property
    def num_components(self) -> int:
        return int(self.logits.shape[-1])

    @property
    def dim(self) -> int:
        return int(self.loc.shape[-1])

    @property
    def weights(self) -> Any:
        """The mixture weights, ``softmax(logits)`` (they sum to 1)."""
        return jax.nn.softmax(self.logits, axis=-1)

    def __getitem__(self, i: Any) -> "GMM":
        return GMM(self.logits[i], self.loc[i], self.scale[i])

    def distribution(self) -> ndist.Distribution:
        """The mixture as a NumPyro distribution (event shape ``(D,)``)."""
        comp = ndist.Independent(ndist.Normal(self.loc, self.scale), 1)
        return ndist.MixtureSameFamily(ndist.Categorical(logits=self.logits), comp)

    def log_prob(self, x: Any) -> Any:
        """log density of points ``x`` with trailing shape ``(D,)``."""
        return self.distribution().log_prob(jnp.asarray(x))

    def sample(self, key: Any, num_samples: int) -> Any:
        """``num_samples`` independent draws, shape ``(num_samples, D)``."""
        return self.distribution().sample(key, (int(num_samples),))

    def mean(self) -> Any:
        """The mixture's mean ``Σ_k w_k loc_k``."""
        return jnp.sum(self.weights[..., None] * self.loc, axis=-2)

    def variance(self) -> Any:
        """The mixture's marginal variances ``Σ_k w_k (scale_k² + loc_k²) − mean²``."""
        w = self.weights[..., None]
        return jnp.sum(w * (self.scale**2 + self.loc**2), axis=-2) - self.mean() ** 2

    def as_model(self, site: str = "theta"):
        """A ``ppl.Model`` with one site ``site`` drawn from this mixture (vector-valued, shape
        ``(D,)``): sample it, score it, or use it as a prior inside another model.

        Example:
            >>> from inference.amortised import GMM
            >>> m = GMM.from_weights([1.0], [[0.0]], [[1.0]]).as_model("mu")
            >>> m.simulate(jax.random.key(0))["mu"].shape
            (1,)
        """
        import ppl

        dist = self.distribution()

        def gmm_model():
            return ppl.sample(site, dist)

        gmm_model.__name__ = f"gmm_{site}"
        return ppl.model(gmm_model)
