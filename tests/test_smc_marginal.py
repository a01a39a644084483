"""Issue 14: tempered SMC on models with summed-out discrete sites (the marginal model).

The path is on the continuous unconstrained x, z summed out at every β:
log γ_β(x) = log p_0(x) + β (log p_1(x) − log p_0(x)), p_1(x) = Σ_z p(x, z, y) and
p_0(x) = Σ_z p(x, z), both with the Jacobian of x's transform.  Exact (float64, 1e-10): at
β = 0 and 1 it is the log of ``semantics.enumerate``'s total mass of the prior model (the model
written without its observations and factors) and of the model, with x substituted; at an
intermediate β the potential of the kernel bound to it is −log γ_β, and so is the potential the
shipped loop's kernel sees.  Models: a Bernoulli site in a plate, a Categorical site in a plate
with a continuous site depending on it (p_0 is itself a marginal) and a positive scale (a
Jacobian), and a chain of discrete states in a ``ppl.scan`` with a factor outside.

Also here: models without summed-out sites run the code they ran before (draws bit for bit the
same as the previous source, rebuilt by edits of the shipped one); a model reducing z across
its plate is refused by name; same key, same result.  The statistical laws (unbiased Ẑ with a
fixed schedule, the posterior mean) are in ``test_smc_stats.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from inference import mcmc, smc
from inference.smc.tempering import TemperedTarget
from ppl import dist
from ppl.errors import ModelError

from _smc_plant import plant

pytestmark = [pytest.mark.exact, pytest.mark.slow]

TOL = 1e-10
Y4 = jnp.array([0.1, 2.5, 3.0, -1.0])
Y3 = jnp.array([0.4, -1.2, 2.2])
W3 = jnp.array([0.2, 0.5, 0.3])
M3 = jnp.array([-1.5, 0.0, 2.0])
P2 = jnp.array([[0.8, 0.2], [0.3, 0.7]])


def bernoulli_mixture(observe=True):
    @ppl.model
    def m(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
        with ppl.plate("data", y.shape[0]):
            z = ppl.sample("z", dist.Bernoulli(0.3))
            if observe:
                ppl.sample("y", dist.Normal(mu * z, 1.0), obs=y)

    return m


def dependent(observe=True):
    """x_i depends on z_i: p_0(x) = p(s) Π_i Σ_k w_k N(x_i; m_k, s) is a marginal itself."""

    @ppl.model
    def m(y):
        s = ppl.sample("s", dist.HalfNormal(1.5))
        with ppl.plate("data", y.shape[0]):
            z = ppl.sample("z", dist.Categorical(W3))
            x = ppl.sample("x", dist.Normal(M3[z], s))
            if observe:
                ppl.sample("y", dist.Normal(x, 0.5), obs=y)

    return m


def chain(observe=True):
    """Discrete states in a ppl.scan (summed out by the forward algorithm) and a factor."""

    @ppl.model
    def m(y):
        c = ppl.sample("c", dist.Normal(0.0, 1.0))

        def step(s, yt):
            s2 = ppl.sample("s", dist.Categorical(probs=P2[s]))
            if observe:
                ppl.sample("y", dist.Normal(c * (2.0 * s2 - 1.0), 1.0), obs=yt)
            return s2, None

        ppl.scan(step, jnp.asarray(0), xs=y, name="hmm")
        if observe:
            ppl.factor("pen", -0.3 * c**2)

    return m


CASES = {
    "bernoulli": (bernoulli_mixture, Y4),
    "dependent": (dependent, Y3),
    "scan": (chain, Y3),
}


def _log_jacobian(name, view, x):
    """log |det J_T(x)| by hand: HalfNormal's s = exp(u); everything else is unconstrained."""
    return view.unravel(x)["s"] if name == "dependent" else jnp.zeros(())


_EXACT: dict = {}


def _exact(name, x):
    """(log p_0(x), log p_1(x)) in unconstrained space, from semantics.enumerate (kept per point)."""
    k = (name, tuple(np.asarray(x).tolist()))
    if k not in _EXACT:
        _EXACT[k] = _exact_at(name, x)
    return _EXACT[k]


def _exact_at(name, x):
    build, y = CASES[name]
    view = ppl.unconstrained(build(), y)
    vals = {k: v for k, v in view.to_constrained(x).items() if k in view.sites}
    lj = float(_log_jacobian(name, view, x))
    lp0 = float(semantics.enumerate(ppl.substitute(build(observe=False), vals), y).log_total_mass())
    lp1 = float(semantics.enumerate(ppl.substitute(build(), vals), y).log_total_mass())
    return lp0 + lj, lp1 + lj


