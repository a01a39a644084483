"""The depth-first path walker behind every exact enumeration (see :mod:`semantics.enumerate`).

:class:`_Walker` is an eager interpreter of :func:`ppl.randomness.draw`: it replays the choices
of the path so far, opens each new draw at its first alternative (its distribution's
``enumerate_support``, zero-probability alternatives pruned) and backtracks after each run;
:func:`_walk` runs a program down every path and returns one :class:`Path` per path.
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

from ppl.errors import ModelError
from ppl.randomness import guarded_key, interpreter

from .exact import _exact_elementwise
from .measure import freeze

__all__ = ["Path", "NotEnumerableError"]


class NotEnumerableError(ModelError):
    """A draw has no finite support (e.g. a Normal) or too many alternatives to enumerate.

    A :class:`ppl.ModelError` (so also a ``ValueError``): the program, not an argument, is what
    cannot be enumerated.
    """


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

    def __init__(self, record: bool = False) -> None:
        self.nodes: list[_Node] = []
        self.pos = 0
        self.log_prob = 0.0
        self.prob: Fraction | None = Fraction(1)
        self.record = record
        self.records: list = []  # (name, key data, value, log_prob) of each draw of this run

    def start(self) -> None:
        self.pos = 0
        self.log_prob = 0.0
        self.prob = Fraction(1)
        self.records = []

    def draw(self, key: Any, d: Any, sample_shape: tuple, name: str | None) -> Any:
        depth = self.pos
        self.pos += 1
        if depth < len(self.nodes):
            node = self.nodes[depth]
            if node.name != name:
                raise ModelError(
                    f"the program is not deterministic given its random choices: replaying draw "
                    f"#{depth} expected {node.name!r} but got {name!r}."
                )
        else:
            node = _Node(name, _alternatives(d, tuple(sample_shape), name))
            self.nodes.append(node)
        value, lp, fr, _ = node.alternatives[node.index]
        self.log_prob += lp
        if self.record:
            kd = _key_data(key, name)
            if isinstance(kd, jax.core.Tracer):
                raise NotEnumerableError(
                    f"the draw {name!r} was made under a JAX transformation (jit/vmap) while "
                    "enumerating eagerly; its key cannot be recorded."
                )
            self.records.append((name, np.asarray(kd), value, lp))
        if self.prob is not None:
            self.prob = None if fr is None else self.prob * fr
        return value

    def describe(self) -> str:
        return ", ".join(f"{n.name}={n.alternatives[n.index][3]!r}" for n in self.nodes[: self.pos])

    def advance(self) -> bool:
        """Move to the next path; False when every path has been run."""
        if self.pos != len(self.nodes):
            raise ModelError("the program made fewer draws when replayed than when first run.")
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


def _walk(fn: Callable, walker: _Walker, args: tuple, kwargs: dict, max_paths: int) -> list[tuple[Path, list]]:
    """Every path of ``fn(guarded key, *args, **kwargs)`` with the walker's records of its draws."""
    key = guarded_key(0)
    out: list[tuple[Path, list]] = []
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
            out.append((Path(value, walker.log_prob, walker.prob, draws), walker.records))
            if len(out) > max_paths:
                raise NotEnumerableError(f"more than {max_paths} paths; enumerate a smaller program.")
            if not walker.advance():
                break
    return out


def _key_data(key: Any, name: str | None) -> Any:
    """The raw data of the key a draw was made with (the draw's address in the compiled table)."""
    if key is None:
        raise NotEnumerableError(
            f"the draw {name!r} was made without a key; the compiled-path check identifies each "
            "draw by its name and the key it is drawn with."
        )
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return jnp.asarray(key)
