"""Exact invariance of particle MCMC (PMMH, particle Gibbs) on tiny HMMs, under the enumerator.

PMMH.  Its state is (θ, Ẑ): the estimate at the current θ is kept.  PMMH is MH on the extended
space for π̄(θ, z) = p(θ) P_θ(Ẑ = z) z / Z, whose θ-marginal is the posterior π(θ) exactly
because E_θ[Ẑ] = p(y | θ).  The check, on the finite extended space (θ ∈ {0, 1}, z ranging over
the finitely many values the shipped particle filter can return at θ):

    (1) Σ_z π̄(θ, z) = π(θ) for every θ (π from enumerating the joint model; Z its evidence),
    (2) π̄ K = π̄, with K built by running the shipped ``PMMH`` step from every (θ, z) under the
        enumerator.

Planted-bug twins: recomputing Ẑ at the current θ every step (Monte Carlo within Metropolis)
breaks (2); Ẑ from a filter that renormalises and forgets Z breaks (1).

For T = 2 the evidence estimator passed to PMMH is the particle filter's *exact law*: its
values and probabilities are enumerated once per θ from the shipped ``particle_filter``, and
PMMH draws Ẑ from that law with one ``ppl.randomness.draw`` (the kernel's invariance depends on
the estimator only through its law; this keeps the transition matrix to a few hundred paths).
For T = 1 the particle filter itself runs inside the kernel under the enumerator.

Particle Gibbs.  Its state is one trajectory; ``semantics.laws.invariant`` builds K from the
shipped conditional-SMC step on every trajectory of a T = 2 HMM (N = 2) and checks π K = π for
the path posterior; the unconditioned sweep (plain SMC, then pick a path) fails.

More planted twins, in the shipped source (``_smc_plant.plant``): PMMH with half its Hastings
term (the reverse proposal density dropped, under an asymmetric proposal); conditional SMC
whose reference keeps the *last* particle as its ancestor instead of itself; PGAS ancestor
weights without the transition density.
"""

from __future__ import annotations

import math
from collections import defaultdict

import equinox as eqx
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from inference import smc
from inference.smc import blocks, pmcmc
from ppl import dist
from semantics.measure import Choices

from _smc_plant import plant

# every test here takes seconds to minutes (enumerating SMC sweeps); the exact ones are marked so
pytestmark = pytest.mark.slow

PRIOR = jnp.array([0.25, 0.75])
INIT = jnp.array([0.6, 0.4])
TRANS = jnp.array([[0.7, 0.3], [0.2, 0.8]])
EMIT = jnp.array([[[0.9, 0.1], [0.3, 0.7]], [[0.6, 0.4], [0.2, 0.8]]])  # EMIT[θ, s, y]


def hmm_step(theta):
    def step(prev, y_t):
        s = ppl.sample("s", dist.Categorical(probs=jnp.where(prev < 0, INIT, TRANS[jnp.maximum(prev, 0)])))
        ppl.sample("y", dist.Categorical(probs=EMIT[theta][s]), obs=y_t)
        return s, s

    return step


@ppl.model
def prior(ys):  # the parameter model is run with the bound args too (here it ignores the data)
    ppl.sample("theta", dist.Categorical(probs=PRIOR))


@ppl.model
def joint(ys):
    theta = ppl.sample("theta", dist.Categorical(probs=PRIOR))
    ppl.scan(hmm_step(theta), jnp.asarray(-1), xs=ys, name="hmm")


def pf_log_evidence(key, theta, ys):
    return smc.particle_filter(key, hmm_step(theta["theta"]), jnp.asarray(-1), ys, 2, scheme="systematic").log_evidence


def _key(le: float) -> float:
    """log Ẑ rounded, to match equal estimates computed along different paths."""
    return round(float(le), 10)


REP: dict = {}  # rounded log Ẑ -> the unrounded value first seen (used in exp(log Ẑ))


def evidence_law(ys) -> dict:
    """θ -> {log z: P_θ(Ẑ = z)}, by enumerating the shipped particle filter at θ."""
    law = {}
    for th in (0, 1):
        acc = defaultdict(float)
        for p in semantics.enumerate_paths(lambda k: pf_log_evidence(k, {"theta": jnp.asarray(th)}, ys)):
            REP.setdefault(_key(p.value), float(p.value))
            acc[_key(p.value)] += math.exp(p.log_prob)
        law[th] = dict(acc)
    return law


