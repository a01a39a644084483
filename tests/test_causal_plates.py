"""Exact interpretation of sites in plates: each element its own variable, checked against
semantics.enumerate of the model and of ppl.do of it; a planted-bug twin must be rejected."""

from __future__ import annotations

import importlib

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
import semantics
from inference import causal
from ppl import dist

pytestmark = [pytest.mark.exact]

interp = importlib.import_module("inference.causal.cpt")  # the module whose factors() splits tables

TOL = 1e-10
Y = jnp.array([1, 0, 1])


@ppl.model
def clustered(y=None):
    z = ppl.sample("z", dist.Bernoulli(0.3))
    with ppl.plate("N", 3):
        w = ppl.sample("w", dist.Bernoulli(0.2 + 0.6 * z))
        ppl.sample("y", dist.Bernoulli(0.1 + 0.7 * w), obs=y)
    ppl.sample("s", dist.Bernoulli(0.1 + 0.25 * jnp.sum(w)))


def test_plate_elements_are_variables_and_the_measure_is_the_models():
    d = causal.diagram(clustered, y=Y)
    j = causal.interpret(d)
    assert isinstance(j, causal.Joint)
    assert j.names == ("z", "w[0]", "w[1]", "w[2]", "s")
    semantics.enumerate(clustered, y=Y).assert_equal(causal.as_measure(d), tol=TOL)
    # each element's table keeps only what it varies with: w[i] <- z, y[i] <- w[i]
    scopes = [vs for _, vs in causal.factors(d)[1]]
    assert scopes == [("z",), ("z", "w[0]"), ("z", "w[1]"), ("z", "w[2]"), ("w[0]",), ("w[1]",), ("w[2]",), ("w[0]", "w[1]", "w[2]", "s")]


@pytest.mark.parametrize(
    "cut", [{"z": 1}, {"s": 0}, {"w": jnp.array([1, 0, 0])}, {"z": 0, "w": jnp.array([0, 1, 1])}]
)
def test_surgery_on_plates_commutes_with_do(cut):
    d = causal.diagram(clustered, y=Y)
    got = causal.as_measure(causal.surgery(d, cut))
    semantics.enumerate(ppl.do(clustered, cut), y=Y).assert_equal(got, tol=TOL)


def test_queries_name_a_plate_site_or_its_elements():
    d = causal.diagram(clustered, y=Y)
    mu = semantics.enumerate(ppl.do(clustered, {"z": 1}), y=Y)
    post = mu.condition(lambda c: c["s"] == 1).normalize()
    q = causal.query(d, "w", given={"s": 1}, do={"z": 1})
    assert q.names == ("w[0]", "w[1]", "w[2]")
    for i in range(3):
        want = post.expectation(lambda c: c["w"][i])
        assert abs(float(q.marginal([f"w[{i}]"]).table[1]) - want) < TOL
    # evidence on a whole plate site is split elementwise
    e = causal.query(d, "s", given={"w": jnp.array([1, 1, 0])})
    np.testing.assert_allclose(np.asarray(e.table), [0.4, 0.6], atol=TOL)


@ppl.model
def grid(y=None):
    a = ppl.sample("a", dist.Categorical(probs=jnp.array([0.2, 0.5, 0.3])))
    with ppl.plate("rows", 2, dim=-2), ppl.plate("cols", 2, dim=-1):
        c = ppl.sample("c", dist.Bernoulli(jnp.array([0.1, 0.5, 0.9])[a]))
    with ppl.plate("cols2", 2):
        ppl.sample("y", dist.Bernoulli(0.2 + 0.3 * c.sum(0) / 2), obs=y)
    ppl.factor("f", jnp.log(1.0 + c[0, 0] + 2 * c[1, 1]))


def test_nested_plates_observations_and_factors():
    y = jnp.array([1, 0])
    d = causal.diagram(grid, y=y)
    assert causal.interpret(d).names == ("a", "c[0, 0]", "c[0, 1]", "c[1, 0]", "c[1, 1]")
    semantics.enumerate(grid, y=y).assert_equal(causal.as_measure(d), tol=TOL)
    semantics.enumerate(ppl.do(grid, {"a": 2}), y=y).assert_equal(causal.as_measure(causal.surgery(d, {"a": 2})), tol=TOL)


