"""The checked path is the shipped path: every block with an eager branch is run, on the same
random outcomes, down its eager branch (what the exact enumerator sees) and down its compiled
branch (``jnp.where``, ``lax.switch``, ``lax.cond``, ``vmap``, ``lax.scan``: what a user's
``jit`` runs), and the exact law is checked on the compiled program's outputs.

Mechanism (``semantics.enumerate.compiled_paths`` / ``check_compiled``):

1. The exact enumerator runs the block eagerly down every path of its finite random choices and
   records, for each ``ppl.randomness.draw``, its name, the data of the key it was drawn with,
   its value and its log-probability.
2. ``jax.jit`` of the *same* block is traced once under a non-eager interpreter (so
   ``requires_eager()`` is False and every block takes the branch production takes).  Each draw
   there reads its value from a table passed as an argument, looked up by (name, shape, key
   data): under ``vmap`` and ``lax`` loops each particle's or step's own key picks its own row,
   so the compiled step is evaluated on every outcome vector of the eager enumeration.  Each
   executed draw reports (``jax.debug.callback``) the row it used and the log-probability of
   the value under the *compiled* program's distribution.
3. On every path the compiled program must make every draw the eager path makes, with the same
   log-probability (so both programs put the same weight on the path), and return the same
   output (states, weights, infos: integers and booleans exactly, floats to 1e-10).

So each test below is a per-block "same transition on the same randomness" check (eager vs
compiled, exhaustively over the finite outcomes), and where the block has a law the law is then
checked on the compiled outputs weighted by the path probabilities: the exact law of the jitted
program (πK = π and a transition that moves for kernels; E[μ̂_out] = μ̂_in and Ẑ kept for
resampling; E[Ẑ] = Z, with Z from the independent forward algorithm, for the particle filter).
Keys handed out by the enumerator are guarded (``ppl.randomness.guarded_key``): ``jax.random``
sampling from them raises, so no randomness escapes the table (tests in
``test_semantics_enumerate.py``).
"""

from __future__ import annotations

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from inference import mcmc, smc
from inference.mcmc._base import phase_step
from inference.mcmc.trace_kernels import TraceState
from inference.smc.particles import Particles
from ppl import dist
from semantics.measure import Choices

E = importlib.import_module("semantics.enumerate")

pytestmark = [pytest.mark.exact]

SCHEMES = ["multinomial", "systematic", "stratified", "residual"]


# ---------------------------------------------------------------------------------------------
# MCMC: select (MH accept), mixture (lax.switch), cycle, Gibbs (vmap over candidates)


@ppl.model
def tiny():
    """z: two Bernoulli coins (one batched site, 4 joint values); c: a coin; x observed."""
    z = ppl.sample("z", dist.Bernoulli(probs=jnp.array([0.3, 0.6])))
    c = ppl.sample("c", dist.Bernoulli(probs=0.4))
    p = jnp.where(c == 1, 0.9, 0.3) * jnp.where(z[0] == z[1], 1.0, 0.5) * jnp.where(z[1] == c, 1.0, 0.75)
    ppl.sample("x", dist.Bernoulli(probs=p), obs=1)


def _states(model, compiled=False):
    """The states of `model` (atoms of its exact measure), the normalised target π, and one
    representative trace of each: from the eager enumeration, or (``compiled``) traces made by
    the jitted ``model.simulate``, whose union structure (every branch's sites, with active
    flags) is what a user's compiled chain carries."""
    target = semantics.enumerate(model)
    states = list(target.atoms)
    pi = np.array([math.exp(target.log_weight(s)) for s in states])
    if compiled:
        traces = [cp.compiled for cp in E.compiled_paths(lambda key: model.simulate(key))]
    else:
        traces = [tr for tr, _, _, _ in E.enumerate_traces(model)]
    reps = {}
    for tr in traces:
        reps.setdefault(E.trace_key(tr), tr)
    return states, [reps[s] for s in states], pi / pi.sum()


