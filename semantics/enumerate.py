"""Exact enumeration of models and of inference blocks.

Every random draw of the language and of the inference blocks goes through
:func:`ppl.randomness.draw`.  The enumerator installs an *eager interpreter* there and re-runs
the program depth-first, once per complete path of finite random choices (monad-bayes'
``Enumerator``, Pyro's ``poutine.queue``): it replays the choices of the path so far, takes the
first alternative at the first new draw, and backtracks after each run.  Under an eager
interpreter ``ppl.scan`` runs as a Python loop and ``ppl.cond``/``ppl.switch`` run only the taken
branch, so the set of addresses may depend on earlier choices.

A draw's alternatives are its distribution's ``enumerate_support`` (Bernoulli, Categorical,
Binomial, DiscreteUniform, ... and their ``expand``-ed versions).  A batched draw (non-empty batch
or sample shape) enumerates the product of its elements' supports.  Alternatives of probability
zero are pruned (probabilities are taken from the exact parameters where they are rational,
as NumPyro's ``log_prob`` clamps probabilities 0 and 1 to about 1e-16 away).  A draw from a distribution without finite support raises
:class:`NotEnumerableError` naming the draw.

Probabilities.  A path's probability is the product of its draws' probabilities, in float64
(``exp`` of the summed ``log_prob``) and, when every probability involved is *rational*, exactly
as a :class:`fractions.Fraction`.  A float parameter ``p`` counts as rational when
``q = Fraction(p).limit_denominator(10**6)`` satisfies ``float(q) == p`` (so ``1/3`` computed in
float64 is read as exactly 1/3); otherwise exact weights are not carried (``measure.exact`` is
None).  Exact probabilities are known for Bernoulli, Categorical, Binomial and DiscreteUniform.

The meaning of a model.  :func:`enumerate` gives the measure μ = Σ_paths w δ_trace with atom
``Choices(trace.active_choices())`` (latent *and* observed values; intervened sites are not
choices) and weight ``exp(trace.log_density)``: the prior of every latent, the likelihood of the
observations and the factors.  Equivalently w = (path probability) × exp(trace.log_likelihood)
for a model whose latents are all drawn (tests check both agree).

Example:
    >>> @ppl.model
    ... def coin():
    ...     z = ppl.sample("z", dist.Bernoulli(probs=0.25))
    ...     ppl.sample("y", dist.Bernoulli(probs=0.5 + 0.25 * z), obs=1)
    >>> mu = semantics.enumerate(coin)
    >>> mu.exact_total_mass()                    # 3/4·1/2 + 1/4·3/4
    Fraction(9, 16)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import core as _core
from ppl.randomness import interpreter

from .measure import Choices, Measure, freeze

__all__ = [
    "enumerate",
    "enumerate_block",
    "enumerate_paths",
    "enumerate_traces",
    "trace_key",
    "Path",
    "NotEnumerableError",
    "exact_prob",
    "rational",
]

MAX_DENOMINATOR = 10**6


class NotEnumerableError(ValueError):
    """A draw has no finite support (e.g. a Normal) or too many alternatives to enumerate."""


# ---------------------------------------------------------------------------------------------
# exact probabilities


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


# ---------------------------------------------------------------------------------------------
# the interpreter


@dataclass
class _Node:
    name: str | None
    alternatives: list  # of (value, log_prob, Fraction | None, frozen value)
    index: int = 0


MAX_ALTERNATIVES = 100_000


def _alternatives(d: Any, sample_shape: tuple, name: str | None) -> list:
    if not getattr(d, "has_enumerate_support", False):
        raise NotEnumerableError(
            f"the draw {name!r} is from {type(d).__name__}, which has no finite support to "
            "enumerate; exact enumeration needs every random choice to be discrete and finite "
            "(use semantics.integrate for up to 3 continuous dimensions)."
        )
    try:
        S = d.enumerate_support(expand=True)
    except Exception as e:  # e.g. Binomial with heterogeneous total_count
        raise NotEnumerableError(f"the draw {name!r} from {type(d).__name__} cannot enumerate its support: {e}") from None
    LP = np.asarray(d.log_prob(S), dtype=np.float64)
    EX = _exact_elementwise(d, np.asarray(S))
    if EX is not None:
        # NumPyro clamps probabilities away from 0 and 1 inside log_prob (an accept step with
        # probability 1 would get a reject branch of probability ~1e-16); use the exact values.
        with np.errstate(divide="ignore"):
            LP = np.log(np.vectorize(float, otypes=[np.float64])(np.broadcast_to(EX, LP.shape)))
    S_np = np.asarray(S)
    dtype = S.dtype
    K = S_np.shape[0]
    B = tuple(d.batch_shape)
    E = tuple(d.event_shape)
    F = tuple(sample_shape) + B
    n = int(np.prod(F)) if F else 1
    nB = int(np.prod(B)) if B else 1
    S_flat = S_np.reshape((K, nB) + E)
    LP_flat = LP.reshape(K, nB)
    EX_flat = None if EX is None else np.broadcast_to(EX, (K,) + B).reshape(K, nB)
    allowed = []
    for e in range(n):
        b = e % nB
        ks = [k for k in range(K) if LP_flat[k, b] > -math.inf]
        allowed.append(ks)
    count = 1
    for ks in allowed:
        count *= len(ks)
        if count > MAX_ALTERNATIVES:
            raise NotEnumerableError(
                f"the draw {name!r} (shape {F}) has more than {MAX_ALTERNATIVES} joint outcomes; "
                "enumerate a smaller model."
            )
    out = []
    for combo in itertools.product(*allowed):
        bs = [e % nB for e in range(n)]
        vals = np.stack([S_flat[k, b] for k, b in zip(combo, bs)]) if n else S_flat[:0]
        vals = vals.reshape(F + E)
        lp = math.fsum(LP_flat[k, b] for k, b in zip(combo, bs))
        fr = None
        if EX_flat is not None:
            fr = Fraction(1)
            for k, b in zip(combo, bs):
                fr *= EX_flat[k, b]
        out.append((jnp.asarray(vals, dtype=dtype), lp, fr, freeze(vals)))
    return out


class _Walker:
    """Eager interpreter replaying a path prefix and opening new draws at their first alternative."""

    eager = True

    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.pos = 0
        self.log_prob = 0.0
        self.prob: Fraction | None = Fraction(1)

    def start(self) -> None:
        self.pos = 0
        self.log_prob = 0.0
        self.prob = Fraction(1)

    def draw(self, key: Any, d: Any, sample_shape: tuple, name: str | None) -> Any:
        depth = self.pos
        self.pos += 1
        if depth < len(self.nodes):
            node = self.nodes[depth]
            if node.name != name:
                raise RuntimeError(
                    f"the program is not deterministic given its random choices: replaying draw "
                    f"#{depth} expected {node.name!r} but got {name!r}."
                )
        else:
            node = _Node(name, _alternatives(d, tuple(sample_shape), name))
            self.nodes.append(node)
        value, lp, fr, _ = node.alternatives[node.index]
        self.log_prob += lp
        if self.prob is not None:
            self.prob = None if fr is None else self.prob * fr
        return value

    def describe(self) -> str:
        return ", ".join(f"{n.name}={n.alternatives[n.index][3]!r}" for n in self.nodes[: self.pos])

    def advance(self) -> bool:
        """Move to the next path; False when every path has been run."""
        if self.pos != len(self.nodes):
            raise RuntimeError("the program made fewer draws when replayed than when first run.")
        while self.nodes and self.nodes[-1].index + 1 >= len(self.nodes[-1].alternatives):
            self.nodes.pop()
        if not self.nodes:
            return False
        self.nodes[-1].index += 1
        return True


@dataclass
class Path:
    """One complete path of a program's random choices.

    Attributes:
        value: what the program returned on this path.
        log_prob: log of the path's probability (sum of its draws' log-probabilities).
        prob: the path's probability as a Fraction, or None when not rational.
        draws: ``(name, frozen value)`` of each draw, in execution order.
    """

    value: Any
    log_prob: float
    prob: Fraction | None
    draws: tuple


def enumerate_paths(fn: Callable, *args: Any, max_paths: int = 200_000, **kwargs: Any) -> list[Path]:
    """Run ``fn(key, *args, **kwargs)`` down every path of its finite random choices.

    `fn` is any Python function whose randomness goes through ``ppl.randomness.draw`` (a model
    operation, an inference block); the key it receives is a dummy (the enumerator ignores keys).
    Returns one :class:`Path` per complete path; their probabilities sum to 1.

    Example:
        >>> paths = enumerate_paths(lambda key: ppl.randomness.draw(key, dist.Bernoulli(probs=0.5)))
        >>> [(int(p.value), p.prob) for p in paths]
        [(0, Fraction(1, 2)), (1, Fraction(1, 2))]
    """
    walker = _Walker()
    key = jax.random.key(0)
    out: list[Path] = []
    with interpreter(walker):
        while True:
            walker.start()
            try:
                value = fn(key, *args, **kwargs)
            except NotEnumerableError:
                raise
            except Exception as e:
                where = f"(while enumerating the path {walker.describe() or '<no draws>'})"
                try:
                    err = type(e)(f"{e}\n{where}")
                except Exception:  # an exception type with another constructor: keep it as is
                    e.add_note(where)
                    raise
                raise err from e
            draws = tuple((n.name, n.alternatives[n.index][3]) for n in walker.nodes[: walker.pos])
            out.append(Path(value, walker.log_prob, walker.prob, draws))
            if len(out) > max_paths:
                raise NotEnumerableError(f"more than {max_paths} paths; enumerate a smaller program.")
            if not walker.advance():
                break
    return out


def enumerate_block(fn: Callable, *args: Any, key: Callable[[Any], Any] = freeze, **kwargs: Any) -> Measure:
    """The distribution of ``fn(key, *args, **kwargs)``'s output over its own randomness.

    Each path contributes its probability to the atom ``key(output)`` (default: the output
    frozen to a hashable value).  This is how a *shipped* inference block is checked exactly.

    Example:
        >>> two_flips = lambda key: sum(ppl.randomness.draw(k, dist.Bernoulli(probs=0.5))
        ...                             for k in jax.random.split(key))
        >>> enumerate_block(two_flips).exact[1]
        Fraction(1, 2)
    """
    paths = enumerate_paths(fn, *args, **kwargs)
    return Measure.from_pairs((key(p.value), p.log_prob, p.prob) for p in paths)


# ---------------------------------------------------------------------------------------------
# models


def trace_key(tr: Any) -> Choices:
    """The atom of a trace: ``Choices`` of its active choices (latent and observed).

    A site that exists at some steps of an eager ``ppl.scan`` only is kept as a tuple with
    ``None`` at the steps where it does not exist.
    """
    out = {}
    for k, v in tr.choices.items():
        a = tr.active.get(k)
        if a is None:
            out[k] = v
            continue
        a = np.asarray(a)
        if a.ndim == 0:
            if bool(a):
                out[k] = v
        else:
            vals = np.asarray(v)
            out[k] = tuple(freeze(vals[t]) if a[t] else None for t in range(a.shape[0]))
    return Choices(out)


class _ExactScorer(_core.Messenger):
    """Outermost handler computing the exact weight of a run: Π site probabilities (or None)."""

    def __init__(self) -> None:
        super().__init__()
        self.prob: Fraction | None = Fraction(1)

    def process_message(self, msg: dict) -> None:
        if self.prob is None:
            return
        t = msg["type"]
        if t == "sample":
            if msg["intervened"] or msg["value"] is None:
                return
            scale = msg["scale"]
            if scale is not None and not np.all(np.asarray(scale) == 1):
                self.prob = None
                return
            p = exact_prob(msg["fn"], msg["value"], msg["mask"])
            self.prob = None if p is None else self.prob * p
        elif t == "factor":
            lw = np.asarray(msg["value"])
            if msg["mask"] is not None:
                lw = np.where(np.asarray(msg["mask"]), lw, 0.0)
            if np.all(lw == 0):
                return
            if np.any(lw == -np.inf):
                self.prob = Fraction(0)
                return
            self.prob = None


def enumerate_traces(model: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, float, Fraction | None, Path]]:
    """Every execution of `model`: ``(trace, log_weight, exact_weight_or_None, path)``.

    ``log_weight`` is ``trace.log_density`` and ``exact_weight`` its exact value (see the module
    docstring).  Paths of weight zero are included.
    """
    m = ppl.as_model(model)
    scorer = _ExactScorer()

    def run(key: Any) -> Any:
        scorer.prob = Fraction(1)
        with scorer:
            tr = m.simulate(key, *args, **kwargs)
        return tr, scorer.prob

    out = []
    for p in enumerate_paths(run):
        tr, prob = p.value
        out.append((tr, float(tr.log_density), prob, p))
    return out


def enumerate(model: Any, *args: Any, **kwargs: Any) -> Measure:
    """The exact measure of a model with finite discrete choices, as a :class:`Measure`.

    Atoms are ``Choices`` of the trace's active choices (latent and observed, not intervened);
    the weight of an atom is exp(trace.log_density) summed over the paths giving it.  Handles
    models whose addresses depend on earlier choices, ``factor``, ``obs``, ``plate``, ``scan``,
    ``cond``/``switch``, nested models, ``ppl.condition`` and ``ppl.do``.

    Example:
        >>> @ppl.model
        ... def two():
        ...     a = ppl.sample("a", dist.Bernoulli(probs=0.5))
        ...     ppl.factor("f", jnp.where(a == 1, 0.0, -jnp.inf))
        >>> semantics.enumerate(two).atoms
        [{'a': 1}]
    """
    return Measure.from_pairs(
        (trace_key(tr), lw, prob) for tr, lw, prob, _ in enumerate_traces(model, *args, **kwargs)
    )
