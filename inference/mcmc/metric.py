"""Euclidean metrics of the gradient kernels: diagonal, dense, and low-rank plus diagonal.

The inverse mass matrix A = M⁻¹ of a gradient kernel is a vector (diagonal), a matrix (dense)
or a :class:`LowRankMetric`: A = diag(σ) (I + U (Λ − I) Uᵀ) diag(σ) with U a d×k matrix of
orthonormal columns (zero columns allowed) and Λ = diag(λ) positive (Seyboldt, Carlson &
Carpenter 2026; nutpie).  Every operation on it is exact and costs O(d·k):

- ``velocity(r)`` = A r (the leapfrog's position update and the U-turn criterion);
- ``momentum(ξ)`` = diag(1/σ) (I + U (Λ^{-1/2} − I) Uᵀ) ξ, so ξ ~ N(0, I) gives r ~ N(0, M);
- ``noise(ξ)`` = diag(σ) (I + U (Λ^{1/2} − I) Uᵀ) ξ ~ N(0, A) (random walk, MALA);
- ``solve(v)`` = A⁻¹ v (MALA's proposal density).

(Because U's columns are orthonormal, (I + U(Λ^a − I)Uᵀ)(I + U(Λ^b − I)Uᵀ) = I + U(Λ^{a+b} − I)Uᵀ.)
The functions :func:`velocity`, :func:`kinetic_energy` and :func:`momentum` take any of the
three forms.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["LowRankMetric", "velocity", "kinetic_energy", "momentum", "noise", "solve"]


class LowRankMetric(eqx.Module):
    """The inverse mass matrix A = diag(σ) (I + U (Λ − I) Uᵀ) diag(σ) (``scale`` σ: (d,),
    ``vectors`` U: (d, k) with orthonormal or zero columns, ``values`` λ: (k,), positive).

    Example:
        >>> from inference.mcmc.metric import LowRankMetric
        >>> u = jnp.array([[1.0], [1.0]]) / jnp.sqrt(2.0)
        >>> A = LowRankMetric(jnp.ones(2), u, jnp.array([4.0]))
        >>> jnp.round(A.dense(), 6).tolist()
        [[2.5, 1.5], [1.5, 2.5]]
        >>> jnp.round(A.velocity(jnp.array([1.0, 0.0])), 6).tolist()
        [2.5, 1.5]
    """

    scale: jax.Array
    vectors: jax.Array
    values: jax.Array
    #: A as a symmetric d×d matrix, or None: when set, :meth:`velocity` is one matrix-vector
    #: product instead of two with the d×k factor (cheaper once k ≥ d/2; :meth:`with_matrix`)
    matrix: jax.Array | None = None

    @property
    def dim(self) -> int:
        return self.scale.shape[-1]

    def _core(self, v: jax.Array, power: float) -> jax.Array:
        """(I + U (Λ^power − I) Uᵀ) v for v with leading axes."""
        c = v @ self.vectors  # (..., k)
        return v + (c * (self.values**power - 1.0)) @ self.vectors.T

    def velocity(self, r: jax.Array) -> jax.Array:
        """A r (r may have leading axes)."""
        if self.matrix is not None:
            return r @ self.matrix  # (symmetric)
        return self.scale * self._core(self.scale * r, 1.0)

    def with_matrix(self) -> "LowRankMetric":
        """The same metric carrying A as a dense symmetric matrix, so that the leapfrog's
        velocity A r costs one d×d product (2d² flops) instead of the factor's two d×k ones
        (4dk): cheaper when k ≥ d/2 (measured on a 100-d Gaussian with k = 100, 4 chains: NUTS
        12 → 9 µs per gradient, ``benchmarks/RESULTS.md``, issue 15 fourth pass).  Momenta,
        noise and solves still use the exact factors.

        Example:
            >>> u = jnp.array([[1.0], [1.0]]) / jnp.sqrt(2.0)
            >>> A = LowRankMetric(jnp.ones(2), u, jnp.array([4.0])).with_matrix()
            >>> jnp.round(A.velocity(jnp.array([1.0, 0.0])), 6).tolist()
            [2.5, 1.5]
        """
        m = LowRankMetric(self.scale, self.vectors, self.values).dense()
        return LowRankMetric(self.scale, self.vectors, self.values, (m + m.T) / 2)

    def momentum(self, xi: jax.Array) -> jax.Array:
        """M^{1/2}-factor times ξ: ξ ~ N(0, I) gives a momentum r ~ N(0, M), M = A⁻¹."""
        return self._core(xi, -0.5) / self.scale

    def noise(self, xi: jax.Array) -> jax.Array:
        """A^{1/2}-factor times ξ: ξ ~ N(0, I) gives N(0, A)."""
        return self.scale * self._core(xi, 0.5)

    def solve(self, v: jax.Array) -> jax.Array:
        """A⁻¹ v."""
        return self._core(v / self.scale, -1.0) / self.scale

    def dense(self) -> jax.Array:
        """A as a d×d matrix (for tests and small problems)."""
        if self.matrix is not None:
            return self.matrix
        return self.velocity(jnp.eye(self.dim, dtype=self.scale.dtype))

    @classmethod
    def identity(cls, dim: int, rank: int, dtype: Any = None) -> "LowRankMetric":
        """A = I, with room for ``rank`` directions (zero columns, λ = 1)."""
        dtype = dtype or jnp.zeros(()).dtype
        return cls(jnp.ones(dim, dtype), jnp.zeros((dim, rank), dtype), jnp.ones(rank, dtype))


def velocity(inverse_mass_matrix: Any, r: jax.Array) -> jax.Array:
    """A r for a diagonal (1-d), dense (2-d) or :class:`LowRankMetric` A; r may have leading axes.

    Example:
        >>> from inference.mcmc.metric import velocity
        >>> velocity(jnp.array([2.0, 3.0]), jnp.ones(2)).tolist()
        [2.0, 3.0]
    """
    if isinstance(inverse_mass_matrix, LowRankMetric):
        return inverse_mass_matrix.velocity(r)
    if inverse_mass_matrix.ndim == 1:
        return inverse_mass_matrix * r
    return r @ inverse_mass_matrix.T


def kinetic_energy(inverse_mass_matrix: Any, r: jax.Array) -> jax.Array:
    """K(r) = ½ rᵀ A r (numpyro's ``euclidean_kinetic_energy`` for the three forms of A).

    Example:
        >>> from inference.mcmc.metric import kinetic_energy
        >>> float(kinetic_energy(jnp.array([2.0, 2.0]), jnp.ones(2)))
        2.0
    """
    return 0.5 * jnp.dot(velocity(inverse_mass_matrix, r), r)


def momentum(mass_matrix_sqrt: Any, xi: jax.Array) -> jax.Array:
    """r ~ N(0, M) from ξ ~ N(0, I), given NumPyro's square root of M (diagonal or dense) or a
    :class:`LowRankMetric` (its own exact factor)."""
    if isinstance(mass_matrix_sqrt, LowRankMetric):
        return mass_matrix_sqrt.momentum(xi)
    return mass_matrix_sqrt * xi if mass_matrix_sqrt.ndim == 1 else mass_matrix_sqrt @ xi


def noise(mass_matrix_sqrt_inv: Any, xi: jax.Array) -> jax.Array:
    """S ξ with S Sᵀ = A: ξ ~ N(0, I) gives N(0, A).  NumPyro's dense ``mass_matrix_sqrt_inv``
    is a lower-triangular T with Tᵀ T = A, so S = Tᵀ."""
    t = mass_matrix_sqrt_inv
    if isinstance(t, LowRankMetric):
        return t.noise(xi)
    return t * xi if t.ndim == 1 else t.T @ xi


def solve(inverse_mass_matrix: Any, v: jax.Array) -> jax.Array:
    """A⁻¹ v for the three forms of A."""
    A = inverse_mass_matrix
    if isinstance(A, LowRankMetric):
        return A.solve(v)
    return v / A if A.ndim == 1 else jnp.linalg.solve(A, v)


def _kinetic_grad(inverse_mass_matrix: Any, r: jax.Array) -> jax.Array:
    return velocity(inverse_mass_matrix, r)


kinetic_energy._kinetic_grad = _kinetic_grad  # numpyro's velocity_verlet uses it instead of autodiff
