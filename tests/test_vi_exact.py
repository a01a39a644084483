"""Exact checks of the VI gradient estimators and objectives on discrete guides.

The shipped estimator (``Objective.grad``) runs under the exact enumerator of ``semantics``:
E[ĝ] is an exact sum over every path of the estimator's own random choices, compared (law
``unbiased_gradient``) with the exact gradient of the objective.  The reference
L(u) = E[F] is written out by hand in this module (the model's and guide's densities in closed
form, each objective an exact sum over the K-tuples of the guide's 6 atoms, plain jax) and its
gradient is ``jax.grad`` of that sum: no VI code computes the reference.  The library's values
are checked against the same hand-written sums.  Planted bugs (a score-function estimator without its score term, a
baseline that depends on the particle's own sample) must fail the same check.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from inference import vi
from inference.vi import strategies as vi_strategies
import _vi_twins as twins
from ppl import dist

pytestmark = [pytest.mark.exact]

Y = 0.8


@ppl.model
def model(y):
    theta = ppl.param("theta", 0.5)
    a = ppl.sample("a", dist.Bernoulli(probs=0.3))
    b = ppl.sample("b", dist.Categorical(probs=jnp.array([0.2, 0.5, 0.3])))
    ppl.sample("y", dist.Normal(a + theta * b, 1.0), obs=y)


@ppl.model
def guide(y):
    la = ppl.param("la", 0.2)
    lb = ppl.param("lb", jnp.array([0.1, -0.3, 0.4]))
    a = ppl.sample("a", dist.Bernoulli(logits=la))
    ppl.sample("b", dist.Categorical(logits=lb + 0.7 * a))


SAMPLE_ALL = {"a": "reinforce", "b": "reinforce"}
ENUM_ALL = {"a": "enum", "b": "enum"}


def enumerated_value(obj: vi.Objective, u: dict) -> float:
    """E[F] by the exact enumerator of semantics, every site drawn by plain sampling."""
    ref = obj.with_strategies(SAMPLE_ALL)
    paths = semantics.enumerate_paths(lambda key: ref.estimate(key, u, Y))
    return math.fsum(math.exp(p.log_prob) * float(p.value) for p in paths)


_JIT: dict = {}


def exact_value(obj: vi.Objective, u: dict) -> float:
    """E[F] with every guide site summed over its support (no randomness left), compiled.

    Checked against :func:`enumerated_value` in ``test_enumerated_values_agree``."""
    if obj.name not in _JIT:
        ref = obj.with_strategies(ENUM_ALL)
        _JIT[obj.name] = jax.jit(lambda uu: ref.estimate(jax.random.key(0), uu, Y))
    return float(_JIT[obj.name](u))


# -- the reference: every objective written out by hand ------------------------------------------
#
# The model and guide above, their densities in closed form (plain jax, no ppl / inference.vi):
# z = (a, b) takes 6 values; each objective is an exact sum over the K-tuples of guide draws, and
# its gradient is jax.grad of that sum (an analytic gradient, not a finite difference).

ATOM_A = jnp.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
ATOM_B = jnp.array([0, 1, 2, 0, 1, 2])
PRIOR_A = jnp.log(jnp.array([0.7, 0.3]))
PRIOR_B = jnp.log(jnp.array([0.2, 0.5, 0.3]))


def hand_log_p(u):
    """log p(y = Y, a, b) for the 6 atoms."""
    mean = ATOM_A + u["theta"] * ATOM_B
    return PRIOR_A[ATOM_A.astype(int)] + PRIOR_B[ATOM_B] - 0.5 * math.log(2 * math.pi) - 0.5 * (Y - mean) ** 2


def hand_log_q(u):
    """log q(a, b) for the 6 atoms: a ~ Bernoulli(sigmoid(la)), b | a ~ Categorical(softmax(lb + 0.7 a))."""
    log_qa = jnp.where(ATOM_A == 1, jax.nn.log_sigmoid(u["la"]), jax.nn.log_sigmoid(-u["la"]))
    log_qb = jax.nn.log_softmax(u["lb"][None, :] + 0.7 * ATOM_A[:, None], axis=-1)[jnp.arange(6), ATOM_B]
    return log_qa + log_qb


def _tuples(K):
    return np.array(list(itertools.product(range(6), repeat=K)))  # (6^K, K) atom indices


def hand_value(name: str, u: dict) -> jax.Array:
    """E[F] of the named objective, summed over every K-tuple of atoms."""
    lp, lq = hand_log_p(u), hand_log_q(u)
    lw = lp - lq
    if name == "elbo":
        return jnp.sum(jnp.exp(lq) * lw)
    K = {"iwae2": 2, "vimco2": 2, "renyi": 2, "p_wake2": 2}[name]
    idx = _tuples(K)
    prob = jnp.exp(jnp.sum(lq[idx], axis=1))
    if name == "renyi":  # α = 0.5
        return jnp.sum(prob * (jax.nn.logsumexp(0.5 * lw[idx], axis=1) - math.log(K)) / 0.5)
    return jnp.sum(prob * (jax.nn.logsumexp(lw[idx], axis=1) - math.log(K)))


def hand_grad(name: str, u: dict) -> dict:
    """∇ E[F], by jax.grad of :func:`hand_value` (p-wake: the IWAE gradient for θ only)."""
    if name == "p_wake2":
        g = jax.grad(lambda th: hand_value("iwae2", {**u, "theta": th}))(u["theta"])
        return {k: (np.asarray(g) if k == "theta" else np.zeros_like(np.asarray(v))) for k, v in u.items()}
    return {k: np.asarray(v) for k, v in jax.grad(lambda uu: hand_value(name, uu))(dict(u)).items()}


_CACHE: dict = {}


def params_and_truth(name: str):
    if name not in _CACHE:
        obj = OBJECTIVES[name]()
        u = obj.init_params(jax.random.key(0), Y)
        _CACHE[name] = (u, hand_grad(name, u))
    return _CACHE[name]


OBJECTIVES = {
    "elbo": lambda: vi.elbo(model, guide),
    "iwae2": lambda: vi.iwae(model, guide, 2),
    "vimco2": lambda: vi.vimco(model, guide, 2),
    "renyi": lambda: vi.renyi(model, guide, alpha=0.5, num_particles=2),
    "p_wake2": lambda: vi.p_wake(model, guide, 2),
}

CASES = [
    ("elbo", {"a": "reinforce", "b": "reinforce"}),
    ("elbo", {"a": "enum", "b": "enum"}),
    ("elbo", {"a": "reinforce", "b": "enum"}),
    ("elbo", {"a": "mvd", "b": "enum"}),
    ("elbo", {"a": "enum", "b": "mvd"}),
    ("iwae2", {"a": "reinforce", "b": "reinforce"}),
    ("iwae2", {"a": "reinforce", "b": "enum"}),
    ("vimco2", {"a": "reinforce", "b": "reinforce"}),
    ("renyi", {"a": "reinforce", "b": "reinforce"}),
    ("p_wake2", {}),
]


def _case(n, s):
    ident = f"{n}-{'-'.join(s.values()) or 'default'}"
    slow = n != "elbo" or s == SAMPLE_ALL  # two particles, or two drawn sites: over ~5 s alone
    return pytest.param(n, s, id=ident, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("name,strategies", [_case(n, s) for n, s in CASES])
def test_expected_gradient_is_exact(name, strategies):
    u, truth = params_and_truth(name)
    obj = OBJECTIVES[name]().with_strategies(strategies)
    res = semantics.unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], truth, tol=1e-6)
    assert res.ok, res.message


@pytest.mark.parametrize("name", ["elbo", "iwae2", "q_wake2"])
def test_enumerated_values_agree(name):
    """The library's value, under the enumerator (plain sampling) and with every site enumerated,
    equals the hand-written objective (q-wake: Σ_k w̃_k log q(z_k) summed by hand)."""
    obj = {**OBJECTIVES, "q_wake2": lambda: vi.q_wake(model, guide, 2)}[name]()
    u = obj.init_params(jax.random.key(0), Y)
    u = {**u, "la": u["la"] - 0.4}
    if name == "q_wake2":
        idx = _tuples(2)
        lq = hand_log_q(u)
        lw = hand_log_p(u) - lq
        hand = float(jnp.sum(jnp.exp(jnp.sum(lq[idx], axis=1)) * jnp.sum(jax.nn.softmax(lw[idx], axis=1) * lq[idx], axis=1)))
    else:
        hand = float(hand_value(name, u))
    assert enumerated_value(obj, u) == pytest.approx(hand, abs=1e-12)
    assert exact_value(obj, u) == pytest.approx(hand, abs=1e-12)


@pytest.mark.parametrize("name", ["vimco2", "renyi"])
def test_hand_values_of_the_other_objectives(name):
    u, _ = params_and_truth(name)
    assert exact_value(OBJECTIVES[name](), u) == pytest.approx(float(hand_value(name, u)), abs=1e-12)


@pytest.mark.slow
def test_strategy_from_the_guide_site_infer():
    @ppl.model
    def guide_infer(y):
        la = ppl.param("la", 0.2)
        lb = ppl.param("lb", jnp.array([0.1, -0.3, 0.4]))
        a = ppl.sample("a", dist.Bernoulli(logits=la), infer={"grad": "enum"})
        ppl.sample("b", dist.Categorical(logits=lb + 0.7 * a), infer={"grad": "mvd"})

    obj = vi.elbo(model, guide_infer)
    u, truth = params_and_truth("elbo")
    paths = semantics.enumerate_paths(lambda key: obj.grad(key, u, Y)[1])
    # a is enumerated (never drawn); b is drawn once per value of a, its MVD branches draw nothing
    assert {name for p in paths for name, _ in p.draws} == {"b"} and len(paths) == 9
    semantics.laws.assert_unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], truth, tol=1e-6)


@pytest.mark.slow
def test_leave_one_out_baseline_is_unbiased():
    u, truth = params_and_truth("elbo")
    obj = vi.elbo(model, guide).with_strategies(SAMPLE_ALL)
    est = lambda key: obj.grad(key, u, Y, num_samples=2, baseline="loo")[1]  # noqa: E731
    semantics.laws.assert_unbiased_gradient(est, truth, tol=1e-6)


def _q_wake_truth(u: dict, K: int = 2) -> dict:
    """E_{z_1..K ~ q}[Σ_k w̃_k ∇_φ log q_φ(z_k)], summed by hand over the K-tuples of atoms."""
    sg = jax.lax.stop_gradient
    idx = _tuples(K)

    def grad_term(uu):
        lq0 = sg(hand_log_q(uu))
        lw0 = sg(hand_log_p(uu)) - lq0
        prob = jnp.exp(jnp.sum(lq0[idx], axis=1))
        w = jax.nn.softmax(lw0[idx], axis=1)
        return jnp.sum(prob * jnp.sum(w * hand_log_q(uu)[idx], axis=1))

    return jax.grad(grad_term)(dict(u))


@pytest.mark.slow
def test_q_wake_and_rws_expected_gradients():
    obj = vi.q_wake(model, guide, 2)
    u = obj.init_params(jax.random.key(0), Y)
    qt = _q_wake_truth(u)
    qt = {k: (np.zeros(()) if k == "theta" else v) for k, v in qt.items()}
    semantics.laws.assert_unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], qt, tol=1e-9)
    # rws: p-wake's gradient for the model's parameter, q-wake's for the guide's
    _, pt = params_and_truth("p_wake2")
    both = {k: (pt[k] if k == "theta" else qt[k]) for k in qt}
    rws = vi.rws(model, guide, 2)
    semantics.laws.assert_unbiased_gradient(lambda key: rws.grad(key, u, Y)[1], both, tol=1e-6)


# -- planted bugs --------------------------------------------------------------------------------
#
# One subtle twin per estimation strategy and objective, each run through the same check
# (``unbiased_gradient`` against the hand-written gradient, tol 1e-6, the same keys) as its case.

sg = jax.lax.stop_gradient


def _score_of_first_element_only(monkeypatch):
    """reinforce: the score term of a Categorical site is log q(b) with its softmax normaliser
    detached (∇ log q = ∇ logit_b instead of ∇ logit_b − E[∇ logit])."""

    def bad(d, value, site):
        if type(d).__name__.startswith("Categorical"):
            return jnp.sum(jnp.take_along_axis(d.logits, value[..., None], -1)) - sg(jnp.sum(jax.nn.logsumexp(d.logits, -1)))
        return jnp.sum(d.log_prob(value))

    monkeypatch.setattr(vi_strategies, "_score_term", bad)


def _iwae_pathwise_surrogate(y):
    """IWAE written as Σ_k w̃_k log w_k with w̃ detached: right for reparameterised guides (its
    pathwise gradient is IWAE's), wrong for score-function sites (the learning signal is not
    the bound)."""
    lw = vi.particles(2, lambda: vi.log_weight(model, vi.sample(guide, y), y))
    return jnp.sum(sg(jax.nn.softmax(lw)) * lw)


def _renyi_without_its_factor(y):
    """Rényi (α = 0.5) without the 1/(1 − α) factor."""
    lw = vi.particles(2, lambda: vi.log_weight(model, vi.sample(guide, y), y))
    return jax.nn.logsumexp(0.5 * lw) - math.log(2)


def _p_wake_not_detached(y):
    """p-wake whose guide draws are not detached: the guide's parameters get IWAE's gradient."""
    lw = vi.particles(2, lambda: vi.log_weight(model, vi.sample(guide, y), y))
    return jax.nn.logsumexp(lw) - math.log(2)


TWINS = {
    # case (as in CASES) -> (how the bug is planted: a patch of the library, or a buggy program)
    "elbo-enum-enum": ("elbo", ENUM_ALL, twins.enum_weight_detached),
    "elbo-reinforce-enum": ("elbo", {"a": "reinforce", "b": "enum"}, twins.enum_weight_detached),
    "elbo-reinforce-reinforce": ("elbo", SAMPLE_ALL, _score_of_first_element_only),
    "elbo-mvd-enum": ("elbo", {"a": "mvd", "b": "enum"}, twins.mvd_weight_off),
    "elbo-enum-mvd": ("elbo", {"a": "enum", "b": "mvd"}, twins.mvd_weight_off),
    "iwae2-reinforce-reinforce": ("iwae2", SAMPLE_ALL, _iwae_pathwise_surrogate),
    # iwae2-reinforce-enum: its enum weights are the same code as elbo-reinforce-enum's (that
    # twin); running it on two particles costs ~1 min, so it is not repeated here.
    "renyi-reinforce-reinforce": ("renyi", SAMPLE_ALL, _renyi_without_its_factor),
    "p_wake2-default": ("p_wake2", {}, _p_wake_not_detached),
}
SLOW_TWINS = {"iwae2-reinforce-reinforce", "renyi-reinforce-reinforce", "p_wake2-default"}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_TWINS else c for c in TWINS]
)
def test_planted_twin_of_each_case_fails(case, monkeypatch):
    name, strategies, plant = TWINS[case]
    u, truth = params_and_truth(name)
    if plant.__code__.co_varnames[:1] == ("monkeypatch",):
        plant(monkeypatch)
        obj = OBJECTIVES[name]().with_strategies(strategies)
    else:
        obj = vi.Objective(plant, SAMPLE_ALL if strategies else {})
    res = semantics.unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], truth, tol=1e-6)
    assert not res.ok, f"the planted bug in {case} passed the check"


@pytest.mark.slow
def test_planted_twin_q_wake_weights_not_detached():
    """q-wake with the self-normalised weights not detached: the model's parameter gets a gradient."""
    obj = vi.q_wake(model, guide, 2)
    u = obj.init_params(jax.random.key(0), Y)
    qt = {k: (np.zeros(()) if k == "theta" else v) for k, v in _q_wake_truth(u).items()}

    def bad(y):
        lw, log_q = vi.objectives._q_wake_terms(model, guide, 2, (y,), {})
        return jnp.sum(jax.nn.softmax(lw) * log_q)

    res = semantics.unbiased_gradient(lambda key: vi.Objective(bad).grad(key, u, Y)[1], qt, tol=1e-9)
    assert not res.ok


