"""Counterfactuals by the twin network: closed forms, the laws, planted-bug twins."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
from inference import causal
from inference.causal import laws, testing
from ppl import dist

TOL = 1e-10
P_ORDER, P_NERVES = 0.6, 0.1
EXO = {"exogenous": True}


@ppl.model
def firing_squad():
    order = ppl.sample("order", dist.Bernoulli(P_ORDER), infer=EXO)  # the court orders it
    nerves = ppl.sample("nerves", dist.Bernoulli(P_NERVES), infer=EXO)  # A fires anyway
    captain = ppl.deterministic("captain", order)
    a = ppl.deterministic("a", captain | nerves)
    b = ppl.deterministic("b", captain)
    ppl.deterministic("dead", a | b)


def _no_abduction(model, *args, evidence, do, query, exogenous=None, **kwargs):
    """Planted bug: skips abduction (the noise keeps its prior): the interventional answer."""
    return causal.counterfactual(model, *args, evidence={}, do=do, query=query, exogenous=exogenous, **kwargs)


def test_firing_squad_closed_form():
    # the prisoner is dead; had rifleman A not fired, would he be dead?  Only if the court
    # ordered it (then B fired): P(order | dead) = p / (p + (1 - p) q).
    want = P_ORDER / (P_ORDER + (1 - P_ORDER) * P_NERVES)
    cf = causal.counterfactual(firing_squad, evidence={"dead": 1}, do={"a": 0}, query="dead")
    assert cf.names == ("dead",) and cf.supports == ((0, 1),)
    np.testing.assert_allclose(np.asarray(cf.table), [1 - want, want], atol=TOL)
    # the interventional answer P(dead | do(a = 0)) = p differs: abduction matters
    interventional = causal.counterfactual(firing_squad, evidence={}, do={"a": 0}, query="dead")
    np.testing.assert_allclose(np.asarray(interventional.table), [1 - P_ORDER, P_ORDER], atol=TOL)
    assert abs(want - P_ORDER) > 0.3
    # abduction alone: the posterior over the noise
    post = causal.abduction(firing_squad, evidence={"dead": 1})
    assert post.names == ("order", "nerves")
    z = P_ORDER + (1 - P_ORDER) * P_NERVES
    want_post = np.array([[0.0, (1 - P_ORDER) * P_NERVES], [P_ORDER * (1 - P_NERVES), P_ORDER * P_NERVES]]) / z
    np.testing.assert_allclose(np.asarray(post.table), want_post, atol=TOL)
    # a joint query across worlds: dead in both worlds
    both = causal.counterfactual(firing_squad, evidence={}, do={"a": 0}, query=["factual/dead", "dead"])
    np.testing.assert_allclose(np.asarray(both.table), [[(1 - P_ORDER) * (1 - P_NERVES), 0.0], [(1 - P_ORDER) * P_NERVES, P_ORDER]], atol=TOL)


def test_laws_hold_on_the_firing_squad_and_reject_the_planted_bugs():
    ev, do = {"dead": 1}, {"a": 0}
    laws.counterfactual_sound(firing_squad, ev, do, ["dead"]).assert_()
    assert not laws.counterfactual_sound(firing_squad, ev, do, ["dead"], counterfactual_fn=_no_abduction).ok
    laws.counterfactual_consistent(firing_squad, {"a": 1, "b": 0}, ["dead"]).assert_()
    assert not laws.counterfactual_consistent(firing_squad, {"a": 1, "b": 0}, ["dead"], counterfactual_fn=_no_abduction).ok


@ppl.model
def xor_scm():
    ux = ppl.sample("ux", dist.Bernoulli(0.3), infer=EXO)
    uy = ppl.sample("uy", dist.Categorical(probs=jnp.array([0.5, 0.2, 0.3])), infer=EXO)
    x = ppl.deterministic("x", ux)
    ppl.deterministic("y", (x + uy) % 3)


def test_two_variable_scm_closed_form():
    # y = (x + uy) mod 3: seeing x = 1, y = 2 reveals uy = 1, so y_{x=0} = 1 surely, while
    # P(y = 1 | do(x = 0)) = P(uy = 1) = 0.2.
    cf = causal.counterfactual(xor_scm, evidence={"x": 1, "y": 2}, do={"x": 0}, query="y")
    np.testing.assert_allclose(np.asarray(cf.table), [0.0, 1.0, 0.0], atol=TOL)
    naive = causal.counterfactual(xor_scm, evidence={}, do={"x": 0}, query="y")
    np.testing.assert_allclose(np.asarray(naive.table), [0.5, 0.2, 0.3], atol=TOL)
    # seeing only y = 2: uy = 2 (x = 0, prob .7 * .3) or uy = 1 (x = 1, prob .3 * .2)
    cf2 = causal.counterfactual(xor_scm, evidence={"y": 2}, do={"x": 1}, query=["y", "factual/x"])
    z = 0.7 * 0.3 + 0.3 * 0.2
    want = np.zeros((3, 2))
    want[0, 0] = 0.7 * 0.3 / z  # uy = 2, x_cf = 1: y = 0; factual x = 0
    want[2, 1] = 0.3 * 0.2 / z  # uy = 1, x_cf = 1: y = 2; factual x = 1
    np.testing.assert_allclose(np.asarray(cf2.table), want, atol=TOL)
    assert not laws.counterfactual_sound(xor_scm, {"x": 1, "y": 2}, {"x": 0}, ["y"], counterfactual_fn=_no_abduction).ok


def test_stochastic_sites_downstream_are_redrawn_and_upstream_are_shared():
    @ppl.model
    def m():
        z = ppl.sample("z", dist.Bernoulli(0.5))  # upstream of x, not exogenous: shared
        u = ppl.sample("u", dist.Bernoulli(0.4), infer=EXO)
        x = ppl.deterministic("x", u * z)
        ppl.sample("y", dist.Bernoulli(0.2 + 0.6 * x))  # downstream, own noise: redrawn

    tw = causal.twin(m, {"x": 1})
    assert tw.shared == ("z", "u")
    d = causal.diagram(tw)
    assert d["counterfactual/x"].is_hard and "counterfactual/z" not in d
    assert d["counterfactual/y"].parents == ("counterfactual/x",)
    cf = causal.counterfactual(m, evidence={"y": 1, "z": 0}, do={"x": 1}, query=["y", "z"])
    np.testing.assert_allclose(np.asarray(cf.marginal(["z"]).table), [1.0, 0.0], atol=TOL)  # z kept
    np.testing.assert_allclose(np.asarray(cf.marginal(["y"]).table), [0.2, 0.8], atol=TOL)  # y redrawn


def test_counterfactual_errors():
    @ppl.model
    def no_noise():
        x = ppl.sample("x", dist.Bernoulli(0.5))
        ppl.deterministic("y", 1 - x)

    with pytest.raises(ppl.ModelError, match="exogenous"):
        causal.counterfactual(no_noise, evidence={}, do={"x": 1}, query="y")
    with pytest.raises(ppl.ModelError, match="probability zero"):
        causal.counterfactual(firing_squad, evidence={"dead": 0, "a": 1}, do={"a": 0}, query="dead")
    with pytest.raises(ppl.AddressError, match="dead"):
        causal.counterfactual(firing_squad, evidence={"ded": 1}, do={"a": 0}, query="dead")
    with pytest.raises(ppl.ModelError, match="intervened"):
        causal.counterfactual(firing_squad, evidence={"dead": 1}, do={"a": 0}, query="a")

    @ppl.model
    def observed(y=None):
        u = ppl.sample("u", dist.Bernoulli(0.5), infer=EXO)
        ppl.sample("y", dist.Bernoulli(0.2 + 0.6 * u), obs=y)

    with pytest.raises(ppl.ModelError, match="evidence"):
        causal.counterfactual(observed, y=jnp.array(1), evidence={}, do={"u": 1}, query="u")
    with pytest.raises(ppl.ModelError, match="finite"):
        @ppl.model
        def cont():
            u = ppl.sample("u", dist.Normal(0.0, 1.0), infer=EXO)
            ppl.deterministic("y", u > 0)

        causal.counterfactual(cont, evidence={"y": True}, do={}, query="y")


def test_twin_simulates_continuous_counterfactual_pairs():
    @ppl.model
    def linear():
        ux = ppl.sample("ux", dist.Normal(0.0, 1.0), infer=EXO)
        uy = ppl.sample("uy", dist.Normal(0.0, 1.0), infer=EXO)
        x = ppl.deterministic("x", ux)
        ppl.deterministic("y", 2.0 * x + uy)

    tw = causal.twin(linear, {"x": 1.0})
    tr = jax.vmap(lambda k: tw.simulate(k).deterministic)(jax.random.split(jax.random.key(0), 4))
    # shared noise: y_cf - y = 2 (1 - x) exactly, draw by draw
    np.testing.assert_allclose(tr["counterfactual/y"] - tr["factual/y"], 2.0 * (1.0 - tr["factual/x"]), atol=1e-12)


@st.composite
def scm_query(draw):
    spec = draw(testing.scm_specs(2, 3))
    names, cards, *_ = spec
    ev_sites = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    x = draw(st.sampled_from(names))
    y = draw(st.sampled_from([n for n in names if n != x]))
    # evidence: the values of one possible world (so it has positive probability)
    world = {f"u_{n}": draw(st.integers(0, len(spec[3][n]) - 1)) for n in names}
    if spec[5]:
        world["c"] = draw(st.integers(0, 1))
    return spec, world, ev_sites, {x: draw(st.integers(0, cards[x] - 1))}, y


@settings(max_examples=8)
@given(scm_query())
def test_counterfactual_laws_on_random_scms(sq):
    spec, world, ev_sites, do, y = sq
    model = testing.build_scm(spec)
    vals = ppl.do(model, world).trace_sites(jax.random.key(0))
    evidence = {n: int(vals[n]["value"]) for n in ev_sites}
    laws.counterfactual_sound(model, evidence, do, [y]).assert_()
    laws.counterfactual_consistent(model, evidence, [y]).assert_()
