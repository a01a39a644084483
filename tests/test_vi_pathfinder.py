"""vi.pathfinder on a Gaussian target (3-d, correlated): its importance-resampled draws have the
target's mean and variances (statistical: z-tests, ``vi/pathfinder_moments`` in the budget, se
from the importance weights' ESS); the L-BFGS inverse-Hessian estimates along a real path are
symmetric positive definite and satisfy the secant condition of their latest pair (exact).
Planted twins: the BFGS update with the sign of its ρ s sᵀ term flipped (caught by the exact
check), and importance weights that forget log q (caught by the statistical one)."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from inference import vi
from ppl import dist
from semantics import stats
from _budget import BUDGET
from inference._result import Result
from inference._run.cache import PROGRAMS
from _compiles import CompileCounter

PF = sys.modules["inference.vi.pathfinder"]
MODE = sys.modules["inference.vi.mode"]

MU = np.array([1.0, -2.0, 0.5])
_B = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.3, 0.4, 0.5]])
SIGMA = _B @ _B.T


@ppl.model
def gaussian():
    ppl.sample("x", dist.MultivariateNormal(jnp.asarray(MU), jnp.asarray(SIGMA)))


def path_hessians():
    view = ppl.unconstrained(gaussian)
    f = MODE._log_density_fn(view, True)
    xs, fs, gs, evals, steps = jax.jit(lambda x: MODE._lbfgs_path(f, x, 30, 1e-8, 6))(jnp.array([2.0, 2.0, -2.0]))
    Hs = vi.lbfgs_inverse_hessians(xs, gs, 6)
    return np.asarray(xs), np.asarray(gs), np.asarray(Hs), int(steps)


def secant_violations(xs, gs, Hs, steps):
    bad = []
    for l in range(1, steps + 1):
        H = Hs[l]
        s, y = xs[l] - xs[l - 1], gs[l - 1] - gs[l]
        if not np.allclose(H, H.T, atol=1e-10) or np.min(np.linalg.eigvalsh(H)) <= 0:
            bad.append(f"H_{l} not symmetric positive definite")
        elif s @ y > 0 and not np.allclose(H @ y, s, atol=1e-8 * max(1.0, np.abs(s).max())):
            bad.append(f"H_{l} y != s")
    return bad


def test_inverse_hessians_are_positive_definite_and_satisfy_the_secant_condition():
    xs, gs, Hs, steps = path_hessians()
    assert steps >= 2
    assert not secant_violations(xs, gs, Hs, steps)
    # at convergence on a quadratic the estimate is the inverse Hessian of ℓ, i.e. Σ, close enough
    np.testing.assert_allclose(xs[steps], MU, atol=1e-6)


def test_planted_bfgs_sign_twin_is_caught(monkeypatch):
    def bad_update(H, s, y):
        rho = 1.0 / jnp.dot(y, s)
        A = jnp.eye(H.shape[0]) - rho * jnp.outer(s, y)
        return A @ H @ A.T - rho * jnp.outer(s, s)

    monkeypatch.setattr(PF, "_bfgs_update", bad_update)
    assert secant_violations(*path_hessians())


def moment_failures(pf):
    x = np.asarray(pf.draws["x"])
    w = np.exp(np.asarray(pf.log_weights) - np.max(pf.log_weights))
    ess = w.sum() ** 2 / (w**2).sum()
    m = x.shape[0]
    inflate = np.sqrt(m * (1.0 / ess + 1.0 / m))  # resampled draws: se from the weights' ESS
    alpha = BUDGET.level("vi/pathfinder_moments")
    bad = []
    for i in range(3):
        r = stats.z_test(x[:, i], MU[i], alpha=alpha, sd=np.sqrt(SIGMA[i, i]) * inflate)
        if not r.ok:
            bad.append(f"mean {i}: {r.message}")
        sq = (x[:, i] - MU[i]) ** 2
        r = stats.z_test(sq, SIGMA[i, i], alpha=alpha, sd=np.sqrt(2.0) * SIGMA[i, i] * inflate)
        if not r.ok:
            bad.append(f"var {i}: {r.message}")
    return bad


def run_pf():
    return vi.pathfinder(jax.random.key(0), gaussian, num_paths=4, num_draws=4000, max_steps=30)


@pytest.mark.statistical
def test_pathfinder_draws_have_the_target_mean_and_variances():
    pf = run_pf()
    assert isinstance(pf, vi.PathfinderResult) and isinstance(pf, Result)
    assert not moment_failures(pf)
    assert pf.pareto_k < 0.7
    init = pf.init_values(4, jax.random.key(1))
    assert init["x"].shape == (4, 3)
    # as a guide's initialisation: the full-rank guide starts at the best path's Gaussian
    g = vi.auto_multivariate_normal(gaussian, init=pf)
    u = vi.elbo(gaussian, g).init_params(jax.random.key(0))
    np.testing.assert_allclose(np.asarray(u["auto/loc"]), np.asarray(pf.loc), atol=1e-12)


@pytest.mark.statistical
def test_planted_weight_twin_is_caught(monkeypatch):
    orig = PF._mvn_logpdf
    monkeypatch.setattr(PF, "_mvn_logpdf", lambda u, mean, L: 0.0 * orig(u, mean, L))  # weights forget log q
    PROGRAMS.clear()  # the cached program was compiled with the right weights
    assert moment_failures(run_pf())


@ppl.model
def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    ppl.sample("y", dist.Normal(mu, 1.0).expand([3]).to_event(1), obs=y)


def test_pathfinder_program_is_cached_and_same_key_gives_same_result():
    """Issue 19: a second call with the same settings and argument shapes compiles nothing (no
    cache miss, no XLA compilation, new data values included), the same key gives the same draws, and new data are
    not ignored (the posterior mean moves: exactly sum(y) / 4 for this conjugate model)."""
    kw = dict(num_paths=2, num_draws=50, max_steps=20)
    y1, y2 = jnp.array([1.0, 2.0, 0.0]), jnp.array([3.0, 3.0, 3.0])
    a = vi.pathfinder(jax.random.key(0), normal_mean, y1, **kw)
    misses = PROGRAMS.misses
    with CompileCounter() as compiles:
        b = vi.pathfinder(jax.random.key(0), normal_mean, y1, **kw)
        c = vi.pathfinder(jax.random.key(0), normal_mean, y2, **kw)
    assert PROGRAMS.misses == misses and compiles.n == 0, (PROGRAMS.misses - misses, compiles.n)
    np.testing.assert_array_equal(np.asarray(a.draws["mu"]), np.asarray(b.draws["mu"]))
    np.testing.assert_allclose(float(a.loc[0]), 0.75, atol=1e-4)
    np.testing.assert_allclose(float(c.loc[0]), 2.25, atol=1e-4)