def test_planted_bug_missing_score_term_fails(monkeypatch):
    u, truth = params_and_truth("elbo")
    obj = vi.elbo(model, guide).with_strategies(SAMPLE_ALL)
    twins.no_score(monkeypatch)
    res = semantics.unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], truth, tol=1e-6)
    assert not res.ok


@pytest.mark.slow
def test_planted_bug_baseline_depending_on_own_sample_fails():
    u, truth = params_and_truth("iwae2")

    def bad_vimco(y):
        lw = vi.particles(
            2,
            lambda: vi.log_weight(model, vi.sample(guide, y), y),
            baseline=lambda lw: lw,  # includes the particle's own weight: biased
        )
        return jax.nn.logsumexp(lw) - math.log(2)

    obj = vi.Objective(bad_vimco, SAMPLE_ALL)
    res = semantics.unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], truth, tol=1e-6)
    assert not res.ok
    # the same program with VIMCO's leave-one-out baselines is unbiased
    good = vi.Objective(
        lambda y: jax.nn.logsumexp(
            vi.particles(2, lambda: vi.log_weight(model, vi.sample(guide, y), y), baseline=vi.vimco_baselines)
        )
        - math.log(2),
        SAMPLE_ALL,
    )
    semantics.laws.assert_unbiased_gradient(lambda key: good.grad(key, u, Y)[1], truth, tol=1e-6)


