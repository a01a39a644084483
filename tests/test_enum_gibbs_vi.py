"""``mcmc.Gibbs`` on a discrete site in a plate updates the plate's elements by their
conditionals (N·K work, not K^N): the *shipped* step runs under the exact enumerator
(``semantics.laws.transition_matrix``) and its transition must be exactly the site's full
conditional given the rest of the trace (to 1e-12) when the elements are conditionally
independent, and an invariant, reversible move when a factor couples them; the planted twin
without the Metropolis–Hastings correction must be caught.

(VI with the model's discrete sites summed out per plate element, ``vi.trace_enum_elbo``, is
tested in ``tests/test_vi_enum_elbo.py``.)"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from inference import mcmc
from inference.mcmc.trace_kernels import TraceState, _BoundGibbs
from ppl import dist
from semantics import laws

pytestmark = [pytest.mark.exact]

Y = jnp.array([1, 0])


@ppl.model
def plated(y):
    """A global regime g, and per point an assignment z_i given g, observed y_i given z_i."""
    g = ppl.sample("g", dist.Bernoulli(probs=0.35))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Categorical(probs=jnp.where(g == 1, jnp.array([0.2, 0.8]), jnp.array([0.7, 0.3]))))
        ppl.sample("y", dist.Bernoulli(probs=jnp.array([0.15, 0.9])[z]), obs=y)


@ppl.model
def coupled(y):
    """The elements of z interact: a factor on their sum (not conditionally independent)."""
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(probs=0.4))
        ppl.sample("y", dist.Bernoulli(probs=jnp.where(z == 1, 0.8, 0.3)), obs=y)
    ppl.factor("pair", -0.7 * jnp.sum(z) ** 2)


def stepper(kernel, model, *args):
    b = kernel.bind(model, args, {})
    return lambda key, tr: b.step(key, TraceState(tr))[0].trace


class _NoCorrectionBound(_BoundGibbs):
    """Bug: the plate's elements are always taken from their enumerated conditionals, as if they
    never interacted (no Metropolis–Hastings correction when a factor couples them)."""

    def log_accept_ratio(self, log_p_new, log_p_old, log_q_new, log_q_old):
        return jnp.zeros(())


@dataclasses.dataclass(frozen=True)
class GibbsNoCorrection(mcmc.Gibbs):
    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _NoCorrectionBound(self, model, args, kwargs)


def _z(state) -> tuple:
    return tuple(int(v) for v in np.atleast_1d(np.asarray(state["z"])))


def test_gibbs_on_a_plate_draws_exactly_the_full_conditional_element_by_element():
    """K[s, t] = p(z_t | g_s, y) when g_t = g_s, else 0: the exact conditional, read off the
    enumerated posterior; the kernel is invariant and reversible, and it moves every z."""
    tm = laws.transition_matrix(stepper(mcmc.Gibbs("z"), plated, Y), plated, Y)
    assert not tm.escaped and len(tm.states) == 2 * 2 ** len(Y)
    g = np.array([int(s["g"]) for s in tm.states])
    for i in range(len(tm.states)):
        same = g == g[i]
        want = np.where(same, tm.pi, 0.0) / tm.pi[same].sum()
        assert np.max(np.abs(tm.K[i] - want)) < 1e-12, (tm.states[i], tm.K[i], want)
    flow = tm.pi[:, None] * tm.K
    assert np.max(np.abs(flow - flow.T)) < 1e-12  # detailed balance
    assert np.max(np.abs(tm.pi @ tm.K - tm.pi)) < 1e-12  # invariance


def test_the_plate_is_updated_by_conditionals_not_by_its_joint():
    """A 60-point plate (2^60 joint values, far over max_combinations) is drawn from its elements' conditionals: always
    accepted when they are conditionally independent, corrected when a factor couples them."""
    y = jnp.asarray(np.arange(60) % 2)
    for model, always in ((plated, True), (coupled, False)):
        b = mcmc.Gibbs("z").bind(model, (y,), {})
        st = b.init(jax.random.key(0))
        new, info = jax.jit(b.step)(jax.random.key(1), st)
        assert new.trace.choices["z"].shape == (60,)
        assert (abs(float(info["accept_prob"]) - 1.0) < 1e-9) == always, (model, info)


def test_gibbs_on_interacting_elements_stays_exact_and_the_uncorrected_twin_is_caught():
    """The elements of `coupled` interact: the enumerated conditional is only a proposal, and the
    corrected move is invariant and reversible; the twin without the correction is not."""
    y = jnp.array([1, 0])
    tm = laws.transition_matrix(stepper(mcmc.Gibbs("z"), coupled, y), coupled, y)
    flow = tm.pi[:, None] * tm.K
    assert np.max(np.abs(flow - flow.T)) < 1e-12
    assert np.max(np.abs(tm.pi @ tm.K - tm.pi)) < 1e-12
    assert not laws.invariant(stepper(GibbsNoCorrection("z"), coupled, y), coupled, y).ok
