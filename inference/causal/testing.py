"""Random finite causal models for property tests (Bayes nets with rational CPTs).

A *spec* is ``(names, cards, parents, cpts)``: node names in topological order, their numbers
of values, each node's parent list and its CPT (an array with axes (parents..., node) whose
last axis sums to one).  :func:`build` turns a spec into a ``@ppl.model``; the CPT rows are
looked up by indexing with the parents' values, so the model's wires are exactly the spec's
edges.

Example:
    >>> spec = random_spec(np.random.default_rng(0), num_nodes=4)
    >>> model = build(spec)
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

__all__ = [
    "build",
    "random_spec",
    "specs",
    "confounded_specs",
    "build_scm",
    "scm_specs",
    "spec_joint",
    "spec_query",
    "scm_counterfactual",
]


def build(spec: tuple, name: str = "bayes_net") -> ppl.Model:
    """The ``@ppl.model`` of a spec: one Categorical site per node."""
    names, cards, parents, cpts = spec
    tables = {n: jnp.asarray(cpts[n], dtype=jnp.float64) for n in names}

    def net():
        vals = {}
        for n in names:
            idx = tuple(vals[p] for p in parents[n])
            probs = tables[n][idx] if idx else tables[n]
            vals[n] = ppl.sample(n, dist.Categorical(probs=probs))
        return vals

    net.__name__ = name
    return ppl.model(net)


def _cpt(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    w = rng.integers(1, 10, size=shape).astype(np.float64)
    return w / w.sum(-1, keepdims=True)


def random_spec(rng: np.random.Generator, num_nodes: int = 4, edge_prob: float = 0.5, max_card: int = 3) -> tuple:
    """A random DAG over ``v0..v{n-1}`` with 2..max_card values per node and random CPTs."""
    names = [f"v{i}" for i in range(num_nodes)]
    cards = {n: int(rng.integers(2, max_card + 1)) for n in names}
    parents = {n: [m for m in names[:i] if rng.random() < edge_prob] for i, n in enumerate(names)}
    cpts = {n: _cpt(rng, tuple(cards[p] for p in parents[n]) + (cards[n],)) for n in names}
    return names, cards, parents, cpts


def specs(min_nodes: int = 2, max_nodes: int = 5, max_card: int = 3):
    """A hypothesis strategy of specs: ≤ max_nodes binary/ternary nodes, random edges and CPTs."""
    from hypothesis import strategies as st

    @st.composite
    def strat(draw):
        n = draw(st.integers(min_nodes, max_nodes))
        names = [f"v{i}" for i in range(n)]
        cards = {v: draw(st.integers(2, max_card)) for v in names}
        parents = {v: [u for u in names[:i] if draw(st.booleans())] for i, v in enumerate(names)}
        return names, cards, parents, _draw_cpts(draw, names, cards, parents)

    return strat()


def _draw_cpts(draw, names, cards, parents) -> dict:
    """A rational-looking conditional table per node (integer weights 1..9, normalised)."""
    from hypothesis import strategies as st

    cpts = {}
    for v in names:
        shape = tuple(cards[p] for p in parents[v]) + (cards[v],)
        size = int(np.prod(shape))
        w = np.asarray(draw(st.lists(st.integers(1, 9), min_size=size, max_size=size)), np.float64)
        w = w.reshape(shape)
        cpts[v] = w / w.sum(-1, keepdims=True)
    return cpts


def confounded_specs(min_obs: int = 3, max_obs: int = 4):
    """Specs with a hidden binary root ``u`` (listed first) pointing at two or more observed nodes."""
    from hypothesis import strategies as st

    @st.composite
    def strat(draw):
        n = draw(st.integers(min_obs, max_obs))
        obs = [f"v{i}" for i in range(n)]
        names = ["u"] + obs
        cards = {"u": 2, **{v: draw(st.integers(2, 3)) for v in obs}}
        hit = draw(st.lists(st.sampled_from(obs), min_size=2, max_size=n, unique=True))
        parents = {"u": []}
        for i, v in enumerate(obs):
            parents[v] = (["u"] if v in hit else []) + [w for w in obs[:i] if draw(st.booleans())]
        return names, cards, parents, _draw_cpts(draw, names, cards, parents)

    return strat()


# ---------------------------------------------------------------------------------------------
# structural causal models with explicit noise (for counterfactuals)


def build_scm(spec: tuple, name: str = "scm") -> ppl.Model:
    """The ``@ppl.model`` of an SCM spec ``(names, cards, parents, noise, tables, confounded)``.

    Node ``n`` has its own exogenous noise ``u_n ~ Categorical(noise[n])``; a common exogenous
    noise ``c ~ Bernoulli(1/3)`` feeds the nodes in `confounded`; ``n`` itself is the
    deterministic site ``tables[n][parents..., u_n(, c)]`` (an integer lookup table).
    """
    names, cards, parents, noise, tables, confounded = spec
    exo = {"exogenous": True}
    tabs = {n: jnp.asarray(tables[n]) for n in names}

    def scm():
        c = ppl.sample("c", dist.Bernoulli(1.0 / 3.0), infer=exo) if confounded else None
        vals = {}
        for n in names:
            u = ppl.sample(f"u_{n}", dist.Categorical(probs=jnp.asarray(noise[n])), infer=exo)
            idx = tuple(vals[p] for p in parents[n]) + (u,) + ((c,) if n in confounded else ())
            vals[n] = ppl.deterministic(n, tabs[n][idx])
        return vals

    scm.__name__ = name
    return ppl.model(scm)


def scm_specs(min_nodes: int = 2, max_nodes: int = 3):
    """A hypothesis strategy of SCM specs: ≤ max_nodes endogenous nodes with 2–3 values,
    random edges, 2–3-valued noises with rational probabilities, random function tables, and
    maybe a common noise confounding some nodes."""
    from hypothesis import strategies as st

    @st.composite
    def strat(draw):
        n = draw(st.integers(min_nodes, max_nodes))
        names = [f"v{i}" for i in range(n)]
        cards = {v: draw(st.integers(2, 3)) for v in names}
        parents = {v: [u for u in names[:i] if draw(st.booleans())] for i, v in enumerate(names)}
        confounded = tuple(v for v in names if draw(st.booleans()))
        if len(confounded) < 2:
            confounded = ()
        noise, tables = {}, {}
        for v in names:
            k = draw(st.integers(2, 3))
            w = np.asarray(draw(st.lists(st.integers(1, 9), min_size=k, max_size=k)), np.float64)
            noise[v] = w / w.sum()
            shape = tuple(cards[p] for p in parents[v]) + (k,) + ((2,) if v in confounded else ())
            size = int(np.prod(shape))
            tables[v] = np.asarray(draw(st.lists(st.integers(0, cards[v] - 1), min_size=size, max_size=size))).reshape(shape)
        return names, cards, parents, noise, tables, confounded

    return strat()


# ---------------------------------------------------------------------------------------------
# a reference enumerator, separate from the code under test
#
# Plain Python over the spec's own tables: it never builds a ppl model, and calls neither
# ppl.do, causal.surgery / interpret / counterfactual, nor semantics' enumerator.  Interventions
# follow the truncated factorisation (an intervened node takes its value with probability one and
# its table's factor is dropped); counterfactuals follow abduction, action, prediction over the
# SCM's exogenous noise.  Tests check the library's results against these.


def spec_joint(spec: tuple, do: dict | None = None) -> dict:
    """{values in ``names`` order: probability} of the Bayes-net spec under the hard
    interventions `do` (node -> value), by the truncated factorisation."""
    names, cards, parents, cpts = spec
    do = dict(do or {})
    out = {}
    for vals in itertools.product(*[range(cards[n]) for n in names]):
        v = dict(zip(names, vals))
        if any(v[n] != int(x) for n, x in do.items()):
            continue
        p = 1.0
        for n in names:
            if n in do:
                continue
            p *= float(cpts[n][tuple(v[q] for q in parents[n]) + (v[n],)])
        out[vals] = p
    return out


def spec_query(spec: tuple, on: str, do: dict | None = None, given: dict | None = None) -> np.ndarray:
    """P(on | given, do(...)) as a vector over on's values, from :func:`spec_joint`."""
    names, cards = spec[0], spec[1]
    given = dict(given or {})
    out = np.zeros(cards[on])
    for vals, p in spec_joint(spec, do).items():
        v = dict(zip(names, vals))
        if all(v[n] == int(x) for n, x in given.items()):
            out[v[on]] += p
    return out / out.sum()


