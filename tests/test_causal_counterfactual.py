"""Counterfactuals by the twin network: closed forms, the laws, planted-bug twins."""

from __future__ import annotations

from fractions import Fraction

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

pytestmark = [pytest.mark.exact]

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


# ---------------------------------------------------------------------------------------------
# references that share no code with the code under test


def _abduction_on_first_evidence_only(model, *args, evidence, do, query, exogenous=None, **kwargs):
    """Planted bug: abduction conditions on the first evidence site only."""
    first = dict(list(evidence.items())[:1])
    return causal.counterfactual(model, *args, evidence=first, do=do, query=query, exogenous=exogenous, **kwargs)


def _table(cf):
    return {k: v for k, v in laws._joint_as_dict(cf).items() if v > 0}


def _close(got: dict, want: dict) -> bool:
    return all(abs(got.get(k, 0.0) - float(want.get(k, 0))) <= 1e-12 for k in set(got) | set(want))


def test_consistency_and_twin_network_against_hand_computed_fractions():
    """Abduction, action and prediction by hand, in exact fractions."""
    p, q = Fraction(3, 5), Fraction(1, 10)  # P_ORDER, P_NERVES
    assert float(p) == P_ORDER and float(q) == P_NERVES
    # firing squad, seeing a = 1: the worlds (order, nerves) with order or nerves
    post_order = p / (p + (1 - p) * q)  # = 15/16
    assert post_order == Fraction(15, 16)
    # consistency: do(a = 1) where a = 1 was seen changes nothing: b = order
    got = _table(causal.counterfactual(firing_squad, evidence={"a": 1}, do={"a": 1}, query="b"))
    assert _close(got, {(1,): post_order, (0,): 1 - post_order})
    laws.counterfactual_consistent(firing_squad, {"a": 1}, ["b"]).assert_()
    # y = (x + uy) mod 3, ux ~ Bernoulli(3/10), uy ~ (1/2, 1/5, 3/10); seeing y = 2
    pux, puy = Fraction(3, 10), [Fraction(1, 2), Fraction(1, 5), Fraction(3, 10)]
    w0, w1 = (1 - pux) * puy[2], pux * puy[1]  # (x = 0, uy = 2), (x = 1, uy = 1)
    assert w1 / (w0 + w1) == Fraction(2, 9)
    # consistency: do(y = 2) leaves the posterior of x as it is
    got = _table(causal.counterfactual(xor_scm, evidence={"y": 2}, do={"y": 2}, query="x"))
    assert _close(got, {(0,): Fraction(7, 9), (1,): Fraction(2, 9)})
    laws.counterfactual_consistent(xor_scm, {"y": 2}, ["x"]).assert_()
    # the twin network: had x been 1, y = (1 + uy) mod 3 in each abducted world
    got = _table(causal.counterfactual(xor_scm, evidence={"y": 2}, do={"x": 1}, query=["y", "factual/x"]))
    want = {(0, 0): Fraction(7, 9), (2, 1): Fraction(2, 9)}
    assert _close(got, want)
    # seeing x = 1 and y = 2 pins uy = 1: had x been 0, y = 1 surely
    ev = {"x": 1, "y": 2}
    assert _close(_table(causal.counterfactual(xor_scm, evidence=ev, do={"x": 0}, query="y")), {(1,): 1})
    # planted: abduction on the first evidence site only (x = 1: uy keeps its prior)
    bad = _table(_abduction_on_first_evidence_only(xor_scm, evidence=ev, do={"x": 0}, query="y"))
    assert not _close(bad, {(1,): 1})
    assert not laws.counterfactual_sound(xor_scm, ev, {"x": 0}, ["y"], counterfactual_fn=_abduction_on_first_evidence_only).ok


def _cf_error(spec, evidence, do, query, fn=causal.counterfactual):
    got = _table(fn(testing.build_scm(spec), evidence=evidence, do=do, query=query))
    want = testing.scm_counterfactual(spec, evidence, do, query)
    return max(abs(got.get(k, 0.0) - want.get(k, 0.0)) for k in set(got) | set(want))


@settings(max_examples=8)
@given(scm_query())
def test_counterfactuals_equal_a_plain_abduction_action_prediction(sq):
    spec, world, ev_sites, do, y = sq
    vals = testing._scm_solve(spec, {n: world[f"u_{n}"] for n in spec[0]}, world.get("c"), {})
    evidence = {n: vals[n] for n in ev_sites}
    assert _cf_error(spec, evidence, do, [y, f"factual/{y}"]) <= TOL
    # consistency: do(evidence site = its observed value) gives the factual posterior
    for n, v in evidence.items():
        if n != y:
            assert _cf_error(spec, evidence, {n: v}, [y]) <= TOL
            assert max(
                abs(a - b)
                for a, b in zip(
                    [testing.scm_counterfactual(spec, evidence, {n: v}, [y]).get((k,), 0.0) for k in range(spec[1][y])],
                    [testing.scm_counterfactual(spec, evidence, {}, [y]).get((k,), 0.0) for k in range(spec[1][y])],
                )
            ) <= TOL
    # planted bug: skipping abduction is caught by the reference whenever the evidence is
    # informative about the query
    with_ev = testing.scm_counterfactual(spec, evidence, do, [y])
    without = testing.scm_counterfactual(spec, {}, do, [y])
    if max(abs(with_ev.get(k, 0.0) - without.get(k, 0.0)) for k in set(with_ev) | set(without)) > 1e-9:
        assert _cf_error(spec, evidence, do, [y], fn=_no_abduction) > 1e-9

