"""Exact checks of the SMC blocks: the shipped code runs under the enumerator of ``semantics``.

Every random choice of the blocks (model draws, ancestor vectors, accept coins) goes through
``ppl.randomness.draw``, so ``semantics.enumerate_paths`` walks every branch and the laws are
equalities in float64 (1e-12): E[Ẑ] = Z and E[(1/N) Σ w_i δ_{x_i}] = the target measure.
Each law has a planted-bug twin that must fail.
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
import semantics
from inference import mcmc, smc
from inference.smc import blocks
from ppl import dist
from semantics import strategies as sst
from semantics.measure import Choices, Measure

SCHEMES = ["multinomial", "systematic", "stratified", "residual"]


# ---------------------------------------------------------------------------------------------
# resampling schemes: exact offspring counts


def _expected_offspring(cls, W):
    N = len(W)
    m = semantics.enumerate_block(lambda k: ppl.randomness.draw(k, cls(jnp.log(jnp.asarray(W))), name="ancestors"))
    counts = np.zeros(N)
    for atom, w in m.items():
        for a in atom:
            counts[a] += w
    return counts, m.total_mass()


@pytest.mark.parametrize("name", SCHEMES)
@settings(max_examples=5)
@given(W=st.integers(2, 4).flatmap(lambda n: sst.rational_probs(n, max_weight=5)))
def test_resampler_expected_offspring_is_N_times_weight(name, W):
    W = np.array([float(w) for w in W])
    counts, total = _expected_offspring(smc.resampling.SCHEMES[name], W)
    assert abs(total - 1.0) < 1e-12
    np.testing.assert_allclose(counts, len(W) * W, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", SCHEMES)
def test_resampler_with_a_zero_weight_never_picks_it(name):
    W = np.array([0.6, 0.0, 0.4])
    m = semantics.enumerate_block(lambda k: ppl.randomness.draw(k, smc.resampling.SCHEMES[name](jnp.log(W)), name="a"))
    assert all(1 not in atom for atom in m.atoms)
    counts, _ = _expected_offspring(smc.resampling.SCHEMES[name], W)
    np.testing.assert_allclose(counts, 3 * W, atol=1e-12)


class _BiasedSystematic(smc.Systematic):
    """Planted bug: systematic resampling with the strata shifted by half a stratum (U ∈ [0.5, 1))."""

    def _interval(self, a):
        lo, hi = super()._interval(a)
        return jnp.maximum(lo, 0.5), hi


def test_planted_bug_biased_resampler_fails_offspring_check():
    W = np.array([0.5, 0.3, 0.2])
    d = _BiasedSystematic(jnp.log(W))
    S = d.enumerate_support()
    p = np.exp(np.asarray(d.log_prob(S)))
    p = p / p.sum()
    counts = sum(pi * np.bincount(np.asarray(a), minlength=3) for pi, a in zip(p, S))
    assert np.abs(counts - 3 * W).max() > 1e-3


# ---------------------------------------------------------------------------------------------
# the particle filter on HMMs, enumerated


def _hmm_step(spec):
    fi = jnp.asarray(np.asarray(spec.params["init"], dtype=float))
    ft = jnp.asarray(np.asarray(spec.params["trans"], dtype=float))
    fe = jnp.asarray(np.asarray(spec.params["emit"], dtype=float))

    def step(prev, y_t):
        probs = jnp.where(prev < 0, fi, ft[jnp.maximum(prev, 0)])
        s = ppl.sample("s", dist.Categorical(probs=probs))
        ppl.sample("y", dist.Categorical(probs=fe[s]), obs=y_t)
        return s, s

    return step


def _pf_measure(block, y):
    """E[Ẑ] and E[(1/N) Σ w_i δ_{path_i}] of a particle-filter block, over its own randomness."""
    paths = semantics.enumerate_paths(block)
    EZ = math.fsum(math.exp(p.log_prob + float(p.value.log_evidence)) for p in paths)
    pairs = []
    for p in paths:
        for path, lw in p.value.weighted_paths():
            atom = Choices({"hmm/s": tuple(int(v) for v in path["hmm/s"]), "hmm/y": tuple(y)})
            pairs.append((atom, p.log_prob + lw, None))
    return EZ, Measure.from_pairs(pairs)


def _check_pf(spec, N, scheme, ess_threshold=None, proposal=None):
    y = spec.params["y"]
    step = _hmm_step(spec)

    def block(key):
        return smc.particle_filter(
            key, step, jnp.asarray(-1), jnp.asarray(y), N, scheme=scheme, ess_threshold=ess_threshold,
            proposal=proposal, name="hmm", record="all",
        )

    EZ, est = _pf_measure(block, y)
    target = spec.oracle()
    Z = target.total_mass()
    assert abs(EZ / Z - 1.0) < 1e-12, f"E[Ẑ]/Z = {EZ / Z!r}"
    est.assert_equal(target, tol=1e-12, what="E[weighted paths] vs the HMM's joint measure")
    # and the independent forward algorithm agrees with the oracle's evidence
    fw = semantics.oracles.hmm_forward(
        np.asarray(spec.params["init"], float), np.asarray(spec.params["trans"], float),
        np.asarray(spec.params["emit"], float), list(y),
    )
    assert abs(math.exp(fw.log_evidence) / Z - 1) < 1e-12


small_hmms = sst.hmms(max_states=2, max_symbols=2, max_T=2)


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=3)
@given(spec=small_hmms)
def test_particle_filter_is_unbiased_and_properly_weighted(scheme, spec):
    _check_pf(spec, 2, scheme)


@settings(max_examples=3)
@given(spec=small_hmms, threshold=st.sampled_from([0.5, 0.9, 1.0]))
def test_particle_filter_with_ess_triggered_resampling(spec, threshold):
    _check_pf(spec, 2, "systematic", ess_threshold=threshold)


def _fixed_hmm(T=3):
    init = (Fraction(3, 5), Fraction(2, 5))
    trans = ((Fraction(7, 10), Fraction(3, 10)), (Fraction(1, 5), Fraction(4, 5)))
    emit = ((Fraction(9, 10), Fraction(1, 10)), (Fraction(3, 10), Fraction(7, 10)))
    y = (0, 1, 1)[:T]
    import itertools

    params = {"init": np.array(init, dtype=object), "trans": np.array(trans, dtype=object), "emit": np.array(emit, dtype=object), "y": y}

    def oracle():
        acc = {}
        for ss in itertools.product(range(2), repeat=T):
            w = init[ss[0]] * emit[ss[0]][y[0]]
            for t in range(1, T):
                w *= trans[ss[t - 1]][ss[t]] * emit[ss[t]][y[t]]
            c = Choices({"hmm/s": ss, "hmm/y": y})
            acc[c] = acc.get(c, 0) + w
        return Measure.from_weights(acc)

    return sst.ModelSpec("hmm", None, (), params, oracle)


@pytest.mark.parametrize("scheme", ["systematic", "stratified", "residual"])
def test_particle_filter_three_steps(scheme):
    _check_pf(_fixed_hmm(3), 2, scheme)


def test_particle_filter_three_particles_systematic():
    _check_pf(_fixed_hmm(2), 3, "systematic")


def test_particle_filter_with_a_user_proposal():
    @ppl.model
    def proposal(prev, y_t):
        ppl.sample("s", dist.Categorical(probs=jnp.where(y_t == 0, jnp.array([0.25, 0.75]), jnp.array([0.5, 0.5]))))

    _check_pf(_fixed_hmm(2), 2, "stratified", proposal=proposal)


@pytest.mark.parametrize(
    "bug",
    [
        # renormalise and forget Z: every weight reset to 1 after resampling
        lambda lw, a: jnp.zeros_like(lw),
        # resample without resetting the weights: copies keep their parent's weight
        lambda lw, a: lw[a],
    ],
    ids=["forget_Z", "no_weight_reset"],
)
def test_planted_bug_resampling_weights_breaks_the_laws(monkeypatch, bug):
    monkeypatch.setattr(blocks, "resampled_log_weights", bug)
    with pytest.raises(AssertionError):
        _check_pf(_fixed_hmm(2), 2, "systematic")


def test_planted_bug_forgetting_the_initial_weight_breaks_the_laws(monkeypatch):
    real = blocks.extend

    def bootstrap_without_likelihood(key, particles, step, x=None, *, proposal=None):
        p, tr = real(key, particles, step, x, proposal=proposal)
        return smc.Particles(p.states, particles.log_weights + 0.0 * p.log_weights, p.ancestors), tr

    monkeypatch.setattr(blocks, "extend", bootstrap_without_likelihood)
    with pytest.raises(AssertionError):
        _check_pf(_fixed_hmm(1), 2, "systematic")


# ---------------------------------------------------------------------------------------------
# static models: init (prior / proposal), extend_model (data batches), reweight, rejuvenate


def _population_atoms(out):
    p = out
    N = p.num_particles
    res = []
    for i in range(N):
        tr = jax.tree.map(lambda v: v[i], p.states)
        res.append((semantics.trace_key(tr), float(p.log_weights[i]) - math.log(N)))
    return res


@ppl.model
def coin_model(ys):
    z = ppl.sample("z", dist.Bernoulli(probs=0.3))
    c = ppl.sample("c", dist.Bernoulli(probs=0.25 + 0.25 * z))
    p = jnp.array([0.2, 0.8])[z] * (1 - 0.5 * c)
    with ppl.plate("data", ys.shape[0]):
        ppl.sample("y", dist.Bernoulli(probs=p), obs=ys)


@ppl.model
def coin_model_flipped(ys):
    z = ppl.sample("z", dist.Bernoulli(probs=0.7))
    c = ppl.sample("c", dist.Bernoulli(probs=0.25 + 0.25 * z))
    p = jnp.array([0.2, 0.8])[z] * (1 - 0.5 * c)
    with ppl.plate("data", ys.shape[0]):
        ppl.sample("y", dist.Bernoulli(probs=p), obs=ys)


def _law(block, target_args):
    res = semantics.laws.properly_weighted(block, coin_model, *target_args, atoms=_population_atoms)
    ev = semantics.laws.unbiased_evidence(block, coin_model, *target_args, log_evidence=lambda p: p.log_evidence)
    return res, ev


def test_init_from_the_prior_and_from_a_proposal_is_properly_weighted():
    ys = jnp.array([1.0, 0.0])

    @ppl.model
    def q(ys):
        ppl.sample("z", dist.Bernoulli(probs=0.75))

    for prop in (None, q):
        res, ev = _law(lambda key, ys: smc.init(key, coin_model, 2, ys, proposal=prop), (ys,))
        res.assert_(), ev.assert_()


def test_extend_model_adds_a_batch_of_data_then_resample_and_rejuvenate():
    first, full = jnp.array([1.0]), jnp.array([1.0, 0.0])

    def block(key, ys):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        p = smc.init(k1, coin_model, 2, first)
        p, _ = smc.resample(k2, p, "stratified")
        p = smc.extend_model(k3, p, coin_model, (ys,))
        p, _ = smc.rejuvenate(k4, p, mcmc.Regenerate("z").bind(coin_model, (ys,)))
        return p

    res, ev = _law(block, (full,))
    res.assert_(), ev.assert_()


def test_change_target_then_ess_triggered_resample():
    ys = jnp.array([1.0, 1.0])

    def block(key, ys):
        k1, k2 = jax.random.split(key)
        p = smc.init(k1, coin_model, 2, ys[:1])
        # reweight from the model with one observation to the model with two
        p = smc.change_target(
            p,
            lambda tr: coin_model.log_density(tr.latent, ys),
            lambda tr: coin_model.log_density(tr.latent, ys[:1]),
        )
        p, _ = smc.resample(k2, p, "residual", ess_threshold=0.99)
        return p

    res, ev = _law(block, (ys,))
    # the atoms carry the old observation; compare on latents only
    est = res.details["estimate"].pushforward(lambda c: c.restrict(["z", "c"]))
    tgt = res.details["target"].pushforward(lambda c: c.restrict(["z", "c"]))
    est.assert_equal(tgt, tol=1e-12)
    ev.assert_()


def test_planted_bug_rejuvenating_with_a_kernel_for_the_wrong_target_fails():
    ys = jnp.array([1.0, 1.0])

    def block(key, ys):
        k1, k2 = jax.random.split(key)
        p = smc.init(k1, coin_model, 2, ys)
        # Gibbs for another model (z's prior flipped): leaves another posterior invariant
        # (trace kernels score at the trace's own args, so a kernel for the wrong *model*)
        p, _ = smc.rejuvenate(k2, p, mcmc.Gibbs("z").bind(coin_model_flipped, (ys,)))
        return p

    res, _ = _law(block, (ys,))
    assert not res.ok