# -- objective values ----------------------------------------------------------------------------


def _log_z() -> float:
    mu = semantics.enumerate(ppl.substitute(model, {"theta": 0.5}), Y)
    return math.log(mu.total_mass())


def test_elbo_value_is_exact_and_below_log_z():
    obj = vi.elbo(model, guide)
    u = obj.init_params(jax.random.key(0), Y)
    # by hand: Σ_z q(z) (log p(y, z) − log q(z))
    hand = 0.0
    for a in (0, 1):
        for b in (0, 1, 2):
            z = {"a": jnp.asarray(a), "b": jnp.asarray(b)}
            lq = float(guide.log_density(z, Y))
            lp = float(ppl.substitute(model, {"theta": 0.5}).log_density(z, Y))
            hand += math.exp(lq) * (lp - lq)
    assert enumerated_value(obj, u) == pytest.approx(hand, abs=1e-12)
    # with every site enumerated the estimate is the exact value, without randomness
    enum = obj.with_strategies({"a": "enum", "b": "enum"})
    assert float(enum.estimate(jax.random.key(3), u, Y)) == pytest.approx(hand, abs=1e-12)
    assert hand < _log_z()


def _iwae_by_multinomials(u: dict, K: int) -> float:
    """E[log (1/K) Σ_k w_k] from the 6 atoms of one guide draw, summed over all K-tuples."""
    atoms = []
    for a in (0, 1):
        for b in (0, 1, 2):
            z = {"a": jnp.asarray(a), "b": jnp.asarray(b)}
            lq = float(ppl.substitute(guide, {"la": u["la"], "lb": u["lb"]}).log_density(z, Y))
            lp = float(ppl.substitute(model, {"theta": u["theta"]}).log_density(z, Y))
            atoms.append((math.exp(lq), lp - lq))
    total = 0.0
    for tup in itertools.product(atoms, repeat=K):
        prob = math.prod(q for q, _ in tup)
        total += prob * (float(np.logaddexp.reduce([lw for _, lw in tup])) - math.log(K))
    return total


