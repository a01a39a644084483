"""Hypothesis strategies of small models with known structure and exact (rational) parameters.

Each strategy draws a *structure and parameters* — never a random seed — and returns a
:class:`ModelSpec`: the ``ppl`` model, its arguments, the parameters, and an independent
brute-force oracle (``spec.oracle()``, a :class:`Measure` with exact Fraction weights computed in
plain Python, not through ``ppl``) where one exists.

Strategies:
    bayes_nets()              random discrete Bayes nets (≤ 5 nodes, ≤ 2 parents, rational CPTs,
                              some nodes observed)
    hmms()                    hidden Markov models written with ``ppl.scan`` (chains when T = 1..3)
    linear_gaussian_chains()  x_t = a x_{t-1} + N(0, q), y_t = x_t + N(0, r), T ≤ 3, as top-level
                              sites (so they can be integrated by quadrature)
    mixtures()                finite mixtures of categoricals with a plate of assignments
    dynamic_models()          models whose set of addresses changes: a random number of components,
                              or a branch where a site has a strictly smaller support

Example:
    >>> from hypothesis import given
    >>> @given(bayes_nets())
    ... def test_enumeration(spec):
    ...     semantics.enumerate(spec.model, *spec.args).assert_equal(spec.oracle(), exact=True)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import ppl
from ppl import dist
from ppl.errors import ModelError

from .measure import Choices, Measure

__all__ = [
    "ModelSpec",
    "rational_probs",
    "bayes_nets",
    "hmms",
    "linear_gaussian_chains",
    "mixtures",
    "dynamic_models",
    "discrete_models",
]


@dataclass
class ModelSpec:
    """A generated model: ``model(*args)``, its parameters, and an exact oracle (or None)."""

    kind: str
    model: Any
    args: tuple = ()
    params: dict = field(default_factory=dict)
    oracle_fn: Callable[[], Measure] | None = None
    latent: tuple = ()

    def oracle(self) -> Measure:
        """The model's exact measure computed independently of ``ppl`` (brute force)."""
        if self.oracle_fn is None:
            raise ModelError(f"ModelSpec.oracle: no brute-force oracle for a {self.kind} (oracle_fn is None)")
        return self.oracle_fn()

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"ModelSpec({self.kind}: {ps})"


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return repr(v.tolist())
    return repr(v)


@st.composite
def rational_probs(draw: Any, k: int, max_weight: int = 4) -> tuple[Fraction, ...]:
    """A probability vector of length `k` with positive rational entries (small denominators)."""
    w = draw(st.lists(st.integers(1, max_weight), min_size=k, max_size=k))
    s = sum(w)
    return tuple(Fraction(x, s) for x in w)


def _f(p: Any) -> Any:
    return np.vectorize(float, otypes=[np.float64])(np.asarray(p, dtype=object)) if not isinstance(p, Fraction) else float(p)


def _from_weights(pairs: list) -> Measure:
    acc: dict = {}
    for c, w in pairs:
        c = Choices(c)
        acc[c] = acc.get(c, Fraction(0)) + w
    return Measure.from_weights(acc)


# ---------------------------------------------------------------------------------------------
# Bayes nets