def distilled(law: dict):
    """An estimator with exactly the law `law`: one Categorical draw over the values of Ẑ at θ."""
    table = {th: (jnp.asarray([REP[z] for z in d]), jnp.asarray(list(d.values()))) for th, d in law.items()}

    def log_evidence(key, theta, ys):
        vals, probs = table[int(theta["theta"])]
        return vals[ppl.randomness.draw(key, dist.Categorical(probs=probs / probs.sum()), name="zhat")]

    return log_evidence


def posterior_theta(ys) -> tuple[dict, float]:
    mu = semantics.enumerate(joint, ys)
    Z = mu.total_mass()
    post = defaultdict(float)
    for atom, w in mu.items():
        post[int(atom["theta"])] += w / Z
    return dict(post), Z


def check_pmmh(step, law: dict, ys, tol=1e-12) -> list[str]:
    """The problems with PMMH's extended invariance (empty when both (1) and (2) hold)."""
    post, Z = posterior_theta(ys)
    prior_tr = {int(tr.choices["theta"]): tr for tr, lw, _, _ in semantics.enumerate_traces(prior, ys)}
    states = [(th, lz) for th in (0, 1) for lz in law[th]]
    index = {s: i for i, s in enumerate(states)}
    pibar = np.array([float(PRIOR[th]) * law[th][lz] * math.exp(REP[lz]) / Z for th, lz in states])
    problems = []
    for th in (0, 1):
        m = sum(pibar[i] for i, (t, _) in enumerate(states) if t == th)
        if abs(m - post[th]) > tol:
            problems.append(f"θ-marginal of π̄ at θ={th}: {m!r} vs posterior {post[th]!r}")
    K = np.zeros((len(states), len(states)))
    for i, (th, lz) in enumerate(states):
        state = smc.PMMHState(prior_tr[th], jnp.asarray(REP[lz]))
        for p in semantics.enumerate_paths(lambda k: step(k, state)[0]):
            j = index.get((int(p.value.trace.choices["theta"]), _key(p.value.log_evidence)))
            assert j is not None, "moved outside the extended space"
            K[i, j] += math.exp(p.log_prob)
    err = np.max(np.abs(pibar @ K - pibar))
    if err > tol:
        problems.append(f"π̄K ≠ π̄ (max error {err:.3g})")
    assert np.allclose(K.sum(1), 1, atol=1e-12)
    return problems


def mcwm(bound, log_ev, ys):
    """Planted bug: recompute the current state's Ẑ every step (not pseudo-marginal)."""

    def step(key, state):
        k1, k2 = jax.random.split(key)
        fresh = log_ev(k1, dict(state.trace.latent), ys)
        return bound.step(k2, eqx.tree_at(lambda s: s.log_evidence, state, jnp.asarray(fresh)))

    return step


YS2 = jnp.array([0, 1])
YS1 = jnp.array([1])


@pytest.fixture(scope="module")
def law2():
    return evidence_law(YS2)


@pytest.mark.exact
def test_pmmh_leaves_the_extended_target_invariant_with_the_particle_filter_inside():
    law = evidence_law(YS1)
    bound = smc.PMMH(pf_log_evidence).bind(prior, (YS1,))
    assert check_pmmh(bound.step, law, YS1) == []


@pytest.mark.exact
def test_pmmh_T2_with_resampling_and_a_user_proposal(law2):
    @ppl.model
    def flip(tr):  # a deterministic-support proposal: the other value w.p. 3/4
        ppl.sample("theta", dist.Categorical(probs=jnp.where(tr.choices["theta"] == 0, jnp.array([0.25, 0.75]), jnp.array([0.75, 0.25]))))

    for kern in (smc.PMMH(distilled(law2)), smc.PMMH(distilled(law2), proposal=flip)):
        assert check_pmmh(kern.bind(prior, (YS2,)).step, law2, YS2) == []


@ppl.model
def lopsided(tr):  # an asymmetric proposal: q(1 | 0) = 3/4, q(0 | 1) = 1/2
    ppl.sample("theta", dist.Categorical(probs=jnp.where(tr.choices["theta"] == 0, jnp.array([0.25, 0.75]), jnp.array([0.5, 0.5]))))


