"""Issue 14: ``vi.trace_enum_elbo`` sums the model's guide-less discrete sites out element by
element (N·K, no joint limit), exactly.

The law, on hypothesis-generated models (a continuous site c and a global discrete site g that
the guide samples, a plate of discrete sites z that it does not), float64: with a point-mass
guide for c and ``"enum"`` for g (so the objective is deterministic), the objective's value is

    Σ_g q(g) [log Σ_z p(c, g, z, y) − log q(g)]

with the inner log mass from ``semantics.enumerate`` (1e-10), and its gradient in the guide's
parameters is the gradient of the same sum computed by brute-force joint enumeration of z
(1e-8).  Planted twin: a marginal that enumerates the plate as one shared value (z_1 = ... = z_n)
breaks both, and the law catches it.  A plate of 500 points (2^500 joint values) runs.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
import semantics
from inference import vi
from ppl import dist


def build(n, K, seed):
    rng = np.random.default_rng(seed)
    pz = jnp.asarray(rng.dirichlet(np.ones(K), size=2))
    mu = jnp.asarray(rng.normal(0, 2, K))
    y = jnp.asarray(rng.normal(0, 1.5, n))

    @ppl.model
    def model(y):
        c = ppl.sample("c", dist.Normal(0.0, 1.0))
        g = ppl.sample("g", dist.Bernoulli(probs=0.4))
        with ppl.plate("data", y.shape[0]):
            z = ppl.sample("z", dist.Categorical(probs=pz[g]))
            ppl.sample("y", dist.Normal(mu[z] + c + 0.5 * g, 1.0), obs=y)

    @ppl.model
    def guide(y):
        ppl.sample("c", dist.Delta(ppl.param("loc", 0.3)))
        ppl.sample("g", dist.Bernoulli(probs=ppl.param("q", 0.6, constraint=dist.constraints.unit_interval)))

    return model, guide, y


def oracle(model, y, c, q, K, log_mass):
    """Σ_g q(g) [log_mass(c, g) − log q(g)]."""
    return sum(w * (log_mass(c, g) - jnp.log(w)) for g, w in ((0, 1.0 - q), (1, q)))


def brute(model, y, K):
    """log Σ_z p(c, g, z, y) by joint enumeration of z (differentiable in c)."""
    zs = [jnp.asarray(z) for z in itertools.product(range(K), repeat=y.shape[0])]

    def log_mass(c, g):
        return jax.nn.logsumexp(jnp.stack([model.log_density({"c": c, "g": jnp.asarray(g), "z": z}, y) for z in zs]))

    return log_mass


def exact(model, y):
    def log_mass(c, g):
        return semantics.enumerate(ppl.substitute(model, {"c": float(c), "g": g}), y).log_total_mass()

    return log_mass


def check_law(n, K, seed, loc):
    model, guide, y = build(n, K, seed)
    obj = vi.trace_enum_elbo(model, guide, strategies={"g": "enum"})
    u = obj.init_params(jax.random.key(0), y)
    u = {**u, "loc": jnp.asarray(loc)}
    value, grads = obj.grad(jax.random.key(1), u, y)
    p = obj.constrain(u)
    want = oracle(model, y, p["loc"], p["q"], K, exact(model, y))
    assert abs(float(value) - want) < 1e-10 * max(1.0, abs(want)), ("value", float(value), want)
    f = lambda uu: oracle(model, y, obj.constrain(uu)["loc"], obj.constrain(uu)["q"], K, brute(model, y, K))  # noqa: E731
    gw = jax.jit(jax.grad(f))(u)
    for k in gw:
        assert abs(float(grads[k]) - float(gw[k])) < 1e-8 * max(1.0, abs(float(gw[k]))), ("grad", k, grads[k], gw[k])


@settings(max_examples=3, deadline=None)
@given(st.integers(1, 3), st.integers(2, 3), st.integers(0, 10**6), st.floats(-1.0, 1.0))
def test_value_and_gradient_are_exact_against_enumeration(n, K, seed, loc):
    if n == 3:
        K = 2
    check_law(n, K, seed, loc)


def test_planted_twin_a_plate_enumerated_as_one_shared_value_is_caught(monkeypatch):
    def shared(model, values, y, **kw):  # the bug: z_1 = ... = z_n, summed as one value
        K = 2
        return jax.nn.logsumexp(jnp.stack([
            model.log_density({**values, "z": jnp.full(y.shape, k)}, y) for k in range(K)]))

    monkeypatch.setattr(ppl, "marginal_log_density", shared)
    with pytest.raises(AssertionError, match="value|grad"):
        check_law(2, 2, 7, 0.2)


def test_a_plate_of_500_points_is_summed_element_by_element():
    model, guide, _ = build(1, 3, 0)
    y = jnp.linspace(-2.0, 2.0, 500)
    obj = vi.trace_enum_elbo(model, guide, strategies={"g": "enum"})
    value, grads = obj.grad(jax.random.key(1), obj.init_params(jax.random.key(0), y), y)
    assert np.isfinite(float(value)) and sorted(grads) == ["loc", "q"]


def test_enum_log_weight_is_the_marginal_minus_the_guide_density():
    model, guide, y = build(2, 3, 5)
    tr = guide.simulate(jax.random.key(3), y)
    c, g = tr.choices["c"], int(tr.choices["g"])
    want = exact(model, y)(c, g) - float(tr.log_density)
    got = float(jax.jit(lambda: vi.enum_log_weight(model, tr, y))())
    assert abs(got - want) < 1e-10 * max(1.0, abs(want))