@st.composite
def bayes_nets(draw: Any, max_nodes: int = 5, max_parents: int = 2, max_card: int = 3, observe: bool = True) -> ModelSpec:
    """A random discrete Bayes net: nodes ``x0..x{n-1}`` in topological order, rational CPTs.

    ``spec.params``: ``cards`` (cardinalities), ``parents`` (tuple per node), ``cpts`` (object
    arrays of Fractions, shape parents' cards + own card), ``observed`` (node -> value).
    """
    n = draw(st.integers(1, max_nodes))
    cards = [draw(st.integers(2, max_card)) for _ in range(n)]
    parents = []
    for i in range(n):
        k = draw(st.integers(0, min(i, max_parents)))
        ps = tuple(sorted(draw(st.lists(st.integers(0, i - 1), min_size=k, max_size=k, unique=True)))) if i else ()
        parents.append(ps)
    cpts = []
    for i in range(n):
        shape = tuple(cards[p] for p in parents[i])
        table = np.empty(shape + (cards[i],), dtype=object)
        for idx in itertools.product(*[range(s) for s in shape]):
            table[idx] = draw(rational_probs(cards[i]))
        cpts.append(table)
    observed: dict[int, int] = {}
    if observe and n > 1:
        for i in draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True)):
            observed[i] = draw(st.integers(0, cards[i] - 1))
        if len(observed) == n:
            observed.pop(0)
    ftables = [_f(t) for t in cpts]

    @ppl.model
    def bayes_net():
        vals = []
        for i in range(n):
            idx = tuple(int(vals[p]) for p in parents[i])
            probs = jnp.asarray(ftables[i][idx])
            obs = observed.get(i)
            vals.append(ppl.sample(f"x{i}", dist.Categorical(probs=probs), obs=None if obs is None else jnp.asarray(obs)))
        return vals

    def oracle() -> Measure:
        pairs = []
        for assign in itertools.product(*[range(c) for c in cards]):
            if any(assign[i] != v for i, v in observed.items()):
                continue
            w = Fraction(1)
            for i in range(n):
                w *= cpts[i][tuple(assign[p] for p in parents[i])][assign[i]]
            pairs.append(({f"x{i}": assign[i] for i in range(n)}, w))
        return _from_weights(pairs)

    return ModelSpec(
        "bayes_net",
        bayes_net,
        (),
        {"cards": tuple(cards), "parents": tuple(parents), "cpts": cpts, "observed": observed},
        oracle,
        tuple(f"x{i}" for i in range(n) if i not in observed),
    )


# ---------------------------------------------------------------------------------------------
# HMMs


@st.composite
def hmms(draw: Any, max_states: int = 3, max_symbols: int = 3, max_T: int = 3) -> ModelSpec:
    """An HMM with rational parameters written with ``ppl.scan`` (name ``"hmm"``), data observed.

    ``spec.params``: ``init`` (K,), ``trans`` (K, K), ``emit`` (K, M) as Fraction arrays, ``y``.
    Sites ``"hmm/s"`` (latent, stacked over time) and ``"hmm/y"`` (observed).
    """
    K = draw(st.integers(2, max_states))
    M = draw(st.integers(2, max_symbols))
    T = draw(st.integers(1, max_T))
    init = np.array(draw(rational_probs(K)), dtype=object)
    trans = np.array([draw(rational_probs(K)) for _ in range(K)], dtype=object)
    emit = np.array([draw(rational_probs(M)) for _ in range(K)], dtype=object)
    y = tuple(draw(st.lists(st.integers(0, M - 1), min_size=T, max_size=T)))
    fi, ft, fe = jnp.asarray(_f(init)), jnp.asarray(_f(trans)), jnp.asarray(_f(emit))

    @ppl.model
    def hmm(ys):
        def step(prev, y_t):
            probs = jnp.where(prev < 0, fi, ft[jnp.maximum(prev, 0)])
            s = ppl.sample("s", dist.Categorical(probs=probs))
            ppl.sample("y", dist.Categorical(probs=fe[s]), obs=y_t)
            return s, s

        return ppl.scan(step, jnp.asarray(-1), xs=ys, name="hmm")

    def oracle() -> Measure:
        pairs = []
        for ss in itertools.product(range(K), repeat=T):
            w = init[ss[0]] * emit[ss[0], y[0]]
            for t in range(1, T):
                w *= trans[ss[t - 1], ss[t]] * emit[ss[t], y[t]]
            pairs.append(({"hmm/s": ss, "hmm/y": y}, w))
        return _from_weights(pairs)

    return ModelSpec("hmm", hmm, (jnp.asarray(y),), {"init": init, "trans": trans, "emit": emit, "y": y}, oracle, ("hmm/s",))


# ---------------------------------------------------------------------------------------------
# linear Gaussian chains


