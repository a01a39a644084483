"""The kernel protocol and the adaptation protocol, through their public objects.

- every shipped bound kernel satisfies ``mcmc.BoundKernel`` (``runtime_checkable``), and the
  gradient kernels' adaptation satisfies ``mcmc.Adaptation``;
- a minimal kernel written only against the protocol (independent Metropolis from the prior, on
  ``mcmc.TraceState``) runs under ``mcmc.sample``, inside ``cycle`` and ``block_gibbs`` and as SMC
  rejuvenation, and passes the exact invariance law ``semantics.laws.invariant`` alone and
  composed with shipped kernels;
- the window adaptation's schedule and params updates, through ``mcmc.WindowAdaptation``;
- a user-written adaptation paired with a shipped transition by ``mcmc.Adapted`` is what the
  driver runs (the tuning is not hidden in the kernel);
- tempered SMC steers the step size to the kernel's own ``target_accept_prob``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import hmc_util

import ppl
from inference import mcmc, smc
from inference.mcmc import TraceState
from inference.mcmc.blocks import BlockState
from ppl import dist
from semantics import laws


@ppl.model
def coins():
    a = ppl.sample("a", dist.Bernoulli(probs=0.3))
    b = ppl.sample("b", dist.Bernoulli(probs=jnp.where(a == 1, 0.8, 0.4)))
    ppl.sample("y", dist.Bernoulli(probs=jnp.where(a + b == 1, 0.9, 0.2)), obs=1)


@ppl.model
def normal_mean():
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    ppl.sample("y", dist.Normal(mu, 1.0), obs=0.5)


# -- a kernel written only against the protocol -------------------------------------------------------


class _IndependentBound:
    """Independent Metropolis with the prior as proposal: t' ~ p(·), α = min(1, L(t') / L(t))."""

    def __init__(self, model, args, kwargs):
        self.model, self.args, self.kwargs = ppl.as_model(model), tuple(args), dict(kwargs or {})

    def init(self, key, init=None):
        return TraceState(self.model.simulate(key, *self.args, **self.kwargs))

    def step(self, key, state, params=None):
        k_prop, k_acc = jax.random.split(key)
        tr = state.trace
        new = self.model.simulate(k_prop, *tr.args, **tr.kwargs)
        acc, p = mcmc.metropolis_accept(k_acc, new.log_likelihood - tr.log_likelihood)
        out = jax.tree.map(lambda n, o: jnp.where(acc, n, o), new, tr)
        return TraceState(out), {"accept_prob": p}

    def samples(self, state):
        return dict(state.trace.latent)

    def log_density(self, state):
        return state.trace.log_density

    def explain(self, state):
        return "the prior draw has zero likelihood"


@dataclasses.dataclass(frozen=True)
class Independent(mcmc.Kernel):
    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _IndependentBound(model, args, kwargs)


def _on_traces(bound, wrap=TraceState, unwrap=lambda s: s.trace):
    return lambda key, tr: unwrap(bound.step(key, wrap(tr))[0])


def test_every_shipped_kernel_satisfies_the_protocol():
    within = mcmc.Within(mcmc.NUTS(), "mu")
    for k in (mcmc.NUTS(), mcmc.HMC(num_steps=3), mcmc.MALA(), mcmc.RWM()):
        b = k.bind(normal_mean, (), {}, 10)
        assert isinstance(b, mcmc.BoundKernel) and isinstance(b, mcmc.Adapted)
        assert isinstance(b.kernel, mcmc.BoundKernel) and isinstance(b.kernel, mcmc.BoundGradient)
        assert isinstance(b.adaptation, mcmc.Adaptation) and isinstance(b.adaptation, mcmc.WindowAdaptation)
        chain = b.init(jax.random.key(0))
        assert isinstance(chain, mcmc.Chain) and isinstance(chain.params, mcmc.GradParams)
        assert chain.x is chain.state.x  # reads of the kernel state's fields pass through
    for k in (mcmc.Gibbs("a"), mcmc.Regenerate("a"), mcmc.cycle(mcmc.Gibbs("a"), mcmc.Gibbs("b")),
              mcmc.mixture([mcmc.Gibbs("a"), mcmc.Gibbs("b")]), mcmc.block_gibbs(mcmc.Gibbs("a"), mcmc.Gibbs("b"))):
        b = k.bind(coins, (), {})
        assert isinstance(b, mcmc.BoundKernel) and isinstance(b, mcmc.BoundBase), k
    assert isinstance(within.bind(normal_mean, (), {}), mcmc.BoundKernel)
    pmmh = smc.PMMH(lambda key, theta: jnp.asarray(0.0)).bind(normal_mean, (), {})
    assert isinstance(pmmh, mcmc.BoundKernel) and isinstance(pmmh, mcmc.BoundBase)
    assert isinstance(Independent().bind(coins), mcmc.BoundKernel)
    assert not isinstance(object(), mcmc.BoundKernel)


@pytest.mark.exact
def test_a_protocol_only_kernel_is_invariant_alone_in_a_cycle_and_in_block_gibbs():
    laws.invariant(_on_traces(Independent().bind(coins)), coins).assert_()
    laws.invariant(_on_traces(mcmc.cycle(Independent(), mcmc.Gibbs("a")).bind(coins)), coins).assert_()
    bg = mcmc.block_gibbs(mcmc.Gibbs("b"), Independent()).bind(coins)
    laws.invariant(_on_traces(bg, lambda tr: BlockState(tr, (None, None))), coins).assert_()


def test_a_protocol_only_kernel_runs_under_the_driver_and_as_smc_rejuvenation():
    run = mcmc.sample(jax.random.key(0), Independent(), coins, num_warmup=5, num_samples=50, num_chains=2, progress=False)
    a = np.asarray(run.samples["a"])
    assert a.shape == (2, 50) and set(np.unique(a)) <= {0, 1}
    assert np.asarray(run.info["accept_prob"]).shape == (2, 50)
    run2 = mcmc.sample(jax.random.key(0), mcmc.block_gibbs(mcmc.Gibbs("a"), Independent()), coins,
                       num_warmup=5, num_samples=20, num_chains=2, progress=False)
    assert np.asarray(run2.samples["b"]).shape == (2, 20)

    @ppl.model
    def flips(y):
        p = ppl.sample("p", dist.Beta(2.0, 2.0))
        with ppl.plate("n", y.shape[0]):
            ppl.sample("y", dist.Bernoulli(probs=p), obs=y)

    y = jnp.array([1.0, 1.0, 0.0, 1.0])
    res = smc.resample_move(jax.random.key(1), flips, [y[:2], y[2:]], 64, Independent())
    assert np.isfinite(float(res.log_evidence)) and np.isfinite(float(res.acceptance[1]))


# -- adaptation as a separate object ------------------------------------------------------------------


def test_window_adaptation_schedule_and_params():
    n, d = 200, 2
    U = lambda x: 0.5 * jnp.sum(x**2 / jnp.array([4.0, 1.0]))  # noqa: E731
    vg = jax.value_and_grad(U)
    wa = mcmc.WindowAdaptation(vg, d, step_size=0.5, find_heuristic_step_size=False)
    xs = jax.random.normal(jax.random.key(0), (n, d)) * jnp.array([2.0, 1.0])

    def state(x):
        return mcmc.GradState(x, *vg(x))

    a = wa.init(jax.random.key(1), state(xs[0]), n)
    p0 = wa.params(a)
    assert float(p0.step_size) == 0.5 and np.all(np.asarray(p0.inverse_mass_matrix) == 1.0)
    schedule = hmc_util.build_adaptation_schedule(n)
    ends = {w.end for w in schedule[1:-1]}  # the middle windows' ends: the mass matrix changes there
    # the updates as the driver runs them: one compiled scan over the steps (eagerly, each
    # update is hundreds of tiny dispatches: minutes for 200 steps)
    def step(a, tx):
        t, x = tx
        a = wa.update(a, t, state(x), {"accept_prob": jnp.asarray(0.95)})
        p = wa.params(a)
        return a, (p.inverse_mass_matrix, p.step_size)

    _, (imm, ss) = jax.jit(lambda a: jax.lax.scan(step, a, (jnp.arange(n), xs)))(a)
    imm, ss = list(np.asarray(imm)), [float(v) for v in np.asarray(ss)]
    changed = {t for t in range(1, n) if not np.array_equal(imm[t], imm[t - 1])}
    assert changed == ends
    # at the end of the first middle window: the regularised sample variance of its positions
    w = schedule[1]
    win = np.asarray(xs[w.start: w.end + 1], float)
    m = win.shape[0]
    want = (m / (m + 5.0)) * win.var(axis=0, ddof=1) + 1e-3 * (5.0 / (m + 5.0))
    np.testing.assert_allclose(imm[w.end], want, rtol=1e-5)
    # acceptance above the target: dual averaging raises the step size
    assert ss[schedule[0].end] > 0.5


def test_grad_params_make_square_roots():
    A = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    p = mcmc.GradParams.make(0.3, A)
    M = np.linalg.inv(np.asarray(A))
    np.testing.assert_allclose(np.asarray(p.mass_matrix_sqrt @ p.mass_matrix_sqrt.T), M, rtol=1e-5)
    pd = mcmc.GradParams.make(0.3, jnp.array([4.0, 1.0]))
    np.testing.assert_allclose(np.asarray(pd.mass_matrix_sqrt), [0.5, 1.0], rtol=1e-6)


class Halving:
    """A user adaptation: the step size halves at every warmup step; the mass matrix stays."""

    def __init__(self, bound):
        self.bound = bound

    def init(self, key, state, num_warmup):
        return jnp.asarray(1.0, state.x.dtype)

    def params(self, adapt_state):
        return self.bound.params(adapt_state, jnp.ones(self.bound.view.dim, adapt_state.dtype))

    def update(self, adapt_state, t, state, info):
        return adapt_state / 2


@dataclasses.dataclass(frozen=True)
class HalvingRWM(mcmc.RWM):
    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        bound = mcmc.RWM().bind(model, args, kwargs, num_warmup).kernel
        return mcmc.Adapted(bound, Halving(bound), num_warmup)


def test_the_driver_runs_a_user_adaptation_paired_by_adapted():
    assert isinstance(Halving(None), mcmc.Adaptation)
    run = mcmc.sample(jax.random.key(0), HalvingRWM(), normal_mean, num_warmup=4, num_samples=3, num_chains=2, progress=False)
    np.testing.assert_array_equal(np.asarray(run.info["step_size"]), np.full((2, 3), 1.0 / 16))


def test_tempered_smc_steers_to_the_kernels_own_target_acceptance():
    out = {}
    for target in (0.2, 0.8):
        r = smc.tempered_smc(jax.random.key(0), normal_mean, num_particles=64, kernel=mcmc.RWM(target_accept_prob=target),
                             betas=jnp.linspace(0.1, 1.0, 6))
        out[target] = np.asarray(r.acceptance)
    assert out[0.2][0] == out[0.8][0]  # the first move uses the initial step size
    assert out[0.2][-1] < out[0.8][-1]  # then a larger step (lower acceptance) for the lower target
