"""Exact checks of the gradient kernels' proposals and accept/reject logic on *given* proposals.

A statistical invariance test can miss a partial Hastings term (its effect on the law is small);
an exact check on chosen proposals cannot.  The shipped ``transition`` of RWM, MALA and HMC runs
eagerly with its Gaussian draw fixed (``jax.random.normal`` patched to return a chosen ξ) and its
accept coin forced through a ``ppl.randomness`` interpreter (which also records the coin's
probability), and is compared with references written here from the textbook formulas, never
with the kernel's own functions:

- the proposal: MALA y = x − ε²/2 A ∇U(x) + ε S ξ (S Sᵀ = A); HMC L leapfrog steps with momentum
  r = M^{1/2} ξ, L = ⌈trajectory_length / ε⌉ when ``num_steps`` is None;
- the acceptance probability: MALA min(1, π(y) q(x | y) / (π(x) q(y | x))) with q the Gaussian
  density written out here; HMC min(1, exp(H(x, r) − H(x', r'))), H = U + ½ rᵀ A r;
- detailed balance pointwise, with the kernel's own reverse move: from y, the noise that proposes
  x back, and π(x) q(y | x) α(x, y) = π(y) q(x | y) α(y, x) to 1e-9 (for HMC on the extended
  space (x, r), with the momentum flipped); one of α(x, y), α(y, x) is 1 (a Metropolis rule);
- the kernel moves: an accepted proposal is the new state, α > 0 away from the mode;
- a NaN: a proposal (or a leapfrog point) where the potential is NaN is rejected (α = 0, the
  state unchanged), never accepted.

The target is a Student-t (non-Gaussian, so MALA's proposal is not reversible by itself), 1-d
with a diagonal and 2-d with a dense inverse mass matrix A ≠ I (so a kernel that forgets A, or
inverts it, differs).  Every check is an equality in float64: no false-alarm budget.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import hmc_util
from scipy import stats as st

import ppl
from inference import mcmc
from inference.mcmc.gradient import GradState
from ppl import dist

pytestmark = [pytest.mark.exact]

NU, LOC, SCALE = 3.0, 0.3, 1.2
FIXED = dict(adapt_step_size=False, adapt_mass_matrix=False, find_heuristic_step_size=False)


@ppl.model
def student1():
    ppl.sample("x", dist.StudentT(NU, LOC, SCALE))


@ppl.model
def student2():
    with ppl.plate("d", 2):
        ppl.sample("x", dist.StudentT(NU, LOC, SCALE))


# -- references (numpy/scipy, independent of the kernels) -------------------------------------------


def U_ref(x):
    return -float(np.sum(st.t.logpdf(np.asarray(x, float), NU, LOC, SCALE)))


def gradU_ref(x):
    z = (np.asarray(x, float) - LOC) / SCALE
    return (NU + 1) * z / (NU + z * z) / SCALE


def log_normal(y, mean, cov):
    return float(st.multivariate_normal.logpdf(np.atleast_1d(y), np.atleast_1d(mean), np.atleast_2d(cov)))


def mass_state(A):
    """(inverse mass matrix, M^{1/2}, NumPyro's sqrt-inverse) for a diagonal (1-d) or dense A."""
    A = jnp.asarray(A, float)
    if A.ndim == 1:
        return A, jnp.sqrt(1.0 / A), jnp.sqrt(A)
    _, _, final = hmc_util.welford_covariance(diagonal=False)
    cov, mm_sqrt, mm_sqrt_inv = final((jnp.zeros(A.shape[0]), 9.0 * A, 10))  # covariance exactly A
    return cov, mm_sqrt, mm_sqrt_inv


def dense(A):
    A = np.asarray(A, float)
    return np.diag(A) if A.ndim == 1 else A


CASES = {
    # name: (model, x, A, step size)
    "1d-diag": (student1, [1.1], [2.5], 0.9),
    "2d-dense": (student2, [1.1, -0.7], [[2.0, 0.6], [0.6, 0.8]], 0.8),
}


class ForceCoin:
    """A ppl.randomness interpreter: every draw returns `value`; the coins' probabilities are kept."""

    eager = False

    def __init__(self, value):
        self.value, self.probs = value, []

    def draw(self, key, d, sample_shape, name):
        self.probs.append(float(d.probs))
        return jnp.asarray(self.value)


def bound_state(kernel, model, x, A):
    """The bound transition kernel and a Chain at x whose params have inverse mass matrix A."""
    b = kernel.bind(model, (), {}).kernel
    s = b.init(jax.random.key(0), {"x": jnp.asarray(x, float).reshape(np.shape(x) if model is student2 else ())})
    inv, sq, sq_inv = mass_state(A)
    params = mcmc.GradParams(jnp.asarray(kernel.step_size, float), inv, sq, sq_inv)
    return b, mcmc.Chain(s, None, params)


def step(kernel_bound, state, xi, coin, monkeypatch):
    """The shipped transition with ξ fixed and the accept coin forced; (new x, α, recorded α)."""
    monkeypatch.setattr(jax.random, "normal", lambda key, shape=(), dtype=float: jnp.asarray(xi, float).reshape(shape))
    it = ForceCoin(coin)
    with ppl.randomness.interpreter(it):
        new, info = kernel_bound.kernel.transition(kernel_bound, jax.random.key(1), state.state, state.params)
    monkeypatch.undo()
    assert len(it.probs) == 1  # one accept coin, drawn as Bernoulli(α)
    return np.asarray(new.x, float), float(info["accept_prob"]), it.probs[0]


def at(b, state, x):
    """The state at x (same tuning)."""
    pe, g = b.vg(jnp.asarray(x, float))
    return mcmc.Chain(GradState(jnp.asarray(x, float), pe, g), None, state.params)


XIS = [0.4, -1.3, 2.2, 0.05, -0.6]


def xi_for(k, d):
    rng = np.random.default_rng(k)
    return np.array(XIS[k % len(XIS)]) if d == 1 else rng.normal(size=d)


@pytest.mark.parametrize("case", list(CASES))
def test_potential_is_the_reference(case):
    model, x, A, eps = CASES[case]
    b, s = bound_state(mcmc.MALA(step_size=eps, **FIXED), model, x, A)
    assert float(s.state.potential_energy) == pytest.approx(U_ref(x), rel=1e-12)
    np.testing.assert_allclose(np.asarray(s.state.grad), gradU_ref(x), rtol=1e-12)


# -- MALA and RWM ------------------------------------------------------------------------------------


def mala_ref(x, eps, A):
    """MALA's proposal mean and covariance at x."""
    A = dense(A)
    return np.asarray(x, float) - 0.5 * eps**2 * A @ np.atleast_1d(gradU_ref(x)), eps**2 * A


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["mala", "rwm"])
def test_mala_and_rwm_satisfy_detailed_balance_on_given_proposals(case, kind, monkeypatch):
    model, x0, A, eps = CASES[case]
    kernel = (mcmc.MALA if kind == "mala" else mcmc.RWM)(step_size=eps, **FIXED)
    b, s0 = bound_state(kernel, model, x0, A)
    A_ = dense(A)
    S = np.linalg.cholesky(A_)  # any S with S Sᵀ = A gives N(0, A) noise; the kernel's is below
    shipped_S = np.asarray(mass_state(A)[2]).T if np.ndim(A) == 2 else np.diag(np.sqrt(np.asarray(A)))
    np.testing.assert_allclose(shipped_S @ shipped_S.T, A_, rtol=1e-12)
    d = len(x0)

    def q(frm, to):
        if kind == "rwm":
            return log_normal(to, frm, eps**2 * A_)
        m, c = mala_ref(frm, eps, A_)
        return log_normal(to, m, c)

    alphas = []
    for k in range(6):
        xi = xi_for(k, d)
        x = np.asarray(x0, float) + 0.3 * k * (S @ np.ones(d))  # several starting points
        s = at(b, s0, x)
        # forward: the proposal, accepted (coin forced to 1)
        y, a_xy, coin_p = step(b, s, xi, 1, monkeypatch)
        mean = x if kind == "rwm" else mala_ref(x, eps, A_)[0]
        np.testing.assert_allclose(y, mean + eps * shipped_S @ np.atleast_1d(xi), rtol=1e-12, atol=1e-12)
        assert coin_p == a_xy
        # rejected (coin forced to 0): the state is unchanged
        x_rej, _, _ = step(b, s, xi, 0, monkeypatch)
        np.testing.assert_array_equal(x_rej, x)
        # reverse: from y, the noise that proposes x
        mean_y = y if kind == "rwm" else mala_ref(y, eps, A_)[0]
        xi_back = np.linalg.solve(eps * shipped_S, x - mean_y)
        x_back, a_yx, _ = step(b, at(b, s0, y), xi_back, 1, monkeypatch)
        np.testing.assert_allclose(x_back, x, rtol=1e-10, atol=1e-12)
        # the acceptance is the Metropolis–Hastings one, and detailed balance holds
        log_r = -U_ref(y) + q(y, x) + U_ref(x) - q(x, y)
        assert a_xy == pytest.approx(min(1.0, math.exp(log_r)), rel=1e-9, abs=1e-300)
        assert max(a_xy, a_yx) == pytest.approx(1.0, rel=1e-12)
        lhs = -U_ref(x) + q(x, y) + math.log(a_xy)
        rhs = -U_ref(y) + q(y, x) + math.log(a_yx)
        assert lhs == pytest.approx(rhs, abs=1e-9), (k, lhs, rhs)
        alphas.append(min(a_xy, a_yx))
    # the kernel moves: the cases are not all trivially accepted or rejected
    assert min(alphas) > 1e-3 and min(alphas) < 1.0