@st.composite
def linear_gaussian_chains(draw: Any, max_T: int = 3) -> ModelSpec:
    """x_1 ~ N(0, q0), x_t ~ N(a x_{t-1}, q), y_t ~ N(x_t, r) observed; sites ``x1..xT``, ``y1..yT``.

    ``spec.params``: ``a, q0, q, r`` (variances) and ``y``; compare with
    ``oracles.kalman_filter(y, A=a, Q=q, H=1, R=r, m0=0, P0=(q0 - q) / a²)``-free form via
    ``spec.params["kalman"]`` = keyword arguments for :func:`semantics.oracles.kalman_filter`
    (x_0 = 0 with P0 = 0 and the first step's noise q0 is expressed by starting at x_1 directly).
    """
    T = draw(st.integers(1, max_T))
    a = draw(st.sampled_from([-0.9, -0.5, 0.5, 0.8, 1.0]))
    q = draw(st.sampled_from([0.25, 0.5, 1.0]))
    r = draw(st.sampled_from([0.25, 0.5, 1.0]))
    y = tuple(draw(st.lists(st.sampled_from([-1.5, -0.5, 0.0, 0.75, 2.0]), min_size=T, max_size=T)))

    @ppl.model
    def lg_chain(ys):
        x = jnp.asarray(0.0)
        for t in range(len(ys)):
            x = ppl.sample(f"x{t + 1}", dist.Normal(a * x, q**0.5))
            ppl.sample(f"y{t + 1}", dist.Normal(x, r**0.5), obs=ys[t])
        return x

    kalman = {"A": a, "Q": q, "H": 1.0, "R": r, "m0": 0.0, "P0": 0.0}
    return ModelSpec(
        "linear_gaussian_chain",
        lg_chain,
        (jnp.asarray(y),),
        {"T": T, "a": a, "q": q, "r": r, "y": y, "kalman": kalman},
        None,
        tuple(f"x{t + 1}" for t in range(T)),
    )


# ---------------------------------------------------------------------------------------------
# mixtures


@st.composite
def mixtures(draw: Any, max_components: int = 3, max_data: int = 3, max_symbols: int = 3) -> ModelSpec:
    """z_i ~ Categorical(w) and y_i ~ Categorical(emit[z_i]) observed, in ``ppl.plate("data", N)``.

    The assignments ``"z"`` are one batched draw of shape (N,) (the enumerator takes the product
    of element supports).
    """
    K = draw(st.integers(2, max_components))
    N = draw(st.integers(1, max_data))
    M = draw(st.integers(2, max_symbols))
    w = np.array(draw(rational_probs(K)), dtype=object)
    emit = np.array([draw(rational_probs(M)) for _ in range(K)], dtype=object)
    y = tuple(draw(st.lists(st.integers(0, M - 1), min_size=N, max_size=N)))
    fw, fe = jnp.asarray(_f(w)), jnp.asarray(_f(emit))

    @ppl.model
    def mixture(ys):
        with ppl.plate("data", len(ys)):
            z = ppl.sample("z", dist.Categorical(probs=fw))
            ppl.sample("y", dist.Categorical(probs=fe[z]), obs=ys)
        return z

    def oracle() -> Measure:
        pairs = []
        for zs in itertools.product(range(K), repeat=N):
            wt = Fraction(1)
            for i in range(N):
                wt *= w[zs[i]] * emit[zs[i], y[i]]
            pairs.append(({"z": zs, "y": y}, wt))
        return _from_weights(pairs)

    return ModelSpec("mixture", mixture, (jnp.asarray(y),), {"w": w, "emit": emit, "y": y}, oracle, ("z",))


# ---------------------------------------------------------------------------------------------
# models whose set of addresses changes


