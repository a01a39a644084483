"""VI's gradient estimators as strategy objects in a registry (``inference/vi/strategies.py``).

A user-defined strategy registered by name is used at the sites that name it and, checked
against the exact gradient of the small discrete model of ``test_vi_exact`` (the hand-written
reference, summed over every path of the estimator's own random choices), is unbiased; a
planted twin of it (a baseline that depends on the site's own value) is caught by the same
check.  Unknown names are refused naming the site and the known names; the built-in strategies
are the registry's entries; objectives keep their model and guide.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from inference import vi
from inference.vi import strategies as vi_strategies
from ppl import dist
from ppl.errors import ArgumentError
from test_vi_exact import Y, guide, model, params_and_truth

pytestmark = [pytest.mark.exact]


class ConstantBaseline(vi.Reinforce):
    """REINFORCE whose learning signal is F − b for a constant b (unbiased: E[∇ log q] = 0)."""

    def __init__(self, name: str, b: float):
        super().__init__(name)
        self.b = b
        self.calls = 0

    def baseline(self, run):
        self.calls += 1
        return super().baseline(run) + self.b


class OwnValueBaseline(vi.Reinforce):
    """Planted twin: a "baseline" that depends on the site's own value (biased)."""

    def replay(self, run, c, rec):
        value = super().replay(run, c, rec)
        run.scores[-1].baseline = run.scores[-1].baseline + 3.0 * jnp.sum(value)
        return value


@pytest.fixture
def registry(monkeypatch):
    """A private registry holding the built-in strategies only, for the test (registrations do
    not leak out of it, and none made elsewhere in the process, e.g. by a docstring example,
    leak in)."""
    monkeypatch.setattr(vi_strategies, "_REGISTRY", {k: vi_strategies._REGISTRY[k] for k in vi.STRATEGIES})
    return vi_strategies._REGISTRY


def test_the_built_in_strategies_are_the_registry(registry):
    reg = vi.registered_strategies()
    assert reg == {"reparam": vi.REPARAM, "reinforce": vi.REINFORCE, "enum": vi.ENUM, "mvd": vi.MVD}
    assert tuple(reg) == vi.STRATEGIES
    assert all(isinstance(s, vi.Strategy) for s in reg.values())
    assert isinstance(vi.REINFORCE, vi.Reinforce) and vi.ENUM.reruns and vi.MVD.reruns
    reg["x"] = None  # a copy: the registry itself is unchanged
    assert "x" not in vi.registered_strategies()


def test_a_registered_strategy_is_used_at_its_site_and_is_unbiased(registry):
    s = vi.register_strategy("reinforce-b", ConstantBaseline("reinforce-b", 2.5))
    assert vi.registered_strategies()["reinforce-b"] is s
    u, truth = params_and_truth("elbo")
    obj = vi.elbo(model, guide).with_strategies({"a": "reinforce-b", "b": "enum"})
    res = semantics.unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], truth, tol=1e-6)
    assert res.ok, res.message
    assert s.calls > 0
    # the baseline changes single draws' gradients (so it is the one used at 'a'), not their mean
    plain = vi.elbo(model, guide).with_strategies({"a": "reinforce", "b": "enum"})
    g_b = obj.grad(jax.random.key(3), u, Y)[1]
    g_0 = plain.grad(jax.random.key(3), u, Y)[1]
    assert not np.allclose(g_b["la"], g_0["la"])
    np.testing.assert_allclose(g_b["theta"], g_0["theta"], rtol=1e-12)  # no score term reaches θ


def test_a_strategy_object_and_a_site_annotation_work_like_the_name(registry):
    vi.register_strategy("reinforce-b", ConstantBaseline("reinforce-b", 2.5))

    @ppl.model
    def guide_infer(y):
        la = ppl.param("la", 0.2)
        lb = ppl.param("lb", jnp.array([0.1, -0.3, 0.4]))
        a = ppl.sample("a", dist.Bernoulli(logits=la), infer={"grad": "reinforce-b"})
        ppl.sample("b", dist.Categorical(logits=lb + 0.7 * a), infer={"grad": "enum"})

    u, _ = params_and_truth("elbo")
    key = jax.random.key(4)
    by_name = vi.elbo(model, guide, strategies={"a": "reinforce-b", "b": "enum"}).grad(key, u, Y)
    by_object = vi.elbo(model, guide, strategies={"a": ConstantBaseline("reinforce-b", 2.5), "b": vi.ENUM}).grad(key, u, Y)
    by_infer = vi.elbo(model, guide_infer).grad(key, u, Y)
    for other in (by_object, by_infer):
        np.testing.assert_array_equal(other[0], by_name[0])
        for k in by_name[1]:
            np.testing.assert_array_equal(other[1][k], by_name[1][k])