def _pmmh_asymmetric_problems():
    law = evidence_law(YS1)
    return check_pmmh(smc.PMMH(distilled(law), proposal=lopsided).bind(prior, (YS1,)).step, law, YS1)


@pytest.mark.exact
def test_pmmh_with_an_asymmetric_proposal():
    assert _pmmh_asymmetric_problems() == []


@pytest.mark.exact
def test_planted_bug_pmmh_with_half_its_hastings_term(monkeypatch):
    # the reverse proposal density q(θ | θ') dropped from the ratio
    plant(monkeypatch, "inference/smc/pmcmc.py", ("w = w + rev.log_density - fwd.log_density", "w = w - fwd.log_density"))
    problems = _pmmh_asymmetric_problems()
    assert problems and all("π̄K" in p for p in problems)


@pytest.mark.exact
def test_planted_bug_pmmh_recomputing_the_current_estimate_fails():
    law = evidence_law(YS1)
    est = distilled(law)
    bound = smc.PMMH(est).bind(prior, (YS1,))
    problems = check_pmmh(mcwm(bound, est, YS1), law, YS1)
    assert problems and all("π̄K" in p for p in problems)


@pytest.mark.exact
def test_planted_bug_pmmh_with_a_renormalised_filter_fails(monkeypatch):
    monkeypatch.setattr(blocks, "resampled_log_weights", lambda lw, a: jnp.zeros_like(lw))
    law = evidence_law(YS2)
    bound = smc.PMMH(distilled(law)).bind(prior, (YS2,))
    problems = check_pmmh(bound.step, law, YS2)
    assert any("θ-marginal" in p for p in problems)


def test_pmmh_runs_under_jit_and_vmap_as_an_mcmc_kernel():
    bound = smc.PMMH(pf_log_evidence).bind(prior, (YS2,))
    keys = jax.random.split(jax.random.key(0), 4)

    @jax.jit
    def run(keys):
        s = jax.vmap(bound.init)(keys)
        s, info = jax.vmap(bound.step)(keys, s)
        return s, info

    s, info = run(keys)
    assert s.log_evidence.shape == (4,) and info["accept_prob"].shape == (4,)
    assert bool(jnp.all(jnp.isfinite(s.log_evidence)))


# ---------------------------------------------------------------------------------------------
# particle Gibbs


HMM0 = hmm_step(0)


@ppl.model
def hmm0(ys):
    ppl.scan(HMM0, jnp.asarray(-1), xs=ys, name="hmm")


def _pg_kernel(conditional=True, ancestor_sampling=False):
    def kernel(key, tr):
        ref = {"hmm/s": jnp.asarray(tr.choices["hmm/s"])}
        if conditional:
            bound = smc.ParticleGibbs(init=jnp.asarray(-1), num_particles=2, name="hmm",
                                      ancestor_sampling=ancestor_sampling).bind(HMM0, (YS2,))
            return bound.step(key, smc.PGState(ref))[0].path
        return pmcmc.conditional_smc(key, HMM0, jnp.asarray(-1), YS2, 2, ref, name="hmm", conditional=False)[0]

    return kernel


def _path_key(path):
    return Choices({"hmm/s": tuple(int(v) for v in np.asarray(path["hmm/s"])), "hmm/y": tuple(int(v) for v in YS2)})


@pytest.mark.exact
def test_particle_gibbs_leaves_the_path_posterior_invariant():
    law = semantics.laws.invariant(_pg_kernel(), hmm0, YS2, state_key=_path_key)
    law.assert_()
    # and it mixes: from every path, every other path is reachable in one step
    assert np.all(law.details["matrix"].K > 0)


@pytest.mark.exact
def test_planted_bug_conditional_smc_reference_descends_from_the_wrong_particle(monkeypatch):
    # the retained particle's ancestor pinned to the last particle instead of to itself (0)
    plant(monkeypatch, "inference/smc/pmcmc.py", ("drawn = jnp.concatenate([jnp.zeros((N - n_free,), jnp.int32), drawn])",
                                                  "drawn = jnp.concatenate([jnp.full((N - n_free,), N - 1, jnp.int32), drawn])"))
    law = semantics.laws.invariant(_pg_kernel(), hmm0, YS2, state_key=_path_key)
    assert not law.ok


@pytest.mark.exact
def test_planted_bug_particle_gibbs_without_conditioning_fails():
    law = semantics.laws.invariant(_pg_kernel(conditional=False), hmm0, YS2, state_key=_path_key)
    assert not law.ok


