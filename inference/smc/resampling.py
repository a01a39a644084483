"""Resampling schemes as distributions over ancestor vectors.

A resampling scheme maps normalised weights ``W`` (length N) to a random *ancestor vector*
``a ∈ {0..N-1}^N``: particle ``i`` of the new population is a copy of particle ``a[i]``.  Each
scheme here is a NumPyro-style :class:`~numpyro.distributions.Distribution` with event shape
``(N,)``:

* ``sample(key)``: a ``jax.random`` draw, jit- and vmap-able (production);
* ``log_prob(a)``: the exact log-probability of an ancestor vector;
* ``enumerate_support()``: every ancestor vector of positive probability (needs concrete
  weights), so the exact enumerator of ``semantics`` can run a shipped SMC block down every
  branch of its resampling step.

Every scheme is *unbiased*: the expected number of offspring of particle ``j`` is ``N W_j``.
Hence, after resampling, giving every particle the *average* weight keeps the weighted measure
(Σ_j w_j δ_{x_j}) and the total weight (the evidence estimate) unchanged in expectation.

Schemes (``a`` is nondecreasing except for residual's random tail):

* :class:`Multinomial`: a_i i.i.d. Categorical(W).  P(a) = Π_i W_{a_i}.
* :class:`Stratified`: a_i = F⁻¹((i + U_i)/N), U_i i.i.d. U(0,1).  P(a) = Π_i N·|[C_{a_i-1}, C_{a_i})
  ∩ [i/N, (i+1)/N)| with C the cumulative weights.
* :class:`Systematic`: a_i = F⁻¹((i + U)/N), one U ~ U(0,1).  P(a) = length of the set of U
  producing a: the intersection over i of [N C_{a_i-1} - i, N C_{a_i} - i) with [0, 1).
* :class:`Residual`: ⌊N W_j⌋ deterministic copies of j (in order), then R = N - Σ⌊N W_j⌋
  i.i.d. draws from the residual weights (N W_j - ⌊N W_j⌋)/R.

Example:
    >>> d = Systematic(jnp.log(jnp.array([0.5, 0.25, 0.25])))
    >>> a = ppl.randomness.draw(jax.random.key(0), d, name="ancestors")
    >>> a.shape
    (3,)
    >>> d.enumerate_support().tolist()                                   # every outcome
    [[0, 0, 1], [0, 0, 2], [0, 1, 2]]
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints

from ppl.errors import ArgumentError

__all__ = [
    "ResamplingDistribution",
    "Multinomial",
    "Systematic",
    "Stratified",
    "Residual",
    "SCHEMES",
    "scheme",
    "offspring_counts",
]


def _normalise(log_weights: Any) -> jax.Array:
    lw = jnp.asarray(log_weights)
    lw = jnp.where(jnp.isnan(lw), -jnp.inf, lw)
    return jax.nn.softmax(lw)


def _cumulative(W: jax.Array) -> jax.Array:
    C = jnp.cumsum(W)
    # guard the last edge against round-off so every u in [0, 1) finds an ancestor
    return C.at[-1].set(jnp.maximum(C[-1], 1.0))


def _inverse_cdf(C: jax.Array, u: jax.Array) -> jax.Array:
    """a = #{j : C_j ≤ u}: the index whose interval [C_{a-1}, C_a) contains u."""
    N = C.shape[-1]
    return jnp.clip(jnp.searchsorted(C, u, side="right"), 0, N - 1).astype(jnp.int32)