def _points(name, n=2):
    build, y = CASES[name]
    d = ppl.unconstrained(build(), y).dim
    return jax.random.normal(jax.random.key(len(name)), (n, d)) * 1.3


def _close(got, want):
    return abs(float(got) - float(want)) <= TOL * max(1.0, abs(float(want)))


@pytest.mark.parametrize("name", list(CASES))
def test_the_path_at_zero_and_one_is_the_enumerated_prior_and_joint_marginal(name):
    build, y = CASES[name]
    target = TemperedTarget(build(), (y,))
    assert target.marginal
    for x in _points(name):
        lp0, lp1 = _exact(name, x)
        assert _close(target.log_density(x, 0.0), lp0), (float(target.log_density(x, 0.0)), lp0)
        assert _close(target.log_density(x, 1.0), lp1), (float(target.log_density(x, 1.0)), lp1)
        assert _close(target.log_likelihood(x), lp1 - lp0)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("kernel", [mcmc.RWM(), mcmc.NUTS()], ids=["rwm", "nuts"])
def test_the_kernel_bound_at_an_intermediate_beta_targets_the_geometric_path(name, kernel):
    """The potential of the kernel the loop binds is −[(1 − β) log p_0 + β log p_1], and its
    gradient is that of the exact path (central differences of the enumerated densities)."""
    build, y = CASES[name]
    target = TemperedTarget(build(), (y,))
    beta = 0.37
    bound = target.bind(kernel, beta)
    assert isinstance(bound, mcmc.BoundGradient)
    for x in _points(name):
        lp0, lp1 = _exact(name, x)
        want = -((1 - beta) * lp0 + beta * lp1)
        assert _close(bound.potential(x), want), (float(bound.potential(x)), want)
        pe, g = bound.vg(x)
        assert _close(pe, want)
        h = 1e-5
        for i in range(x.shape[0]):
            e = jnp.zeros_like(x).at[i].set(h)
            fd = (float(target.log_density(x + e, beta)) - float(target.log_density(x - e, beta))) / (2 * h)
            assert abs(-float(g[i]) - fd) < 1e-5 * max(1.0, abs(fd)), (i, float(g[i]), fd)


def test_the_loop_binds_its_kernel_through_the_marginal_path(monkeypatch):
    """The compiled loop binds its kernel with TemperedTarget.bind (checked exactly above) at
    each β' of the schedule; the view of tempered_model at β', which tempers p(y | x, z) inside
    the sum over z, is another measure at 0 < β < 1 and is not what the loop binds."""
    build, y = CASES["bernoulli"]  # (here y depends on z: in "dependent" the two paths coincide)
    seen = []
    orig = TemperedTarget.bind

    def spy(self, kern, beta):
        seen.append(beta)
        return orig(self, kern, beta)

    monkeypatch.setattr(TemperedTarget, "bind", spy)
    smc.tempered_smc(jax.random.key(0), build(), y, num_particles=16, betas=jnp.array([0.25, 0.6, 1.0]),
                     kernel="hmc", num_leapfrog=2)
    assert seen, "the loop did not bind its kernel through TemperedTarget.bind"
    x = _points("bernoulli", 1)[0]
    lp0, lp1 = _exact("bernoulli", x)
    other = ppl.unconstrained(smc.tempered_model(build()), 0.25, y).potential(x)
    assert not _close(other, -(0.75 * lp0 + 0.25 * lp1))


def test_an_impossible_observation_makes_no_nan_at_beta_zero():
    """0 · log p(y | x, z) with p = 0 would be NaN: the prior's density leaves the likelihood out."""

    @ppl.model
    def m(y):
        p = ppl.sample("p", dist.Beta(2.0, 2.0))
        with ppl.plate("data", y.shape[0]):
            z = ppl.sample("z", dist.Bernoulli(p))
            ppl.sample("y", dist.Bernoulli(0.0 * z), obs=y)   # y = 1 impossible whatever z

    target = TemperedTarget(m, (jnp.array([1.0, 0.0]),))
    x = jnp.array([0.3])
    assert bool(jnp.isfinite(target.log_density(x, 0.0)))
    assert float(target.log_density(x, 0.5)) == -np.inf
    assert float(target.log_likelihood(x)) == -np.inf