def _same_trace(eager, compiled):
    """Eager and compiled traces may differ in representation (the compiled one keeps every
    branch's sites, inactive ones flagged); the state and its density must be the same."""
    assert E.trace_key(eager) == E.trace_key(compiled), (E.trace_key(eager), E.trace_key(compiled))
    assert abs(float(eager.log_density) - float(compiled.log_density)) < 1e-12


def compiled_kernel_law(step, model, reversible=True, compiled_states=False):
    """Eager and compiled steps agree on every outcome from every state; then the exact law
    (πK = π, detailed balance when `reversible`, a transition that moves) of the *compiled* K.

    With ``compiled_states`` the chain starts from jit-made traces and the outputs are compared
    as states (trace_key and log density) rather than leaf by leaf."""
    states, reps, pi = _states(model, compiled=compiled_states)
    index = {s: i for i, s in enumerate(states)}
    if compiled_states:
        runs = E.compiled_paths_each(step, [(tr,) for tr in reps])
    else:
        runs = E.check_compiled_each(step, [(tr,) for tr in reps])
    n = len(states)
    K = np.zeros((n, n))
    for i, paths in enumerate(runs):
        for cp in paths:
            out = cp.compiled[0] if isinstance(cp.compiled, tuple) else cp.compiled
            if compiled_states:
                eager = cp.path.value[0] if isinstance(cp.path.value, tuple) else cp.path.value
                _same_trace(eager.trace, out.trace)
            K[i, index[E.trace_key(out.trace)]] += math.exp(cp.path.log_prob)
    assert np.max(np.abs(K.sum(axis=1) - 1)) < 1e-12
    assert np.max(np.abs(pi @ K - pi)) < 1e-12, "the compiled kernel does not leave π invariant"
    if reversible:
        flow = pi[:, None] * K
        assert np.max(np.abs(flow - flow.T)) < 1e-12, "the compiled kernel is not reversible"
    assert np.max(np.abs(K - np.eye(n))) > 0.05, "the compiled kernel does not move"
    return K


KERNELS = {
    # lax.switch over an MH step (select: jnp.where) and a Gibbs step on a batched site (vmap
    # over its 4 joint candidates); unequal weights, so picking the wrong component is visible
    "mixture": (mcmc.mixture([mcmc.Regenerate("c"), mcmc.Gibbs("z")], [0.25, 0.75]), True),
}
# (a cycle has no branch of its own: it runs inside the phase-step test below)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_compiled_step_equals_eager_step_and_keeps_the_law(name):
    kernel, reversible = KERNELS[name]
    bound = kernel.bind(tiny, (), {})
    compiled_kernel_law(lambda key, tr: bound.step(key, TraceState(tr)), tiny, reversible=reversible)


@pytest.mark.slow
def test_phase_step_with_a_traced_warm_flag_equals_the_eager_one():
    """The driver's one program serves warmup and sampling with a traced ``warm`` (lax.cond in
    phase_step, the cycle's and mixture's own phase_step); eagerly it is a Python choice."""
    bound = mcmc.mixture([mcmc.cycle(mcmc.Gibbs("c"), mcmc.Regenerate("z")), mcmc.cycle(mcmc.Regenerate("c"), mcmc.Gibbs("z"))], [0.5, 0.5]).bind(tiny, (), {})

    def step(key, tr):
        # a flag that is concrete eagerly and traced under jit (the key's data is an argument)
        warm = jax.random.key_data(key)[0] == 0
        return phase_step(bound, key, TraceState(tr), jnp.asarray(3), warm)

    _, reps, _ = _states(tiny)
    E.check_compiled_each(step, [(reps[3],)])


@ppl.model
def switching():
    """The set of addresses depends on k ({k, a} or {k, b}), through ppl.cond so it compiles."""
    k = ppl.sample("k", dist.Bernoulli(probs=0.4))
    p = ppl.cond(
        k == 1,
        lambda: jnp.array([0.1, 0.5, 0.9])[ppl.sample("a", dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5])))],
        lambda: jnp.where(ppl.sample("b", dist.Bernoulli(probs=0.7)) == 1, 0.3, 0.6),
    )
    ppl.sample("y", dist.Bernoulli(probs=p), obs=1)


