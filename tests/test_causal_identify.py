"""Identification (back-door, front-door / comb disintegration, ID algorithm) and estimation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import ppl
from inference import causal
from inference.causal import laws, testing
from inference.causal.identify import Estimand, _cond
from ppl import dist
from scipy.stats import norm
from _budget import BUDGET

pytestmark = [pytest.mark.exact]

TOL = 1e-10
PAPER = jnp.array([0.5, 0.1, 0.01, 0.02, 0.1, 0.05, 0.02, 0.2]).reshape(2, 2, 2)


@ppl.model
def smoking():
    h = ppl.sample("hidden", dist.Bernoulli(0.3))
    s = ppl.sample("smoke", dist.Bernoulli(0.2 + 0.6 * h))
    t = ppl.sample("tar", dist.Bernoulli(0.1 + 0.8 * s))
    ppl.sample("cancer", dist.Bernoulli(0.1 + 0.5 * t + 0.3 * h))


OBS = ["smoke", "tar", "cancer"]


def test_front_door_oracle_from_the_paper():
    est = causal.identify(causal.diagram(smoking), effect_of="smoke", on="cancer", observed=OBS)
    assert est.criterion == "front-door" and est.adjustment == ("tar",)
    assert "Σ_{tar}" in str(est) and "P(tar | smoke)" in str(est) and "comb disintegration" in str(est)
    assert abs(float(est.evaluate(PAPER, do={"smoke": 0})[1]) - 0.2534776335) < 1e-9
    assert abs(float(est.evaluate(PAPER, do={"smoke": 1})[1]) - 0.5422972973) < 1e-9
    # the flat row-major vector is accepted too
    np.testing.assert_allclose(est.evaluate(PAPER.reshape(-1)), est.evaluate(PAPER), atol=1e-15)


def test_front_door_equals_surgery_on_the_model_and_differs_from_the_naive_conditional():
    d = causal.diagram(smoking)
    est = causal.identify(d, effect_of="smoke", on="cancer", observed=OBS)
    obs = causal.observational(d, OBS)
    for x in (0, 1):
        truth = causal.query(d, "cancer", do={"smoke": x}).table
        np.testing.assert_allclose(est.evaluate(obs, do={"smoke": x}), truth, atol=TOL)
    naive = causal.query(d, "cancer", given={"smoke": 1}).table
    assert abs(float(naive[1]) - float(causal.query(d, "cancer", do={"smoke": 1}).table[1])) > 0.02


def _naive_identify(d, effect_of, on, observed):
    """Planted bug: always answers with the conditional P(on | effect_of)."""
    G = causal.identify.__globals__["admg"](d, observed)
    return Estimand((effect_of,), (on,), tuple(observed), "back-door", _cond((on,), (effect_of,), list(G.nodes)),
                    supports={n: d[n].support for n in observed})


def test_soundness_check_rejects_the_naive_conditional():
    d = causal.diagram(smoking)
    assert laws.identification_sound(d, "smoke", "cancer", OBS).ok
    assert not laws.identification_sound(d, "smoke", "cancer", OBS, identify_fn=_naive_identify).ok
    rng = np.random.default_rng(0)
    for _ in range(3):  # confounded random nets: u -> v0, u -> v1, v0 -> v1
        names = ["u", "v0", "v1"]
        parents = {"u": [], "v0": ["u"], "v1": ["u", "v0"]}
        cards = {n: 2 for n in names}
        cpts = {n: testing._cpt(rng, tuple(cards[p] for p in parents[n]) + (2,)) for n in names}
        dd = causal.diagram(testing.build((names, cards, parents, cpts)))
        with pytest.raises(causal.NotIdentifiable):
            causal.identify(dd, effect_of="v0", on="v1", observed=["v0", "v1"])
        assert not laws.identification_sound(dd, "v0", "v1", ["v0", "v1"], identify_fn=_naive_identify).ok


@ppl.model
def confounded_by_observed():
    z = ppl.sample("z", dist.Categorical(probs=jnp.array([0.2, 0.5, 0.3])))
    x = ppl.sample("x", dist.Bernoulli(jnp.array([0.2, 0.6, 0.9])[z]))
    ppl.sample("y", dist.Bernoulli(jnp.array([[0.1, 0.4, 0.3], [0.5, 0.8, 0.9]])[x, z]))


def test_back_door_finds_the_adjustment_set():
    d = causal.diagram(confounded_by_observed)
    est = causal.identify(d, effect_of="x", on="y", observed=["z", "x", "y"])
    assert est.criterion == "back-door" and est.adjustment == ("z",)
    assert str(est).splitlines()[0] == "P(y | do(x)) = Σ_{z} P(y | z, x) P(z)"
    obs = causal.observational(d, ["z", "x", "y"])
    for x in (0, 1):
        np.testing.assert_allclose(est.evaluate(obs, do={"x": x}), causal.query(d, "y", do={"x": x}).table, atol=TOL)
    # no confounding: the conditional itself (empty adjustment set)
    est2 = causal.identify(d, effect_of="z", on="x", observed=["z", "x", "y"])
    assert est2.criterion == "back-door" and est2.adjustment == () and "P(x | z)" in str(est2)


@ppl.model
def napkin():
    u1 = ppl.sample("u1", dist.Bernoulli(0.4))
    u2 = ppl.sample("u2", dist.Bernoulli(0.7))
    w1 = ppl.sample("w1", dist.Bernoulli(0.2 + 0.5 * u1 + 0.2 * u2))
    w2 = ppl.sample("w2", dist.Bernoulli(0.3 + 0.5 * w1))
    x = ppl.sample("x", dist.Bernoulli(0.1 + 0.5 * w2 + 0.3 * u1))
    ppl.sample("y", dist.Bernoulli(0.15 + 0.4 * x + 0.4 * u2))


def test_napkin_needs_the_general_id_algorithm():
    d = causal.diagram(napkin)
    observed = ["w1", "w2", "x", "y"]
    est = causal.identify(d, effect_of="x", on="y", observed=observed)
    assert est.criterion == "ID algorithm"
    obs = causal.observational(d, observed)
    for x in (0, 1):
        np.testing.assert_allclose(est.evaluate(obs, do={"x": x}), causal.query(d, "y", do={"x": x}).table, atol=TOL)
    assert "do(x)" in str(est)


def test_bow_graph_is_not_identifiable_and_names_the_hedge():
    @ppl.model
    def bow():
        u = ppl.sample("u", dist.Bernoulli(0.5))
        x = ppl.sample("x", dist.Bernoulli(0.2 + 0.6 * u))
        ppl.sample("y", dist.Bernoulli(0.1 + 0.3 * x + 0.5 * u))

    with pytest.raises(causal.NotIdentifiable, match="hedge") as info:
        causal.identify(causal.diagram(bow), effect_of="x", on="y", observed=["x", "y"])
    assert info.value.hedge == (("x", "y"), ("y",))
    assert info.value.bidirected == ("x <-> y",)
    assert "x <-> y" in str(info.value)


@settings(max_examples=12)
@given(testing.confounded_specs(3, 4), st.data())
def test_identification_is_sound_on_random_confounded_models(spec, data):
    names = spec[0]
    obs = names[1:]
    x, y = data.draw(st.lists(st.sampled_from(obs), min_size=2, max_size=2, unique=True))
    d = causal.diagram(testing.build(spec))
    res = laws.identification_sound(d, x, y, obs)
    event(res.details.get("criterion", "not identifiable"))
    res.assert_()


def test_identify_errors():
    d = causal.diagram(smoking)
    with pytest.raises(ppl.ModelError, match="observed"):
        causal.identify(d, effect_of="hidden", on="cancer", observed=OBS)
    with pytest.raises(ppl.AddressError, match="smok"):
        causal.identify(d, effect_of="smoke", on="cancer", observed=["smok", "cancer", "smoke"])


# ---------------------------------------------------------------------------------------------
# estimation from data


def _data(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    flat = rng.choice(8, size=n, p=np.asarray(PAPER).reshape(-1))
    s, t, c = np.unravel_index(flat, (2, 2, 2))
    return {"smoke": s, "tar": t, "cancer": c}


def test_plugin_estimate_is_the_estimand_on_the_empirical_joint():
    est = causal.identify(causal.diagram(smoking), effect_of="smoke", on="cancer", observed=OBS)
    data = _data(400, 1)
    table = np.zeros((2, 2, 2))
    np.add.at(table, (data["smoke"], data["tar"], data["cancer"]), 1.0)
    np.testing.assert_allclose(causal.estimate(est, data), est.evaluate(table / 400), atol=1e-14)
    arr = np.stack([data[k] for k in OBS], 1)
    np.testing.assert_allclose(causal.estimate(est, arr, do={"smoke": 1}), est.evaluate(table, do={"smoke": 1}), atol=1e-14)


@pytest.mark.statistical
def test_bayesian_estimate_concentrates_on_the_truth():
    est = causal.identify(causal.diagram(smoking), effect_of="smoke", on="cancer", observed=OBS)
    data = _data(20000, 2)
    draws = causal.estimate(est, data, method="bayes", key=jax.random.key(0), num_draws=400, do={"smoke": 1})
    assert draws.shape == (400, 2)
    np.testing.assert_allclose(np.asarray(draws.sum(-1)), 1.0, atol=1e-12)
    mean, sd = float(draws[:, 1].mean()), float(draws[:, 1].std())
    # posterior sd of a proportion from ~20000 draws is ~0.005; the truth is within 6 sd
    assert 0.001 < sd < 0.02
    # |posterior mean − truth| < z·sd, z from the budget (see test_causal_bayes)
    assert abs(mean - 0.5422972973) < norm.isf(BUDGET.level("causal/bayes_estimate_covers_truth") / 2) * sd
    # with little data the posterior is wide
    small = causal.estimate(est, _data(30, 3), method="bayes", key=jax.random.key(1), num_draws=400, do={"smoke": 1})
    assert float(small[:, 1].std()) > 2 * sd
    with pytest.raises(ppl.ModelError, match="key"):
        causal.estimate(est, data, method="bayes")


# ---------------------------------------------------------------------------------------------
# against a reference enumerator that shares no code with the code under test: the observational
# joint and P(on | do(x)) computed in plain Python from the spec's tables (testing.spec_joint /
# spec_query), never through diagram / surgery / interpret / query


def _observational_array(spec, observed):
    names, cards = spec[0], spec[1]
    t = np.zeros(tuple(cards[n] for n in observed))
    for vals, p in testing.spec_joint(spec).items():
        v = dict(zip(names, vals))
        t[tuple(v[n] for n in observed)] += p
    return t


def _identify_error(spec, est, x, y, observed):
    obs = _observational_array(spec, observed)
    return max(
        float(np.max(np.abs(np.asarray(est.evaluate(obs, do={x: xv})) - testing.spec_query(spec, y, do={x: xv}))))
        for xv in range(spec[1][x])
    )


@settings(max_examples=12)
@given(testing.confounded_specs(3, 4), st.data())
def test_identified_estimands_equal_a_plain_enumerator(spec, data):
    obs = spec[0][1:]
    x, y = data.draw(st.lists(st.sampled_from(obs), min_size=2, max_size=2, unique=True))
    try:
        est = causal.identify(causal.diagram(testing.build(spec)), effect_of=x, on=y, observed=obs)
    except causal.NotIdentifiable:
        event("not identifiable")
        return
    event(est.criterion)
    assert _identify_error(spec, est, x, y, obs) <= TOL


SMOKING_SPEC = (
    ["hidden", "smoke", "tar", "cancer"],
    {"hidden": 2, "smoke": 2, "tar": 2, "cancer": 2},
    {"hidden": [], "smoke": ["hidden"], "tar": ["smoke"], "cancer": ["tar", "hidden"]},
    {
        "hidden": np.array([0.7, 0.3]),
        "smoke": np.array([[0.8, 0.2], [0.2, 0.8]]),
        "tar": np.array([[0.9, 0.1], [0.1, 0.9]]),
        "cancer": np.array([[[0.9, 0.1], [0.6, 0.4]], [[0.4, 0.6], [0.1, 0.9]]]),
    },
)
BACKDOOR_SPEC = (
    ["z", "x", "y"],
    {"z": 3, "x": 2, "y": 2},
    {"z": [], "x": ["z"], "y": ["x", "z"]},
    {
        "z": np.array([0.2, 0.5, 0.3]),
        "x": np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]]),
        "y": np.array([[[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]], [[0.5, 0.5], [0.2, 0.8], [0.1, 0.9]]]),
    },
)


def test_front_door_and_back_door_match_the_reference_and_reject_planted_formulas():
    import dataclasses

    from inference.causal.identify import Prod, Sum

    # front-door on the smoking model (the same CPTs as `smoking` above)
    d = causal.diagram(testing.build(SMOKING_SPEC))
    est = causal.identify(d, effect_of="smoke", on="cancer", observed=OBS)
    assert est.criterion == "front-door"
    assert _identify_error(SMOKING_SPEC, est, "smoke", "cancer", OBS) <= TOL
    order = list(OBS)
    # planted bug: front-door with the wrong conditioning, Σ_t P(t | s) Σ_s' P(c | t, s') P(s' | t)
    wrong_fd = Sum(("tar",), Prod((
        _cond(("tar",), ("smoke",), order),
        Sum(("smoke'",), Prod((_cond(("cancer",), ("tar", "smoke'"), order), _cond(("smoke'",), ("tar",), order)))),
    )))
    assert _identify_error(SMOKING_SPEC, dataclasses.replace(est, expr=wrong_fd), "smoke", "cancer", OBS) > 1e-3
    # back-door on a model confounded by an observed z
    observed = ["z", "x", "y"]
    d2 = causal.diagram(testing.build(BACKDOOR_SPEC))
    est2 = causal.identify(d2, effect_of="x", on="y", observed=observed)
    assert est2.criterion == "back-door" and est2.adjustment == ("z",)
    assert _identify_error(BACKDOOR_SPEC, est2, "x", "y", observed) <= TOL
    # planted bug: the adjustment formula weighting by P(z | x) instead of P(z)
    wrong_bd = Sum(("z",), Prod((_cond(("y",), ("z", "x"), observed), _cond(("z",), ("x",), observed))))
    assert _identify_error(BACKDOOR_SPEC, dataclasses.replace(est2, expr=wrong_bd), "x", "y", observed) > 1e-3