def test_same_key_same_result():
    build, y = CASES["bernoulli"]
    a = smc.tempered_smc(jax.random.key(3), build(), y, num_particles=64, kernel="hmc", num_leapfrog=3)
    b = smc.tempered_smc(jax.random.key(3), build(), y, num_particles=64, kernel="hmc", num_leapfrog=3)
    assert float(a.log_evidence) == float(b.log_evidence)
    assert np.array_equal(np.asarray(a.samples["mu"]), np.asarray(b.samples["mu"]))
    assert "z" not in a.samples  # summed out: recovered by ppl.infer_discrete (test_smc_stats.py)


@ppl.model
def counts(y):
    mu = ppl.sample("mu", dist.Normal(0, 5).expand([2]).to_event(1))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(0.3))
        ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y)
    ppl.factor("few_ones", -0.5 * jnp.sum(z))  # couples the elements: not summable one by one


def test_a_reduction_across_the_plate_is_refused_by_name():
    with pytest.raises(ModelError, match="site 'few_ones' uses the summed-out discrete site"):
        smc.tempered_smc(jax.random.key(0), counts, np.asarray(Y3), num_particles=8, betas=jnp.linspace(0.0, 1.0, 3))


# ---------------------------------------------------------------------------------------------
# models without summed-out sites: the previous code, bit for bit

#: the shipped source edited back to the code before issue 14's marginal path
PREVIOUS = (
    ("""            if target.marginal:  # summed-out sites: the kernel bound to the marginal path's γ_β'
                step_kernel = target.bind(kern, new_beta)
            else:
                bound = kern.bind(target.tempered, (new_beta,) + target.args, target.kwargs)
                # the transition kernel itself (its window adaptation unused), stepped with explicit params
                step_kernel = bound.kernel
""", """            bound = kern.bind(target.tempered, (new_beta,) + target.args, target.kwargs)
            # the transition kernel itself (its window adaptation unused), stepped with explicit params
            step_kernel = bound.kernel
"""),
    ("    _check_summed_out(model, args, kwargs)\n", ""),
    ("        if self.marginal:\n            return self.view_at(1.0).log_likelihood(x)\n", ""),
    ("        if self.marginal:\n            return self.view_at(beta).log_density(x)\n", ""),
)


@ppl.model
def regression(x, y):
    a = ppl.sample("a", dist.Normal(0.0, 3.0))
    s = ppl.sample("s", dist.HalfNormal(2.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(a * x, s), obs=y)


@pytest.mark.parametrize("kernel,betas", [("rwm", None), ("hmc", [0.1, 0.5, 1.0]), ("nuts", None)])
def test_a_model_without_summed_out_sites_runs_the_previous_code_bit_for_bit(monkeypatch, kernel, betas):
    x = jnp.array([0.5, -1.0, 2.0, 0.3])
    y = jnp.array([0.7, -1.9, 3.5, 0.1])
    kw = dict(num_particles=32, kernel=kernel, betas=None if betas is None else jnp.asarray(betas), num_mcmc_steps=2)
    new = smc.tempered_smc(jax.random.key(5), regression, x, y, **kw)
    plant(monkeypatch, "inference/smc/tempering.py", *PREVIOUS)
    old = smc.tempered_smc(jax.random.key(5), regression, x, y, **kw)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------------------------------------
# the other SMC entry points on models with discrete sites: they sample them (nothing is summed
# out), which is right — the particle filter and particle MCMC exactly on discrete-state HMMs
# (test_smc_exact.py, test_smc_pmcmc.py), resample-move on a discrete model with Gibbs moves
# (test_smc_resample_move.py).  But resample-move kept a plated latent site's old value when its
# plate grew with the data (a mixture's z): the new elements shared it, E[Ẑ]/Z = 0.43 on this
# model.  extend_model now refuses that by name.


@ppl.model
def plated_coins(ys):
    g = ppl.sample("g", dist.Categorical(probs=jnp.array([0.6, 0.4])))
    with ppl.plate("data", ys.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(probs=jnp.array([0.3, 0.8])[g]))
        ppl.sample("y", dist.Bernoulli(probs=jnp.array([0.1, 0.7])[z]), obs=ys)


def test_resample_move_refuses_a_latent_site_whose_plate_grows_with_the_data():
    ys = jnp.array([1.0, 0.0])
    with pytest.raises(ModelError, match=r"latent site 'z' has shape \(1,\) in the particles but \(2,\)"):
        smc.resample_move(jax.random.key(0), plated_coins, [ys[:1], ys[1:]], 4, mcmc.Gibbs("z"))
    with pytest.raises(ModelError, match="a site in a plate that grows with the data"):
        smc.resample_move(jax.random.key(0), plated_coins, [ys[:1], ys[1:]], 4)
