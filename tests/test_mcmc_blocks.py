"""Block Gibbs: trace-kernel blocks checked exactly; a gradient kernel within Gibbs checked
statistically against the closed-form posterior of a mixture model (cross-checked by quadrature).

Statistical test: M independent chains start at exact posterior draws of (mu, z); after a few
sweeps of ``block_gibbs(Gibbs("z"), Within(NUTS(), "mu"))`` with frozen tuning their draws must
still follow the posterior.  The four statistics are of independent draws (the fraction below the
mean: exact binomial; the others: z-scores with exact variances), each tested at the budgeted
level ``mcmc/blocks_invariance`` (tests/_budget.py).  The planted-bug twin keeps the potential energy and
gradient NUTS computed in the previous sweep, when z was different (a stale conditional), and
must fail the same check with the same seed.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
import semantics
from inference import mcmc
from inference.mcmc.blocks import BlockState, _BoundBlockGibbs
from inference.mcmc.gradient import GradState
from ppl import dist
from ppl.errors import ModelError
from semantics import laws
from _budget import BUDGET

# ---------------------------------------------------------------------------------------------
# exact: block Gibbs of trace kernels on a finite model


@ppl.model
def net():
    z1 = ppl.sample("z1", dist.Bernoulli(probs=0.3))
    z2 = ppl.sample("z2", dist.Bernoulli(probs=jnp.where(z1 == 1, 0.8, 0.1)))
    c = ppl.sample("c", dist.Categorical(probs=jnp.where(z1 == 1, jnp.array([0.2, 0.3, 0.5]), jnp.array([0.6, 0.3, 0.1]))))
    ppl.sample("x", dist.Bernoulli(probs=jnp.where(z2 == 1, 0.9, 0.2) * jnp.where(c == 2, 1.0, 0.5)), obs=1)


def sweep(kernel, model):
    b = kernel.bind(model, (), {})
    return lambda key, tr: b.step(key, BlockState(tr, (None,) * len(kernel.blocks)))[0].trace


@dataclasses.dataclass(frozen=True)
class GibbsFromPrior(mcmc.Regenerate):
    """Bug: a 'Gibbs' block that redraws from the prior and always accepts."""

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        from inference.mcmc.trace_kernels import TraceState, _BoundRegenerate

        sel = self.selection

        class B(_BoundRegenerate):
            def step(self, key, state):
                new, _ = self.model.regenerate(key, state.trace, ppl.select(sel))
                return TraceState(new), {}

        return B(self, model, args, kwargs)


@pytest.mark.exact
@pytest.mark.slow
def test_block_gibbs_of_trace_kernels_is_invariant_exactly():
    kern = mcmc.block_gibbs(mcmc.Gibbs("z1"), mcmc.MH(_flip_z2))
    # c is not updated by this sweep: irreducible on the block (z1, z2)
    laws.invariant(sweep(kern, net), net, moves=("z1", "z2")).assert_()
    bug = mcmc.block_gibbs(mcmc.Gibbs("z1"), GibbsFromPrior("c"))
    assert not laws.invariant(sweep(bug, net), net).ok


@ppl.model
def _flip_z2(tr):
    ppl.sample("z2", dist.Bernoulli(probs=jnp.where(tr["z2"] == 1, 0.3, 0.6)))


def test_block_gibbs_errors_name_the_problem():
    with pytest.raises(ModelError, match="Within"):
        mcmc.block_gibbs(mcmc.NUTS(), mcmc.Gibbs("z"))
    with pytest.raises(ModelError, match="gradient kernel"):
        mcmc.Within(mcmc.Gibbs("z"), "mu")
    with pytest.raises(ModelError, match="'muu'"):
        mcmc.sample(jax.random.key(0), mcmc.block_gibbs(mcmc.Gibbs("z"), mcmc.Within(mcmc.NUTS(), "muu")), outliers, Y, num_warmup=1, num_samples=1, progress=False)
    with pytest.raises(ModelError, match="discrete"):  # a discrete site inside a gradient block
        mcmc.sample(jax.random.key(0), mcmc.Within(mcmc.NUTS(), ("mu", "z")), outliers, Y, num_warmup=1, num_samples=1, progress=False)


# ---------------------------------------------------------------------------------------------
# statistical: NUTS within Gibbs on a two-component mixture with known weights

W, PRIOR_SD, OUT_SD = 0.3, 2.0, 3.0
Y = jnp.array([-0.4, 0.9, 3.8, 1.2])


@ppl.model
def outliers(y):
    """y_i ~ (1 − w) N(mu, 1) + w N(0, 3²) with indicators z_i; mu ~ N(0, 2²)."""
    mu = ppl.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(probs=W))
        ppl.sample("y", dist.Normal(jnp.where(z == 1, 0.0, mu), jnp.where(z == 1, OUT_SD, 1.0)), obs=y)


def closed_form():
    """Per z configuration: posterior probability, and the Gaussian mu | z, y (mean, var)."""
    y = np.asarray(Y)
    zs = np.array(list(itertools.product([0, 1], repeat=len(y))))
    logp, means, vars_ = [], [], []
    for z in zs:
        inl = z == 0
        k = int(inl.sum())
        lp = np.sum(np.where(z == 1, np.log(W), np.log(1 - W)))
        lp += stats.norm.logpdf(y[~inl], 0.0, OUT_SD).sum()
        if k:
            lp += stats.multivariate_normal.logpdf(y[inl], np.zeros(k), np.eye(k) + PRIOR_SD**2 * np.ones((k, k)))
        v = 1.0 / (1.0 / PRIOR_SD**2 + k)
        logp.append(lp), means.append(v * y[inl].sum()), vars_.append(v)
    logp = np.array(logp)
    p = np.exp(logp - np.logaddexp.reduce(logp))
    return zs, p, np.array(means), np.array(vars_)


ZS, PZ, MZ, VZ = closed_form()
MU_MEAN = float(PZ @ MZ)
MU_VAR = float(PZ @ (VZ + MZ**2) - MU_MEAN**2)
MU_M4 = float(PZ @ (3 * VZ**2 + 6 * VZ * (MZ - MU_MEAN) ** 2 + (MZ - MU_MEAN) ** 4))  # E(mu - E mu)^4
NZ_MEAN = float(PZ @ ZS.sum(1))
NZ_VAR = float(PZ @ ZS.sum(1) ** 2 - NZ_MEAN**2)
M, SWEEPS = 4000, 5
ALPHA = BUDGET.level("mcmc/blocks_invariance")


@pytest.mark.exact
@pytest.mark.slow
def test_closed_form_matches_quadrature():
    g = semantics.integrate(outliers, Y, bounds={"mu": (-12.0, 12.0)}).normalize()
    assert abs(g.mean("mu") - MU_MEAN) < 1e-8
    assert abs(g.expectation(lambda a: float(np.sum(a["z"]))) - NZ_MEAN) < 1e-8


class _StaleBound(_BoundBlockGibbs):
    def refresh(self, bound, trace, w, stored):
        # bug: reuse U(x) and ∇U(x) from the previous sweep, computed under the old z
        x = bound.view.to_unconstrained({a: trace.choices[a] for a in w.addresses})
        old = stored.state
        return mcmc.Chain(GradState(x, old.potential_energy, old.grad), stored.adapt_state, stored.params)


@dataclasses.dataclass(frozen=True)
class StaleBlockGibbs(mcmc.BlockGibbs):
    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _StaleBound(self, model, args, kwargs, num_warmup)


FIXED = dict(adapt_step_size=False, adapt_mass_matrix=False, find_heuristic_step_size=False, step_size=1.5)
BLOCKS = (mcmc.Gibbs("z"), mcmc.Within(mcmc.NUTS(**FIXED), "mu"))


@functools.partial(jax.jit, static_argnums=0)
def run_from_exact(kernel, key):
    b = kernel.bind(outliers, (Y,), {})
    k0, k1, k2, k3 = jax.random.split(key, 4)
    c = jax.random.choice(k0, len(PZ), (M,), p=jnp.asarray(PZ))
    z = jnp.asarray(ZS)[c]
    mu = jnp.asarray(MZ)[c] + jnp.sqrt(jnp.asarray(VZ)[c]) * jax.random.normal(k1, (M,))
    state = jax.vmap(lambda k, m, zz: b.init(k, {"mu": m, "z": zz}))(jax.random.split(k2, M), mu, z)

    def body(state, k):
        state, _ = jax.vmap(b.step)(jax.random.split(k, M), state)
        return state, None

    state, _ = jax.lax.scan(body, state, jax.random.split(k3, SWEEPS))
    return jax.vmap(b.samples)(state)


def check(out) -> dict:
    """Two-sided p-values of four statistics of the M final draws."""
    mu, nz = np.asarray(out["mu"]), np.asarray(out["z"]).sum(-1)
    d2 = (mu - MU_MEAN) ** 2
    z = {
        "mu mean": (mu.mean() - MU_MEAN) / np.sqrt(MU_VAR / M),
        "mu var": (d2.mean() - MU_VAR) / np.sqrt((MU_M4 - MU_VAR**2) / M),
        "sum z": (nz.mean() - NZ_MEAN) / np.sqrt(NZ_VAR / M),
    }
    p = {k: float(2 * stats.norm.sf(abs(v))) for k, v in z.items()}
    p["P(mu < E mu)"] = float(stats.binomtest(int(np.sum(mu < MU_MEAN)), M, _cdf(MU_MEAN)).pvalue)
    return p


def _cdf(t: float) -> float:
    return float(PZ @ stats.norm.cdf(t, MZ, np.sqrt(VZ)))


@pytest.mark.statistical
@pytest.mark.slow
def test_nuts_within_gibbs_leaves_the_mixture_posterior_invariant_and_twin_fails():
    key = jax.random.key(7)
    p = check(run_from_exact(mcmc.BlockGibbs(BLOCKS), key))
    assert min(p.values()) >= ALPHA, p
    p_bug = check(run_from_exact(StaleBlockGibbs(BLOCKS), key))
    assert min(p_bug.values()) < ALPHA, p_bug


def test_block_gibbs_in_the_driver_adapts_and_reports():
    kern = mcmc.block_gibbs(mcmc.Gibbs("z"), mcmc.Within(mcmc.NUTS(), "mu"))
    run = mcmc.sample(jax.random.key(1), kern, outliers, Y, num_warmup=40, num_samples=30, num_chains=2, progress=False)
    assert run.samples["mu"].shape == (2, 30) and run.samples["z"].shape == (2, 30, 4)
    d = run.diagnostics
    assert d["divergences"].shape == (2,) and d["warmup_divergences"].shape == (2,)
    # warmup tuned the gradient block's step size away from its initial value
    assert np.all(d["step_size"] != 1.0) and np.all(d["step_size"] > 0)
    more = run.resume(jax.random.key(2))
    assert more.samples["mu"].shape == (2, 30)
