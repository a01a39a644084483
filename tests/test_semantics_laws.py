"""Each law on the blocks that exist (generate as importance sampling, a regenerate-based MH
kernel, ppl.do, a score-function gradient), and a deliberately broken block per law."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
import semantics
from ppl import dist
from semantics import laws
from semantics import strategies as S

pytestmark = [pytest.mark.exact]


@ppl.model
def net(n):
    z = ppl.sample("z", dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5])))
    b = ppl.sample("b", dist.Bernoulli(probs=0.25))
    ppl.sample("y", dist.Binomial(n, probs=(z + 1 + b) / 5.0), obs=1)


def importance(model):
    """The shipped block: Model.generate with no constraints is importance sampling from the prior."""
    return lambda key, *a: model.generate(key, {}, *a)


def mh(model, address):
    """An MH kernel built from Model.regenerate; its accept step draws through ppl.randomness."""

    def kernel(key, tr):
        k1, k2 = jax.random.split(key)
        new, log_w = model.regenerate(k1, tr, ppl.select(address))
        accept = ppl.randomness.draw(k2, dist.Bernoulli(probs=jnp.minimum(1.0, jnp.exp(log_w))))
        return new if accept else tr

    return kernel


def mh_without_correction(model, address):
    """Planted bug: accepts with the joint density ratio, forgetting the proposal's density."""

    def kernel(key, tr):
        k1, k2 = jax.random.split(key)
        new, _ = model.regenerate(k1, tr, ppl.select(address))
        log_w = new.log_density - tr.log_density
        accept = ppl.randomness.draw(k2, dist.Bernoulli(probs=jnp.minimum(1.0, jnp.exp(log_w))))
        return new if accept else tr

    return kernel


# -- importance sampling ----------------------------------------------------------------------


def test_generate_is_properly_weighted_and_unbiased():
    laws.assert_properly_weighted(importance(net), net, 2)
    res = laws.unbiased_evidence(importance(net), net, 2)
    assert res.ok and abs(res.details["ratio"] - 1) < 1e-13


def test_generate_with_constraints_targets_the_restricted_measure():
    block = lambda key, n: net.generate(key, {"z": 2}, n)  # noqa: E731
    laws.assert_properly_weighted(block, ppl.condition(net, {"z": 2}), 2)


def test_broken_weights_are_rejected():
    def off_by_factor(key, n):
        tr, lw = net.generate(key, {}, n)
        return tr, lw + jnp.log(1.5) * tr.choices["b"]

    def forgets_likelihood(key, n):
        tr, _ = net.generate(key, {}, n)
        return tr, jnp.zeros(())

    for bad in (off_by_factor, forgets_likelihood):
        r = laws.properly_weighted(bad, net, 2)
        assert not r.ok and "differs" in r.message
        assert not laws.unbiased_evidence(bad, net, 2).ok
    with pytest.raises(laws.LawViolation, match="properly_weighted"):
        laws.assert_properly_weighted(off_by_factor, net, 2)


def test_self_normalised_weights_break_unbiasedness_only():
    """A renormalising block that drops Z keeps the shape of the measure but not its mass."""
    Z = semantics.enumerate(net, 2).total_mass()

    def renormalised(key, n):
        tr, lw = net.generate(key, {}, n)
        return tr, lw - math.log(Z)

    assert not laws.properly_weighted(renormalised, net, 2).ok
    assert not laws.unbiased_evidence(renormalised, net, 2).ok
    assert laws.unbiased_evidence(renormalised, 1.0, 2).ok  # it is unbiased for the normalised target


@given(S.discrete_models())
@settings(max_examples=10)
def test_generate_properly_weighted_on_generated_models(spec):
    laws.assert_properly_weighted(importance(spec.model), spec.model, *spec.args)
    laws.assert_unbiased_evidence(importance(spec.model), spec.model, *spec.args)


# -- MCMC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["z", "b"])
def test_mh_is_invariant_and_reversible(address):
    # a single-site MH kernel updates only its block: irreducible within it
    r = laws.invariant(mh(net, address), net, 2, moves=address)
    assert r.ok, r.message
    tm = r.details["matrix"]
    assert len(tm.states) == 6 and abs(tm.pi.sum() - 1) < 1e-14
    laws.assert_detailed_balance(mh(net, address), net, 2, moves=address)
    # ... and not irreducible on the whole support, which the default check says
    r = laws.invariant(mh(net, address), net, 2)
    assert not r.ok and "not irreducible" in r.message


def test_mh_without_hastings_correction_is_rejected():
    r = laws.invariant(mh_without_correction(net, "z"), net, 2)
    assert not r.ok and "πK ≠ π" in r.message
    assert not laws.detailed_balance(mh_without_correction(net, "z"), net, 2).ok


def test_kernel_leaving_the_support_is_rejected():
    def jumps_out(key, tr):
        return {"nowhere": 1}

    r = laws.invariant(jumps_out, net, 2)
    assert not r.ok and "outside the target's support" in r.message


@given(S.bayes_nets(max_nodes=4), st.data())
@settings(max_examples=8)
def test_mh_invariant_on_bayes_nets(spec, data):
    address = data.draw(st.sampled_from(spec.latent)) if spec.latent else None
    if address is None:
        return
    laws.assert_invariant(mh(spec.model, address), spec.model, moves=address)


