"""Issue 14: finite discrete latent sites summed out exactly (``ppl.enum``), against ``semantics``.

The laws: for continuous values x held fixed, ``marginal_log_density(model, x)`` is the log of
the total mass of ``semantics.enumerate`` of the model with x substituted (float64, 1e-10), on
hypothesis-generated models with a global discrete site, a plate, a nested plate, a
``ppl.scan`` chain (optionally inside a plate of sequences); and ``infer_discrete``'s draws have
exactly the enumerated conditional law p(z | x, y) (the sampler itself enumerated by
``semantics.enumerate_paths``), its temperature-0 answer is the enumerated mode.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ppl
import semantics
from ppl import dist

TOL = 1e-10


def _probs(raw, shape):
    a = np.asarray(raw[: int(np.prod(shape))], dtype=np.float64).reshape(shape) + 0.05
    return jnp.asarray(a / a.sum(-1, keepdims=True))


def build(spec, raw):
    """A model with the features of `spec` and parameters carved from the list `raw`."""
    Kg, na, Ka, nb, Kb, T, Ks, seqs = (spec[k] for k in ("Kg", "na", "Ka", "nb", "Kb", "T", "Ks", "seqs"))
    it = iter(range(10**6))
    take = lambda n: [raw[next(it) % len(raw)] for _ in range(n)]  # noqa: E731
    G = max(Kg, 1)
    pg = _probs(take(G), (G,))
    pa = _probs(take(G * Ka), (G, Ka))
    pb = _probs(take(Ka * Kb), (Ka, Kb))
    ps = _probs(take(G * Ks * Ks), (G, Ks, Ks))
    mu_a, mu_b, mu_s = (jnp.asarray(take(k)) * 4 - 2 for k in (Ka, Kb, Ks))
    ya = jnp.asarray(take(max(na, 1))[:na]) * 3 - 1
    yb = jnp.asarray(take(max(na * nb, 1))[: na * nb]).reshape(nb, na) * 3 - 1
    ys = jnp.asarray(take(max(T * max(seqs, 1), 1))[: T * max(seqs, 1)]).reshape((T, seqs) if seqs else (T,)) * 3 - 1

    @ppl.model
    def m():
        c = ppl.sample("c", dist.Normal(0.0, 1.0))
        g = 0
        if Kg:
            g = ppl.sample("g", dist.Categorical(probs=pg))
        if na:
            with ppl.plate("A", na):
                a = ppl.sample("a", dist.Categorical(probs=pa[g]))
                ppl.sample("ya", dist.Normal(c + mu_a[a] + 0.5 * g, 1.0), obs=ya)
                if nb:
                    with ppl.plate("B", nb):
                        b = ppl.sample("b", dist.Categorical(probs=pb[a]))
                        ppl.sample("yb", dist.Normal(mu_b[b] + 0.3 * a, 1.0), obs=yb)
        if T:
            def step(s, yt):
                s2 = ppl.sample("s", dist.Categorical(probs=ps[g, s]))
                ppl.sample("y", dist.Normal(mu_s[s2] * c + 0.2 * g, 1.0), obs=yt)
                return s2, None

            init = jnp.zeros((seqs,) if seqs else (), int)
            if seqs:
                with ppl.plate("S", seqs):
                    ppl.scan(step, init, xs=ys, name="hmm")
            else:
                ppl.scan(step, init, xs=ys, name="hmm")

    names = [n for n, on in (("g", Kg), ("a", na), ("b", na and nb), ("hmm/s", T)) if on]
    paths = max(Kg, 1) * Ka ** na * Kb ** (na * nb) * Ks ** (T * max(seqs, 1))
    return m, names, paths


specs = st.fixed_dictionaries({
    "Kg": st.sampled_from([0, 2, 3]),
    "na": st.integers(0, 3), "Ka": st.integers(2, 3),
    "nb": st.integers(0, 2), "Kb": st.integers(2, 2),
    "T": st.integers(0, 3), "Ks": st.integers(2, 3),
    "seqs": st.sampled_from([0, 0, 2]),
})
raws = st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7)
cs = st.floats(-1.5, 1.5)


def _law(m, cval):
    return semantics.enumerate(ppl.substitute(m, {"c": cval}))


@settings(max_examples=3)
@given(specs, raws, cs)
def test_marginal_log_density_is_the_log_of_the_enumerated_mass(spec, raw, c):
    m, names, paths = build(spec, raw)
    assume(paths <= 24)
    got = jax.jit(lambda cc: ppl.marginal_log_density(m, {"c": cc}))(jnp.asarray(c))
    want = _law(m, c).log_total_mass()
    assert abs(float(got) - want) < TOL * max(1.0, abs(want)), (spec, float(got), want)


@pytest.mark.parametrize("spec", [
    dict(Kg=2, na=0, Ka=2, nb=0, Kb=2, T=3, Ks=2, seqs=0),   # a chain that a global site steers
    dict(Kg=2, na=2, Ka=2, nb=0, Kb=2, T=0, Ks=2, seqs=0),   # a plate under a global site
])
def test_marginal_law_on_fixed_cases(spec):
    m, _, _ = build(spec, [0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.6])
    got = jax.jit(lambda cc: ppl.marginal_log_density(m, {"c": cc}))(jnp.asarray(0.7))
    want = _law(m, 0.7).log_total_mass()
    assert abs(float(got) - want) < TOL * max(1.0, abs(want))


def _key(d, names):
    return tuple((n, tuple(np.asarray(d[n]).ravel().tolist())) for n in names)


def _conditional(m, c, names):
    mu = _law(m, c).normalize()
    out: dict = {}
    for atom, w in mu.items():
        k = _key({n: np.asarray(atom[n]) for n in names}, names)
        out[k] = out.get(k, 0.0) + mu.prob(atom)
    return out


CASES = [  # small enough for the eager enumeration of the sampler itself (each path ~1 s)
    dict(Kg=0, na=2, Ka=2, nb=0, Kb=2, T=0, Ks=2, seqs=0),
    dict(Kg=0, na=0, Ka=2, nb=0, Kb=2, T=2, Ks=2, seqs=0),
]


@pytest.mark.parametrize("spec", CASES)
def test_infer_discrete_draws_have_exactly_the_enumerated_conditional_law(spec):
    m, names, paths = build(spec, [0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.6])
    c = 0.4
    want = _conditional(m, c, names)
    sampler = semantics.enumerate_paths(lambda key: ppl.infer_discrete(m, {"c": jnp.asarray(c)}, key=key))
    got: dict = {}
    for p in sampler:
        k = _key(p.value, names)
        got[k] = got.get(k, 0.0) + float(np.exp(p.log_prob))
    assert len(want) == paths
    for k in set(want) | set(got):
        assert abs(got.get(k, 0.0) - want.get(k, 0.0)) < 1e-9, (spec, k, got.get(k), want.get(k))


@settings(max_examples=3)
@given(specs, raws, cs)
def test_infer_discrete_at_temperature_zero_is_the_enumerated_mode(spec, raw, c):
    m, names, paths = build(spec, raw)
    assume(names and paths <= 24)
    want = _conditional(m, c, names)
    ranked = sorted(want.values())
    assume(len(ranked) < 2 or ranked[-1] - ranked[-2] > 1e-9)  # a unique mode
    got = jax.jit(lambda cc: ppl.infer_discrete(m, {"c": cc}, temperature=0))(jnp.asarray(c))
    assert want[_key(got, names)] == ranked[-1]


def test_gradient_of_the_marginal_matches_finite_differences():
    spec = dict(Kg=2, na=2, Ka=3, nb=2, Kb=2, T=3, Ks=3, seqs=0)
    m, _, _ = build(spec, [0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.6])
    f = jax.jit(lambda c: ppl.marginal_log_density(m, {"c": c}))
    c = jnp.asarray(0.4)
    h = 1e-6
    fd = (f(c + h) - f(c - h)) / (2 * h)
    assert abs(float(jax.jit(jax.grad(f))(c)) - float(fd)) < 1e-5


def test_same_key_same_draws():
    spec = dict(Kg=2, na=3, Ka=3, nb=0, Kb=2, T=3, Ks=2, seqs=2)
    m, _, _ = build(spec, [0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.6])
    f = jax.jit(lambda k: ppl.infer_discrete(m, {"c": 0.3}, key=k))  # the compiled path users get
    a, b = f(jax.random.key(5)), f(jax.random.key(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["a"].shape == (3,) and a["hmm/s"].shape == (3, 2) and a["g"].shape == ()


def test_a_scan_whose_carry_also_counts_time_is_summed_sequentially_and_exactly():
    # the carry holds the state and a counter: the steps cannot be evaluated all at once, so
    # the sequential forward recursion runs (the other tests' chains take the parallel path)
    ps = jnp.array([[0.7, 0.3], [0.4, 0.6]])
    ys = jnp.array([0.3, -0.5, 1.2])

    @ppl.model
    def m():
        c = ppl.sample("c", dist.Normal(0.0, 1.0))

        def step(carry, yt):
            s, n = carry
            s2 = ppl.sample("s", dist.Categorical(probs=ps[s]))
            ppl.sample("y", dist.Normal(c * s2 + 0.3 * n, 1.0), obs=yt)
            return (s2, n + 1), None

        ppl.scan(step, (jnp.zeros((), int), jnp.zeros(())), xs=ys, name="hmm")

    got = jax.jit(lambda cc: ppl.marginal_log_density(m, {"c": cc}))(jnp.asarray(0.8))
    want = _law(m, 0.8).log_total_mass()
    assert abs(float(got) - want) < TOL * max(1.0, abs(want))