@pytest.mark.exact
def test_pgas_leaves_the_path_posterior_invariant():
    law = semantics.laws.invariant(_pg_kernel(ancestor_sampling=True), hmm0, YS2, state_key=_path_key)
    law.assert_()
    assert np.all(law.details["matrix"].K > 0)
    # ancestor sampling moves the reference's early states more often than plain particle Gibbs
    plain = semantics.laws.invariant(_pg_kernel(), hmm0, YS2, state_key=_path_key)
    assert np.trace(law.details["matrix"].K) < np.trace(plain.details["matrix"].K)


@pytest.mark.exact
def test_planted_bug_pgas_ancestor_weights_without_the_transition_fail(monkeypatch):
    # the reference's ancestor drawn from the filtering weights alone (p(x*_t | x_{t-1}^i) dropped)
    monkeypatch.setattr(pmcmc, "_ancestor_logits", lambda lw, logp: lw)
    law = semantics.laws.invariant(_pg_kernel(ancestor_sampling=True), hmm0, YS2, state_key=_path_key)
    assert not law.ok


@ppl.model
def s0_model():
    return ppl.sample("s0", dist.Categorical(probs=INIT))


def step_from(prev, y_t):
    s = ppl.sample("s", dist.Categorical(probs=TRANS[prev]))
    ppl.sample("y", dist.Categorical(probs=EMIT[0][s]), obs=y_t)
    return s, s


@ppl.model
def hmm_with_init(ys):
    ppl.scan(step_from, s0_model(), xs=ys, name="hmm")


def _init_path_key(path):
    return Choices({"s0": int(np.asarray(path["s0"])), "hmm/s": tuple(int(v) for v in np.asarray(path["hmm/s"])),
                    "hmm/y": tuple(int(v) for v in YS2)})


def _pgas_with_init_law():
    bound = smc.ParticleGibbs(init=s0_model, num_particles=2, name="hmm", ancestor_sampling=True).bind(step_from, (YS2,))

    def kernel(key, tr):
        ref = {"s0": jnp.asarray(tr.choices["s0"]), "hmm/s": jnp.asarray(tr.choices["hmm/s"])}
        return bound.step(key, smc.PGState(ref))[0].path

    return semantics.laws.invariant(kernel, hmm_with_init, YS2, state_key=_init_path_key)


@pytest.mark.exact
def test_pgas_with_an_initial_model_leaves_the_path_posterior_invariant():
    law = _pgas_with_init_law()
    law.assert_()
    assert np.all(law.details["matrix"].K > 0)  # x_0 moves too


@pytest.mark.exact
def test_planted_bug_pgas_with_an_initial_model_and_weights_without_the_transition_fails(monkeypatch):
    monkeypatch.setattr(pmcmc, "_ancestor_logits", lambda lw, logp: lw)
    assert not _pgas_with_init_law().ok


def test_particle_gibbs_runs_under_jit():
    pg = smc.ParticleGibbs(init=jnp.asarray(-1), num_particles=8, name="hmm").bind(HMM0, (jnp.array([0, 1, 1, 0]),))
    s = pg.init(jax.random.key(0))
    s2, info = jax.jit(pg.step)(jax.random.key(1), s)
    assert s2.path["hmm/s"].shape == (4,)
    assert bool(jnp.isfinite(pg.log_density(s2)))
    pgas = smc.ParticleGibbs(init=jnp.asarray(-1), num_particles=4, name="hmm", ancestor_sampling=True)
    bound = pgas.bind(HMM0, (jnp.array([0, 1, 1, 0]),))
    s3, _ = jax.jit(bound.step)(jax.random.key(2), s2)
    assert s3.path["hmm/s"].shape == (4,) and bool(jnp.isfinite(bound.log_density(s3)))


def test_particle_gibbs_init_does_not_warn_about_its_starting_filter():
    # the starting path comes from one particle filter; with 2 particles over 36 steps its ESS
    # falls low, which said "degraded" on every init though the chain's health is judged later
    ys = jnp.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1] * 3)
    pg = smc.ParticleGibbs(init=jnp.asarray(-1), num_particles=2, name="hmm").bind(HMM0, (ys,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ppl.InferenceWarning)
        state = pg.init(jax.random.key(3))
    assert all(jnp.shape(v)[0] == 36 for v in state.path.values())