def _lower_upper(C: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[C_{a-1}, C_a) for each entry of `a`."""
    Cm = jnp.concatenate([jnp.zeros((1,), C.dtype), C])
    return Cm[a], Cm[a + 1]


class ResamplingDistribution(Distribution):
    """Base class: a distribution over ancestor vectors of length N given log weights.

    Attributes:
        log_weights: (N,) unnormalised log weights (−inf allowed, at least one finite).
        weights: (N,) normalised weights W.
    """

    has_enumerate_support = True
    pytree_data_fields = ("log_weights",)

    def __init__(self, log_weights: Any, validate_args: bool | None = None):
        self.log_weights = jnp.asarray(log_weights)
        if self.log_weights.ndim != 1:
            raise ArgumentError(
                f"{type(self).__name__}: log_weights must be a vector (one per particle), got shape "
                f"{self.log_weights.shape}."
            )
        self.num_particles = int(self.log_weights.shape[0])
        super().__init__(batch_shape=(), event_shape=(self.num_particles,), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.num_particles - 1), 1)

    @property
    def weights(self) -> jax.Array:
        return _normalise(self.log_weights)

    # -- to implement -----------------------------------------------------------------------------

    def _sample_one(self, key: Any) -> jax.Array:
        raise NotImplementedError

    def _log_prob_one(self, a: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _support_np(self) -> list[tuple[int, ...]]:
        raise NotImplementedError

    # -- the Distribution interface ---------------------------------------------------------------

    def sample(self, key: Any, sample_shape: tuple = ()) -> jax.Array:
        sample_shape = tuple(sample_shape)
        n = int(np.prod(sample_shape)) if sample_shape else 1
        keys = jax.random.split(key, n)
        out = jax.vmap(self._sample_one)(keys)
        return out.reshape(sample_shape + (self.num_particles,))

    def log_prob(self, value: Any) -> jax.Array:
        v = jnp.asarray(value).astype(jnp.int32)
        flat = v.reshape((-1, self.num_particles))
        lp = jax.vmap(self._log_prob_one)(flat)
        return lp.reshape(v.shape[:-1])

    def enumerate_support(self, expand: bool = True) -> jax.Array:
        """Every ancestor vector of positive probability, shape (K, N) (needs concrete weights)."""
        vecs = self._support_np()
        return jnp.asarray(np.asarray(vecs, dtype=np.int32).reshape(len(vecs), self.num_particles))

    def mean_offspring(self) -> jax.Array:
        """N W: the expected number of copies of each particle (the same for every scheme)."""
        return self.num_particles * self.weights

    def __repr__(self) -> str:
        return f"{type(self).__name__}(N={self.num_particles})"


class Multinomial(ResamplingDistribution):
    """a_i i.i.d. Categorical(W); P(a) = Π_i W_{a_i}."""

    def _sample_one(self, key):
        return jax.random.categorical(key, jnp.log(self.weights), shape=(self.num_particles,)).astype(jnp.int32)

    def _log_prob_one(self, a):
        return jnp.sum(jnp.log(self.weights)[a])

    def _support_np(self):
        W = np.asarray(self.weights, dtype=np.float64)
        idx = [j for j in range(self.num_particles) if W[j] > 0]
        import itertools

        return list(itertools.product(idx, repeat=self.num_particles))


class Stratified(ResamplingDistribution):
    """a_i = F⁻¹((i + U_i)/N) with U_i i.i.d. U(0, 1): one uniform per stratum."""

    def _sample_one(self, key):
        N = self.num_particles
        u = (jnp.arange(N) + jax.random.uniform(key, (N,))) / N
        return _inverse_cdf(_cumulative(self.weights), u)

    def _stratum_probs(self, a):
        N = self.num_particles
        C = _cumulative(self.weights)
        lo, hi = _lower_upper(C, a)
        i = jnp.arange(N)
        length = jnp.minimum(hi, (i + 1) / N) - jnp.maximum(lo, i / N)
        return N * jnp.maximum(length, 0.0)

    def _log_prob_one(self, a):
        return jnp.sum(jnp.log(self._stratum_probs(a)))

    def _support_np(self):
        import itertools

        N = self.num_particles
        per = []
        for i in range(N):
            ok = []
            for j in range(N):
                a = np.full(N, j)
                if float(self._stratum_probs(jnp.asarray(a))[i]) > 0:
                    ok.append(j)
            per.append(ok)
        return list(itertools.product(*per))


class Systematic(ResamplingDistribution):
    """a_i = F⁻¹((i + U)/N) with one U ~ U(0, 1) shared by all strata."""

    def _sample_one(self, key):
        N = self.num_particles
        u = (jnp.arange(N) + jax.random.uniform(key, ())) / N
        return _inverse_cdf(_cumulative(self.weights), u)

    def _interval(self, a):
        N = self.num_particles
        C = _cumulative(self.weights)
        lo, hi = _lower_upper(C, a)
        i = jnp.arange(N)
        lower = jnp.maximum(jnp.max(N * lo - i), 0.0)
        upper = jnp.minimum(jnp.min(N * hi - i), 1.0)
        return lower, upper

    def _log_prob_one(self, a):
        lower, upper = self._interval(a)
        return jnp.log(jnp.maximum(upper - lower, 0.0))

    def _support_np(self):
        N = self.num_particles
        C = np.asarray(_cumulative(self.weights), dtype=np.float64)
        # U values where some (i + U)/N crosses a cumulative edge
        cuts = {0.0, 1.0}
        for j in range(N):
            for i in range(N):
                u = N * C[j] - i
                if 0.0 < u < 1.0:
                    cuts.add(float(u))
        cuts = sorted(cuts)
        out: list[tuple[int, ...]] = []
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            if hi <= lo:
                continue
            mid = 0.5 * (lo + hi)
            a = np.asarray(_inverse_cdf(jnp.asarray(C), (jnp.arange(N) + mid) / N))
            t = tuple(int(x) for x in a)
            if (not out or out[-1] != t) and float(self._log_prob_one(jnp.asarray(a))) > -math.inf:
                out.append(t)
        return out


class Residual(ResamplingDistribution):
    """⌊N W_j⌋ copies of each j (in order), then R i.i.d. draws from the residual weights."""

    def _parts(self):
        N = self.num_particles
        NW = N * self.weights
        counts = jnp.floor(NW)
        R = N - jnp.sum(counts)
        resid = NW - counts
        r = jnp.where(R > 0, resid / jnp.maximum(R, 1.0), 1.0 / N)
        det = jnp.repeat(jnp.arange(N), counts.astype(jnp.int32), total_repeat_length=N)
        return counts, R.astype(jnp.int32), r, det.astype(jnp.int32)

    def _sample_one(self, key):
        N = self.num_particles
        counts, R, r, det = self._parts()
        tail = jax.random.categorical(key, jnp.log(r), shape=(N,)).astype(jnp.int32)
        i = jnp.arange(N)
        n_det = N - R
        return jnp.where(i < n_det, det, tail[jnp.clip(i - n_det, 0, N - 1)])

    def _log_prob_one(self, a):
        N = self.num_particles
        counts, R, r, det = self._parts()
        i = jnp.arange(N)
        n_det = N - R
        det_ok = jnp.all(jnp.where(i < n_det, a == det, True))
        lp_tail = jnp.sum(jnp.where(i < n_det, 0.0, jnp.log(r)[a]))
        return jnp.where(det_ok, lp_tail, -jnp.inf)

    def _support_np(self):
        import itertools

        N = self.num_particles
        counts, R, r, det = self._parts()
        R = int(R)
        det = [int(x) for x in np.asarray(det)[: N - R]]
        idx = [j for j in range(N) if float(r[j]) > 0]
        return [tuple(det) + tail for tail in itertools.product(idx, repeat=R)]


SCHEMES = {
    "multinomial": Multinomial,
    "systematic": Systematic,
    "stratified": Stratified,
    "residual": Residual,
}


def scheme(name: Any) -> type:
    """The resampling distribution class for a name (or the class itself)."""
    if isinstance(name, type) and issubclass(name, ResamplingDistribution):
        return name
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise ArgumentError(f"scheme: unknown resampling scheme {name!r}; use one of {sorted(SCHEMES)}.") from None


def offspring_counts(ancestors: Any, num_particles: int | None = None) -> jax.Array:
    """How many copies of each particle an ancestor vector makes (length N)."""
    a = jnp.asarray(ancestors)
    N = a.shape[-1] if num_particles is None else num_particles
    return jnp.zeros(a.shape[:-1] + (N,), jnp.int32).at[..., a].add(1) if a.ndim == 1 else jax.vmap(
        lambda x: jnp.zeros((N,), jnp.int32).at[x].add(1)
    )(a.reshape(-1, a.shape[-1])).reshape(a.shape[:-1] + (N,))
