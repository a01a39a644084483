"""Statistical tests of the gradient kernels: invariance from exact posterior draws, with power.

M independent chains start at exact draws of the posterior of a conjugate model (a Normal mean
with Normal data, and a HalfNormal scale with no data: its unconstrained view has a Jacobian);
after a few steps with frozen tuning the draws must still follow the posterior.  The chains are
independent and each final draw is exactly a posterior draw when the kernel is right, so the
statistics have exact null laws: the mean of mu is Normal, M·mean((mu − m)²/v) and M·mean(s²)
are χ²_M, and #{s < median} is Binomial(M, 1/2).  Each is tested at the budgeted level
``mcmc/gradient_invariance`` (tests/_budget.py: 4 statistics × 4 kernels).

M comes from a power calculation (``semantics.stats.sample_size``) for the smallest effect the
test must detect: MALA with *half* its Hastings term shifts the standardised second moment of mu
by about 0.06 after 3 steps (measured at M = 20 000: z = 8.8), so M = sample_size(0.06) at the
budgeted level and power 0.999.  Each kernel has a subtle planted-bug twin run through the same
check with the same seed: RWM accepting with π(x')^0.8/π(x)^0.8 (a tempered ratio), MALA with half
its Hastings term, HMC accepting with half the energy error, and our NUTS tree with the biased
progressive-sampling weight of the new doubling inflated by 1.5 (``nuts._merge_probability``).

The chains must also *move* (invariance alone holds for a kernel that never moves): the fraction
of chains whose final draw differs from their start must exceed 0.2 (each kernel's is above 0.4;
Hoeffding bounds the false alarm by exp(−2M(0.4 − 0.2)²), declared as ``mcmc/gradient_moves``).
The exact checks of the accept/reject logic on given proposals are in test_mcmc_accept_exact.py.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import hmc_util
from scipy import stats as st

import ppl
from inference import mcmc
from inference.mcmc import nuts
from ppl import dist
from semantics.stats import sample_size
from _budget import BUDGET

Y = jnp.array([0.8, 1.9, 0.4, 1.3])
PRIOR_SD, NOISE_SD = 1.0, 1.0
POST_VAR = 1.0 / (1.0 / PRIOR_SD**2 + len(Y) / NOISE_SD**2)
POST_MEAN = POST_VAR * float(jnp.sum(Y)) / NOISE_SD**2
ALPHA = BUDGET.level("mcmc/gradient_invariance")
#: the standardised effect of the subtlest planted bug (MALA with half its Hastings term)
EFFECT = 0.06
M, STEPS = sample_size(EFFECT, sd=1.0, alpha=ALPHA, power=0.999), 3
MOVED_MIN = 0.2
# a right kernel here moves at least 0.4 of the chains (measured: HMC 0.45, MALA 0.53, RWM 0.59,
# NUTS 0.9998); Hoeffding then bounds P(moved fraction <= MOVED_MIN) by exp(-2M(0.4 - MOVED_MIN)^2),
# within the declared level
assert math.exp(-2 * M * (0.4 - MOVED_MIN) ** 2) <= BUDGET.level("mcmc/gradient_moves")


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
    out = jax.vmap(b.samples)(state)
    out["moved"] = (out["mu"] != x0["mu"]) | (out["s"] != x0["s"])
    return out


def pvalues(out) -> dict:
    """Exact two-sided p-values of four statistics of the M final draws against the posterior."""
    mu, s = np.asarray(out["mu"], float), np.asarray(out["s"], float)
    z = (mu.mean() - POST_MEAN) / np.sqrt(POST_VAR / M)
    q_mu = float(np.sum((mu - POST_MEAN) ** 2) / POST_VAR)  # χ²_M
    q_s = float(np.sum(s**2))  # s ~ HalfNormal(1): s² ~ χ²_1
    below = int(np.sum(s < st.halfnorm.median()))
    two = lambda q: 2 * min(st.chi2.cdf(q, M), st.chi2.sf(q, M))  # noqa: E731
    return {
        "mu mean": float(2 * st.norm.sf(abs(z))),
        "mu var": float(two(q_mu)),
        "s^2 mean": float(two(q_s)),
        "P(s < median)": float(st.binomtest(below, M, 0.5).pvalue),
    }


def rejects(p: dict) -> bool:
    return min(p.values()) < ALPHA


# -- planted-bug twins (subtle: each accept rule is off by a factor, or our NUTS tree is) -------------


@dataclasses.dataclass(frozen=True)
class RWMTempered(mcmc.RWM):
    """Bug: accepts with (π(x')/π(x))^0.8 (targets π^0.8)."""

    def log_accept_ratio(self, log_target_ratio, log_q_reverse, log_q_forward):
        return 0.8 * log_target_ratio


@dataclasses.dataclass(frozen=True)
class MALAHalfHastings(mcmc.MALA):
    """Bug: half of the Hastings term log q(x | x') − log q(x' | x)."""

    def log_accept_ratio(self, log_target_ratio, log_q_reverse, log_q_forward):
        return log_target_ratio + 0.5 * (log_q_reverse - log_q_forward)


@dataclasses.dataclass(frozen=True)
class HMCHalfEnergy(mcmc.HMC):
    """Bug: accepts with exp(−ΔH / 2)."""

    def log_accept_ratio(self, log_target_ratio, log_q_reverse, log_q_forward):
        return 0.5 * log_target_ratio


@dataclasses.dataclass(frozen=True)
class NUTSHeavyMerge(mcmc.NUTS):
    """Bug in our tree: the new doubling's merge probability min(1, 1.5 W_new / W_old)."""

    max_tree_depth: int = 9  # (another compiled program than the real NUTS's)


def _heavy_merge(w_new, w_old):
    return jnp.minimum(1.0, 1.5 * jnp.exp(w_new - w_old))


FIXED = dict(adapt_step_size=False, adapt_mass_matrix=False, find_heuristic_step_size=False)

CASES = [
    ("rwm", mcmc.RWM(step_size=1.5, **FIXED), RWMTempered(step_size=1.5, **FIXED)),
    ("mala", mcmc.MALA(step_size=1.2, **FIXED), MALAHalfHastings(step_size=1.2, **FIXED)),
    ("hmc", mcmc.HMC(step_size=0.9, num_steps=3, **FIXED), HMCHalfEnergy(step_size=0.9, num_steps=3, **FIXED)),
    ("nuts", mcmc.NUTS(step_size=0.5, **FIXED), NUTSHeavyMerge(step_size=0.5, **FIXED)),
]


@pytest.mark.statistical
@pytest.mark.slow
@pytest.mark.parametrize("name,kernel,twin", CASES, ids=[c[0] for c in CASES])
def test_kernel_leaves_conjugate_posterior_invariant_and_twin_fails(name, kernel, twin, monkeypatch):
    key = jax.random.key(20240611)
    out = run_from_exact(kernel, key)
    p = pvalues(out)
    assert not rejects(p), f"{name}: draws left the posterior (alpha = {ALPHA:.2g}): {p}"
    moved = float(np.mean(np.asarray(out["moved"])))
    assert moved > MOVED_MIN, f"{name}: only {moved:.3f} of the chains moved in {STEPS} steps"
    if name == "nuts":
        monkeypatch.setattr(nuts, "_merge_probability", _heavy_merge)
    p_bug = pvalues(run_from_exact(twin, key))
    assert rejects(p_bug), f"{name}: planted bug not detected (alpha = {ALPHA:.2g}): {p_bug}"


@pytest.mark.exact
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
