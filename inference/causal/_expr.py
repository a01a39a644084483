"""Expressions over the observational distribution (the formulas identification returns):
``P(labels)``, sums, products and ratios, printed as formulas and evaluated on a joint table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp

from ppl.errors import ArgumentTypeError

__all__ = ["Expr", "Prob", "Sum", "Prod", "Ratio"]


# ---------------------------------------------------------------------------------------------
# expressions over the observational distribution


class Expr:
    free: frozenset

    def __str__(self) -> str:
        return self.show()


@dataclass(frozen=True, eq=False)
class Prob(Expr):
    """P(labels): a marginal of the observational joint; label ``x'`` reads variable ``x``."""

    labels: tuple

    @property
    def free(self) -> frozenset:
        return frozenset(self.labels)

    def show(self) -> str:
        return f"P({', '.join(self.labels)})"


@dataclass(frozen=True, eq=False)
class Sum(Expr):
    over: tuple
    body: Expr

    @property
    def free(self) -> frozenset:
        return self.body.free - set(self.over)

    def show(self) -> str:
        if not self.over:
            return self.body.show()
        inner = self.body.show()
        if isinstance(self.body, Ratio) and not _is_cond(self.body):
            inner = f"[{inner}]"
        return f"Σ_{{{','.join(self.over)}}} {inner}"


@dataclass(frozen=True, eq=False)
class Prod(Expr):
    terms: tuple

    @property
    def free(self) -> frozenset:
        out = frozenset()
        for t in self.terms:
            out |= t.free
        return out

    def show(self) -> str:
        parts = []
        for t in self.terms:
            s = t.show()
            parts.append(f"[{s}]" if isinstance(t, Sum) and t is not self.terms[-1] or (isinstance(t, Ratio) and not _is_cond(t)) else s)
        return " ".join(parts) if parts else "1"


@dataclass(frozen=True, eq=False)
class Ratio(Expr):
    num: Expr
    den: Expr

    @property
    def free(self) -> frozenset:
        return self.num.free | self.den.free

    def show(self) -> str:
        if _is_cond(self):
            given = [l for l in self.num.labels if l in self.den.labels]
            head = [l for l in self.num.labels if l not in self.den.labels]
            return f"P({', '.join(head)} | {', '.join(given)})"
        return f"({self.num.show()}) / ({self.den.show()})"


def _is_cond(e: Expr) -> bool:
    return (
        isinstance(e, Ratio)
        and isinstance(e.num, Prob)
        and isinstance(e.den, Prob)
        and set(e.den.labels) < set(e.num.labels)
    )


def _cond(head: Sequence[str], given: Sequence[str], order: Sequence[str]) -> Expr:
    """P(head | given) of the observational joint."""
    if not given:
        return Prob(tuple(head))
    num = tuple(sorted(set(head) | set(given), key=lambda v: _key(order, v)))
    return Ratio(Prob(num), Prob(tuple(sorted(given, key=lambda v: _key(order, v)))))


def _key(order: Sequence[str], label: str) -> tuple:
    base = label.rstrip("'")
    return (order.index(base) if base in order else len(order), label)


def _marg(P: Expr, keep: Iterable[str], V: Iterable[str], order: Sequence[str]) -> Expr:
    """Σ_{V \\ keep} P, simplified when P is a marginal of the joint."""
    keep = set(keep)
    drop = tuple(v for v in order if v in set(V) and v not in keep)
    if not drop:
        return P
    if isinstance(P, Prob):
        return Prob(tuple(l for l in P.labels if l not in drop))
    if isinstance(P, Sum):
        return Sum(tuple(sorted(set(P.over) | set(drop), key=lambda v: _key(order, v))), P.body)
    return Sum(drop, P)


def _cond_of(P: Expr, v: str, pre: Sequence[str], V: Iterable[str], order: Sequence[str]) -> Expr:
    """P(v | pre) computed from the distribution P over V."""
    num = _marg(P, set(pre) | {v}, V, order)
    if isinstance(num, Prob) and not pre:
        return num
    den = _marg(P, set(pre), V, order)
    return Ratio(num, den)


# ---------------------------------------------------------------------------------------------
# evaluation of expressions on a joint table


def _eval(e: Expr, joint: jax.Array, names: Sequence[str]) -> tuple[tuple, jax.Array]:
    if isinstance(e, Prob):
        idx = [names.index(l.rstrip("'")) for l in e.labels]
        other = [i for i in range(len(names)) if i not in idx]
        t = jnp.sum(joint, axis=tuple(other)) if other else joint
        kept = sorted(idx)
        perm = [kept.index(i) for i in idx]
        return tuple(e.labels), jnp.transpose(t, perm)
    if isinstance(e, Sum):
        vs, t = _eval(e.body, joint, names)
        axes = tuple(vs.index(v) for v in e.over if v in vs)
        return tuple(v for v in vs if v not in e.over), jnp.sum(t, axis=axes) if axes else t
    if isinstance(e, Prod):
        vs: tuple = ()
        t = jnp.ones(())
        for term in e.terms:
            ws, u = _eval(term, joint, names)
            allv = vs + tuple(w for w in ws if w not in vs)
            t = _expand(vs, t, allv) * _expand(ws, u, allv)
            vs = allv
        return vs, t
    if isinstance(e, Ratio):
        nv, n = _eval(e.num, joint, names)
        dv, d = _eval(e.den, joint, names)
        allv = nv + tuple(w for w in dv if w not in nv)
        n, d = _expand(nv, n, allv), _expand(dv, d, allv)
        safe = jnp.where(d > 0, d, 1.0)
        return allv, jnp.where(d > 0, n / safe, 0.0)
    raise ArgumentTypeError(f"_eval: expected an expression (Prob, Sum, Prod or Ratio), got {type(e).__name__}.")


def _expand(vs: tuple, t: jax.Array, target: tuple) -> jax.Array:
    present = [v for v in target if v in vs]
    t = jnp.transpose(t, [vs.index(v) for v in present]) if present else t
    shape = []
    it = iter(t.shape)
    for v in target:
        shape.append(next(it) if v in vs else 1)
    return jnp.reshape(t, shape)