# -- HMC -------------------------------------------------------------------------------------------


def leapfrog_ref(x, r, eps, A, L):
    A = dense(A)
    x, r = np.asarray(x, float).copy(), np.asarray(r, float).copy()
    for _ in range(L):
        r = r - 0.5 * eps * np.atleast_1d(gradU_ref(x))
        x = x + eps * A @ r
        r = r - 0.5 * eps * np.atleast_1d(gradU_ref(x))
    return x, r


def H_ref(x, r, A):
    return U_ref(x) + 0.5 * float(r @ dense(A) @ r)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("num_steps", [3, None])
def test_hmc_proposal_and_acceptance_are_the_references(case, num_steps, monkeypatch):
    model, x0, A, eps = CASES[case]
    kernel = mcmc.HMC(step_size=eps, num_steps=num_steps, trajectory_length=2.5, **FIXED)
    L = num_steps if num_steps is not None else math.ceil(2.5 / eps)
    b, s0 = bound_state(kernel, model, x0, A)
    mm_sqrt = np.asarray(mass_state(A)[1])
    mm_sqrt = np.diag(mm_sqrt) if mm_sqrt.ndim == 1 else mm_sqrt
    np.testing.assert_allclose(np.linalg.inv(mm_sqrt @ mm_sqrt.T), dense(A), rtol=1e-10)  # r ~ N(0, A⁻¹)
    d = len(x0)
    alphas = []
    for k in range(5):
        xi = xi_for(k, d)
        x = np.asarray(x0, float) - 0.4 * k
        r = mm_sqrt @ np.atleast_1d(xi)
        x1, r1 = leapfrog_ref(x, r, eps, A, L)
        y, a_xy, coin_p = step(b, at(b, s0, x), xi, 1, monkeypatch)
        np.testing.assert_allclose(y, x1, rtol=1e-10, atol=1e-12)
        a_ref = min(1.0, math.exp(H_ref(x, r, A) - H_ref(x1, r1, A)))
        assert a_xy == pytest.approx(a_ref, rel=1e-9) and coin_p == a_xy
        x_rej, _, _ = step(b, at(b, s0, x), xi, 0, monkeypatch)
        np.testing.assert_array_equal(x_rej, x)
        # reverse on the extended space: from (x1, −r1) the kernel returns to x with α(y, x), and
        # π(x) N(r) α(x, y) = π(x1) N(r1) α(y, x)
        xi_back = np.linalg.solve(mm_sqrt, -r1)
        x_back, a_yx, _ = step(b, at(b, s0, x1), xi_back, 1, monkeypatch)
        np.testing.assert_allclose(x_back, x, rtol=1e-8, atol=1e-10)
        assert max(a_xy, a_yx) == pytest.approx(1.0, rel=1e-12)
        lhs = -H_ref(x, r, A) + math.log(a_xy)
        rhs = -H_ref(x1, r1, A) + math.log(a_yx)
        assert lhs == pytest.approx(rhs, abs=1e-8)
        alphas.append(min(a_xy, a_yx))
    assert min(alphas) > 1e-3 and min(alphas) < 1.0


