"""Surgery on diagrams: exact interpretation, the commuting square with ppl.do, the laws of cuts,
intervene-then-condition queries, soft interventions.  Each law has a planted-bug twin."""

from __future__ import annotations


import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
import semantics
from inference import causal
from inference.causal import laws, testing
from ppl import dist
from semantics import stats
from _budget import BUDGET

pytestmark = [pytest.mark.exact]

TOL = 1e-10


@ppl.model
def sprinkler():
    c = ppl.sample("cloudy", dist.Bernoulli(0.5))
    s = ppl.sample("sprinkler", dist.Bernoulli(jnp.where(c == 1, 0.1, 0.5)))
    r = ppl.sample("rain", dist.Bernoulli(jnp.where(c == 1, 0.8, 0.2)))
    p_wet = jnp.array([[0.0, 0.9], [0.9, 0.99]])[s, r]
    ppl.sample("wet", dist.Bernoulli(p_wet))


# ---------------------------------------------------------------------------------------------
# interpretation


def test_interpretation_is_the_models_measure():
    d = causal.diagram(sprinkler)
    got = causal.as_measure(d)
    semantics.enumerate(sprinkler).assert_equal(got, tol=TOL)
    assert abs(float(causal.interpret(d).total) - 1.0) < TOL


def test_observed_sites_and_factors_are_multiplied_in():
    @ppl.model
    def m(y=None):
        z = ppl.sample("z", dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5])))
        ppl.sample("y", dist.Bernoulli(jnp.array([0.1, 0.6, 0.9])[z]), obs=y)
        ppl.factor("f", jnp.log(1.0 + z))

    d = causal.diagram(m, y=jnp.array(1))
    j = causal.interpret(d)
    expected = np.array([0.2 * 0.1 * 1, 0.3 * 0.6 * 2, 0.5 * 0.9 * 3])
    np.testing.assert_allclose(np.asarray(j.table), expected, rtol=0, atol=TOL)
    semantics.enumerate(m, y=jnp.array(1)).assert_equal(causal.as_measure(d), tol=TOL)


@pytest.mark.statistical
def test_continuous_diagrams_interpret_as_a_sampler():
    import jax

    @ppl.model
    def m():
        x = ppl.sample("x", dist.Normal(0.0, 1.0))
        ppl.sample("y", dist.Normal(x, 0.1))

    s = causal.interpret(causal.surgery(causal.diagram(m), {"x": 3.0}))
    assert isinstance(s, causal.Sampler)
    draws = s.sample(jax.random.key(0), 2000)
    assert np.all(np.asarray(draws["x"]) == 3.0)
    # y | do(x = 3) ~ N(3, 0.1): the mean of 2000 draws, a z-test with the known sd at the
    # budgeted level (a cut that kept x's own noise would give sd 1.005, and the same mean)
    stats.z_test(np.asarray(draws["y"]), 3.0, alpha=BUDGET.level("causal/continuous_do_mean"), sd=0.1).assert_()
    assert float(jnp.std(draws["y"])) < 0.2  # the deterministic part: x is fixed, not redrawn


# ---------------------------------------------------------------------------------------------
# the commuting square: surgery on the diagram = ppl.do on the program


@st.composite
def spec_and_cut(draw, soft=False):
    spec = draw(testing.specs(2, 5))
    names, cards, parents, _ = spec
    k = draw(st.integers(1, min(2, len(names))))
    sites = draw(st.lists(st.sampled_from(names), min_size=k, max_size=k, unique=True))
    cut = {s: draw(st.integers(0, cards[s] - 1)) for s in sites}
    return spec, cut


@settings(max_examples=10)
@given(spec_and_cut())
def test_surgery_commutes_with_do(sc):
    spec, cut = sc
    laws.surgery_commutes(testing.build(spec), cut, tol=TOL).assert_()


def _surgery_as_condition(d, cut):
    """Planted bug: do implemented as conditioning (the cut box keeps its likelihood)."""
    return causal.diagram(ppl.condition(d.model, cut), *d.args, **d.kwargs)




@settings(max_examples=5)
@given(spec_and_cut())
def test_surgery_commutes_rejects_do_as_condition(sc):
    spec, cut = sc
    res = laws.surgery_commutes(testing.build(spec), cut, surgery_fn=_surgery_as_condition, tol=TOL)
    assert not res.ok