@ppl.model
def jump_k(tr):
    """Switch branch and propose the new branch's site from a non-prior proposal."""
    k_new = ppl.sample("k", dist.Bernoulli(probs=jnp.where(tr["k"] == 1, 0.0, 1.0)))
    ppl.cond(
        k_new == 1,
        lambda: ppl.sample("a", dist.Categorical(probs=jnp.array([0.5, 0.25, 0.25]))),
        lambda: ppl.sample("b", dist.Bernoulli(probs=0.2)),
    )


@pytest.mark.slow
@pytest.mark.parametrize("kernel", [mcmc.Regenerate("k"), mcmc.MH(jump_k)], ids=["regenerate-k", "mh-jump"])
def test_structure_changing_moves_under_jit_keep_the_law(kernel):
    """Moves that change the set of addresses, from the union-structure traces jit makes: the
    compiled MH ratio must count a site the proposal sampled only where it is active (it once
    counted every branch's sites of a ppl.cond proposal, so jit skipped the Hastings correction
    for a removed site that the reverse move re-proposes: 0.3 of the right acceptance)."""
    bound = kernel.bind(switching, (), {})
    compiled_kernel_law(lambda key, tr: bound.step(key, TraceState(tr)), switching, compiled_states=True)


# ---------------------------------------------------------------------------------------------
# SMC: ESS-triggered resampling (lax.cond), rejuvenation (vmap over particles), the particle
# filter (lax.scan), conditional SMC


def _population(lw):
    N = len(lw)
    states = {"x": jnp.arange(N, dtype=jnp.int32) * 10, "y": jnp.linspace(0.0, 1.0, N)}
    return Particles(states, jnp.asarray(lw, dtype=jnp.float64), jnp.arange(N, dtype=jnp.int32))


POPULATIONS = {
    # ESS < ρN: resampled
    "uneven": (np.log([0.125, 0.375, 0.25, 0.25]), 0.95),
    # ESS = N = ρN exactly (equal weights, ρ = 1): not resampled (the trigger is ESS < ρN)
    "tie": (np.zeros(4), 1.0),
    # ESS just above ρN: not resampled
    "above": (np.log([0.25, 0.25, 0.25, 0.25 * 1.2]), 0.99),
    # two particles, the second resampled away half the time
    "two": (np.log([0.75, 0.25]), 0.9),
}


# every scheme on every population, but multinomial on the uneven four (4^4 ancestor vectors,
# slow to enumerate; multinomial's lax.cond is covered by the other three populations)
RESAMPLE_CASES = [(s, c) for c in POPULATIONS for s in SCHEMES if (s, c) != ("multinomial", "uneven")]


@pytest.mark.parametrize("scheme,case", RESAMPLE_CASES)
def test_ess_triggered_resampling_compiled_equals_eager_and_is_unbiased(scheme, case):
    lw, rho = POPULATIONS[case]
    N = len(lw)

    def block(key, lw):
        return smc.resample(key, _population(lw), scheme, ess_threshold=rho)

    paths = E.check_compiled(block, jnp.asarray(lw))
    W = np.exp(lw) / np.exp(lw).sum()
    ess = 1.0 / np.sum(W**2)
    expect_resampled = ess < rho * N
    mean_w = np.mean(np.exp(lw))
    est: dict = {}
    for cp in paths:
        out, info = cp.compiled
        assert bool(info["resampled"]) == expect_resampled
        assert abs(float(info["ess"]) - ess) < 1e-12
        w = np.exp(np.asarray(out.log_weights))
        assert abs(w.mean() / mean_w - 1) < 1e-12, "Ẑ changed"  # Ẑ_out = Ẑ_in on every path
        if not expect_resampled:
            np.testing.assert_array_equal(np.asarray(out.ancestors), np.arange(N))
            np.testing.assert_array_equal(w, np.exp(lw))
        for i in range(N):
            atom = (int(out.states["x"][i]), float(out.states["y"][i]))
            est[atom] = est.get(atom, 0.0) + math.exp(cp.path.log_prob) * w[i] / N
    # E[μ̂_out] = μ̂_in, on the compiled outputs
    target = {(10 * i, float(np.linspace(0.0, 1.0, N)[i])): np.exp(lw[i]) / N for i in range(N)}
    assert set(est) <= set(target)
    for a, m in target.items():
        assert abs(est.get(a, 0.0) - m) < 1e-12, (a, est.get(a), m)