# -- NaN: rejected, never accepted ---------------------------------------------------------------------

WALL = 2.0


def _nan_potential(view):
    return lambda z: view.potential(z) + jnp.where(z[0] > WALL, jnp.nan, 0.0)


@dataclasses.dataclass(frozen=True)
class NanMALA(mcmc.MALA):
    target_potential = staticmethod(_nan_potential)


@dataclasses.dataclass(frozen=True)
class NanRWM(mcmc.RWM):
    target_potential = staticmethod(_nan_potential)


@dataclasses.dataclass(frozen=True)
class NanHMC(mcmc.HMC):
    target_potential = staticmethod(_nan_potential)


@pytest.mark.parametrize("kernel", [NanMALA(step_size=1.0, **FIXED), NanRWM(step_size=1.0, **FIXED),
                                    NanHMC(step_size=0.5, num_steps=4, **FIXED)], ids=["mala", "rwm", "hmc"])
def test_a_nan_potential_is_rejected(kernel, monkeypatch):
    """The potential is NaN beyond x = 2: a move there has α = 0 and the state stays (with the real
    coin); a move that stays finite is still accepted with α > 0 (so the check is not vacuous)."""
    b, s = bound_state(kernel, student1, [1.5], [1.0])
    assert bool(jnp.isnan(b.potential(jnp.array([2.5]))))
    for xi, lands_in_nan in ((2.0, True), (-0.5, False)):
        monkeypatch.setattr(jax.random, "normal", lambda key, shape=(), dtype=float: jnp.full(shape, xi))
        new, info = kernel.transition(b, jax.random.key(3), s.state, s.params)
        monkeypatch.undo()
        if lands_in_nan:
            assert float(info["accept_prob"]) == 0.0, info["accept_prob"]
            np.testing.assert_array_equal(np.asarray(new.x), np.asarray(s.state.x))
            assert np.isfinite(float(new.potential_energy))
        else:
            assert float(info["accept_prob"]) > 0.0