def test_surgery_commutes_with_do_on_a_deterministic_site():
    @ppl.model
    def m():
        a = ppl.sample("a", dist.Bernoulli(0.3))
        b = ppl.sample("b", dist.Bernoulli(0.6))
        s = ppl.deterministic("s", a + b)
        ppl.sample("c", dist.Bernoulli(jnp.array([0.1, 0.5, 0.8])[s]))

    d = causal.diagram(m)
    assert d.effective_parents("c") == ("a", "b")
    cut = causal.surgery(d, {"s": 2})
    assert cut.effective_parents("c") == ()
    semantics.enumerate(ppl.do(m, {"s": 2})).assert_equal(causal.as_measure(cut), tol=TOL)
    np.testing.assert_allclose(np.asarray(causal.query(d, "c", do={"s": 2}).table), [0.2, 0.8], atol=TOL)


@settings(max_examples=6)
@given(testing.specs(2, 4), st.data())
def test_soft_interventions_commute_with_the_program_level_mechanism(spec, data):
    names, cards, parents, _ = spec
    site = data.draw(st.sampled_from(names[1:]))
    earlier = names[: names.index(site)]
    new_parents = tuple(data.draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)))
    shape = tuple(cards[p] for p in new_parents) + (cards[site],)
    w = np.asarray(data.draw(st.lists(st.integers(1, 9), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))), float)
    table = jnp.asarray(w.reshape(shape) / w.reshape(shape).sum(-1, keepdims=True))
    mech = causal.Mechanism(lambda *ps: dist.Categorical(probs=table[tuple(ps)]), new_parents)
    model = testing.build(spec)
    laws.surgery_commutes(model, {site: mech}, tol=TOL).assert_()
    # planted bug: a mechanism that reads its parents in the wrong order must be rejected
    if len(new_parents) == 2 and cards[new_parents[0]] == cards[new_parents[1]]:
        swapped = causal.Mechanism(lambda a, b: dist.Categorical(probs=table[b, a]), new_parents)
        bad = causal.as_measure(causal.surgery(causal.diagram(model), {site: swapped}))
        res = laws.surgery_commutes(model, {site: mech}, surgery_fn=lambda d, i: bad, tol=TOL)
        sym = np.allclose(np.asarray(table), np.asarray(jnp.swapaxes(table, 0, 1)))
        assert res.ok == sym


def test_a_stochastic_policy_replaces_the_mechanism():
    d = causal.diagram(sprinkler)
    policy = causal.Mechanism(lambda: dist.Bernoulli(0.25), parents=())
    cut = causal.surgery(d, {"sprinkler": policy})
    assert cut["sprinkler"].parents == () and cut["sprinkler"].is_soft
    j = causal.interpret(cut)
    np.testing.assert_allclose(np.asarray(j.marginal(["sprinkler"]).table), [0.75, 0.25], atol=TOL)
    # the policy cuts the sprinkler off from the clouds
    cond = np.asarray(j.marginal(["cloudy", "sprinkler"]).table)
    np.testing.assert_allclose(cond / cond.sum(1, keepdims=True), [[0.75, 0.25], [0.75, 0.25]], atol=TOL)


# ---------------------------------------------------------------------------------------------
# the laws of cuts


@st.composite
def spec_two_cuts(draw):
    spec = draw(testing.specs(3, 5))
    names, cards, _, _ = spec
    a, b = draw(st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True))
    return spec, {a: draw(st.integers(0, cards[a] - 1))}, {b: draw(st.integers(0, cards[b] - 1))}


def _surgery_forgetting_earlier_cuts(d, cut):
    """Planted bug: cuts the model afresh, losing the cuts already made on `d`."""
    return causal.surgery(causal.diagram(d.model, *d.args, **d.kwargs), cut)


def _surgery_toggling(d, cut):
    """Planted bug: cutting a box that is already cut restores it."""
    fresh = causal.diagram(d.model, *d.args, **d.kwargs)
    again = {k for k in cut if d[k].is_hard}
    out = causal.surgery(d, {k: v for k, v in cut.items() if k not in again})
    return out.replace(**{k: fresh[k] for k in again})


@settings(max_examples=6)
@given(spec_two_cuts())
def test_cuts_compose_and_commute(sc):
    spec, a, b = sc
    d = causal.diagram(testing.build(spec))
    laws.cuts_compose(d, a, b).assert_()
    assert not laws.cuts_compose(d, a, b, surgery_fn=_surgery_forgetting_earlier_cuts)


@settings(max_examples=6)
@given(spec_and_cut())
def test_cutting_twice_is_cutting_once(sc):
    spec, cut = sc
    d = causal.diagram(testing.build(spec))
    laws.cut_idempotent(d, cut).assert_()
    assert not laws.cut_idempotent(d, cut, surgery_fn=_surgery_toggling)