def _prune_everything(lp, fam, own):
    """Planted bug: each element's table is cut down to its own variable (read at index 0 of
    everything else), as if plate elements never depended on anything."""
    out = []
    for i in range(lp.shape[-1]):
        t = np.exp(lp[..., i])
        keep = list(fam)
        mine = own[i] if len(own) == lp.shape[-1] else None
        for v in list(fam):
            if v != mine:
                ax = keep.index(v)
                t = np.take(t, 0, axis=ax)
                keep.pop(ax)
        out.append((jnp.asarray(t), tuple(keep)))
    return out


def test_the_comparison_rejects_a_planted_bug(monkeypatch):
    monkeypatch.setattr(interp, "_split", _prune_everything)
    d = causal.diagram(clustered, y=Y)
    with pytest.raises(AssertionError):
        semantics.enumerate(clustered, y=Y).assert_equal(causal.as_measure(d), tol=TOL)


def test_large_plates_fall_back_to_the_sampler():
    @ppl.model
    def big():
        with ppl.plate("N", 50):
            ppl.sample("w", dist.Bernoulli(0.5))

    d = causal.diagram(big)
    assert not causal.finitely_enumerable(d)
    assert isinstance(causal.interpret(d), causal.Sampler)
    with pytest.raises(semantics.NotEnumerableError, match="unrolls"):
        causal.factors(d)
    assert causal.finitely_enumerable(causal.diagram(clustered, y=Y))


def test_the_sampler_fallback_is_decided_by_type_not_by_message(monkeypatch):
    @ppl.model
    def mixed():
        z = ppl.sample("z", dist.Bernoulli(0.5))
        ppl.sample("x", dist.Normal(z, 1.0))

    d = causal.diagram(mixed)
    assert not causal.finitely_enumerable(d)
    assert isinstance(causal.interpret(d), causal.Sampler)
    with pytest.raises(semantics.NotEnumerableError, match="'x'"):
        causal.factors(d)

    # a model error that merely mentions finite supports and plates is raised, not swallowed
    def broken(*a, **k):
        raise ppl.ModelError("a site without finite support in plates")

    monkeypatch.setattr(interp, "_site_job", broken)
    with pytest.raises(ppl.ModelError, match="finite support in plates"):
        causal.interpret(causal.diagram(clustered, y=Y))


@st.composite
def plate_models(draw):
    k = draw(st.integers(1, 3))
    card = draw(st.integers(2, 3))
    rows = []
    for _ in range(card):
        w = np.asarray(draw(st.lists(st.integers(1, 9), min_size=2, max_size=2)), float)
        rows.append(w / w.sum())
    cpt = jnp.asarray(np.stack(rows))  # P(w | z)
    w_s = np.asarray(draw(st.lists(st.integers(1, 9), min_size=2, max_size=2)), float)
    link = draw(st.sampled_from(["sum", "first", "max"]))

    @ppl.model
    def m():
        z = ppl.sample("z", dist.Categorical(probs=jnp.ones(card) / card))
        with ppl.plate("N", k):
            w = ppl.sample("w", dist.Categorical(probs=cpt[z]))
        agg = {"sum": jnp.sum(w), "first": w[0], "max": jnp.max(w)}[link]
        ppl.sample("s", dist.Bernoulli(w_s[0] / (w_s[0] + w_s[1]) * (agg + 1) / (k + 1)))

    cut = draw(st.sampled_from([{}, {"z": card - 1}, {"s": 1}, {"w": jnp.zeros(k, int)}]))
    return m, cut


@settings(max_examples=6)
@given(plate_models())
def test_random_plate_models_commute_with_do(mc):
    m, cut = mc
    d = causal.diagram(m)
    semantics.enumerate(ppl.do(m, cut) if cut else m).assert_equal(causal.as_measure(causal.surgery(d, cut)), tol=TOL)
