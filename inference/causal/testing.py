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



import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

__all__ = ["build", "random_spec", "specs", "confounded_specs", "build_scm", "scm_specs"]


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
