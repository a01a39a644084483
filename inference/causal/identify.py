"""Identification: P(on | do(effect_of)) as a formula in the observational distribution.

From the diagram and the list of observed sites, the latent projection (an ADMG over the
observed sites: ``<->`` for a hidden common cause) is searched for, in order,

1. a back-door adjustment set Z:  P(y | do(x)) = Σ_z P(y | x, z) P(z);
2. a front-door set M (the comb disintegration of Jacobs, Kissinger & Zanasi):
   P(y | do(x)) = Σ_m P(m | x) Σ_x' P(y | m, x') P(x');
3. the general ID algorithm (Shpitser & Pearl 2006), complete for these queries: it either
   returns a formula or finds a hedge, which proves the effect is not identifiable.

The result is an :class:`Estimand`: it prints as a formula, names its criterion, and evaluates
on an observational joint (:meth:`Estimand.evaluate`); :func:`estimate` estimates it from data
(plug-in, or Bayesian with a Dirichlet posterior on the observational table).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import AddressError, ModelError, PPLError, nearest

from ._expr import Expr, Prob, Prod, Ratio, Sum, _cond, _cond_of, _eval, _expand, _key, _marg
from ._graph import ADMG, latent_projection
from .diagram import Diagram

__all__ = ["identify", "Estimand", "NotIdentifiable", "estimate", "observational", "admg"]


# ---------------------------------------------------------------------------------------------
# the estimand


class NotIdentifiable(PPLError):
    """The effect cannot be computed from the observational distribution (a hedge exists).

    Attributes: ``hedge`` = (F, F'): two c-forests, F' ⊂ F, with F' the part of F outside
    the intervened set; ``bidirected``: the confounding arcs inside F.
    """

    def __init__(self, message: str, hedge: tuple = (), bidirected: tuple = ()):
        super().__init__(message)
        self.hedge = hedge
        self.bidirected = bidirected


@dataclass
class Estimand:
    """P(on | do(effect_of)) as a formula in the observational distribution over `observed`.

    Attributes:
        criterion: ``"back-door"``, ``"front-door"`` or ``"ID algorithm"``.
        expr: the formula (prints as text).
        adjustment: the back-door adjustment set or the front-door mediators.
        supports: observed site -> its values (from the diagram).

    Example:
        >>> from inference.causal.examples import smoking
        >>> d = causal.diagram(smoking)
        >>> est = causal.identify(d, effect_of="smoke", on="cancer", observed=["smoke", "tar", "cancer"])
        >>> [round(float(p), 4) for p in est.evaluate(causal.observational(d, ["smoke", "tar", "cancer"]), do={"smoke": 0})]
        [0.76, 0.24]
    """

    effect_of: tuple
    on: tuple
    observed: tuple
    criterion: str
    expr: Expr
    adjustment: tuple = ()
    supports: dict = field(default_factory=dict)
    graph: ADMG | None = None

    def formula(self) -> str:
        lhs = f"P({', '.join(self.on)} | do({', '.join(self.effect_of)}))"
        extra = self.extra
        tail = f"   (the same for every value of {', '.join(extra)})" if extra else ""
        return f"{lhs} = {self.expr.show()}{tail}"

    @property
    def extra(self) -> tuple:
        """Free variables of the formula besides effect_of and on (the ID algorithm's line 3 can
        leave some): the formula does not depend on their values where it is defined."""
        return tuple(v for v in self.observed if v in self.expr.free and v not in self.effect_of + self.on)

    def __str__(self) -> str:
        extra = ""
        if self.criterion == "back-door":
            extra = f", adjusting for {{{', '.join(self.adjustment)}}}" if self.adjustment else ", no adjustment needed"
        elif self.criterion == "front-door":
            extra = f" through {{{', '.join(self.adjustment)}}} (comb disintegration)"
        return f"{self.formula()}\n  [{self.criterion}{extra}]"

    def __repr__(self) -> str:
        return f"Estimand({self.formula()!r}, criterion={self.criterion!r})"

    def _table(self, joint: Any) -> jax.Array:
        from .interpret import Joint

        if isinstance(joint, Joint):
            missing = [n for n in self.observed if n not in joint.names]
            if missing:
                raise AddressError(f"the joint has no variable {missing[0]!r}; it has {list(joint.names)}.")
            joint = joint.marginal(list(self.observed)).table
        t = jnp.asarray(joint)
        if t.ndim == 1 and t.size > 1 and len(self.observed) > 1:
            shape = tuple(len(self.supports[n]) for n in self.observed) if self.supports else None
            if shape is None or int(np.prod(shape)) != t.size:
                raise ModelError(
                    f"a flat joint of size {t.size} cannot be reshaped to the observed sites "
                    f"{list(self.observed)}; pass an array with one axis per observed site."
                )
            t = t.reshape(shape)
        if t.ndim != len(self.observed):
            raise ModelError(
                f"the joint has {t.ndim} axes; expected one per observed site {list(self.observed)} in that order."
            )
        return t / jnp.sum(t)

    def evaluate(self, joint: Any, do: Mapping[str, Any] | None = None) -> jax.Array:
        """Evaluate the formula on an observational joint (array in `observed` order, or a Joint).

        Returns P(on | do(effect_of)) as an array with axes (effect_of..., on...), indexed by
        position in each site's support; with `do` the effect_of axes are fixed to those values.

        Example:
            >>> from inference.causal.examples import smoking
            >>> d = causal.diagram(smoking)
            >>> est = causal.identify(d, effect_of="smoke", on="cancer", observed=["smoke", "tar", "cancer"])
            >>> joint = causal.observational(d, ["smoke", "tar", "cancer"]).table   # axes (smoke, tar, cancer)
            >>> [round(float(p), 4) for p in est.evaluate(joint, do={"smoke": 1})]
            [0.36, 0.64]
        """
        t = self._table(joint)
        vs, out = _eval(self.expr, t, list(self.observed))
        target = self.effect_of + self.on
        extra = tuple(v for v in vs if v not in target)
        if extra:  # constant in them: average with the weights P(extra), where it is defined
            _, w = _eval(Prob(extra), t, list(self.observed))
            allv = vs
            w = _expand(extra, w, allv)
            out = jnp.sum(out * w, axis=tuple(allv.index(v) for v in extra))
            vs = tuple(v for v in vs if v not in extra)
        cards = {n: t.shape[self.observed.index(n)] for n in self.observed}
        out = jnp.broadcast_to(_expand(vs, out, target), tuple(cards[n] for n in target))
        if do:
            for k in do:
                if k not in self.effect_of:
                    raise AddressError(f"evaluate: {k!r} is not among effect_of={list(self.effect_of)}.")
            idx = tuple(self._index(n, do[n]) for n in self.effect_of)
            out = out[idx]
        return out

    def _index(self, name: str, value: Any) -> int:
        sup = self.supports.get(name)
        v = np.asarray(value).item()
        if sup is None:
            return int(v)
        for i, s in enumerate(sup):
            if s == v:
                return i
        raise ModelError(f"value {value!r} is not in the support {list(sup)} of {name!r}.")


# ---------------------------------------------------------------------------------------------
# graphs from diagrams


def admg(d: Diagram, observed: Sequence[str]) -> ADMG:
    """The latent projection of the diagram's sample sites onto `observed`."""
    nodes = tuple(b.name for b in d.boxes.values() if b.kind == "sample")
    for n in observed:
        if n not in d.boxes:
            raise AddressError(f"observed site {n!r} is not in the diagram{nearest(n, d.boxes)}.")
        if d.boxes[n].kind != "sample":
            raise ModelError(f"observed site {n!r} is a {d.boxes[n].kind} site; observe sample sites.")
    parents = {n: list(d.effective_parents(n)) for n in nodes}
    return latent_projection(nodes, parents, observed)


# ---------------------------------------------------------------------------------------------
# criteria


def _subsets(items: Sequence[str], max_size: int | None = None):
    n = len(items) if max_size is None else min(max_size, len(items))
    for k in range(n + 1):
        yield from itertools.combinations(items, k)


def _backdoor(G: ADMG, X: set, Y: set) -> tuple | None:
    bad = G.descendants(X)
    cands = [v for v in G.nodes if v not in bad and v not in Y]
    Gx = G.cut_outgoing(X)
    for Z in _subsets(cands, 8):
        if Gx.separated(X, Y, set(Z)):
            return Z
    return None


def _frontdoor(G: ADMG, x: str, y: str) -> tuple | None:
    cands = [v for v in G.nodes if v not in (x, y)]
    G_x = G.cut_outgoing({x})
    for M in _subsets(cands, 6):
        if not M:
            continue
        M_ = set(M)
        if x in G.subgraph(set(G.nodes) - M_).ancestors({y}):
            continue  # some directed path x -> y avoids M
        if not G_x.separated({x}, M_, set()):
            continue  # an unblocked back-door path x .. M
        if not G.cut_outgoing(M_).separated(M_, {y}, {x}):
            continue  # a back-door path M .. y not blocked by x
        return M
    return None


def _id(y: set, x: set, P: Expr, G: ADMG, order: Sequence[str]) -> Expr:
    """Shpitser & Pearl's ID(y, x, P, G); raises NotIdentifiable at a hedge."""
    V = set(G.nodes)
    if not x:  # line 1
        return _marg(P, y, V, order)
    an = G.ancestors(y)
    if V != an:  # line 2
        return _id(y, x & an, _marg(P, an, V, order), G.subgraph(an), order)
    W = (V - x) - G.cut_incoming(x).ancestors(y)
    if W:  # line 3
        return _id(y, x | W, P, G, order)
    C = G.subgraph(V - x).districts()
    if len(C) > 1:  # line 4
        terms = tuple(_id(set(s), V - set(s), P, G, order) for s in C)
        over = tuple(v for v in order if v in V - (y | x))
        body = Prod(terms)
        return Sum(over, body) if over else body
    S = set(C[0])
    CG = [set(c) for c in G.districts()]
    if len(CG) == 1 and CG[0] == V:  # line 5
        F, Fp = tuple(v for v in order if v in V), tuple(v for v in order if v in S)
        bi = tuple(sorted(" <-> ".join(sorted(e)) for e in G.bidirected))
        raise NotIdentifiable(
            f"hedge: F = {{{', '.join(F)}}} and F' = {{{', '.join(Fp)}}} are c-forests (each one "
            f"district, linked by the confounding arcs {', '.join(bi)}); F contains the intervened "
            f"{{{', '.join(v for v in order if v in x)}}} and F' does not, so the effect is not a "
            "function of the observational distribution.",
            hedge=(F, Fp),
            bidirected=bi,
        )
    Vo = [v for v in order if v in V]
    if S in CG:  # line 6
        terms = tuple(_cond_of(P, v, Vo[: Vo.index(v)], V, order) for v in Vo if v in S)
        over = tuple(v for v in order if v in S - y)
        body = Prod(terms) if len(terms) > 1 else terms[0]
        return Sum(over, body) if over else body
    for Sp in CG:  # line 7
        if S < Sp:
            terms = tuple(_cond_of(P, v, Vo[: Vo.index(v)], V, order) for v in Vo if v in Sp)
            P2 = Prod(terms) if len(terms) > 1 else terms[0]
            return _id(y, x & Sp, P2, G.subgraph(Sp), order)
    raise PPLError("ID: unreachable")  # pragma: no cover


def identify(d: Diagram, effect_of: Any, on: Any, observed: Sequence[str]) -> Estimand:
    """Identify P(on | do(effect_of)) from the observational distribution over `observed`.

    Sample sites of `d` not in `observed` are hidden.  Tries the back-door criterion (smallest
    adjustment set), then the front-door criterion (comb disintegration), then the complete ID
    algorithm.  Returns an :class:`Estimand`; raises :class:`NotIdentifiable` naming the hedge
    (the offending subgraph) when no formula exists.

    Example:
        >>> from inference.causal.examples import smoking
        >>> est = causal.identify(causal.diagram(smoking), effect_of="smoke", on="cancer", observed=["smoke", "tar", "cancer"])
        >>> print(est)
        P(cancer | do(smoke)) = Σ_{tar} P(tar | smoke) Σ_{smoke'} P(cancer | smoke', tar) P(smoke')
          [front-door through {tar} (comb disintegration)]
    """
    X = (effect_of,) if isinstance(effect_of, str) else tuple(effect_of)
    Y = (on,) if isinstance(on, str) else tuple(on)
    observed = tuple(observed)
    for n in X + Y:
        if n not in observed:
            raise ModelError(f"identify: {n!r} must be among the observed sites {list(observed)}.")
    if set(X) & set(Y):
        raise ModelError("identify: effect_of and on must be disjoint.")
    G = admg(d, observed)
    order = list(G.nodes)
    supports = {n: d.boxes[n].support for n in observed}
    obs_sorted = tuple(sorted(observed, key=order.index))
    base = dict(effect_of=X, on=Y, observed=observed, supports=supports, graph=G)
    Z = _backdoor(G, set(X), set(Y))
    if Z is not None:
        srt = lambda s: tuple(sorted(s, key=order.index))  # noqa: E731
        if Z:
            expr = Sum(srt(Z), Prod((_cond(Y, srt(set(X) | set(Z)), order), Prob(srt(Z)))))
        else:
            expr = _cond(Y, srt(X), order)
        return Estimand(criterion="back-door", expr=expr, adjustment=srt(Z), **base)
    if len(X) == 1 and len(Y) == 1:
        M = _frontdoor(G, X[0], Y[0])
        if M is not None:
            x, y = X[0], Y[0]
            M = tuple(sorted(M, key=order.index))
            xp = x + "'"
            inner = Sum((xp,), Prod((_cond(Y, tuple(sorted(M + (xp,), key=lambda v: _key(order, v))), order), Prob((xp,)))))
            expr = Sum(M, Prod((_cond(M, X, order), inner)))
            return Estimand(criterion="front-door", expr=expr, adjustment=M, **base)
    expr = _id(set(Y), set(X), Prob(obs_sorted), G, order)
    return Estimand(criterion="ID algorithm", expr=expr, **base)


# ---------------------------------------------------------------------------------------------
# estimation


def observational(d: Diagram, observed: Sequence[str]):
    """The exact observational joint of `d` over `observed` (a normalised :class:`Joint`)."""
    from .interpret import interpret

    return interpret(d).marginal(list(observed)).normalized()


def _strata(e: Any) -> list:
    """The conditioning sets (denominators of conditionals) of an expression."""
    if isinstance(e, Ratio):
        return [e.den] + _strata(e.num)
    if isinstance(e, Sum):
        return _strata(e.body)
    if isinstance(e, Prod):
        return [s for t in e.terms for s in _strata(t)]
    return []


def _check_positivity(estimand: Estimand, table: np.ndarray, out: Any, do: Mapping[str, Any] | None) -> None:
    """Positivity: the plug-in estimate of P(on | do(x)) must be a distribution over ``on`` for
    each x asked for.  Where it is not (its mass is below 1), a conditional of the formula was
    evaluated on a stratum with no data (0/0, read as 0): raise naming that stratum."""
    on_axes = tuple(range(-len(estimand.on), 0))
    mass = np.asarray(jnp.sum(out, axis=on_axes))
    if table.sum() > 0 and np.all(mass > 1 - 1e-6):
        return
    names = list(estimand.observed)
    sup = lambda n: estimand.supports.get(n) or tuple(range(table.shape[names.index(n)]))  # noqa: E731
    if do:
        asked = [{n: np.asarray(do[n]).item() for n in estimand.effect_of}]
    else:
        asked = [{n: sup(n)[i] for n, i in zip(estimand.effect_of, idx)}
                 for idx in zip(*np.nonzero(np.atleast_1d(mass) <= 1 - 1e-6))]
    if table.sum() == 0:
        raise ModelError("estimate: the data are empty (no rows); nothing can be estimated.")
    empty = []
    for den in _strata(estimand.expr):
        labels = [l.rstrip("'") for l in den.labels]
        if not labels:
            continue
        marg = table.sum(axis=tuple(i for i, n in enumerate(names) if n not in labels))
        order = [n for n in names if n in labels]
        for idx in zip(*np.nonzero(marg == 0)):
            cell = {n: sup(n)[i] for n, i in zip(order, idx)}
            if any(all(cell.get(k, v) == v for k, v in a.items()) for a in asked):
                s = ", ".join(f"{n}={v}" for n, v in cell.items())
                if s not in empty:
                    empty.append(s)
    what = "; ".join(", ".join(f"{k}={v}" for k, v in a.items()) for a in asked)
    strata = ("; strata with no data: " + " | ".join(empty[:6]) + (" ..." if len(empty) > 6 else "")) if empty else ""
    raise ModelError(
        f"estimate: positivity fails for do({what}): the data have no units in a stratum the formula "
        f"conditions on{strata}, so P({', '.join(estimand.on)} | do({what})) is not estimable from these data "
        "(the plug-in would read 0/0 as 0). Collect data in that stratum, or use method='bayes' (a prior "
        "fills the empty cells)."
    )


def counts(estimand: Estimand, data: Any) -> np.ndarray:
    """The contingency table of `data` over the estimand's observed sites.

    `data` is a mapping site -> array of values, or an integer array with one column per
    observed site (in `observed` order), holding values from each site's support.
    """
    obs = estimand.observed
    if isinstance(data, Mapping):
        cols = [np.asarray(data[n]).reshape(-1) for n in obs]
    else:
        arr = np.asarray(data)
        if arr.ndim != 2 or arr.shape[1] != len(obs):
            raise ModelError(f"data must have one column per observed site {list(obs)}; got shape {arr.shape}.")
        cols = [arr[:, i] for i in range(len(obs))]
    shape = []
    idx = []
    for n, c in zip(obs, cols):
        sup = estimand.supports.get(n)
        if sup is None:
            sup = tuple(range(int(c.max()) + 1))
        lut = {s: i for i, s in enumerate(sup)}
        try:
            idx.append(np.array([lut[v.item()] for v in c]))
        except KeyError as e:
            raise ModelError(f"data for {n!r} has value {e.args[0]!r} outside its support {list(sup)}.") from None
        shape.append(len(sup))
    table = np.zeros(shape)
    np.add.at(table, tuple(idx), 1.0)
    return table


def estimate(
    estimand: Estimand,
    data: Any,
    *,
    method: str = "plugin",
    do: Mapping[str, Any] | None = None,
    key: Any = None,
    num_draws: int = 1000,
    prior: float = 1.0,
) -> jax.Array:
    """Estimate the effect from observational data.

    ``method="plugin"``: the estimand evaluated on the empirical joint (relative frequencies).
    ``method="bayes"``: `num_draws` posterior draws of the effect: the observational table gets a
    Dirichlet(prior + counts) posterior, and each draw is pushed through the estimand
    (vectorised with ``vmap``; runs on GPU when there is one).  Output axes are those of
    :meth:`Estimand.evaluate` (with a leading draw axis for ``"bayes"``).

    Example:
        >>> from inference.causal.examples import smoking
        >>> est = causal.identify(causal.diagram(smoking), effect_of="smoke", on="cancer", observed=["smoke", "tar", "cancer"])
        >>> data = {"smoke": jnp.array([0, 0, 1, 1, 1, 0]), "tar": jnp.array([0, 1, 1, 1, 0, 0]),
        ...         "cancer": jnp.array([0, 1, 1, 0, 1, 0])}
        >>> [round(float(p), 4) for p in causal.estimate(est, data, do={"smoke": 1})]
        [0.3333, 0.6667]
        >>> causal.estimate(est, data, method="bayes", key=jax.random.key(0), do={"smoke": 1}).shape
        (1000, 2)
    """
    table = counts(estimand, data)
    if method == "plugin":
        out = estimand.evaluate(table, do=do)
        _check_positivity(estimand, table, out, do)  # issue 18: no silent [0, 0] for an empty stratum
        return out
    if method == "bayes":
        if key is None:
            raise ModelError("estimate(method='bayes') needs key=jax.random.key(...).")
        alpha = jnp.asarray(table.reshape(-1) + prior)
        draws = jax.random.dirichlet(key, alpha, (num_draws,))
        shape = table.shape
        return jax.vmap(lambda p: estimand.evaluate(p.reshape(shape), do=do))(draws)
    raise ModelError(f"estimate: method must be 'plugin' or 'bayes', got {method!r}.")
