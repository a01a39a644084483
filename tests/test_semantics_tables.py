"""``semantics.enumerate_table``: the exact joint of a finite model as a tensor, checked against
the path enumerator ``semantics.enumerate`` (an independent walk of the same program) and
hand-computed fractions; its supports and grids are the ones ``inference.causal`` builds on."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from ppl import dist
from semantics.tables import latent_finite_sites

pytestmark = pytest.mark.exact


@ppl.model
def chain(y=None):
    a = ppl.sample("a", dist.Bernoulli(probs=0.3))
    b = ppl.sample("b", dist.Categorical(probs=jnp.asarray([0.2, 0.5, 0.3])))
    ppl.deterministic("s", a + b)
    ppl.sample("c", dist.Bernoulli(probs=0.1 + 0.2 * b + 0.3 * a))
    if y is not None:
        ppl.sample("y", dist.Normal(1.0 * a + 0.5 * b, 1.0), obs=y)
        ppl.factor("f", -0.5 * a)


def test_table_is_the_path_enumerators_measure():
    for y in (None, 0.7):
        t = semantics.enumerate_table(chain, y=y, read=["s"])
        assert isinstance(t, semantics.Table)
        assert t.names == ("a", "b", "c")
        assert t.shape == (2, 3, 2)
        mu = semantics.enumerate(chain, y=y)
        w = np.exp(np.asarray(t.log_weight, np.float64))
        for idx in itertools.product(*[range(k) for k in t.shape]):
            atom = {n: t.supports[i][k] for i, (n, k) in enumerate(zip(t.names, idx))}
            if y is not None:
                atom["y"] = y
            assert w[idx] == pytest.approx(float(np.exp(mu.log_weight(atom))), rel=1e-6)
            assert int(np.asarray(t.values["s"])[idx]) == atom["a"] + atom["b"]


def test_intervened_sites_are_not_variables_and_the_hand_values():
    t = semantics.enumerate_table(ppl.do(chain, {"b": 2}))
    assert t.names == ("a", "c")
    w = np.exp(np.asarray(t.log_weight, np.float64))
    want = np.array([[0.7 * 0.5, 0.7 * 0.5], [0.3 * 0.2, 0.3 * 0.8]])
    np.testing.assert_allclose(w, want, rtol=1e-6)


def test_supports_grids_and_refusals():
    assert semantics.finite_support(dist.Bernoulli(probs=0.5)) == (0.0, 1.0)
    assert semantics.finite_support(dist.Normal(0.0, 1.0)) is None
    assert semantics.finite_support(dist.Bernoulli(probs=jnp.full(2, 0.5))) is None  # batched
    assert semantics.element_support(dist.Bernoulli(probs=jnp.full(2, 0.5))) == (0.0, 1.0)
    assert semantics.element_support(dist.Normal(jnp.zeros(2), 1.0)) is None
    cols, shape = semantics.product_grid([(0, 1), (5, 6, 7)])
    assert shape == (2, 3)
    assert [tuple(np.asarray(c).tolist()) for c in cols] == [(0, 0, 0, 1, 1, 1), (5, 6, 7, 5, 6, 7)]
    assert semantics.product_grid([]) == ([], ())

    @ppl.model
    def cont():
        ppl.sample("a", dist.Bernoulli(probs=0.5))
        ppl.sample("x", dist.Normal(0.0, 1.0))

    sites = cont.trace_sites(__import__("jax").random.key(0))
    with pytest.raises(semantics.NotEnumerableError, match="'x'.*Normal"):
        latent_finite_sites(sites, "here")
    with pytest.raises(ppl.ModelError, match="finite scalar"):
        semantics.enumerate_table(cont)
    with pytest.raises(semantics.NotEnumerableError, match="too many"):
        semantics.enumerate_table(chain, max_size=11)
    with pytest.raises(ppl.AddressError, match="'s'"):
        semantics.enumerate_table(chain, read=["ss"])
    names, sups = latent_finite_sites(chain.trace_sites(__import__("jax").random.key(0)))
    assert names == ["a", "b", "c"] and sups[1] == (0, 1, 2)


def test_sites_at_scores_the_given_values_and_not_the_intervened():
    from semantics.tables import sites_at

    m = ppl.as_model(chain)
    s = sites_at(m, (), {"y": 0.7}, {"a": 1, "b": 2, "c": 0})
    lp = sum(float(np.sum(r["log_prob"])) for r in s.values() if r["type"] in ("sample", "factor"))
    assert lp == pytest.approx(float(m.log_density({"a": 1, "b": 2, "c": 0}, y=0.7)), rel=1e-12)
    cut = sites_at(m, (), {}, {"a": 1, "c": 1}, interventions={"b": 0, "s": 5})
    assert float(cut["b"]["log_prob"]) == 0.0 and int(cut["s"]["value"]) == 5
    assert float(jnp.exp(cut["c"]["log_prob"])) == pytest.approx(0.1 + 0.3, rel=1e-12)
