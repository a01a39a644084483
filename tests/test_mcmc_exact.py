"""Exact tests of the trace kernels: the *shipped* step runs under the exact enumerator
(``semantics.laws``) and its transition matrix must leave the posterior invariant and satisfy
detailed balance to 1e-12.  Each law has planted-bug twins that must be caught."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
from inference import mcmc
from inference.mcmc._base import metropolis_accept, select
from inference.mcmc.trace_kernels import TraceState, _BoundRegenerate
from ppl import dist
from semantics import laws

pytestmark = [pytest.mark.exact]

# ---------------------------------------------------------------------------------------------
# models


@ppl.model
def net(p1=0.3):
    """A small Bayes net with an observation: z1 -> z2 -> x (observed), z1 -> c."""
    z1 = ppl.sample("z1", dist.Bernoulli(probs=p1))
    z2 = ppl.sample("z2", dist.Bernoulli(probs=jnp.where(z1 == 1, 0.8, 0.1)))
    c = ppl.sample("c", dist.Categorical(probs=jnp.where(z1 == 1, jnp.array([0.2, 0.3, 0.5]), jnp.array([0.6, 0.3, 0.1]))))
    ppl.sample("x", dist.Bernoulli(probs=jnp.where(z2 == 1, 0.9, 0.2) * jnp.where(c == 2, 1.0, 0.5)), obs=1)


@ppl.model
def switching():
    """The set of addresses depends on k: {k, a} or {k, b}; y observed."""
    k = ppl.sample("k", dist.Bernoulli(probs=0.4))
    if k == 1:
        a = ppl.sample("a", dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5])))
        p = jnp.array([0.1, 0.5, 0.9])[a]
    else:
        b = ppl.sample("b", dist.Bernoulli(probs=0.7))
        p = jnp.where(b == 1, 0.3, 0.6)
    ppl.sample("y", dist.Bernoulli(probs=p), obs=1)


def assert_invariant_and_reversible(f, model, moves="irreducible"):
    """pi K = pi (semantics.laws.invariant, which also checks that the kernel moves: irreducible,
    or irreducible on the block ``moves`` it updates) and pi(x)K(x,y) = pi(y)K(y,x), from one
    matrix."""
    res = laws.invariant(f, model, moves=moves)
    res.assert_()
    tm = res.details["matrix"]
    flow = tm.pi[:, None] * tm.K
    assert np.max(np.abs(flow - flow.T)) < 1e-12, "detailed balance fails"


def stepper(kernel, model, *args):
    """kernel.step as a function trace -> trace, for semantics.laws."""
    b = kernel.bind(model, args, {})
    return lambda key, tr: b.step(key, TraceState(tr))[0].trace


# proposals (models reading the current trace)


@ppl.model
def flip_z1(tr):
    ppl.sample("z1", dist.Bernoulli(probs=jnp.where(tr["z1"] == 1, 0.25, 0.9)))


@ppl.model
def jump_k(tr):
    """Switch branch and propose the new branch's site from a non-prior proposal."""
    k_new = ppl.sample("k", dist.Bernoulli(probs=jnp.where(tr["k"] == 1, 0.0, 1.0)))
    if k_new == 1:
        ppl.sample("a", dist.Categorical(probs=jnp.array([0.5, 0.25, 0.25])))
    else:
        ppl.sample("b", dist.Bernoulli(probs=0.2))


# ---------------------------------------------------------------------------------------------
# planted-bug twins


@dataclasses.dataclass(frozen=True)
class MHNoHastings(mcmc.MH):
    """Bug: forgets q(old | new) / q(new | old)."""

    def log_accept_ratio(self, update_weight, log_q_reverse, log_q_forward):
        return update_weight


class _WrongSizeBound(_BoundRegenerate):
    def step(self, key, state):
        tr = state.trace
        k1, k2 = jax.random.split(key)
        new, _ = self.model.regenerate(k1, tr, ppl.select(self.kernel.selection))
        # bug: accept with p(t')/p(t), ignoring the prior densities of appearing/dropped sites
        acc, p = metropolis_accept(k2, new.log_density - tr.log_density)
        return TraceState(select(acc, new, tr)), {}


@dataclasses.dataclass(frozen=True)
class RegenerateWrongSize(mcmc.Regenerate):
    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _WrongSizeBound(self, model, args, kwargs)


@dataclasses.dataclass(frozen=True)
class GibbsFromPrior(mcmc.Regenerate):
    """Bug: a 'Gibbs' step that redraws from the prior and always accepts."""

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        outer = self

        class B(_BoundRegenerate):
            def step(self, key, state):
                new, _ = self.model.regenerate(key, state.trace, ppl.select(outer.selection))
                return TraceState(new), {}

        return B(self, model, args, kwargs)


# ---------------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize(
    "kernel,block",
    [
        (mcmc.Regenerate("z1"), "z1"),
        (mcmc.Regenerate(("z2", "c")), ("z2", "c")),
        (mcmc.Gibbs("z2"), "z2"),
        (mcmc.Gibbs("c"), "c"),
        (mcmc.MH(flip_z1), "z1"),
        (mcmc.mixture([mcmc.Regenerate("z1"), mcmc.Gibbs("c"), mcmc.MH(flip_z1), mcmc.Gibbs("z2")], [0.4, 0.2, 0.2, 0.2]), "irreducible"),
    ],
    ids=["regen-z1", "regen-z2c", "gibbs-z2", "gibbs-c", "mh-flip", "mixture"],
)
def test_reversible_kernels_on_bayes_net(kernel, block):
    """A single-site kernel is checked irreducible on its block (it updates only those
    addresses: the opt-out of semantics.laws); the mixture of moves on every site is checked
    irreducible on the whole support."""
    assert_invariant_and_reversible(stepper(kernel, net), net, moves=block)


