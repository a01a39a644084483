"""`Measure`: the meaning of a program, as finite weighted atoms or a quadrature grid.

A :class:`Measure` is an *unnormalised* measure μ = Σ_a w_a δ_a over hashable atoms.  Atoms are
either traces, represented as :class:`Choices` (an immutable mapping address -> value, values
frozen to Python scalars / nested tuples), or arbitrary hashable values (the outputs of a block).
Weights are kept as float64 log-weights and, when every factor of a weight is a known rational
number, also as exact :class:`fractions.Fraction` weights (``measure.exact``).

Atoms of weight zero are dropped: the atoms of a measure are its support.

:class:`GridMeasure` (in :mod:`semantics.quadrature`) is the continuous analogue: nodes of a
quadrature rule with their weights, and an error bound on the integrals it computes.

Example:
    >>> m = Measure.from_weights({"a": 0.25, "b": 0.5})
    >>> m.total_mass()
    0.75
    >>> m.normalize().prob("b")
    0.6666666666666666
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from ppl.errors import ArgumentError, ArgumentTypeError, CheckFailed

__all__ = ["Measure", "Choices", "freeze", "MeasureMismatch"]


class MeasureMismatch(CheckFailed):
    """Raised by :meth:`Measure.assert_equal` when two measures differ; the message is a diff."""


# ---------------------------------------------------------------------------------------------
# hashable values


def freeze(v: Any) -> Any:
    """A hashable, exactly comparable version of `v`.

    Arrays become Python scalars (0-d) or nested tuples, numpy scalars become Python numbers,
    mappings become :class:`Choices`, lists/tuples are frozen elementwise.

    Example:
        >>> freeze(np.array([1, 0]))
        (1, 0)
    """
    if isinstance(v, Choices):
        return v
    if isinstance(v, Mapping):
        return Choices(v)
    if isinstance(v, (bool, int, float, str, Fraction)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return tuple(freeze(x) for x in v)
    if hasattr(v, "shape") and hasattr(v, "dtype") or isinstance(v, np.generic):
        a = np.asarray(v)
        if a.ndim == 0:
            return a.item()
        return _to_tuple(a.tolist())
    return v


def _to_tuple(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_to_tuple(y) for y in x)
    return x


class Choices(Mapping):
    """An immutable, hashable mapping address -> frozen value (an atom of a trace measure).

    Example:
        >>> c = Choices({"z": np.int64(1), "y": 0.5})
        >>> c["z"], hash(c) == hash(Choices({"y": 0.5, "z": 1}))
        (1, True)
    """

    __slots__ = ("_items", "_dict", "_hash")

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()):
        items = data.items() if isinstance(data, Mapping) else data
        d = {str(k): freeze(v) for k, v in items}
        self._items = tuple(sorted(d.items()))
        self._dict = d
        self._hash = hash(self._items)

    def __getitem__(self, k: str) -> Any:
        return self._dict[k]

    def __iter__(self) -> Iterator[str]:
        return iter(k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Choices):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self == Choices(other)
        return NotImplemented

    def __lt__(self, other: "Choices") -> bool:  # for sorted displays
        return repr(self) < repr(other)

    def restrict(self, addresses: Iterable[str]) -> "Choices":
        """The sub-mapping on `addresses` (addresses absent here are skipped)."""
        keep = set(addresses)
        return Choices((k, v) for k, v in self._items if k in keep)

    def drop(self, addresses: Iterable[str]) -> "Choices":
        """The sub-mapping without `addresses`."""
        skip = set(addresses)
        return Choices((k, v) for k, v in self._items if k not in skip)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in self._items) + "}"


# ---------------------------------------------------------------------------------------------


def _logsumexp(xs: Iterable[float]) -> float:
    xs = [x for x in xs if x != -math.inf]
    if not xs:
        return -math.inf
    m = max(xs)
    if m == math.inf:
        return math.inf
    return m + math.log(math.fsum(math.exp(x - m) for x in xs))


class Measure:
    """A finite unnormalised measure Σ_a w_a δ_a with float64 log-weights (and exact fractions).

    Build one with :meth:`from_log_weights`, :meth:`from_weights`, :meth:`from_pairs` (which sums
    the weights of repeated atoms) or get one from :func:`semantics.enumerate`.  Operations never
    mutate; they return new measures.

    ``integral(f)`` is ∫ f dμ; ``expectation(f)`` is ∫ f dμ / μ(1) (the normalised mean).

    Example:
        >>> m = Measure.from_weights({0: Fraction(1, 4), 1: Fraction(3, 4)})
        >>> round(m.expectation(lambda x: x), 12), m.exact[1]
        (0.75, Fraction(3, 4))
    """

    def __init__(self, log_weights: Mapping[Any, float], exact: Mapping[Any, Fraction] | None = None):
        self._lw: dict[Any, float] = {k: float(v) for k, v in log_weights.items() if float(v) != -math.inf}
        if exact is not None:
            exact = {k: Fraction(v) for k, v in exact.items() if k in self._lw or Fraction(v) != 0}
            if set(exact) != set(self._lw):
                exact = None
        self.exact: dict[Any, Fraction] | None = dict(exact) if exact is not None else None

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_log_weights(cls, log_weights: Mapping[Any, float], exact: Mapping[Any, Fraction] | None = None) -> "Measure":
        """A measure with the given log-weights (keys are frozen with :func:`freeze`)."""
        lw = {freeze(k): v for k, v in log_weights.items()}
        ex = {freeze(k): v for k, v in exact.items()} if exact is not None else None
        return cls(lw, ex)

    @classmethod
    def from_weights(cls, weights: Mapping[Any, Any]) -> "Measure":
        """A measure from (non-negative) weights; Fraction/int weights are also kept exactly."""
        lw = {}
        exact: dict | None = {}
        for k, w in weights.items():
            k = freeze(k)
            lw[k] = math.log(w) if w > 0 else -math.inf
            if isinstance(w, (Fraction, int)) and exact is not None:
                exact[k] = Fraction(w)
            else:
                exact = None
        return cls(lw, exact)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[Any, float, Fraction | None]]) -> "Measure":
        """Sum repeated atoms: `pairs` yields ``(atom, log_weight, exact_weight_or_None)``."""
        acc: dict[Any, list[float]] = {}
        exact: dict[Any, Fraction] | None = {}
        for k, lw, ex in pairs:
            k = freeze(k)
            acc.setdefault(k, []).append(float(lw))
            if exact is not None:
                if ex is None:
                    exact = None
                else:
                    exact[k] = exact.get(k, Fraction(0)) + Fraction(ex)
        lw = {k: _logsumexp(v) for k, v in acc.items()}
        return cls(lw, exact)

    @classmethod
    def dirac(cls, atom: Any) -> "Measure":
        """The probability measure δ_atom."""
        return cls({freeze(atom): 0.0}, {freeze(atom): Fraction(1)})

    # -- access --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._lw)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._lw)

    def __contains__(self, atom: Any) -> bool:
        return freeze(atom) in self._lw

    @property
    def atoms(self) -> list:
        """The support (atoms of positive weight)."""
        return list(self._lw)

    @property
    def log_weights(self) -> dict:
        """atom -> log-weight (float64)."""
        return dict(self._lw)

    def log_weight(self, atom: Any) -> float:
        """log μ({atom}) (−inf outside the support)."""
        return self._lw.get(freeze(atom), -math.inf)

    def weight(self, atom: Any) -> float:
        """μ({atom})."""
        return math.exp(self.log_weight(atom))

    def prob(self, atom: Any) -> float:
        """μ({atom}) / μ(1)."""
        return math.exp(self.log_weight(atom) - self.log_total_mass())

    def items(self) -> list[tuple[Any, float]]:
        """``(atom, weight)`` pairs (weights as floats)."""
        return [(k, math.exp(v)) for k, v in self._lw.items()]

    # -- mass and integrals ----------------------------------------------------------------------

    def log_total_mass(self) -> float:
        """log μ(1), the log evidence for a model's measure."""
        return _logsumexp(self._lw.values())

    def total_mass(self) -> float:
        """μ(1): the evidence Z for a model's measure."""
        return math.exp(self.log_total_mass())

    def exact_total_mass(self) -> Fraction:
        """μ(1) as a Fraction (needs exact weights)."""
        self._need_exact("exact_total_mass")
        return sum(self.exact.values(), Fraction(0))

    def normalize(self) -> "Measure":
        """μ / μ(1): the posterior, for a model's measure."""
        lz = self.log_total_mass()
        if not math.isfinite(lz):
            raise ArgumentError(f"Measure.normalize: the measure must have a positive finite total mass; got {math.exp(lz)}")
        ex = None
        if self.exact is not None:
            z = sum(self.exact.values(), Fraction(0))
            ex = {k: v / z for k, v in self.exact.items()}
        return Measure({k: v - lz for k, v in self._lw.items()}, ex)

    def integral(self, f: Callable[[Any], Any]) -> float:
        """∫ f dμ = Σ_a w_a f(a) (unnormalised)."""
        return math.fsum(math.exp(lw) * float(f(k)) for k, lw in self._lw.items())

    def expectation(self, f: Callable[[Any], Any]) -> float:
        """∫ f dμ / μ(1): the mean of `f` under the normalised measure.

        Example:
            >>> Measure.from_weights({1: 1.0, 3: 1.0}).expectation(lambda x: x)
            2.0
        """
        lz = self.log_total_mass()
        return math.fsum(math.exp(lw - lz) * float(f(k)) for k, lw in self._lw.items())

    def exact_integral(self, f: Callable[[Any], Any]) -> Fraction:
        """∫ f dμ with exact weights (f should return ints or Fractions)."""
        self._need_exact("exact_integral")
        return sum((w * Fraction(f(k)) for k, w in self.exact.items()), Fraction(0))

    # -- transformations ---------------------------------------------------------------------------

    def pushforward(self, f: Callable[[Any], Any]) -> "Measure":
        """f_# μ: the measure of f(a) for a ~ μ (weights of atoms mapped together add up).

        Example:
            >>> Measure.from_weights({1: 0.5, -1: 0.5}).pushforward(abs).weight(1)
            1.0
        """
        ex = self.exact
        return Measure.from_pairs(
            (f(k), lw, None if ex is None else ex[k]) for k, lw in self._lw.items()
        )

    def marginal(self, addresses: Iterable[str] | str) -> "Measure":
        """The marginal of a trace measure on `addresses` (atoms become restricted Choices)."""
        if isinstance(addresses, str):
            addresses = [addresses]
        addresses = list(addresses)
        return self.pushforward(lambda c: _as_choices(c).restrict(addresses))

    def condition(self, pred: Callable[[Any], bool]) -> "Measure":
        """μ restricted to the atoms where `pred` holds (not normalised)."""
        keep = {k: v for k, v in self._lw.items() if pred(k)}
        ex = None if self.exact is None else {k: self.exact[k] for k in keep}
        return Measure(keep, ex)

    def reweight(self, log_f: Callable[[Any], float], exact_f: Callable[[Any], Fraction] | None = None) -> "Measure":
        """The measure with density exp(log_f) w.r.t. μ: w_a -> w_a · exp(log_f(a))."""
        lw = {k: v + float(log_f(k)) for k, v in self._lw.items()}
        ex = None
        if self.exact is not None and exact_f is not None:
            ex = {k: self.exact[k] * Fraction(exact_f(k)) for k in self._lw}
        return Measure(lw, ex)

    def scale(self, log_c: float) -> "Measure":
        """c · μ with c = exp(log_c)."""
        return Measure({k: v + float(log_c) for k, v in self._lw.items()}, None)

    def __add__(self, other: "Measure") -> "Measure":
        pairs = [(k, v, None if self.exact is None else self.exact[k]) for k, v in self._lw.items()]
        pairs += [(k, v, None if other.exact is None else other.exact[k]) for k, v in other._lw.items()]
        return Measure.from_pairs(pairs)

    # -- distances -----------------------------------------------------------------------------

    def total_variation(self, other: "Measure", normalized: bool = True) -> float:
        """½ Σ_a |p_a − q_a| between the normalised measures (or the raw ones).

        Example:
            >>> Measure.from_weights({0: .5, 1: .5}).total_variation(Measure.dirac(0))
            0.5
        """
        p = self.normalize() if normalized else self
        q = other.normalize() if normalized else other
        keys = set(p._lw) | set(q._lw)
        return 0.5 * math.fsum(abs(p.weight(k) - q.weight(k)) for k in keys)

    def kl(self, other: "Measure") -> float:
        """KL(p ‖ q) = Σ p_a log(p_a / q_a) between the normalised measures (inf if p ≪ q fails)."""
        p, q = self.normalize(), other.normalize()
        total = []
        for k, lp in p._lw.items():
            lq = q.log_weight(k)
            if lq == -math.inf:
                return math.inf
            total.append(math.exp(lp) * (lp - lq))
        return math.fsum(total)

    # -- equality --------------------------------------------------------------------------------

    def diff(self, other: "Measure", tol: float = 1e-12, exact: bool = False, limit: int = 10) -> list[str]:
        """Lines describing the atoms where the measures differ by more than the tolerance.

        Atoms compare by weight: |w_a − v_a| ≤ tol · max(1, μ(1), ν(1)).  With ``exact=True`` the
        exact fractions must be equal.
        """
        keys = set(self._lw) | set(other._lw)
        rows = []
        if exact:
            self._need_exact("equals(exact=True)")
            other._need_exact("equals(exact=True)")
            for k in keys:
                a, b = self.exact.get(k, Fraction(0)), other.exact.get(k, Fraction(0))
                if a != b:
                    rows.append((float(abs(a - b)), k, f"{a}", f"{b}"))
        else:
            scale = max(1.0, self.total_mass(), other.total_mass())
            for k in keys:
                a, b = self.weight(k), other.weight(k)
                if abs(a - b) > tol * scale or (math.isnan(a) or math.isnan(b)):
                    rows.append((abs(a - b), k, f"{a:.17g}", f"{b:.17g}"))
        rows.sort(key=lambda r: -r[0] if not math.isnan(r[0]) else -math.inf)
        lines = [f"  atom {r[1]!r}: {r[2]} != {r[3]} (|diff| {r[0]:.3g})" for r in rows[:limit]]
        if len(rows) > limit:
            lines.append(f"  ... and {len(rows) - limit} more differing atoms")
        return lines

    def equals(self, other: "Measure", tol: float = 1e-12, exact: bool = False) -> bool:
        """Whether the two (unnormalised) measures agree atom by atom within `tol` (see :meth:`diff`)."""
        return not self.diff(other, tol, exact, limit=0)

    def assert_equal(self, other: "Measure", tol: float = 1e-12, exact: bool = False, what: str = "measures") -> None:
        """Raise :class:`MeasureMismatch` with a readable diff unless :meth:`equals` holds.

        Example:
            >>> Measure.from_weights({0: 0.5}).assert_equal(Measure.from_weights({0: 0.5}))
        """
        lines = self.diff(other, tol, exact)
        if lines:
            raise MeasureMismatch(
                f"{what} differ (tolerance {'exact' if exact else tol}); total masses "
                f"{self.total_mass():.17g} vs {other.total_mass():.17g}; "
                f"{len(self)} vs {len(other)} atoms:\n" + "\n".join(lines)
            )

    # -- misc ------------------------------------------------------------------------------------

    def _need_exact(self, who: str) -> None:
        if self.exact is None:
            raise ArgumentError(
                f"{who} needs exact (Fraction) weights, which this measure does not carry (some "
                "weight involved a non-rational probability, a factor, or a float parameter)."
            )

    def sorted_items(self) -> list[tuple[Any, float]]:
        """``(atom, weight)`` pairs by decreasing weight."""
        return sorted(self.items(), key=lambda kv: -kv[1])

    def __repr__(self) -> str:
        items = self.sorted_items()
        shown = ", ".join(f"{k!r}: {w:.6g}" for k, w in items[:6])
        more = f", ... ({len(items) - 6} more)" if len(items) > 6 else ""
        return f"Measure({{{shown}{more}}}, total_mass={self.total_mass():.6g})"


def _as_choices(c: Any) -> Choices:
    if isinstance(c, Choices):
        return c
    if isinstance(c, Mapping):
        return Choices(c)
    raise ArgumentTypeError(f"marginal(addresses) needs a measure over traces (Choices atoms), got atom {c!r}")
