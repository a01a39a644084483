"""Graph algorithms on causal diagrams: DAGs and acyclic directed mixed graphs (ADMGs).

An :class:`ADMG` has directed edges (``parents``) and bidirected edges (``bidirected``, a set of
frozensets of two nodes) standing for latent common causes.  The latent projection of a DAG
onto its observed nodes is an ADMG with the same interventional distributions over them
(Verma & Pearl), so identification works on the projection.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Mapping


@dataclass
class ADMG:
    """Nodes in a topological order, directed edges as parent lists, bidirected edges as pairs."""

    nodes: tuple
    parents: dict
    bidirected: set = field(default_factory=set)

    # -- basic relations -----------------------------------------------------------------------
    def children(self, v: str) -> list[str]:
        return [c for c in self.nodes if v in self.parents[c]]

    def ancestors(self, vs: Iterable[str]) -> set[str]:
        """Ancestors of `vs`, `vs` included."""
        out, todo = set(), list(vs)
        while todo:
            v = todo.pop()
            if v in out:
                continue
            out.add(v)
            todo.extend(self.parents[v])
        return out

    def descendants(self, vs: Iterable[str]) -> set[str]:
        """Descendants of `vs`, `vs` included."""
        kids: dict[str, list[str]] = {v: [] for v in self.nodes}
        for c in self.nodes:
            for p in self.parents[c]:
                kids[p].append(c)
        out, todo = set(), list(vs)
        while todo:
            v = todo.pop()
            if v in out:
                continue
            out.add(v)
            todo.extend(kids[v])
        return out

    def subgraph(self, keep: Iterable[str]) -> "ADMG":
        keep = set(keep)
        return ADMG(
            tuple(v for v in self.nodes if v in keep),
            {v: [p for p in self.parents[v] if p in keep] for v in self.nodes if v in keep},
            {e for e in self.bidirected if e <= keep},
        )

    def cut_incoming(self, xs: Iterable[str]) -> "ADMG":
        """G with every edge (directed or bidirected) into `xs` removed (G_{\\bar X})."""
        xs = set(xs)
        return ADMG(
            self.nodes,
            {v: ([] if v in xs else list(self.parents[v])) for v in self.nodes},
            {e for e in self.bidirected if not (e & xs)},
        )

    def cut_outgoing(self, xs: Iterable[str]) -> "ADMG":
        """G with every directed edge out of `xs` removed (G_{\\underline X})."""
        xs = set(xs)
        return ADMG(
            self.nodes, {v: [p for p in self.parents[v] if p not in xs] for v in self.nodes}, set(self.bidirected)
        )

    def districts(self) -> list[tuple]:
        """C-components: classes of the nodes connected by bidirected edges (topologically sorted)."""
        seen: set[str] = set()
        out = []
        for v in self.nodes:
            if v in seen:
                continue
            comp, todo = set(), [v]
            while todo:
                u = todo.pop()
                if u in comp:
                    continue
                comp.add(u)
                todo.extend(w for e in self.bidirected if u in e for w in e if w != u)
            seen |= comp
            out.append(tuple(n for n in self.nodes if n in comp))
        return out

    # -- separation ------------------------------------------------------------------------------
    def as_dag(self) -> tuple[tuple, dict]:
        """An equivalent DAG: each bidirected edge a<->b becomes a latent parent U(a,b)."""
        parents = {v: list(ps) for v, ps in self.parents.items()}
        nodes = list(self.nodes)
        for e in sorted(self.bidirected, key=sorted):
            a, b = sorted(e)
            u = f"U({a},{b})"
            nodes.insert(0, u)
            parents[u] = []
            parents[a].append(u)
            parents[b].append(u)
        return tuple(nodes), parents

    def separated(self, xs: Iterable[str], ys: Iterable[str], zs: Iterable[str]) -> bool:
        """m-separation of `xs` and `ys` given `zs` (d-separation in the canonical DAG)."""
        nodes, parents = self.as_dag()
        return d_separated(parents, set(xs), set(ys), set(zs))

    def __repr__(self) -> str:
        di = [f"{p} -> {v}" for v in self.nodes for p in self.parents[v]]
        bi = [" <-> ".join(sorted(e)) for e in sorted(self.bidirected, key=sorted)]
        return f"ADMG(nodes={list(self.nodes)}, edges={di + bi})"


def d_separated(parents: Mapping[str, list], xs: set, ys: set, zs: set) -> bool:
    """d-separation in a DAG by the moralised ancestral graph (Lauritzen)."""
    if xs & ys:
        return False
    anc, todo = set(), list(xs | ys | zs)
    while todo:
        v = todo.pop()
        if v in anc:
            continue
        anc.add(v)
        todo.extend(parents[v])
    adj: dict[str, set] = {v: set() for v in anc}
    for v in anc:
        ps = [p for p in parents[v] if p in anc]
        for p in ps:
            adj[v].add(p)
            adj[p].add(v)
        for a, b in itertools.combinations(ps, 2):
            adj[a].add(b)
            adj[b].add(a)
    seen, todo = set(), [x for x in xs if x not in zs]
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        if v in ys:
            return False
        todo.extend(w for w in adj[v] if w not in zs and w not in seen)
    return True


def latent_projection(nodes: tuple, parents: Mapping[str, list], observed: Iterable[str]) -> ADMG:
    """Project a DAG (nodes topologically ordered) onto `observed` (Verma & Pearl).

    a -> b when a directed path a -> ... -> b has only latent intermediate nodes; a <-> b when
    a latent node L has such latent-only directed paths to both a and b.
    """
    obs = [v for v in nodes if v in set(observed)]
    latent = set(nodes) - set(obs)
    kids: dict[str, list[str]] = {v: [] for v in nodes}
    for c in nodes:
        for p in parents[c]:
            kids[p].append(c)

    def reach(v: str) -> set[str]:
        """Observed nodes reachable from v by a directed path through latent nodes only."""
        out, todo, seen = set(), list(kids[v]), set()
        while todo:
            u = todo.pop()
            if u in seen:
                continue
            seen.add(u)
            if u in latent:
                todo.extend(kids[u])
            else:
                out.add(u)
        return out

    new_par: dict[str, list[str]] = {v: [] for v in obs}
    for a in obs:
        for b in reach(a):
            if a not in new_par[b]:
                new_par[b].append(a)
    bi: set = set()
    for u in nodes:
        if u in latent:
            r = sorted(reach(u))
            for a, b in itertools.combinations(r, 2):
                bi.add(frozenset((a, b)))
    order = {v: i for i, v in enumerate(obs)}
    for v in obs:
        new_par[v].sort(key=order.__getitem__)
    return ADMG(tuple(obs), new_par, bi)
