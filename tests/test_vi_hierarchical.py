"""Hierarchical guides through ``vi.marginal``: HVI and IWHVI, checked exactly.

The guide q(z, l) has a Bernoulli auxiliary l; the reverse model τ(l | z) has its own params.
Every choice is finite, so (as in ``test_vi_exact``) the shipped estimator runs under the exact
enumerator of ``semantics`` and its expected gradient is compared (law ``unbiased_gradient``)
with the exact gradient of the objective as defined: its value
written out by hand in this module (closed-form densities, an exact sum over every choice),
differentiated with ``jax.grad``: no VI code computes the reference.  The library's values (all
sites ``"enum"``, compiled) are checked against the same hand-written sums.
The bound ordering HVI ≤ IWHVI_1 ≤ IWHVI_2 ≤ ELBO(q(z)) ≤ log Z is checked on exact values.
Planted bugs (the guide's own auxiliary draw left out of the marginal estimate; proposal draws
that carry no gradient) must fail.
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
from inference.vi import marginals as vi_marginal
from ppl import dist

pytestmark = [pytest.mark.exact]

Y = 0.8
SHIFT = jnp.array([1.2, -0.4, 0.0])


@ppl.model
def model(y):
    theta = ppl.param("theta", 0.5)
    z = ppl.sample("z", dist.Categorical(probs=jnp.array([0.2, 0.5, 0.3])))
    ppl.sample("y", dist.Normal(theta * z, 1.0), obs=y)


@ppl.model
def guide(y):
    lam = ppl.sample("l", dist.Bernoulli(logits=ppl.param("la", 0.3)))
    ppl.sample("z", dist.Categorical(logits=ppl.param("lz", jnp.array([0.1, -0.2, 0.3])) + SHIFT * lam))


@ppl.model
def reverse(z, y):
    ppl.sample("l", dist.Bernoulli(logits=ppl.param("c", jnp.array([0.2, -0.5, 0.4]))[z["z"]]))


ENUM = {"l": "enum", "z": "enum"}
REINFORCE = {"l": "reinforce", "z": "reinforce"}
_JIT: dict = {}


def exact_value(obj: vi.Objective, u: dict) -> float:
    if obj.name not in _JIT:
        ref = obj.with_strategies(ENUM)
        _JIT[obj.name] = jax.jit(lambda uu: ref.estimate(jax.random.key(0), uu, Y))
    return float(_JIT[obj.name](u))


# -- the reference, written out by hand (plain jax; no ppl densities, no inference.vi) -------------


def hand_iwhvi(u: dict, K: int) -> jax.Array:
    """E[log p(y, z) − log q̂_K(z)], (l_0, z) ~ q, l_1..K ~ τ(· | z), q̂_K the mean of the K + 1
    ratios q(z, l_j) / τ(l_j | z); K = 0 is HVI.  An exact sum over (l_0, z, l_1..K)."""
    log_p = jnp.log(jnp.array([0.2, 0.5, 0.3])) - 0.5 * math.log(2 * math.pi) - 0.5 * (Y - u["theta"] * jnp.arange(3)) ** 2
    log_ql = jnp.array([jax.nn.log_sigmoid(-u["la"]), jax.nn.log_sigmoid(u["la"])])  # [l]
    log_qz = jnp.stack([jax.nn.log_softmax(u["lz"] + SHIFT * lam) for lam in (0, 1)])  # [l, z]
    log_tau = jnp.stack([jax.nn.log_sigmoid(-u["c"]), jax.nn.log_sigmoid(u["c"])])  # [l, z]
    log_ratio = log_ql[:, None] + log_qz - log_tau  # [l, z]
    total = 0.0
    for l0 in (0, 1):
        for z in range(3):
            for ls in itertools.product((0, 1), repeat=K):
                prob = jnp.exp(log_ql[l0] + log_qz[l0, z] + sum(log_tau[l, z] for l in ls))
                ratios = jnp.stack([log_ratio[l0, z]] + [log_ratio[l, z] for l in ls])
                total = total + prob * (log_p[z] - (jax.nn.logsumexp(ratios) - math.log(K + 1)))
    return total


_TRUTH: dict = {}


def truth(K: int):
    if K not in _TRUTH:
        obj = vi.iwhvi(model, guide, ["l"], reverse, K)
        u = obj.init_params(jax.random.key(0), Y)
        _TRUTH[K] = (u, {k: np.asarray(v) for k, v in jax.grad(lambda uu: hand_iwhvi(uu, K))(dict(u)).items()})
    return _TRUTH[K]


@pytest.mark.parametrize(
    "K,strategies",
    [
        pytest.param(1, REINFORCE, id="iwhvi1-reinforce", marks=pytest.mark.slow),
        pytest.param(1, {"l": "enum", "z": "reinforce"}, id="iwhvi1-enum-l", marks=pytest.mark.slow),
        pytest.param(0, REINFORCE, id="hvi-reinforce"),
    ],
)
def test_expected_gradient_is_exact(K, strategies):
    u, g = truth(K)
    obj = (vi.hvi(model, guide, ["l"], reverse) if K == 0 else vi.iwhvi(model, guide, ["l"], reverse, K))
    obj = obj.with_strategies(strategies)
    semantics.laws.assert_unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], g, tol=1e-6)


def _marginal_q(u: dict) -> np.ndarray:
    """q(z) = Σ_l q(l) q(z | l), exactly."""
    pl = jax.nn.sigmoid(u["la"])
    return np.asarray((1 - pl) * jax.nn.softmax(u["lz"]) + pl * jax.nn.softmax(u["lz"] + SHIFT))


def _elbo_of_marginal(u: dict) -> float:
    q = _marginal_q(u)
    lp = [float(ppl.substitute(model, {"theta": u["theta"]}).log_density({"z": jnp.asarray(z)}, Y)) for z in range(3)]
    return float(sum(q[z] * (lp[z] - math.log(q[z])) for z in range(3)))


def _log_z(u: dict) -> float:
    return math.log(semantics.enumerate(ppl.substitute(model, {"theta": u["theta"]}), Y).total_mass())


def test_bounds_are_ordered_and_tighten_with_k():
    u = vi.hvi(model, guide, ["l"], reverse).init_params(jax.random.key(0), Y)
    values = [exact_value(vi.hvi(model, guide, ["l"], reverse), u)]
    values += [exact_value(vi.iwhvi(model, guide, ["l"], reverse, K), u) for K in (1, 2)]
    top, log_z = _elbo_of_marginal(u), _log_z(u)
    assert values[0] < values[1] < values[2] < top < log_z, (values, top, log_z)
    # HVI by hand: E_q(z,l)[log p(y, z) + log τ(l | z) − log q(z, l)]
    hand = 0.0
    for lam in (0, 1):
        for z in range(3):
            c = {"l": jnp.asarray(lam), "z": jnp.asarray(z)}
            lq = float(guide.log_density(c, Y))
            lr = float(reverse.log_density({"l": jnp.asarray(lam)}, {"z": jnp.asarray(z)}, Y))
            lp = float(model.log_density({"z": jnp.asarray(z)}, Y))
            hand += math.exp(lq) * (lp + lr - lq)
    assert values[0] == pytest.approx(hand, abs=1e-12)
    for K, v in enumerate(values):
        assert v == pytest.approx(float(hand_iwhvi(u, K)), abs=1e-12)


def test_marginal_log_density_is_unbiased_for_the_marginal_density():
    u = vi.hvi(model, guide, ["l"], reverse).init_params(jax.random.key(0), Y)
    q = vi.marginal(guide, ["l"], reverse, num_particles=2)
    obj = vi.Objective(lambda y: jnp.exp(q.log_density({"z": jnp.asarray(1)}, y)), REINFORCE)
    paths = semantics.enumerate_paths(lambda key: obj.estimate(key, u, Y))
    mean = math.fsum(math.exp(p.log_prob) * float(p.value) for p in paths)
    assert mean == pytest.approx(float(_marginal_q(u)[1]), abs=1e-12)


def test_marginal_errors_name_the_site():
    u = vi.hvi(model, guide, ["l"], reverse).init_params(jax.random.key(0), Y)
    with pytest.raises(vi.VIError, match="'w'"):
        vi.iwhvi(model, guide, ["w"], reverse, 1).estimate(jax.random.key(0), u, Y)
    with pytest.raises(vi.VIError, match="proposal"):
        vi.marginal(guide, ["l"], None)


# -- planted bugs --------------------------------------------------------------------------------


def test_planted_bug_marginal_without_the_guides_own_draw_fails(monkeypatch):
    """Estimating q(z) from the proposal's draws alone gives E[−log q̂] ≥ −log q(z): the
    'bound' then exceeds the marginal's ELBO, and the ordering check catches it."""
    u = vi.hvi(model, guide, ["l"], reverse).init_params(jax.random.key(0), Y)
    monkeypatch.setattr(vi_marginal, "_log_marginal_estimate", lambda lw0, lwk: jax.nn.logsumexp(lwk) - math.log(lwk.shape[0]))
    _JIT.pop("iwhvi1", None)
    try:
        bugged = exact_value(vi.iwhvi(model, guide, ["l"], reverse, 1), u)
    finally:
        _JIT.pop("iwhvi1", None)
    assert not bugged < _elbo_of_marginal(u)


def test_planted_bug_proposal_without_gradient_fails():
    u, g = truth(1)
    q = vi.marginal(guide, ["l"], reverse, 1)

    def bugged(y):
        tr = vi.sample(guide, y)
        z = {"z": tr["z"]}
        log_w0 = tr.log_density - reverse.log_density({"l": tr["l"]}, z, y)

        def one():
            t = vi.sample(reverse, z, y, detach=True)  # the bug: τ's draws carry no gradient
            return guide.log_density({**z, **t.latent}, y) - t.log_density

        log_q = vi_marginal._log_marginal_estimate(log_w0, vi.particles(1, one))
        return model.log_density(z, y) - log_q

    obj = vi.Objective(bugged, REINFORCE)
    res = semantics.unbiased_gradient(lambda key: obj.grad(key, u, Y)[1], g, tol=1e-6)
    assert not res.ok
    assert q.num_particles == 1