@pytest.mark.slow
def test_rejuvenate_over_particles_compiled_equals_eager():
    """vmap over particles (production) vs a Python loop (enumerator), a mixture kernel whose
    lax.switch becomes a select under vmap."""
    _, reps, _ = _states(tiny)
    pop = Particles(jax.tree.map(lambda *v: jnp.stack(v), reps[0], reps[5]), jnp.log(jnp.array([0.5, 1.5])), jnp.arange(2, dtype=jnp.int32))
    bound = mcmc.mixture([mcmc.Regenerate("c"), mcmc.Regenerate("z")], [0.25, 0.75]).bind(tiny, (), {})

    def block(key, p):
        out, info = smc.rejuvenate(key, p, bound)
        return out.log_weights, dict(out.states.latent), info

    E.check_compiled(block, pop)


def _hmm_step(step_model=True):
    init = jnp.array([0.6, 0.4])
    trans = jnp.array([[0.7, 0.3], [0.2, 0.8]])
    emit = jnp.array([[0.9, 0.1], [0.3, 0.7]])

    def step(prev, y_t):
        s = ppl.sample("s", dist.Categorical(probs=jnp.where(prev < 0, init, trans[jnp.maximum(prev, 0)])))
        ppl.sample("y", dist.Categorical(probs=emit[s]), obs=y_t)
        return s, s

    return step, (init, trans, emit)


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [None, 0.9])
def test_particle_filter_compiled_equals_eager_and_is_unbiased(threshold):
    step, (init, trans, emit) = _hmm_step()
    ys = jnp.array([0, 1])

    def block(key, ys):
        r = smc.particle_filter(key, step, jnp.asarray(-1), ys, 2, scheme="stratified", ess_threshold=threshold, name="hmm", record="all")
        return r.log_evidence, r.particles.log_weights, r.paths, r.ess, r.resampled, r.ancestors

    paths = E.check_compiled(block, ys)
    EZ = math.fsum(math.exp(cp.path.log_prob + float(cp.compiled[0])) for cp in paths)
    Z = math.exp(semantics.oracles.hmm_forward(np.asarray(init), np.asarray(trans), np.asarray(emit), [0, 1]).log_evidence)
    assert abs(EZ / Z - 1) < 1e-12, EZ / Z


@pytest.mark.slow
def test_conditional_smc_compiled_equals_eager():
    """Particle Gibbs' sweep: lax.scan with the first step's ancestors masked by jnp.where."""
    step, _ = _hmm_step()
    ys = jnp.array([0, 1])
    bound = smc.ParticleGibbs(init=jnp.asarray(-1), num_particles=2, name="hmm", ancestor_sampling=True).bind(step, (ys,))

    def block(key, s):
        st, info = bound.step(key, smc.PGState({"hmm/s": s}))
        return st.path, info

    E.check_compiled(block, jnp.array([0, 1], dtype=jnp.int32))


THETA_EMIT = jnp.array([[[0.9, 0.1], [0.3, 0.7]], [[0.6, 0.4], [0.2, 0.8]]])  # [θ, s, y]


@ppl.model
def theta_prior(ys):
    ppl.sample("theta", dist.Categorical(probs=jnp.array([0.25, 0.75])))


@ppl.model
def theta_flip(tr):
    ppl.sample("theta", dist.Categorical(probs=jnp.where(tr.choices["theta"] == 0, jnp.array([0.25, 0.75]), jnp.array([0.75, 0.25]))))


def _pf_log_evidence(key, theta, ys):
    def step(prev, y_t):
        s = ppl.sample("s", dist.Categorical(probs=jnp.array([0.6, 0.4])))
        ppl.sample("y", dist.Categorical(probs=THETA_EMIT[theta["theta"]][s]), obs=y_t)
        return s, s

    return smc.particle_filter(key, step, jnp.asarray(-1), ys, 2, scheme="systematic").log_evidence