def test_planted_twin_baseline_depending_on_the_value_is_caught(registry):
    u, truth = params_and_truth("elbo")
    obj = vi.elbo(model, guide).with_strategies({"a": OwnValueBaseline("own"), "b": "enum"})
    res = semantics.unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], truth, tol=1e-6)
    assert not res.ok


def test_unknown_strategy_names_the_site_and_the_known_names(registry):
    vi.register_strategy("reinforce-b", ConstantBaseline("reinforce-b", 1.0))
    with pytest.raises(vi.VIError, match=r"site 'a'.*'score'.*'reparam'.*'reinforce-b'"):
        vi.elbo(model, guide, strategies={"a": "score"})

    @ppl.model
    def bad_guide(y):
        ppl.sample("a", dist.Bernoulli(logits=ppl.param("la", 0.2)), infer={"grad": "score"})
        ppl.sample("b", dist.Categorical(logits=ppl.param("lb", jnp.zeros(3))))

    obj = vi.elbo(model, bad_guide)
    with pytest.raises(vi.VIError, match=r"site 'a'.*'score'.*'enum'.*'reinforce-b'"):
        obj.grad(jax.random.key(0), obj.init_params(jax.random.key(1), Y), Y)


def test_register_strategy_refuses_bad_arguments(registry):
    with pytest.raises(ArgumentError, match="built-in"):
        vi.register_strategy("enum", ConstantBaseline("enum", 1.0))
    with pytest.raises(ArgumentError, match="vi.Strategy"):
        vi.register_strategy("mine", "reinforce")
    with pytest.raises(ArgumentError, match="name"):
        vi.register_strategy("", ConstantBaseline("x", 1.0))
    vi.register_strategy("mine", ConstantBaseline("mine", 1.0))
    with pytest.raises(ArgumentError, match="replace=True"):
        vi.register_strategy("mine", ConstantBaseline("mine", 2.0))
    new = vi.register_strategy("mine", ConstantBaseline("mine", 2.0), replace=True)
    assert vi.registered_strategies()["mine"] is new


def test_reparam_refuses_discrete_and_enum_refuses_continuous_sites():
    with pytest.raises(vi.VIError, match="'a'.*cannot be reparameterised"):
        vi.REPARAM.check("a", dist.Bernoulli(probs=0.3))
    with pytest.raises(vi.VIError, match="'z'.*finite discrete"):
        vi.ENUM.check("z", dist.Normal(0.0, 1.0))
    vi.MVD.check("z", dist.Normal(0.0, 1.0))  # no refusal: MVD refuses at its draw


def test_reparam_dispatches_on_the_exact_distribution_type():
    """A Normal gets its pathwise transform; a subclass (which may sample differently) does not."""
    from inference.vi.reparam import _reparam

    class MyNormal(dist.Normal):
        pass

    noise, f = _reparam(dist.Normal(1.0, 2.0), ())
    assert float(f(jnp.asarray(0.5))) == 2.0
    assert _reparam(MyNormal(1.0, 2.0), ()) is None
    _, g = _reparam(dist.LogNormal(0.0, 1.0), ())
    assert float(g(jnp.asarray(0.0))) == 1.0


def test_built_in_objectives_keep_their_model_and_guide():
    for obj in (vi.elbo(model, guide), vi.iwae(model, guide, 2), vi.renyi(model, guide), vi.vimco(model, guide, 2),
                vi.p_wake(model, guide, 2), vi.q_wake(model, guide, 2), vi.rws(model, guide, 2)):
        assert obj.model is model and obj.guide is guide, obj.name
        assert obj.with_strategies({"a": "enum"}).guide is guide
    assert vi.Objective(lambda: 0.0).model is None
    mine = vi.objective(lambda y: vi.log_weight(model, vi.sample(guide, y), y), model=model, guide=guide)
    assert mine.model is model and mine.guide is guide
