"""Value tests of public causal names that no other test exercised: ``enumerate_model``,
``exogenous_sites``, ``intervene``, and the ``Diagram`` / ``Box`` / ``Wire`` types.

References are products of conditional probability tables written out by hand with NumPy (the
truncated factorisation for interventions), never the library's interpretation of a diagram.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from inference import causal
from ppl import dist

pytestmark = pytest.mark.exact

EXO = {"exogenous": True}

P_H = 0.3
P_S = np.array([0.2, 0.8])  # P(smoke = 1 | hidden)
P_T = np.array([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6]])  # P(tar = t | smoke), three levels


def p_c(t, h):  # P(cancer = 1 | tar, hidden)
    return 0.1 + 0.25 * t + 0.3 * h


@ppl.model
def smoking(y=None):
    h = ppl.sample("hidden", dist.Bernoulli(P_H))
    s = ppl.sample("smoke", dist.Bernoulli(jnp.asarray(P_S)[h]))
    t = ppl.sample("tar", dist.Categorical(probs=jnp.asarray(P_T)[s]))
    c = ppl.sample("cancer", dist.Bernoulli(0.1 + 0.25 * t + 0.3 * h))
    if y is not None:
        ppl.sample("test", dist.Normal(c * 1.0, 0.5), obs=y)


def _bern(p, v):
    return p if v == 1 else 1 - p


def _hand_joint(do_smoke=None, y=None, smoke_mech=None):
    """P(hidden, [smoke], tar, cancer) (× the test's likelihood) by the (truncated) factorisation."""
    axes = [(0, 1)] + ([] if do_smoke is not None else [(0, 1)]) + [(0, 1, 2), (0, 1)]
    out = np.zeros([len(a) for a in axes])
    for idx in itertools.product(*[range(len(a)) for a in axes]):
        vals = [axes[i][j] for i, j in enumerate(idx)]
        if do_smoke is None:
            h, s, t, c = vals
            ps = smoke_mech(h, s) if smoke_mech else _bern(P_S[h], s)
        else:
            (h, t, c), s, ps = vals, do_smoke, 1.0
        p = _bern(P_H, h) * ps * P_T[s][t] * _bern(p_c(t, h), c)
        if y is not None:
            p *= stats.norm(c, 0.5).pdf(y)
        out[idx] = p
    return out


def test_enumerate_model_is_the_product_of_the_tables():
    j = causal.enumerate_model(smoking)
    assert j.names == ("hidden", "smoke", "tar", "cancer")
    assert [tuple(int(v) for v in s) for s in j.supports] == [(0, 1), (0, 1), (0, 1, 2), (0, 1)]
    np.testing.assert_allclose(np.asarray(j.table), _hand_joint(), rtol=1e-12)
    assert float(j.total) == pytest.approx(1.0, abs=1e-12)


def test_enumerate_model_with_an_observation_and_an_intervention():
    # an observed site is not a variable; its likelihood multiplies the table
    j = causal.enumerate_model(smoking, y=0.7)
    assert j.names == ("hidden", "smoke", "tar", "cancer")
    np.testing.assert_allclose(np.asarray(j.table), _hand_joint(y=0.7), rtol=1e-12)
    # do(smoke = 1): smoke is not a variable; the others follow the truncated factorisation
    jd = causal.enumerate_model(ppl.do(smoking, {"smoke": 1}))
    assert jd.names == ("hidden", "tar", "cancer")
    np.testing.assert_allclose(np.asarray(jd.table), _hand_joint(do_smoke=1), rtol=1e-12)
    # P(cancer | do(smoke = 1)) ≠ P(cancer | smoke = 1) (hidden confounds them)
    pc_do = np.asarray(jd.marginal(["cancer"]).table)[1]
    cond = _hand_joint()[:, 1].sum(axis=(0, 1))
    assert pc_do == pytest.approx(_hand_joint(do_smoke=1).sum(axis=(0, 1))[1], abs=1e-12)
    assert abs(pc_do - cond[1] / cond.sum()) > 1e-3


def test_intervene_replaces_one_mechanism():
    mech = causal.Mechanism(lambda h: dist.Bernoulli(0.5 * h + 0.1), ("hidden",))
    j = causal.enumerate_model(causal.intervene(smoking, {"smoke": mech}))
    ref = _hand_joint(smoke_mech=lambda h, s: _bern(0.5 * h + 0.1, s))
    np.testing.assert_allclose(np.asarray(j.table), ref, rtol=1e-12)
    with pytest.raises(ppl.ModelError, match="smoke"):
        causal.intervene(smoking, {"smoke": causal.Mechanism(lambda: dist.Bernoulli(0.5))})  # no parents named


# ---------------------------------------------------------------------------------------------
# exogenous sites


@ppl.model
def firing_squad():
    u = ppl.sample("order", dist.Bernoulli(0.6), infer=EXO)
    v = ppl.sample("nerves", dist.Bernoulli(0.1), infer=EXO)
    a = ppl.deterministic("a", u)
    b = ppl.sample("b", dist.Bernoulli(0.9 * u + 0.05))
    noise = ppl.sample("noise", dist.Bernoulli(0.2), infer=EXO)
    ppl.sample("dead", dist.Bernoulli(jnp.clip(0.95 * jnp.maximum(a, b) + 0.5 * v * noise, 0.0, 1.0)), obs=1)


def test_exogenous_sites_in_execution_order():
    assert causal.exogenous_sites(firing_squad) == ("order", "nerves", "noise")
    # given explicitly: checked, and returned in execution order, not in the order given
    assert causal.exogenous_sites(firing_squad, exogenous=["noise", "order"]) == ("order", "noise")
    assert causal.exogenous_sites(firing_squad, exogenous="b") == ("b",)


def test_exogenous_sites_errors_name_the_site():
    with pytest.raises(ppl.AddressError, match="nerve"):
        causal.exogenous_sites(firing_squad, exogenous=["nerve"])
    with pytest.raises(ppl.ModelError, match="'dead'"):  # observed
        causal.exogenous_sites(firing_squad, exogenous=["dead"])
    with pytest.raises(ppl.ModelError, match="'a'"):  # deterministic
        causal.exogenous_sites(firing_squad, exogenous=["a"])
    with pytest.raises(ppl.ModelError, match="exogenous"):
        causal.exogenous_sites(smoking)  # nothing marked


# ---------------------------------------------------------------------------------------------
# the diagram's types


@ppl.model
def plated(n):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("rows", n):
        z = ppl.sample("z", dist.Normal(mu, 1.0))
        ppl.sample("x", dist.Normal(z, 1.0), obs=jnp.zeros(n))


def test_diagram_boxes_and_wires_are_the_model_structure():
    d = causal.diagram(plated, 3)
    assert isinstance(d, causal.Diagram) and len(d) == 3
    assert all(isinstance(b, causal.Box) for b in d)
    assert [(b.name, b.kind, b.parents, b.observed, b.plates, b.shape) for b in d] == [
        ("mu", "sample", (), False, (), ()),
        ("z", "sample", ("mu",), False, ("rows",), (3,)),
        ("x", "sample", ("z",), True, ("rows",), (3,)),
    ]
    # mu -> z crosses into the plate (no shared plate); z -> x is bundled over "rows"
    assert d.wires == [causal.Wire("mu", "z", ()), causal.Wire("z", "x", ("rows",))]