@pytest.mark.slow
def test_pmmh_compiled_step_equals_eager():
    """PMMH's own select (jnp.where over (θ, Ẑ)) around a particle filter, from both θ."""
    ys = jnp.array([1])
    bound = smc.PMMH(_pf_log_evidence, proposal=theta_flip).bind(theta_prior, (ys,))
    states = [
        smc.PMMHState(theta_prior.generate(jax.random.key(0), {"theta": jnp.asarray(th)}, ys)[0], jnp.asarray(math.log(0.3 + 0.2 * th)))
        for th in (0, 1)
    ]
    runs = E.check_compiled_each(lambda key, s: bound.step(key, s), [(s,) for s in states])
    # the move is a real one: from each θ, some path accepts the other θ
    for paths in runs:
        assert len({int(cp.compiled[0].trace.choices["theta"]) for cp in paths}) == 2


# ---------------------------------------------------------------------------------------------
# the language: ppl.scan (lax.scan) and ppl.switch (lax.switch) inside a model


@ppl.model
def scanned():
    def body(prev, _):
        k = ppl.sample("k", dist.Bernoulli(probs=jnp.where(prev == 1, 0.75, 0.25)))
        v = ppl.switch(k, [lambda: ppl.sample("a", dist.Bernoulli(probs=0.2)), lambda: ppl.sample("b", dist.Bernoulli(probs=0.6))])
        return k, v

    _, vs = ppl.scan(body, jnp.asarray(0), length=2, name="t")
    ppl.sample("y", dist.Bernoulli(probs=jnp.where(vs.sum() == 1, 0.8, 0.4)), obs=1)


@pytest.mark.slow
def test_scan_and_switch_compiled_equal_eager():
    """Eager: a Python loop and only the taken branch; compiled: lax.scan and lax.switch over the
    union of the branches' sites with active flags.  Same atoms and weights on every path."""

    def run(key):
        return scanned.simulate(key)

    paths = E.compiled_paths(run)
    pairs = []
    for cp in paths:
        eager, compiled = cp.path.value, cp.compiled
        assert E.trace_key(eager) == E.trace_key(compiled)
        assert abs(float(eager.log_density) - float(compiled.log_density)) < 1e-12
        pairs.append((E.trace_key(compiled), float(compiled.log_density), None))
    # the compiled program's measure is the model's
    semantics.Measure.from_pairs(pairs).assert_equal(semantics.enumerate(scanned), tol=1e-12)


# ---------------------------------------------------------------------------------------------
# the laws of semantics.laws, unchanged, on the compiled program


@ppl.model
def pair():
    a = ppl.sample("a", dist.Bernoulli(probs=0.3))
    b = ppl.sample("b", dist.Bernoulli(probs=jnp.where(a == 1, 0.8, 0.4)))
    ppl.sample("y", dist.Bernoulli(probs=jnp.where(a == b, 0.9, 0.2)), obs=1)


@pytest.mark.slow
def test_properly_weighted_and_unbiased_on_the_compiled_init_and_resample():
    """init from the prior (vmap over particles) and ESS-triggered resampling (lax.cond):
    inside ``compiled_programs()`` the laws of ``semantics.laws``, unchanged, see the outputs of
    the jitted block."""
    N = 2

    def block(key):
        k1, k2 = jax.random.split(key)
        p = smc.init(k1, pair, N)
        p, _ = smc.resample(k2, p, "multinomial", ess_threshold=0.9)
        return p.states.choices, p.log_weights

    def atoms(out):
        ch, lw = out
        return [(Choices({k: int(np.asarray(v)[i]) for k, v in ch.items()}), float(lw[i]) - math.log(N)) for i in range(N)]

    def log_z(out):
        return float(jax.nn.logsumexp(out[1]) - math.log(N))

    with E.compiled_programs():
        semantics.laws.properly_weighted(block, pair, atoms=atoms).assert_()
        semantics.laws.unbiased_evidence(block, pair, log_evidence=log_z).assert_()
