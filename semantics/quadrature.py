"""Quadrature: the measure of a model with 1–3 continuous latent dimensions, with an error bound.

:func:`integrate` enumerates the model's finite discrete choices exactly (as
:func:`semantics.enumerate` does) and integrates its continuous latent sites (scalars, at most 3
per execution) on a tensor Gauss–Legendre grid over a box: for each discrete execution the joint
density ``model.log_density`` is evaluated at every node (vectorised with ``jax.vmap``) and
multiplied by the product of the nodes' quadrature weights.  The result is a
:class:`GridMeasure`: nodes with weights approximating the model's measure.

Error.  Two rules are computed, with n and 2n nodes per dimension; the measure uses the 2n rule
and ``error_bound`` on the total mass is

    |Z_n − Z_2n|  +  Σ_c P_c(outside the box) · max_{x_c} ∫ p(x) / p_c(x_c) d(other dims)

the first term estimates the quadrature error of the 2n rule conservatively (Gauss–Legendre
converges geometrically for smooth integrands, so the error of the 2n rule is far smaller than
the difference between the rules); the second estimates the mass cut off by truncating an
unbounded prior to the box, using the prior ``p_c`` of the site as seen in the first execution
(exact when that prior does not depend on other continuous sites).  It is an *estimate* under
these smoothness assumptions, not a proof; pass ``bounds`` wide enough to make the tail term
negligible.

Default box per site: its support when bounded (Beta, Uniform), else the prior's mean ± 9
standard deviations clipped to the support (so ``HalfCauchy`` and other priors without a
variance need explicit ``bounds``).

Example:
    >>> @ppl.model
    ... def nn(y):
    ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
    >>> g = integrate(nn, 1.0)
    >>> round(g.mean("mu"), 10), g.error_bound < 1e-12
    (0.5, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.errors import ArgumentError, ModelError

from .enumerate import _Walker, trace_key
from .measure import Choices, Measure, _logsumexp

__all__ = ["integrate", "GridMeasure", "GridBlock"]

MAX_DIMS = 3


@dataclass
class GridBlock:
    """One discrete execution: its discrete choices, its continuous addresses, nodes and log-weights."""

    discrete: Choices
    names: tuple
    points: np.ndarray  # (N, k)
    log_weights: np.ndarray  # (N,): log density + log quadrature weight


class GridMeasure:
    """A measure on nodes of a quadrature rule, with an error bound on its total mass.

    ``integral(f)`` and ``expectation(f)`` call ``f(values)`` once per discrete execution with a
    dict address -> value in which continuous addresses hold arrays of node values (shape (N,)),
    so `f` must be vectorised (NumPy broadcasting), e.g. ``lambda v: v["mu"] ** 2``.

    Attributes:
        blocks: the :class:`GridBlock` of each discrete execution.
        error_bound: estimated absolute error of :meth:`total_mass` (see the module docstring).
        tail: the part of `error_bound` due to truncating unbounded priors to the box.
        coarse: the same measure with the n-node rule (for error estimates of other integrals).
    """

    def __init__(self, blocks: list[GridBlock], error_bound: float = 0.0, tail: float = 0.0, coarse: "GridMeasure | None" = None):
        self.blocks = blocks
        self.error_bound = float(error_bound)
        self.tail = float(tail)
        self.coarse = coarse

    def log_total_mass(self) -> float:
        """log of the total mass (the log evidence)."""
        return _logsumexp(float(x) for b in self.blocks for x in [_lse(b.log_weights)])

    def total_mass(self) -> float:
        """The total mass Z (the evidence)."""
        return math.exp(self.log_total_mass())

    def evidence_interval(self) -> tuple[float, float]:
        """(Z − error_bound, Z + error_bound)."""
        z = self.total_mass()
        return z - self.error_bound, z + self.error_bound

    def normalize(self) -> "GridMeasure":
        """The measure divided by its total mass (error bound scaled alike)."""
        lz = self.log_total_mass()
        z = math.exp(lz)
        blocks = [GridBlock(b.discrete, b.names, b.points, b.log_weights - lz) for b in self.blocks]
        coarse = self.coarse.normalize() if self.coarse is not None else None
        return GridMeasure(blocks, self.error_bound / z, self.tail / z, coarse)

    def _values(self, b: GridBlock) -> dict:
        v = dict(b.discrete)
        for i, n in enumerate(b.names):
            v[n] = b.points[:, i]
        return v

    def integral(self, f: Callable[[dict], Any]) -> float:
        """∫ f dμ ≈ Σ_nodes w f(node)."""
        total = []
        for b in self.blocks:
            vals = np.broadcast_to(np.asarray(f(self._values(b)), dtype=np.float64), b.log_weights.shape)
            total.append(float(np.sum(np.exp(b.log_weights) * vals)))
        return math.fsum(total)

    def expectation(self, f: Callable[[dict], Any]) -> float:
        """∫ f dμ / μ(1): a posterior expectation."""
        return self.integral(f) / self.total_mass()

    def expectation_error(self, f: Callable[[dict], Any]) -> float:
        """|E_2n[f] − E_n[f]|: an estimate of the quadrature error of :meth:`expectation`."""
        if self.coarse is None:
            return math.nan
        return abs(self.expectation(f) - self.coarse.expectation(f))

    def mean(self, address: str) -> float:
        """Posterior mean of a (scalar) address."""
        return self.expectation(lambda v: v[address])

    def var(self, address: str) -> float:
        """Posterior variance of a (scalar) address."""
        m = self.mean(address)
        return self.expectation(lambda v: (np.asarray(v[address], dtype=np.float64) - m) ** 2)

    def marginal(self, addresses: Any) -> Measure:
        """The marginal on *discrete* addresses, as a finite :class:`Measure` (continuous ones integrated out)."""
        if isinstance(addresses, str):
            addresses = [addresses]
        pairs = []
        for b in self.blocks:
            bad = [a for a in addresses if a in b.names]
            if bad:
                raise ArgumentError(f"GridMeasure.marginal: addresses must be discrete sites; {bad[0]!r} is continuous (use expectation/mean instead).")
            pairs.append((b.discrete.restrict(addresses), _lse(b.log_weights), None))
        return Measure.from_pairs(pairs)

    def __repr__(self) -> str:
        return (
            f"GridMeasure({len(self.blocks)} discrete executions, total_mass={self.total_mass():.10g} "
            f"± {self.error_bound:.3g})"
        )


def _lse(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return -math.inf
    m = np.max(a)
    if not np.isfinite(m):
        return float(m)
    return float(m + np.log(np.sum(np.exp(a - m))))


class _MixedWalker(_Walker):
    """Enumerates finite draws; continuous draws return a placeholder and are recorded."""

    def __init__(self, bounds: Mapping[str, tuple]):
        super().__init__()
        self.bounds = bounds
        self.continuous: list = []

    def start(self) -> None:
        super().start()
        self.continuous = []

    def draw(self, key: Any, d: Any, sample_shape: tuple, name: str | None) -> Any:
        if getattr(d, "has_enumerate_support", False):
            return super().draw(key, d, sample_shape, name)
        shape = tuple(sample_shape) + tuple(d.batch_shape) + tuple(d.event_shape)
        if int(np.prod(shape)) != 1:
            raise ModelError(
                f"semantics.integrate: the continuous site {name!r} has shape {shape}; only scalar "
                "continuous sites are supported."
            )
        lo, hi = _box(d, name, self.bounds)
        self.continuous.append((name, d, (lo, hi)))
        return jnp.full(shape, 0.5 * (lo + hi), dtype=jnp.result_type(float))


def _box(d: Any, name: str, bounds: Mapping[str, tuple]) -> tuple[float, float]:
    sup = d.support
    lo_s = getattr(sup, "lower_bound", None)
    hi_s = getattr(sup, "upper_bound", None)
    lo_s = -math.inf if lo_s is None else float(np.asarray(lo_s))
    hi_s = math.inf if hi_s is None else float(np.asarray(hi_s))
    if name in bounds:
        lo, hi = (float(x) for x in bounds[name])
    elif math.isfinite(lo_s) and math.isfinite(hi_s):
        lo, hi = lo_s, hi_s
    else:
        try:
            m, v = float(np.asarray(d.mean)), float(np.asarray(d.variance))
        except Exception:
            m, v = math.nan, math.nan
        if not (math.isfinite(m) and math.isfinite(v)):
            raise ArgumentError(
                f"semantics.integrate: site {name!r} ({type(d).__name__}) has an unbounded support and "
                "no finite prior variance; pass bounds={" + repr(name) + ": (lo, hi)}."
            )
        s = math.sqrt(v)
        lo, hi = max(lo_s, m - 9 * s), min(hi_s, m + 9 * s)
    if not lo < hi:
        raise ArgumentError(f"semantics.integrate: bounds for site {name!r} must satisfy lo < hi; got the empty box {(lo, hi)}.")
    return lo, hi


def _outside_mass(d: Any, lo: float, hi: float) -> float:
    sup = d.support
    lo_s = getattr(sup, "lower_bound", None)
    hi_s = getattr(sup, "upper_bound", None)
    lo_s = -math.inf if lo_s is None else float(np.asarray(lo_s))
    hi_s = math.inf if hi_s is None else float(np.asarray(hi_s))
    if lo <= lo_s and hi >= hi_s:
        return 0.0
    try:
        below = float(d.cdf(jnp.asarray(lo))) if lo > lo_s else 0.0
        above = 1.0 - float(d.cdf(jnp.asarray(hi))) if hi < hi_s else 0.0
    except Exception:
        return math.inf
    return max(below, 0.0) + max(above, 0.0)


def _rule(n: int, boxes: list) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    pts, lws = [], []
    for lo, hi in boxes:
        half = 0.5 * (hi - lo)
        pts.append(lo + half * (x + 1.0))
        lws.append(np.log(w * half))
    grids = np.meshgrid(*pts, indexing="ij")
    lgrids = np.meshgrid(*lws, indexing="ij")
    P = np.stack([g.ravel() for g in grids], axis=-1)
    LW = np.sum(np.stack([g.ravel() for g in lgrids], axis=-1), axis=-1)
    return P, LW


def integrate(
    model: Any,
    *args: Any,
    bounds: Mapping[str, tuple] | None = None,
    n: int | None = None,
    **kwargs: Any,
) -> GridMeasure:
    """The measure of `model` by exact enumeration of discrete choices and quadrature of ≤ 3 continuous ones.

    `bounds` maps continuous addresses to boxes ``(lo, hi)`` (see the module docstring for the
    defaults); `n` is the number of Gauss–Legendre nodes per dimension of the coarse rule (the
    returned measure uses 2n).  The address structure and discrete supports must not depend on
    the continuous values.  Default `n`: 64, 40 or 24 nodes per dimension for 1, 2 or 3
    continuous dimensions.

    Example:
        >>> @ppl.model
        ... def beta_coin():
        ...     p = ppl.sample("p", dist.Beta(2.0, 2.0))
        ...     ppl.sample("y", dist.Bernoulli(probs=p), obs=1)
        >>> g = integrate(beta_coin, bounds={"p": (0.0, 1.0)})
        >>> round(g.total_mass(), 10), g.error_bound < 1e-10, round(g.mean("p"), 10)     # Beta(3, 2)
        (0.5, True, 0.6)
    """
    bounds = dict(bounds or {})
    n_user = n
    m = ppl.as_model(model)
    walker = _MixedWalker(bounds)

    def run(key: Any) -> Any:
        tr = m.simulate(key, *args, **kwargs)
        return tr, list(walker.continuous)

    # the enumeration with continuous placeholders (reusing enumerate_paths's machinery)
    from ppl.randomness import interpreter

    paths = []
    key = jax.random.key(0)
    with interpreter(walker):
        while True:
            walker.start()
            tr, cont = run(key)
            paths.append((tr, cont))
            if not walker.advance():
                break

    fine_blocks, coarse_blocks = [], []
    tail_total = 0.0
    for tr, cont in paths:
        names = tuple(c[0] for c in cont)
        if len(names) > MAX_DIMS:
            raise ModelError(f"semantics.integrate: {len(names)} continuous sites {names}; at most {MAX_DIMS} are supported.")
        for nm in names:
            if nm not in tr.choices:
                raise ModelError(
                    f"semantics.integrate: the continuous draw {nm!r} is not a top-level sample site "
                    "(continuous sites inside ppl.scan are not supported)."
                )
        latent = {k: v for k, v in tr.latent.items() if k not in names}
        active = {k: v for k, v in trace_key(tr).items() if k not in names}
        disc = Choices(active)
        boxes = [c[2] for c in cont]

        def logdens(x: jax.Array) -> jax.Array:
            ch = dict(latent)
            for i, nm in enumerate(names):
                ch[nm] = jnp.reshape(x[i], jnp.shape(tr.choices[nm]))
            return m.log_density(ch, *args, **kwargs)

        n = n_user if n_user is not None else {0: 1, 1: 64, 2: 40, 3: 24}[len(names)]
        blocks_n = []
        for nn in (n, 2 * n):
            if names:
                P, LW = _rule(nn, boxes)
                ld = np.asarray(jax.vmap(logdens)(jnp.asarray(P)), dtype=np.float64)
            else:
                P, LW = np.zeros((1, 0)), np.zeros(1)
                ld = np.asarray([float(tr.log_density)])
            lw = np.where(np.isnan(ld), -np.inf, ld) + LW
            blocks_n.append(GridBlock(disc, names, P, lw))
        coarse_blocks.append(blocks_n[0])
        fine_blocks.append(blocks_n[1])
        # tail estimate
        fb = blocks_n[1]
        k = len(names)
        for i, (nm, d, (lo, hi)) in enumerate(cont):
            out = _outside_mass(d, lo, hi)
            if out == 0.0:
                continue
            if not math.isfinite(out):
                tail_total = math.inf
                continue
            lp_c = np.asarray(d.log_prob(jnp.asarray(fb.points[:, i])), dtype=np.float64)
            x, w = np.polynomial.legendre.leggauss(2 * n)
            lw_c = np.log(w * 0.5 * (hi - lo))
            # rest(x) = p(x) / p_c(x_c), integrated over the other dimensions, at each node of x_c
            arr = (fb.log_weights - lp_c).reshape((2 * n,) * k)
            arr = np.moveaxis(arr, i, 0) - lw_c.reshape((-1,) + (1,) * (k - 1))
            per_node = np.exp(arr).reshape(2 * n, -1).sum(axis=1)
            tail_total += out * float(np.max(per_node))
    coarse = GridMeasure(coarse_blocks)
    fine = GridMeasure(fine_blocks, coarse=coarse)
    fine.tail = tail_total
    fine.error_bound = abs(fine.total_mass() - coarse.total_mass()) + tail_total
    return fine
