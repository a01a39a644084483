"""Simulation-based calibration (semantics.stats.sbc) of NUTS with window adaptation.

Model: mu ~ N(0, 1), sigma ~ HalfNormal(1), three observations y_i ~ N(mu, sigma).  Each of
S = 600 simulations draws (mu, sigma, y) from the prior predictive and runs one NUTS chain on
its y (warmup 200 steps with step-size and mass-matrix adaptation, then 19 draws thinned by 4);
the simulations run vectorised, as 600 chains of one compiled program.  When NUTS samples the
posterior, the rank of the true value among the 19 draws is uniform on {0..19}; a χ² test on 4
rank bins at the declared level ``mcmc/sbc`` (tests/_budget.py, 2 decisions) checks it, for mu and for sigma.

The planted-bug twin forgets the log-Jacobian of sigma's exp transform (it samples p(sigma | y)
/ sigma) and must fail the same check on sigma with the same seed.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import pytest

import ppl
from inference import mcmc
from ppl import dist
from semantics import stats
from _budget import BUDGET

# `extended` (deselected by `make test`, run by `make test-all`): default NUTS's law is checked in
# the default run by the reference posteriors (test_mcmc_reference.py, whose Jacobian twin is this
# one's) and the conjugate invariance test (test_mcmc_gradient.py); docs/design/testing.md lists it.
pytestmark = [pytest.mark.statistical, pytest.mark.slow, pytest.mark.extended]

N_OBS, S, L, THIN, WARMUP, BINS = 3, 600, 19, 4, 200, 4


@ppl.model
def normal_scale(y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(1.0))
    with ppl.plate("data", N_OBS):
        ppl.sample("y", dist.Normal(mu, sigma), obs=y)


def prior_predictive(key):
    tr = normal_scale.simulate(key)
    return jnp.stack([tr["mu"], tr["sigma"]]), tr["y"]


@dataclasses.dataclass(frozen=True)
class NUTSNoJacobian(mcmc.NUTS):
    """Bug: the potential forgets log|dsigma/dx| = x_sigma (sigma = exp(x_sigma), index 1)."""

    def target_potential(self, view):
        return lambda z: view.potential(z) + z[1]


@functools.partial(jax.jit, static_argnums=0)
def nuts_draws(kernel, key, y):
    """(L, 2) thinned NUTS draws of (mu, sigma) given y, after warmup (one chain)."""
    b = kernel.bind(normal_scale, (y,), {}, WARMUP)
    k0, k1, k2 = jax.random.split(key, 3)
    state = b.init(k0)

    def warm(s, xs):
        t, k = xs
        return b.warmup_step(k, s, t)[0], None

    state, _ = jax.lax.scan(warm, state, (jnp.arange(WARMUP), jax.random.split(k1, WARMUP)))

    def draw(s, k):
        s = jax.lax.fori_loop(0, THIN, lambda i, s: b.step(jax.random.fold_in(k, i), s)[0], s)
        v = b.samples(s)
        return s, jnp.stack([v["mu"], v["sigma"]])

    _, out = jax.lax.scan(draw, state, jax.random.split(k2, L))
    return out


def run_sbc(kernel, seed: int = 11):
    """SBC of mu and of sigma from one run of the S chains (``stats.sbc_many``: the same keys as
    ``stats.sbc`` of each; it vmaps the S simulations into S chains)."""
    return stats.sbc_many(
        prior_predictive,
        lambda k, y, n: nuts_draws(kernel, k, y),
        num_simulations=S,
        num_draws=L,
        seed=seed,
        bins=BINS,
        alpha=BUDGET.level("mcmc/sbc"),
    )


def test_nuts_is_calibrated_and_twin_without_jacobian_is_not():
    for r, name in zip(run_sbc(mcmc.NUTS()), ("mu", "sigma")):
        assert r.ok, f"{name}: {r.message}"
    bug = run_sbc(NUTSNoJacobian())[1]
    assert not bug.ok, bug.message