@st.composite
def dynamic_models(draw: Any) -> ModelSpec:
    """A model whose addresses depend on its choices, with a brute-force oracle.

    Either (``kind="random_components"``) a number n ∈ {1, .., K} of components drawn first, then
    ``c0..c{n-1}`` ~ Bernoulli and an observation depending on their count; or
    (``kind="smaller_support"``) a branch ``b`` choosing whether ``x`` ranges over 3 values or a
    strictly smaller set of 2, with a site ``extra`` that exists in one branch only (``ppl.cond``).
    """
    which = draw(st.sampled_from(["random_components", "smaller_support"]))
    if which == "random_components":
        K = draw(st.integers(1, 3))
        pn = draw(rational_probs(K))
        pc = [draw(rational_probs(2))[1] for _ in range(K)]
        emit = [draw(rational_probs(2))[1] for _ in range(K + 1)]  # P(y = 1 | count)
        y = draw(st.integers(0, 1))
        fpn = jnp.asarray(_f(np.array(pn, dtype=object)))

        @ppl.model
        def random_components(y_obs):
            n = ppl.sample("n", dist.Categorical(probs=fpn)) + 1
            count = 0
            for i in range(int(n)):
                count = count + ppl.sample(f"c{i}", dist.Bernoulli(probs=float(pc[i])))
            ppl.sample("y", dist.Bernoulli(probs=jnp.asarray(_f(np.array(emit, dtype=object)))[count]), obs=y_obs)
            return count

        def oracle() -> Measure:
            pairs = []
            for n in range(1, K + 1):
                for cs in itertools.product((0, 1), repeat=n):
                    wt = pn[n - 1]
                    for i, c in enumerate(cs):
                        wt *= pc[i] if c else 1 - pc[i]
                    e = emit[sum(cs)]
                    wt *= e if y == 1 else 1 - e
                    ch = {"n": n - 1, "y": y, **{f"c{i}": c for i, c in enumerate(cs)}}
                    pairs.append((ch, wt))
            return _from_weights(pairs)

        return ModelSpec(which, random_components, (jnp.asarray(y),), {"pn": pn, "pc": pc, "emit": emit, "y": y}, oracle)

    q = draw(rational_probs(2))[1]
    p3 = draw(rational_probs(3))
    p2 = draw(rational_probs(2))
    pe = draw(rational_probs(2))[1]
    lik = [draw(rational_probs(2))[1] for _ in range(3)]  # P(y = 1 | x)
    y = draw(st.integers(0, 1))
    f3, f2 = jnp.asarray(_f(np.array(p3, dtype=object))), jnp.asarray(_f(np.array(p2, dtype=object)))
    flik = jnp.asarray(_f(np.array(lik, dtype=object)))

    @ppl.model
    def smaller_support(y_obs):
        b = ppl.sample("b", dist.Bernoulli(probs=float(q)))

        def big():
            return ppl.sample("x", dist.Categorical(probs=f3))

        def small():
            e = ppl.sample("extra", dist.Bernoulli(probs=float(pe)))
            return ppl.sample("x", dist.Categorical(probs=f2)) + 0 * e

        x = ppl.cond(b == 1, big, small)
        ppl.sample("y", dist.Bernoulli(probs=flik[x]), obs=y_obs)
        return x

    def oracle2() -> Measure:
        pairs = []
        ly = lambda x: lik[x] if y == 1 else 1 - lik[x]  # noqa: E731
        for x in range(3):
            pairs.append(({"b": 1, "x": x, "y": y}, q * p3[x] * ly(x)))
        for e in (0, 1):
            for x in range(2):
                pairs.append(({"b": 0, "extra": e, "x": x, "y": y}, (1 - q) * (pe if e else 1 - pe) * p2[x] * ly(x)))
        return _from_weights(pairs)

    return ModelSpec(which, smaller_support, (jnp.asarray(y),), {"q": q, "p3": p3, "p2": p2, "pe": pe, "lik": lik, "y": y}, oracle2)


def discrete_models() -> st.SearchStrategy:
    """Any of the discrete strategies (Bayes nets, HMMs, mixtures, dynamic models)."""
    return st.one_of(bayes_nets(), hmms(), mixtures(), dynamic_models())