def _scm_solve(spec: tuple, noise_values: dict, c: int | None, do: dict) -> dict:
    names, _, parents, _, tables, confounded = spec
    vals: dict = {}
    for n in names:
        if n in do:
            vals[n] = int(do[n])
            continue
        idx = tuple(vals[q] for q in parents[n]) + (noise_values[n],) + ((c,) if n in confounded else ())
        vals[n] = int(np.asarray(tables[n])[idx])
    return vals


def scm_counterfactual(spec: tuple, evidence: dict, do: dict, query: list) -> dict:
    """{query values: P(query in the world do(...) | evidence in the factual world)} for an SCM
    spec (:func:`build_scm`), by abduction (the noise values that reproduce the evidence, with
    their prior weights), action (the intervened equations) and prediction.  Query names are
    endogenous nodes of the counterfactual world, or ``"factual/<node>"``."""
    names, _, _, noise, _, confounded = spec
    cs = [(0, 2.0 / 3.0), (1, 1.0 / 3.0)] if confounded else [(None, 1.0)]
    out: dict = {}
    total = 0.0
    for us in itertools.product(*[range(len(noise[n])) for n in names]):
        u = dict(zip(names, us))
        pu = float(np.prod([noise[n][u[n]] for n in names]))
        for c, pc in cs:
            fact = _scm_solve(spec, u, c, {})
            if any(fact[n] != int(x) for n, x in evidence.items()):
                continue
            cf = _scm_solve(spec, u, c, do)
            key = tuple(fact[q[len("factual/"):]] if q.startswith("factual/") else cf[q] for q in query)
            out[key] = out.get(key, 0.0) + pu * pc
            total += pu * pc
    return {k: v / total for k, v in out.items()}