@given(S.dynamic_models())
@settings(max_examples=6)
def test_mh_invariant_when_addresses_change(spec):
    """Regenerating the switch site moves between executions with different sets of addresses."""
    first = "n" if spec.kind == "random_components" else "b"
    # regenerating the switch site never changes the sites both branches share (so the kernel
    # is reducible, and the sites it does change depend on the branch): the laws check that it
    # moves at all (moves="some"), unless the switch site has one value (one component)
    moves = None if spec.kind == "random_components" and len(spec.params["pn"]) == 1 else "some"
    laws.assert_invariant(mh(spec.model, first), spec.model, *spec.args, moves=moves)
    laws.assert_detailed_balance(mh(spec.model, first), spec.model, *spec.args, moves=moves)


# -- gradients ------------------------------------------------------------------------------------


LOG_P = jnp.log(jnp.array([0.1, 0.6, 0.3]))  # an unnormalised target over 3 states


def elbo(theta):
    q = jax.nn.softmax(theta)
    return jnp.sum(q * (LOG_P - jnp.log(q)))


def score_function(key, theta):
    """ELBO gradient: (log p(z) − log q(z)) ∇ log q(z) + ∇(−log q(z)), z ~ q_θ."""
    z = ppl.randomness.draw(key, dist.Categorical(logits=theta))
    logq = lambda t: dist.Categorical(logits=t).log_prob(z)  # noqa: E731
    f = LOG_P[z] - logq(theta)
    return f * jax.grad(logq)(theta) - jax.grad(logq)(theta)


def score_term_missing(key, theta):
    """Planted bug: only the pathwise part ∇f(z), the score term is missing."""
    z = ppl.randomness.draw(key, dist.Categorical(logits=theta))
    return -jax.grad(lambda t: dist.Categorical(logits=t).log_prob(z))(theta)


def test_score_function_estimator_is_unbiased():
    theta = jnp.array([0.3, -0.2, 0.5])
    r = laws.unbiased_gradient(score_function, jax.grad(elbo), theta)
    assert r.ok, r.message
    assert not laws.unbiased_gradient(score_term_missing, jax.grad(elbo), theta).ok


# -- interventions ------------------------------------------------------------------------------------


@given(S.bayes_nets(observe=False), st.data())
@settings(max_examples=12)
def test_do_equals_truncated_factorisation(spec, data):
    i = data.draw(st.integers(0, len(spec.params["cards"]) - 1))
    value = data.draw(st.integers(0, spec.params["cards"][i] - 1))
    laws.assert_surgery_commutes(spec.model, {f"x{i}": value})


def test_do_implemented_as_condition_is_rejected():
    r = laws.surgery_commutes(net, {"z": 1}, 2, surgery=ppl.condition)
    assert not r.ok and "truncated factorisation" in r.message
    assert laws.surgery_commutes(net, {"z": 1}, 2).ok
    assert laws.surgery_commutes(net, {"b": 0, "z": 2}, 2).ok


# -- the laws reject kernels that do not move ------------------------------------------------------


def _never_moves(key, tr):
    """The identity kernel: πI = π, so invariance alone would accept it."""
    return tr


def test_identity_kernel_fails_the_laws():
    for law in (laws.invariant, laws.detailed_balance):
        r = law(_never_moves, net, 2)
        assert not r.ok and "never leaves" in r.message, r.message
        assert not law(_never_moves, net, 2, moves="some").ok
        assert not law(_never_moves, net, 2, moves="z").ok
        assert law(_never_moves, net, 2, moves=None).ok  # the opt-out, for what it is worth


def test_kernel_that_never_leaves_one_state_fails_the_laws():
    def stuck(key, tr):  # π-invariant: Metropolis between z = 0 and z = 1, and z = 2 never moves
        return tr if int(tr.choices["z"]) == 2 else _mh_among_01(key, tr)

    assert laws.invariant(stuck, net, 2, moves=None).ok  # πK = π holds
    assert laws.invariant(stuck, net, 2, moves="some").ok  # and it moves somewhere
    for law in (laws.invariant, laws.detailed_balance):
        r = law(stuck, net, 2, moves="z")
        assert not r.ok and "never leaves" in r.message and "'z': 2" in r.message, r.message
        assert not law(stuck, net, 2).ok


def test_moves_naming_no_address_of_the_model_is_an_error():
    """A misspelt option or address is refused with what was expected, never read as a block."""
    with pytest.raises(ValueError, match="irreducable.*expected 'irreducible'"):
        laws.invariant(_never_moves, net, 2, moves="irreducable")


def _mh_among_01(key, tr):
    """Metropolis between z = 0 and z = 1 (b fixed), through ppl.randomness: π-invariant."""
    k1, k2 = jax.random.split(key)
    z = int(tr.choices["z"])
    new, _ = net.generate(k1, {"z": 1 - z, "b": tr.choices["b"]}, 2)
    log_w = new.log_density - tr.log_density
    accept = ppl.randomness.draw(k2, dist.Bernoulli(probs=jnp.minimum(1.0, jnp.exp(log_w))))
    return new if accept else tr


def test_block_option_rejects_a_kernel_that_changes_other_addresses():
    r = laws.invariant(mh(net, "b"), net, 2, moves="z")
    assert not r.ok and "changed other addresses" in r.message
