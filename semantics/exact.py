"""Exact probabilities of discrete draws, as :class:`fractions.Fraction` where they are rational.

A float parameter ``p`` counts as rational when ``q = Fraction(p).limit_denominator(10**6)``
satisfies ``float(q) == p`` (so ``1/3`` computed in float64 is read as exactly 1/3).  Exact
probabilities are known for Bernoulli, Categorical, Binomial and DiscreteUniform (and their
``expand``-ed versions); for any other distribution they are None.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["rational", "exact_prob"]

MAX_DENOMINATOR = 10**6


def rational(x: Any) -> Fraction | None:
    """`x` as a Fraction when it is (in float64) a rational with denominator ≤ 10**6, else None.

    Example:
        >>> rational(1 / 3), rational(math.pi)
        (Fraction(1, 3), None)
    """
    x = float(x)
    if not math.isfinite(x):
        return None
    q = Fraction(x).limit_denominator(MAX_DENOMINATOR)
    return q if float(q) == x else None


_vrational = np.vectorize(rational, otypes=[object])


def _rationals(a: Any) -> np.ndarray | None:
    arr = _vrational(np.asarray(a, dtype=np.float64))
    arr = np.asarray(arr, dtype=object)
    if any(v is None for v in arr.ravel()):
        return None
    return arr


def _exact_elementwise(d: Any, value: Any) -> np.ndarray | None:
    """Exact probability of each element of `value` under `d` (object array), or None."""
    name = type(d).__name__
    v = np.asarray(value)
    if name == "ExpandedDistribution":
        out = _exact_elementwise(d.base_dist, v)
        if out is None:
            return None
        return np.broadcast_to(out, np.broadcast_shapes(out.shape, tuple(d.batch_shape)))
    if tuple(d.event_shape):
        return None
    if name.startswith("Bernoulli"):
        p = _rationals(d.probs)
        if p is None:
            return None
        p, vb = np.broadcast_arrays(p, v)
        out = np.where(vb == 1, p, np.where(vb == 0, 1 - p, Fraction(0)))
        return np.asarray(out, dtype=object)
    if name.startswith("Categorical"):
        probs = _rationals(d.probs)
        if probs is None:
            return None
        sums = np.sum(probs, axis=-1)
        if any(s != 1 for s in np.ravel(sums)):
            return None
        K = probs.shape[-1]
        full = np.broadcast_shapes(v.shape, probs.shape[:-1])
        P = np.broadcast_to(probs, full + (K,))
        vb = np.broadcast_to(v, full).astype(np.int64)
        out = np.empty(full, dtype=object)
        for idx in np.ndindex(*full):
            k = int(vb[idx])
            out[idx] = P[idx + (k,)] if 0 <= k < K else Fraction(0)
        return out
    if name.startswith("Binomial"):
        p = _rationals(d.probs)
        n = np.asarray(d.total_count)
        if p is None:
            return None
        p, n, vb = np.broadcast_arrays(p, n, v)
        out = np.empty(vb.shape, dtype=object)
        for idx in np.ndindex(*vb.shape):
            k, nn, pp = int(vb[idx]), int(n[idx]), p[idx]
            out[idx] = Fraction(math.comb(nn, k)) * pp**k * (1 - pp) ** (nn - k) if 0 <= k <= nn else Fraction(0)
        return out
    if name == "DiscreteUniform":
        lo, hi, vb = np.broadcast_arrays(np.asarray(d.low), np.asarray(d.high), v)
        out = np.empty(vb.shape, dtype=object)
        for idx in np.ndindex(*vb.shape):
            a, b, k = int(lo[idx]), int(hi[idx]), int(vb[idx])
            out[idx] = Fraction(1, b - a + 1) if a <= k <= b else Fraction(0)
        return out
    return None


def exact_prob(d: Any, value: Any, mask: Any = None) -> Fraction | None:
    """P_d(value) as a Fraction (product over batch elements where `mask` holds), or None.

    Example:
        >>> exact_prob(dist.Binomial(2, probs=0.5), 1)
        Fraction(1, 2)
    """
    el = _exact_elementwise(d, value)
    if el is None:
        return None
    if mask is not None:
        m = np.broadcast_to(np.asarray(mask, bool), el.shape)
        el = np.where(m, el, Fraction(1))
    out = Fraction(1)
    for x in np.ravel(el):
        out *= x
    return out
