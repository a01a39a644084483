"""Value tests of public ``ppl`` names that no other test named: ``as_model``, ``Selection``,
``UnconstrainedView`` and the randomness interface (``Interpreter``, ``current_interpreter``,
``requires_eager``).  References are densities written with SciPy and hand-made interpreters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist, randomness

pytestmark = pytest.mark.exact


def plain(y):
    s = ppl.sample("s", dist.HalfNormal(2.0))
    ppl.sample("y", dist.Normal(0.0, s), obs=y)


def test_as_model_wraps_a_function_and_keeps_a_model():
    m = ppl.as_model(plain)
    assert isinstance(m, ppl.Model) and ppl.as_model(m) is m
    ref = stats.halfnorm(scale=2.0).logpdf(1.5) + stats.norm(0, 1.5).logpdf(0.4)
    assert float(m.log_density({"s": 1.5}, 0.4)) == pytest.approx(ref, abs=1e-12)


def test_unconstrained_view_has_the_jacobian():
    """s = exp(u): log p_u(u) = log p(exp(u)) + u (plus the likelihood)."""
    view = ppl.unconstrained(plain, 0.4)
    assert isinstance(view, ppl.UnconstrainedView)
    for u in (-1.0, 0.3, 1.2):
        s = math.exp(u)
        ref = stats.halfnorm(scale=2.0).logpdf(s) + u + stats.norm(0, s).logpdf(0.4)
        assert float(view.log_density(jnp.array([u]))) == pytest.approx(ref, abs=1e-12)
        assert float(view.potential(jnp.array([u]))) == pytest.approx(-ref, abs=1e-12)
        assert float(view.to_constrained(jnp.array([u]))["s"]) == pytest.approx(s, rel=1e-14)
    assert float(view.to_unconstrained({"s": jnp.asarray(2.0)})[0]) == pytest.approx(math.log(2.0), rel=1e-14)


@ppl.model
def two_level():
    a = ppl.sample("a", dist.Normal(0.0, 1.0))
    with ppl.scope(prefix="ts"):
        ppl.sample("x", dist.Normal(a, 1.0))
    ppl.sample("tsx", dist.Normal(0.0, 1.0))


def test_selection_selects_addresses_and_their_children():
    sel = ppl.select("ts", "a")
    assert isinstance(sel, ppl.Selection) and sel.addresses == ("ts", "a")
    assert "ts/x" in sel and "a" in sel and "ts" in sel
    assert "tsx" not in sel and "b" not in sel and 3 not in sel
    assert ppl.Selection(["a", "b"], "c").addresses == ("a", "b", "c")
    # regenerate redraws exactly the selected sites ("ts" selects "ts/x"; "tsx" is kept)
    tr = two_level.simulate(jax.random.key(0))
    assert set(tr.choices) == {"a", "ts/x", "tsx"}
    new, _ = two_level.regenerate(jax.random.key(1), tr, ppl.select("ts"))
    assert float(new["a"]) == float(tr["a"]) and float(new["tsx"]) == float(tr["tsx"])
    assert float(new["ts/x"]) != float(tr["ts/x"])


class Constant:
    """An interpreter (the ``ppl.randomness.Interpreter`` protocol) answering every draw with the
    distribution's mean, and recording the names it saw."""

    def __init__(self, eager: bool):
        self.eager = eager
        self.seen = []

    def draw(self, key, d, sample_shape, name):
        self.seen.append(name)
        return jnp.broadcast_to(d.mean, sample_shape + d.batch_shape + d.event_shape)


def test_interpreters_receive_every_draw_and_nest():
    assert randomness.current_interpreter() is None and not randomness.requires_eager()
    outer, inner = Constant(eager=False), Constant(eager=True)
    it: randomness.Interpreter = outer  # the protocol is structural
    with randomness.interpreter(it):
        assert randomness.current_interpreter() is outer and not randomness.requires_eager()
        x = randomness.draw(jax.random.key(0), dist.Normal(3.0, 1.0), (2,), name="x")
        with randomness.interpreter(inner):
            assert randomness.current_interpreter() is inner and randomness.requires_eager()
            tr = ppl.as_model(plain).simulate(jax.random.key(0), 0.4)
        assert randomness.current_interpreter() is outer
    assert randomness.current_interpreter() is None and not randomness.requires_eager()
    np.testing.assert_array_equal(np.asarray(x), [3.0, 3.0])
    # the model's latent site went to the inner interpreter only: s = E[HalfNormal(2)] = 2√(2/π)
    assert float(tr["s"]) == pytest.approx(2.0 * math.sqrt(2 / math.pi), rel=1e-12)
    assert outer.seen == ["x"] and inner.seen == ["s"]
