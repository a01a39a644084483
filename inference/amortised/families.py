"""Ready-made task families for the distribution transformer: random prior mixtures and the
Normal-mean model (known noise), whose exact posterior is :func:`normal_mean_posterior`."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ppl.errors import ArgumentError

from .gmm import GMM

__all__ = ["random_gmm_sampler", "normal_mean_family"]


def random_gmm_sampler(num_components: int, dim: int = 1, loc_range: tuple = (-3.0, 3.0),
                       log_scale_range: tuple = (-2.0, 0.5), concentration: float = 1.0) -> Callable[[Any], GMM]:
    """``sampler(key) -> GMM``: weights ~ Dirichlet(concentration), means ~ U(loc_range),
    log scales ~ U(log_scale_range), independently per component and coordinate.  Train on the
    priors you mean to use: the network is accurate where its training priors were.

    Example:
        >>> from inference.amortised import random_gmm_sampler
        >>> g = random_gmm_sampler(3, dim=2)(jax.random.key(0))
        >>> g.loc.shape, g.scale.shape
        ((3, 2), (3, 2))
    """
    K, D = int(num_components), int(dim)
    if K < 1 or D < 1:
        raise ArgumentError(f"random_gmm_sampler: num_components and dim must be positive; given {num_components}, {dim}")

    def sampler(key):
        k1, k2, k3 = jax.random.split(key, 3)
        w = jax.random.dirichlet(k1, jnp.full((K,), float(concentration)))
        m = jax.random.uniform(k2, (K, D), minval=loc_range[0], maxval=loc_range[1])
        s = jnp.exp(jax.random.uniform(k3, (K, D), minval=log_scale_range[0], maxval=log_scale_range[1]))
        return GMM(jnp.log(jnp.maximum(w, 1e-30)), m, s)

    return sampler


def normal_mean_family(noise_scale: float = 1.0):
    """The model ``theta ~ prior`` (a :class:`GMM` on R^D), ``x_i ~ Normal(theta, noise_scale)``
    for ``i < n`` (site ``"x"``, shape ``(n, D)``); call it as ``family(prior, n)``.  Its exact
    posterior is ``normal_mean_posterior(prior, x, mask, noise_scale)``.

    Example:
        >>> from inference.amortised import GMM, normal_mean_family
        >>> tr = normal_mean_family(0.5).simulate(jax.random.key(0), GMM.from_weights([1.0], [[0.0]], [[1.0]]), 4)
        >>> tr["theta"].shape, tr["x"].shape
        ((1,), (4, 1))
    """
    import ppl
    from ppl import dist

    def normal_mean(prior, n):
        theta = ppl.sample("theta", prior.distribution())
        with ppl.plate("data", n):
            return ppl.sample("x", dist.Normal(theta, noise_scale).to_event(1))

    return ppl.model(normal_mean)
