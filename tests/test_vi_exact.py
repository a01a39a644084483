"""Exact checks of the VI gradient estimators and objectives on discrete guides.

The shipped estimator (``Objective.grad``) runs under the exact enumerator of ``semantics``:
E[ĝ] is an exact sum over every path of the estimator's own random choices, compared (law
``unbiased_gradient``) with the exact gradient of the objective.  The exact objective
L(u) = E[F] is computed independently: the objective's value program runs under the enumerator
with every site drawn by plain sampling, and its gradient is taken by central finite differences
(float64, error ~1e-10).  Planted bugs (a score-function estimator without its score term, a
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
from inference.vi import core as vi_core
from ppl import dist

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


def fd_grad(obj: vi.Objective, u: dict, h: float = 1e-5, only: tuple | None = None) -> dict:
    out = {}
    for k, v in u.items():
        v = np.asarray(v, dtype=np.float64)
        g = np.zeros_like(v)
        if only is None or k in only:
            for idx in np.ndindex(*v.shape):
                vp, vm = v.copy(), v.copy()
                vp[idx] += h
                vm[idx] -= h
                fp = exact_value(obj, {**u, k: jnp.asarray(vp)})
                fm = exact_value(obj, {**u, k: jnp.asarray(vm)})
                g[idx] = (fp - fm) / (2 * h)
        out[k] = g
    return out


_CACHE: dict = {}


def params_and_truth(name: str):
    if name not in _CACHE:
        obj = OBJECTIVES[name]()
        u = obj.init_params(jax.random.key(0), Y)
        if name == "p_wake2":
            truth = fd_grad(vi.iwae(model, guide, 2), u, only=("theta",))
        else:
            truth = fd_grad(obj, u)
        _CACHE[name] = (u, truth)
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


@pytest.mark.parametrize("name,strategies", CASES, ids=[f"{n}-{'-'.join(s.values()) or 'default'}" for n, s in CASES])
def test_expected_gradient_is_exact(name, strategies):
    u, truth = params_and_truth(name)
    obj = OBJECTIVES[name]().with_strategies(strategies)
    res = semantics.unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], truth, tol=1e-6)
    assert res.ok, res.message


@pytest.mark.parametrize("name", ["elbo", "iwae2", "q_wake2"])
def test_enumerated_values_agree(name):
    obj = {**OBJECTIVES, "q_wake2": lambda: vi.q_wake(model, guide, 2)}[name]()
    u = obj.init_params(jax.random.key(0), Y)
    u = {**u, "la": u["la"] - 0.4}
    assert exact_value(obj, u) == pytest.approx(enumerated_value(obj, u), abs=1e-12)


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


def test_leave_one_out_baseline_is_unbiased():
    u, truth = params_and_truth("elbo")
    obj = vi.elbo(model, guide).with_strategies(SAMPLE_ALL)
    est = lambda key: obj.grad(key, u, Y, num_samples=2, baseline="loo")[1]  # noqa: E731
    semantics.laws.assert_unbiased_gradient(est, truth, tol=1e-6)


def _q_wake_truth(u: dict, K: int = 2) -> dict:
    """E_{z_1..K ~ q}[Σ_k w̃_k ∇_φ log q_φ(z_k)], summed exactly over the guide's support."""
    support = [{"a": jnp.asarray(a), "b": jnp.asarray(b)} for a in (0, 1) for b in (0, 1, 2)]

    def constrained(uu):
        return {k: v for k, v in uu.items()}

    def log_q(uu, z):
        return ppl.substitute(guide, constrained({k: uu[k] for k in ("la", "lb")})).log_density(z, Y)

    def log_p(uu, z):
        return ppl.substitute(model, {"theta": uu["theta"]}).log_density(z, Y)

    def grad_term(uu):
        total = 0.0
        for zs in itertools.product(support, repeat=K):
            lq = jnp.stack([log_q(jax.lax.stop_gradient(uu), z) for z in zs])
            lw = jnp.stack([log_p(jax.lax.stop_gradient(uu), z) for z in zs]) - lq
            prob = jnp.exp(jnp.sum(lq))
            w = jax.nn.softmax(lw)
            total = total + prob * jnp.sum(w * jnp.stack([log_q(uu, z) for z in zs]))
        return total

    return jax.grad(grad_term)(dict(u))


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


def test_planted_bug_missing_score_term_fails(monkeypatch):
    u, truth = params_and_truth("elbo")
    obj = vi.elbo(model, guide).with_strategies(SAMPLE_ALL)
    monkeypatch.setattr(vi_core, "_score_term", lambda d, value, msg: jax.lax.stop_gradient(jnp.sum(d.log_prob(value))))
    res = semantics.unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], truth, tol=1e-6)
    assert not res.ok


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