def _surgery_plugging_the_wrong_value(d, cut):
    """Planted bug: the box is cut but its children read the first value of its support."""
    return causal.surgery(d, {k: d[k].support[0] for k in cut})


@settings(max_examples=6)
@given(testing.specs(2, 5), st.data())
def test_a_cut_on_a_root_is_conditioning(spec, data):
    names, cards, parents, _ = spec
    roots = [n for n in names if not parents[n]]
    root = data.draw(st.sampled_from(roots))
    value = data.draw(st.integers(0, cards[root] - 1))
    d = causal.diagram(testing.build(spec))
    laws.root_cut_is_conditioning(d, root, value).assert_()
    res = laws.root_cut_is_conditioning(d, root, value, surgery_fn=_surgery_plugging_the_wrong_value)
    has_child = any(root in parents[n] for n in names)
    assert res.ok == (value == 0 or not has_child)


def test_a_cut_on_a_non_root_is_not_conditioning():
    d = causal.diagram(sprinkler)
    with pytest.raises(ValueError, match="has parents"):
        laws.root_cut_is_conditioning(d, "sprinkler", 1)
    cut = causal.interpret(causal.surgery(d, {"sprinkler": 1})).normalized()
    cond = causal.interpret(d).condition({"sprinkler": 1})
    assert laws.joint_distance(cut, cond) > 0.05


# ---------------------------------------------------------------------------------------------
# intervene, then condition


def test_rain_given_wet_under_do_sprinkler_by_hand():
    d = causal.diagram(sprinkler)
    # do(S=1): P(R=1) = 0.5*0.2 + 0.5*0.8 = 0.5; P(W=1|S=1,R=1) = 0.99, P(W=1|S=1,R=0) = 0.9
    want = 0.5 * 0.99 / (0.5 * 0.99 + 0.5 * 0.9)
    got = causal.query(d, "rain", given={"wet": 1}, do={"sprinkler": 1})
    assert abs(float(got.table[1]) - want) < 1e-12
    # conditioning on S = 1 instead (the mistake): P(C=1|S=1) = 1/6, P(R=1|S=1) = 0.3
    wrong = 0.3 * 0.99 / (0.3 * 0.99 + 0.7 * 0.9)
    naive = causal.query(d, "rain", given={"wet": 1, "sprinkler": 1})
    assert abs(float(naive.table[1]) - wrong) < 1e-12
    assert abs(want - wrong) > 0.1
    # the same query through the program: enumerate do(model), condition on wet = 1
    mu = semantics.enumerate(ppl.do(sprinkler, {"sprinkler": 1}))
    post = mu.condition(lambda c: c["wet"] == 1).normalize()
    assert abs(post.expectation(lambda c: c["rain"]) - want) < 1e-12


def test_query_errors():
    d = causal.diagram(sprinkler)
    with pytest.raises(ppl.AddressError, match="intervened"):
        causal.query(d, "sprinkler", do={"sprinkler": 1})
    with pytest.raises(ppl.ModelError, match="support"):
        causal.query(d, "rain", given={"wet": 3})


# ---------------------------------------------------------------------------------------------
# against a reference enumerator that shares no code with the code under test
# (testing.spec_joint / spec_query: plain Python over the spec's tables, the truncated
# factorisation; no ppl.do, surgery, interpret or semantics enumeration)


def _distance_to_reference(j, spec, do, normalise=False):
    """max |j − reference| over the atoms of the joint `j` over the non-intervened nodes."""
    names = spec[0]
    keep = [n for n in names if n not in do]
    if sorted(j.names) != sorted(keep):
        return float("inf")
    got = laws._joint_as_dict(j.marginal(keep))
    ref: dict = {}
    for vals, p in testing.spec_joint(spec, do).items():
        k = tuple(v for n, v in zip(names, vals) if n not in do)
        ref[k] = ref.get(k, 0.0) + p
    if normalise:
        zg, zr = sum(got.values()), sum(ref.values())
        got = {k: v / zg for k, v in got.items()}
        ref = {k: v / zr for k, v in ref.items()}
    return max(abs(got.get(k, 0.0) - ref.get(k, 0.0)) for k in set(got) | set(ref))


def _check_do_against_reference(spec, cut, surgery_fn=causal.surgery):
    """interpret(surgery), the program ppl.do, and causal.query with and without evidence,
    each against the reference enumerator; returns the worst error."""
    names, cards = spec[0], spec[1]
    model = testing.build(spec)
    d = causal.diagram(model)
    worst = _distance_to_reference(causal.interpret(surgery_fn(d, cut)), spec, cut, normalise=True)
    free = [n for n in names if n not in cut]
    if free:
        on, given = free[-1], {n: 0 for n in free[:1] if n != free[-1]}
        want = testing.spec_query(spec, on, cut, given)
        got = np.asarray(causal.query(surgery_fn(d, cut), on, given=given).table)
        worst = max(worst, float(np.max(np.abs(got / got.sum() - want))))
    return worst