def test_iwae_increases_to_log_z():
    u = vi.elbo(model, guide).init_params(jax.random.key(0), Y)
    values = [_iwae_by_multinomials(u, K) for K in (1, 2, 3, 4)]
    log_z = _log_z()
    assert values[0] == pytest.approx(exact_value(vi.elbo(model, guide), u), abs=1e-12)
    assert values[1] == pytest.approx(exact_value(vi.iwae(model, guide, 2), u), abs=1e-12)
    assert values[0] < values[1] < values[2] < values[3] < log_z
    # VIMCO has IWAE's value; Rényi with α = 0 is IWAE
    assert exact_value(vi.vimco(model, guide, 2), u) == pytest.approx(values[1], abs=1e-12)
    assert exact_value(vi.renyi(model, guide, 0.0, 2), u) == pytest.approx(values[1], abs=1e-12)


def test_elbo_equals_log_z_at_the_exact_posterior():
    mu = semantics.enumerate(ppl.substitute(model, {"theta": 0.5}), Y).normalize()
    post = {(int(c["a"]), int(c["b"])): mu.prob(c) for c in mu.atoms}

    @ppl.model
    def exact_guide(y):
        pa = post[(1, 0)] + post[(1, 1)] + post[(1, 2)]
        a = ppl.sample("a", dist.Bernoulli(probs=pa))
        pb = jnp.where(a == 1, jnp.array([post[(1, k)] for k in range(3)]) / pa, jnp.array([post[(0, k)] for k in range(3)]) / (1 - pa))
        ppl.sample("b", dist.Categorical(probs=pb))

    obj = vi.elbo(ppl.substitute(model, {"theta": 0.5}), exact_guide).with_strategies({"a": "enum", "b": "enum"})
    assert float(obj.estimate(jax.random.key(0), {}, Y)) == pytest.approx(_log_z(), abs=1e-9)
