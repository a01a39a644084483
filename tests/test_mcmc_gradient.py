"""Statistical tests of the gradient kernels: invariance from exact posterior draws.

M independent chains start at exact draws of the posterior of a conjugate model (a Normal mean
with Normal data, and a HalfNormal scale with no data: its unconstrained view has a Jacobian);
after a few steps with frozen tuning the draws must still follow the posterior.  The chains are
independent, so the test statistics are exact z-scores: |z| < 5 for every statistic (a false
alarm probability of about 6e-7 each; 4 statistics per kernel, 4 kernels).  Each kernel has a
planted-bug twin (no Metropolis correction; MALA without its Hastings term; a NUTS that returns the trajectory's end point)
that must fail the same check with the same seed.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import hmc_util
from numpyro.infer.hmc_util import IntegratorState, euclidean_kinetic_energy

import ppl
from inference import mcmc
from inference.mcmc.gradient import GradState, _momentum
from ppl import dist

Y = jnp.array([0.8, 1.9, 0.4, 1.3])
PRIOR_SD, NOISE_SD = 1.0, 1.0
POST_VAR = 1.0 / (1.0 / PRIOR_SD**2 + len(Y) / NOISE_SD**2)
POST_MEAN = POST_VAR * float(jnp.sum(Y)) / NOISE_SD**2
M, STEPS, Z_MAX = 4000, 3, 5.0


@ppl.model
def conjugate(y):
    mu = ppl.sample("mu", dist.Normal(0.0, PRIOR_SD))
    ppl.sample("s", dist.HalfNormal(1.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, NOISE_SD), obs=y)


def exact_draws(key):
    k1, k2 = jax.random.split(key)
    mu = POST_MEAN + jnp.sqrt(POST_VAR) * jax.random.normal(k1, (M,))
    s = jnp.abs(jax.random.normal(k2, (M,)))
    return {"mu": mu, "s": s}


@functools.partial(jax.jit, static_argnums=0)
def run_from_exact(kernel, key):
    b = kernel.bind(conjugate, (Y,), {})
    k0, k1, k2 = jax.random.split(key, 3)
    x0 = exact_draws(k0)
    state = jax.vmap(b.init)(jax.random.split(k1, M), x0)

    def body(state, k):
        state, _ = jax.vmap(b.step)(jax.random.split(k, M), state)
        return state, None

    state, _ = jax.lax.scan(body, state, jax.random.split(k2, STEPS))
    return jax.vmap(b.samples)(state)


def check(out) -> dict:
    """Exact-moment z-scores of the M final draws against the posterior."""
    mu, s = np.asarray(out["mu"]), np.asarray(out["s"])
    hn_mean, hn_var = np.sqrt(2 / np.pi), 1 - 2 / np.pi
    hn_m4 = 3.0  # E s^4 for a HalfNormal(1) is that of a N(0, 1)
    var_of_sq = hn_m4 - 1.0  # Var(s^2)
    return {
        "mu mean": (mu.mean() - POST_MEAN) / np.sqrt(POST_VAR / M),
        "mu var": (((mu - POST_MEAN) ** 2).mean() / POST_VAR - 1.0) / np.sqrt(2.0 / M),
        "s mean": (s.mean() - hn_mean) / np.sqrt(hn_var / M),
        "s^2 mean": ((s**2).mean() - 1.0) / np.sqrt(var_of_sq / M),
    }


def worst(z: dict) -> float:
    return max(abs(v) for v in z.values())


# -- planted-bug twins ---------------------------------------------------------------------------


def _always_accept(self, log_target_ratio, log_q_reverse, log_q_forward):
    return jnp.zeros_like(jnp.asarray(log_target_ratio, dtype=float))


@dataclasses.dataclass(frozen=True)
class RWMNoCorrection(mcmc.RWM):
    log_accept_ratio = _always_accept


@dataclasses.dataclass(frozen=True)
class MALANoHastings(mcmc.MALA):
    """Bug: accepts with pi(x')/pi(x), forgetting q(x | x') / q(x' | x)."""

    def log_accept_ratio(self, log_target_ratio, log_q_reverse, log_q_forward):
        return log_target_ratio


@dataclasses.dataclass(frozen=True)
class HMCNoCorrection(mcmc.HMC):
    log_accept_ratio = _always_accept


@dataclasses.dataclass(frozen=True)
class NUTSEndPoint(mcmc.NUTS):
    """Bug: returns the right end of the trajectory instead of a multinomial draw from it."""

    def transition(self, bound, key, state):
        k_r, k_tree = jax.random.split(key)
        a = state.adapt
        r = _momentum(k_r, a.mass_matrix_sqrt)
        _, vv_update = bound.integrator()
        z0 = IntegratorState(state.x, r, state.potential_energy, state.grad)
        tree = hmc_util.build_tree(
            vv_update, euclidean_kinetic_energy, z0, a.inverse_mass_matrix, a.step_size, k_tree,
            max_tree_depth=self.max_tree_depth,
        )
        pe, g = bound.vg(tree.z_right)
        return GradState(tree.z_right, pe, g, state.adapt), {"accept_prob": jnp.ones(()), "diverging": tree.diverging}


FIXED = dict(adapt_step_size=False, adapt_mass_matrix=False, find_heuristic_step_size=False)

CASES = [
    ("rwm", mcmc.RWM(step_size=1.5, **FIXED), RWMNoCorrection(step_size=1.5, **FIXED)),
    ("mala", mcmc.MALA(step_size=1.2, **FIXED), MALANoHastings(step_size=1.2, **FIXED)),
    ("hmc", mcmc.HMC(step_size=0.9, num_steps=3, **FIXED), HMCNoCorrection(step_size=0.9, num_steps=3, **FIXED)),
    ("nuts", mcmc.NUTS(step_size=0.5, **FIXED), NUTSEndPoint(step_size=0.5, **FIXED)),
]


@pytest.mark.parametrize("name,kernel,twin", CASES, ids=[c[0] for c in CASES])
def test_kernel_leaves_conjugate_posterior_invariant_and_twin_fails(name, kernel, twin):
    key = jax.random.key(20240611)
    z = check(run_from_exact(kernel, key))
    assert worst(z) < Z_MAX, f"{name}: draws left the posterior: {z}"
    z_bug = check(run_from_exact(twin, key))
    assert worst(z_bug) > Z_MAX, f"{name}: planted bug not detected: {z_bug}"


def test_dense_noise_and_momentum_have_the_right_covariance():
    # a dense inverse mass matrix A as warmup leaves it (NumPyro's Welford final step)
    from inference.mcmc.gradient import _scaled_noise

    A = jnp.array([[2.0, 0.6, 0.1], [0.6, 1.0, -0.3], [0.1, -0.3, 0.5]])
    _, _, final = hmc_util.welford_covariance(diagonal=False)
    # a Welford state whose covariance is exactly A: mean, m2 = (n-1) A, n
    cov, mm_sqrt, mm_sqrt_inv = final((jnp.zeros(3), 9.0 * A, 10))
    np.testing.assert_allclose(cov, A, rtol=1e-12)
    adapt = hmc_util.HMCAdaptState(1.0, cov, mm_sqrt, mm_sqrt_inv, None, None, 0, None)
    S = jax.vmap(lambda e: _scaled_noise(adapt, e), out_axes=1)(jnp.eye(3))
    np.testing.assert_allclose(S @ S.T, A, rtol=1e-10)  # proposal noise ~ N(0, A)
    R = jax.vmap(lambda e: mm_sqrt @ e, out_axes=1)(jnp.eye(3))
    np.testing.assert_allclose(R @ R.T, jnp.linalg.inv(A), rtol=1e-10)  # momentum ~ N(0, A^-1)