def test_gibbs_on_z1_changes_children_distribution_exactly():
    # z1 is a parent of z2 and c: its full conditional involves both children.
    f = stepper(mcmc.Gibbs("z1"), net)
    res = laws.detailed_balance(f, net, moves="z1")
    res.assert_()
    K = res.details["matrix"].K
    # a Gibbs step on z1 only moves between states that agree on z2 and c
    for i, s in enumerate(res.details["matrix"].states):
        for j, t in enumerate(res.details["matrix"].states):
            if K[i, j] > 0:
                assert s["z2"] == t["z2"] and s["c"] == t["c"]


@pytest.mark.slow
def test_cycle_is_invariant():
    kern = mcmc.cycle(mcmc.Gibbs("z1"), mcmc.Regenerate("z2"), mcmc.Gibbs("c"))
    laws.invariant(stepper(kern, net), net).assert_()
    # a cycle that never updates c is invariant but reducible: the law says so, and it is
    # irreducible on its block (z1, z2)
    part = laws.invariant(stepper(mcmc.cycle(mcmc.Gibbs("z1"), mcmc.Regenerate("z2")), net), net)
    assert not part.ok and "never reaches" in part.message and part.details["max_error"] < 1e-12
    assert laws.moves_problems(part.details["matrix"], ("z1", "z2")) == []


@pytest.mark.parametrize(
    "kernel",
    [mcmc.Regenerate("k"), mcmc.MH(jump_k), mcmc.mixture([mcmc.Regenerate("k"), mcmc.MH(jump_k)])],
    ids=["regen-k", "mh-jump", "mixture"],
)
def test_kernels_when_the_set_of_addresses_changes(kernel):
    assert_invariant_and_reversible(stepper(kernel, switching), switching)


def test_cycle_on_switching_model():
    kern = mcmc.cycle(mcmc.MH(jump_k), mcmc.Regenerate("k"))
    laws.invariant(stepper(kern, switching), switching).assert_()


# -- planted bugs must be caught ----------------------------------------------------------------


def test_planted_bug_mh_without_hastings_term_fails():
    f = stepper(MHNoHastings(flip_z1), net)
    assert not laws.invariant(f, net).ok
    assert not laws.detailed_balance(f, net).ok
    g = stepper(MHNoHastings(jump_k), switching)
    assert not laws.invariant(g, switching).ok


def test_planted_bug_wrong_trace_size_correction_fails():
    f = stepper(RegenerateWrongSize("k"), switching)
    assert not laws.invariant(f, switching).ok
    assert not laws.detailed_balance(f, switching).ok
    # on a fixed-structure model where the redrawn site's prior does not cancel, too
    assert not laws.invariant(stepper(RegenerateWrongSize("z2"), net), net).ok


def test_planted_bug_mh_scoring_removed_sites_twice_fails(monkeypatch):
    # bug: a removed site that the reverse proposal re-proposes is scored by both prior and q
    import inference.mcmc.trace_kernels as tk

    monkeypatch.setattr(tk, "_removed_and_reproposed", lambda *a: jnp.zeros(()))
    assert not laws.invariant(stepper(mcmc.MH(jump_k), switching), switching).ok


def test_planted_bug_gibbs_from_prior_fails():
    assert not laws.invariant(stepper(GibbsFromPrior("z2"), net), net).ok


# -- random structures ---------------------------------------------------------------------------

probs = st.sampled_from([0.125, 0.25, 0.5, 0.75, 0.875])


@settings(max_examples=6, deadline=None)
@given(p1=probs, q=st.tuples(probs, probs), obs=st.booleans())
def test_regenerate_and_gibbs_on_random_chains(p1, q, obs):
    @ppl.model
    def chain():
        a = ppl.sample("a", dist.Bernoulli(probs=p1))
        b = ppl.sample("b", dist.Bernoulli(probs=jnp.where(a == 1, q[0], q[1])))
        ppl.sample("o", dist.Bernoulli(probs=jnp.where(a == b, 0.75, 0.25)), obs=int(obs))

    for kern, block in ((mcmc.Regenerate("a"), "a"), (mcmc.Gibbs("b"), "b")):
        laws.detailed_balance(stepper(kern, chain), chain, moves=block).assert_()


def test_mixture_matrix_is_the_weighted_sum_of_its_parts():
    """A mixture's transition matrix is Σ w_i K_i exactly (each part's matrix from its own run):
    weights swapped or misread change it, though every mixture stays invariant."""
    parts = [mcmc.Regenerate("z1"), mcmc.Gibbs("c"), mcmc.MH(flip_z1)]
    w = [0.5, 0.3, 0.2]
    K_mix = laws.transition_matrix(stepper(mcmc.mixture(parts, w), net), net)
    Ks = [laws.transition_matrix(stepper(p, net), net) for p in parts]
    assert all(k.states == K_mix.states for k in Ks)
    np.testing.assert_allclose(K_mix.K, sum(wi * k.K for wi, k in zip(w, Ks)), rtol=0, atol=1e-14)