@settings(max_examples=10)
@given(spec_and_cut())
def test_do_surgery_and_query_equal_a_plain_enumerator(sc):
    spec, cut = sc
    assert _check_do_against_reference(spec, cut) <= TOL
    # the cut boxes lose every input wire (the drawn diagram shows the cut), and nothing else changes
    d = causal.diagram(testing.build(spec))
    cutd = causal.surgery(d, cut)
    assert not [w for w in cutd.wires if w.dst in cut]
    assert {(w.src, w.dst) for w in cutd.wires} == {(w.src, w.dst) for w in d.wires if w.dst not in cut}


def _surgery_keeping_one_wire(d, cut):
    """Planted bug: the cut keeps the box's likelihood given its first parent (the wire from the
    first parent is not cut): do(s = v) weights each world by P(s = v | first parent)."""
    names = [b for b in d.boxes]
    model = d.model
    spec = model._spec  # set by _build_with_spec below
    new_cpts = dict(spec[3])
    for s in cut:
        ps = spec[2][s]
        if ps:
            # average out every parent but the first: P(s | first parent)
            t = np.asarray(spec[3][s])
            new_cpts[s] = t.reshape(t.shape[:1] + (-1, t.shape[-1])).mean(axis=1) if len(ps) > 1 else t
    kept = (spec[0], spec[1], {**spec[2], **{s: spec[2][s][:1] for s in cut}}, new_cpts)
    bad = ppl.condition(testing.build(kept), {s: v for s, v in cut.items() if spec[2][s]})
    bad = ppl.do(bad, {s: v for s, v in cut.items() if not spec[2][s]})
    assert names == list(causal.diagram(testing.build(spec)).boxes)
    return causal.diagram(bad)


def _build_with_spec(spec):
    m = testing.build(spec)
    m._spec = spec
    return m


def test_planted_surgery_keeping_one_incoming_wire_fails_against_the_reference():
    # a chain with a confounder: v0 -> v1 -> v2, v0 -> v2; cut v1 (which has parent v0)
    names = ["v0", "v1", "v2"]
    cards = {n: 2 for n in names}
    parents = {"v0": [], "v1": ["v0"], "v2": ["v0", "v1"]}
    cpts = {
        "v0": np.array([0.3, 0.7]),
        "v1": np.array([[0.8, 0.2], [0.25, 0.75]]),
        "v2": np.array([[[0.9, 0.1], [0.4, 0.6]], [[0.5, 0.5], [0.2, 0.8]]]),
    }
    spec = (names, cards, parents, cpts)
    cut = {"v1": 1}
    assert _check_do_against_reference(spec, cut) <= TOL
    model = _build_with_spec(spec)
    d = causal.diagram(model)
    assert _check_do_against_reference(spec, cut, surgery_fn=lambda dd, c: _surgery_keeping_one_wire(d, c)) > 1e-3
    assert _check_do_against_reference(spec, cut, surgery_fn=lambda dd, c: _surgery_as_condition(d, c)) > 1e-3


@settings(max_examples=6)
@given(spec_two_cuts())
def test_composed_and_repeated_cuts_equal_a_plain_enumerator(sc):
    """The laws of cuts compare surgery with surgery; here each side meets the reference."""
    spec, a, b = sc
    d = causal.diagram(testing.build(spec))
    both = {**a, **b}
    for cut in (causal.surgery(causal.surgery(d, a), b), causal.surgery(causal.surgery(d, b), a), causal.surgery(d, both)):
        assert _distance_to_reference(causal.interpret(cut), spec, both) <= TOL
    assert _distance_to_reference(causal.interpret(causal.surgery(causal.surgery(d, a), a)), spec, a) <= TOL
    # a cut on a root is conditioning on it: the reference conditional, from the plain joint
    names, cards, parents, _ = spec
    root = names[0]
    cutj = causal.interpret(causal.surgery(d, {root: 0})).normalized()
    for on in names[1:]:
        want = testing.spec_query(spec, on, given={root: 0})
        np.testing.assert_allclose(np.asarray(cutj.marginal([on]).table), want, atol=TOL)
    # planted: a second cut that forgets the first is caught by the reference
    bad = _surgery_forgetting_earlier_cuts(causal.surgery(d, a), b)
    assert _distance_to_reference(causal.interpret(bad), spec, both) > TOL
