"""Issue 19: the unbiased-gradient law for every autoguide added by the issue, and flow guides.

**The law, exactly.** Every reparameterised autoguide draws its randomness as standard-normal noise
ε (a parameter-free distribution) and maps it through its parameters.  Replace the noise
distribution by a Gauss–Hermite product rule (an interpreter of ``ppl.randomness.draw``, like
``test_vi_generated``'s): the rule is a measure over ε with parameter-free nodes and weights, so an
unbiased estimator's mean under it must equal ``jax.grad`` of the objective's value under the
same rule, *to rounding*, whatever the integrand (node count only changes which measure).  The
shipped estimator (``vi.elbo(...).grad``) runs under that interpreter; the reference is written
here without VI code: u(ε) by hand from the guide's parameters, log q by the change of variables
with ``jax.jacfwd`` (log N(ε) − log|det ∂u/∂ε| − Σ log|det J_T|), log p by ``model.log_density``.
Cases: low-rank, full-rank (scaled unit lower Cholesky), Laplace used as a guide, and flow guides
(masked autoregressive; block neural autoregressive; masked autoregressive with a score-function
strategy on its base noise), on a two-site model with a positive site (so the sites' transforms
and the joint guides' point-mass sites are exercised).  Planted twins: the flow's
log-determinant left out of the guide density; the full-rank factor detached in the reparam rule.

**Flow densities, exactly.** The log density a flow guide's trace reports equals the change of
variables computed independently (``jax.jacfwd`` of the draw as a function of the base noise) for
every flow of ``vi.FLOWS``, and the model scores the trace.

**Flows fit better (statistical).** On a banana-shaped 2-d posterior the block-NAF guide's ELBO
exceeds the mean-field guide's (one-sided z-test of the difference of two Monte Carlo means,
level from ``tests/_budget.py``); the twin whose flow density lacks the log-determinant is caught.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro.distributions.transforms import biject_to

import ppl
from inference import vi
from inference.vi import flows as vi_flows
from ppl import dist
from ppl.errors import ArgumentError
from ppl.randomness import interpreter

pytestmark = [pytest.mark.exact]

N_NODES = 3
GH_T, GH_W = np.polynomial.hermite.hermgauss(N_NODES)


def _normal_base(d):
    while type(d).__name__ in ("Independent", "ExpandedDistribution"):
        d = d.base_dist
    if type(d).__name__ != "Normal":
        raise AssertionError(f"unexpected continuous draw from {d}")
    return d


class RuleInterpreter:
    """Answers the i-th standard-normal coordinate drawn in a run with ``√2 · t[i]`` (mapped
    through the draw's own location and scale), t one point of the product rule.  Not eager: the
    program is traced under ``jit``/``vmap`` as the user's compiled estimator is."""

    eager = False

    def __init__(self, t):
        self.t, self.used = t, 0

    def draw(self, key, d, sample_shape, name):
        shape = tuple(sample_shape) + tuple(d.batch_shape) + tuple(d.event_shape)
        base = _normal_base(d)
        n = int(np.prod(shape)) if shape else 1
        t = jnp.reshape(self.t[self.used : self.used + n], shape)
        self.used += n
        return jnp.broadcast_to(base.loc + base.scale * math.sqrt(2.0) * t, shape)


def rule_points(dim):
    """The product rule in `dim` dimensions: points (P, dim) and weights (P,) summing to 1."""
    idx = np.array(list(np.ndindex(*([N_NODES] * dim))))
    return GH_T[idx], np.prod(GH_W[idx] / math.sqrt(math.pi), axis=1)


def expectation(fn, dim=2):
    """Σ over the product rule's points of weight × fn(key), fn drawing every coordinate of its
    noise through ``ppl.randomness.draw`` (all `dim` coordinates, checked), compiled."""
    T, W = rule_points(dim)
    used = []

    def one(t):
        it = RuleInterpreter(t)
        with interpreter(it):
            out = fn(jax.random.key(0))
        used.append(it.used)
        return out

    vals = jax.jit(jax.vmap(one))(jnp.asarray(T))
    assert used == [dim], f"the program drew {used} noise coordinates, expected {dim}"
    return jax.tree_util.tree_map(lambda v: np.tensordot(W, np.asarray(v, np.float64), axes=1), vals)


def rule_expectation(f, dim):
    """Σ_nodes w f(ε) over the same product rule in `dim` dimensions (the reference's side)."""
    T, W = rule_points(dim)
    return jnp.dot(jnp.asarray(W), jax.vmap(f)(jnp.asarray(math.sqrt(2.0) * T)))


Y = 0.8


@ppl.model
def two_sites(y):
    x = ppl.sample("x", dist.Normal(0.3, 1.2))
    s = ppl.sample("s", dist.LogNormal(0.0, 0.5))
    ppl.sample("y", dist.Normal(x, s), obs=y)


def reference_elbo(u_of_eps, dim=2):
    """E_rule[log p(y, z) − log q(z)], z = (u0, exp u1), log q by the change of variables."""

    def integrand(eps):
        u = u_of_eps(eps)
        J = jax.jacfwd(u_of_eps)(eps)
        log_q = jnp.sum(dist.Normal(0.0, 1.0).log_prob(eps)) - jnp.linalg.slogdet(J)[1] - u[1]
        return two_sites.log_density({"x": u[0], "s": jnp.exp(u[1])}, Y) - log_q

    return rule_expectation(integrand, dim)


def _flow_bijection(flow, options):
    """The guide's flow rebuilt as auto_flow documents it (flowjax constructor, key 0, sampling
    direction), with an `unravel` for its trainable arrays."""
    import equinox as eqx
    import flowjax.distributions as fd
    import paramax
    from flowjax import flows
    from jax.flatten_util import ravel_pytree

    fl = getattr(flows, vi.FLOWS[flow])(jax.random.key(0), base_dist=fd.Normal(jnp.zeros(2)), invert=False, **options)
    params, static = eqx.partition(fl.bijection, eqx.is_inexact_array, is_leaf=lambda x: isinstance(x, paramax.NonTrainable))
    unravel = ravel_pytree(params)[1]
    return lambda theta: paramax.unwrap(eqx.combine(unravel(theta), static))


def _gaussian_u(L_of):
    return lambda p: (lambda eps: p["auto/loc"] + L_of(p) @ eps)


def _full_rank_L(p):
    return biject_to(dist.constraints.scaled_unit_lower_cholesky)(p["auto/scale_tril"])


def _low_rank_L(p):
    W, d = p["auto/cov_factor"], biject_to(dist.constraints.softplus_positive)(p["auto/cov_diag"])
    return jnp.linalg.cholesky(W @ W.T + jnp.diag(d))


def _flow_u(flow, options):
    bij = _flow_bijection(flow, options)
    return lambda p: (lambda eps: p["auto/loc"] + jnp.exp(p["auto/scale"]) * bij(p["auto/flow"]).transform(eps))


FLOW_OPTS = {"masked_autoregressive": {"flow_layers": 2, "nn_width": 4}, "block_neural_af": {"nn_block_dim": 2}}


def case(name):
    """(guide, params off the optimum, strategies, u(params)(ε))."""
    strategies = None
    if name == "low_rank":
        guide, u_of = vi.auto_low_rank_normal(two_sites, Y, rank=1, init="zeros"), _gaussian_u(_low_rank_L)
    elif name == "full_rank":
        guide, u_of = vi.auto_multivariate_normal(two_sites, Y, init="zeros"), _gaussian_u(_full_rank_L)
    elif name == "laplace":
        fit = vi.laplace(two_sites, Y)
        guide, u_of = fit.guide, _gaussian_u(_full_rank_L)
    else:
        flow = "masked_autoregressive" if name.startswith("maf") else "block_neural_af"
        guide, u_of = vi.auto_flow(two_sites, Y, flow=flow, init="zeros", **FLOW_OPTS[flow]), _flow_u(flow, FLOW_OPTS[flow])
        if name.endswith("reinforce_base"):
            strategies = {"_aux/auto/base": "reinforce"}
    obj = vi.elbo(two_sites, guide, strategies=strategies)
    p = obj.init_params(jax.random.key(1), Y)
    if name == "laplace":  # the guide starts at the Laplace fit (its params are constrained values)
        np.testing.assert_allclose(_full_rank_L(p), fit.params["auto/scale_tril"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(p["auto/loc"], fit.params["auto/loc"], rtol=1e-12)
    # move every parameter off its start (and off the optimum) by a fixed pattern
    p = {k: v + 0.1 * jnp.cos(jnp.arange(v.size, dtype=jnp.float64) + len(k)).reshape(v.shape) for k, v in p.items()}
    return obj, p, u_of


CASES = ["low_rank", "full_rank", "laplace", "maf", "bnaf", "maf_reinforce_base"]


def law_error(name):
    obj, p, u_of = case(name)
    mean = expectation(lambda key: obj.grad(key, p, Y)[1])
    truth = jax.jit(jax.grad(lambda q: reference_elbo(u_of(q))))(p)
    assert set(mean) == set(truth)
    scale = max(1.0, max(float(np.max(np.abs(truth[k]))) for k in truth))
    return max(float(np.max(np.abs(mean[k] - np.asarray(truth[k])))) for k in truth) / scale


@pytest.mark.parametrize("name", CASES)
def test_expected_gradient_is_exact_for_every_new_guide(name):
    assert law_error(name) < 1e-9


def test_planted_twin_flow_density_without_its_log_determinant(monkeypatch):
    orig = vi_flows._site_point_masses
    monkeypatch.setattr(vi_flows, "_site_point_masses", lambda sites, u, extra: orig(sites, u, 0.0 * extra))
    assert law_error("maf") > 1e-3


def test_planted_twin_full_rank_factor_detached(monkeypatch):
    from inference.vi import reparam as vi_reparam

    orig = vi_reparam._reparam

    def bad(d, V):
        rep = orig(d, V)
        if type(d).__name__ == "MultivariateNormal":
            return rep[0], lambda e: d.loc + jnp.einsum("...ij,...j->...i", jax.lax.stop_gradient(d.scale_tril), e)
        return rep

    monkeypatch.setattr(vi_reparam, "_reparam", bad)
    assert law_error("full_rank") > 1e-3


# -- flow densities: the trace's log density is the change of variables --------------------------

@ppl.model
def positive_and_vector():
    ppl.sample("s", dist.HalfNormal(1.0))
    ppl.sample("v", dist.Normal(jnp.zeros(2), 1.0).to_event(1))


SMALL = {
    "block_neural_af": {"nn_block_dim": 2},
    "masked_autoregressive": {"flow_layers": 2, "nn_width": 4},
    "coupling": {"flow_layers": 2, "nn_width": 4},
    "triangular_spline": {"flow_layers": 2, "knots": 4},
    "planar": {"flow_layers": 2},
}


@pytest.mark.parametrize("flow", ["block_neural_af", "masked_autoregressive", "coupling", "planar"])
def test_flow_guide_log_density_is_the_change_of_variables(flow):
    import equinox as eqx
    import flowjax.distributions as fd
    import paramax
    from flowjax import flows
    from jax.flatten_util import ravel_pytree

    guide = vi.auto_flow(positive_and_vector, flow=flow, init="zeros", key=jax.random.key(3), **SMALL[flow])
    fl = getattr(flows, vi.FLOWS[flow])(jax.random.key(3), base_dist=fd.Normal(jnp.zeros(3)), invert=False, **SMALL[flow])
    params, static = eqx.partition(fl.bijection, eqx.is_inexact_array, is_leaf=lambda x: isinstance(x, paramax.NonTrainable))
    theta, unravel = ravel_pytree(params)
    # constrained parameter values off the flow's start: every weight moved
    p = {"auto/flow": theta + 0.2 * jnp.sin(jnp.arange(theta.size) + 1.0), "auto/loc": jnp.array([0.3, -0.2, 0.1]),
         "auto/scale": jnp.array([0.5, 1.2, 0.8])}
    bij = paramax.unwrap(eqx.combine(unravel(p["auto/flow"]), static))

    def u_of(eps):
        return p["auto/loc"] + p["auto/scale"] * bij.transform(eps)

    def check(key):
        tr = ppl.substitute(guide, p).simulate(key)
        eps = tr.choices["_aux/auto/base"]
        u = u_of(eps)
        expected = jnp.sum(dist.Normal(0.0, 1.0).log_prob(eps)) - jnp.linalg.slogdet(jax.jacfwd(u_of)(eps))[1] - u[0]
        return tr.choices["s"], jnp.exp(u[0]), tr.choices["v"], u[1:], tr.log_density, expected, positive_and_vector.log_density(tr.choices)

    s, s_exp, v, v_exp, lq, lq_exp, lp = jax.jit(jax.vmap(check))(jax.random.split(jax.random.key(0), 4))
    np.testing.assert_allclose(s, s_exp, rtol=1e-12)
    np.testing.assert_allclose(v, v_exp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lq, lq_exp, rtol=1e-10, atol=1e-10)
    assert np.all(np.isfinite(lp))


def test_auto_flow_errors_name_the_option():
    with pytest.raises(ArgumentError, match="'spline'.*expected one of"):
        vi.auto_flow(two_sites, Y, flow="spline")
    with pytest.raises(ArgumentError, match="'nn_width' is not an option of flow 'block_neural_af'"):
        vi.auto_flow(two_sites, Y, nn_width=3)
    with pytest.raises(ArgumentError, match="init_scale"):
        vi.auto_flow(two_sites, Y, init_scale=-1.0)
    only_x = ppl.model(lambda: ppl.sample("x", dist.Normal(0.0, 1.0)))
    with pytest.raises(ArgumentError, match="coupling.*at least 2"):
        vi.auto_flow(only_x, flow="coupling")


def test_auxiliary_addresses_are_ignored_by_the_model_and_others_still_refused():
    from ppl.errors import AddressError

    m = ppl.model(lambda: ppl.sample("z", dist.Normal(0.0, 1.0)))
    assert float(m.log_density({"z": 0.0, "_aux/anything": jnp.ones(3)})) == pytest.approx(-0.5 * math.log(2 * math.pi))
    with pytest.raises(AddressError, match="'extra'"):
        m.log_density({"z": 0.0, "extra": 1.0})


# -- a flow fits a banana better than mean field (statistical) -----------------------------------

@ppl.model
def banana():
    x = ppl.sample("x", dist.Normal(0.0, 1.0))
    ppl.sample("y", dist.Normal(x**2, 0.5))  # latent too: a normalised 2-d banana, log Z = 0


M_EVAL = 4000


def fitted_elbo_draws(guide, key):
    """M_EVAL log weights log p(z) − log q(z) of the guide after 1500 Adam steps (1e-2)."""
    obj = vi.elbo(banana, guide, num_particles=4)
    fit = vi.fit(jax.random.key(0), obj, optax.adam(1e-2), num_steps=1500, progress=False)
    draws = jax.jit(jax.vmap(lambda k: vi.log_weight(banana, ppl.substitute(guide, fit.params).simulate(k))))
    return np.asarray(draws(jax.random.split(key, M_EVAL)))


def flow_beats_mean_field(monkeypatch=None):
    from _budget import BUDGET

    mf = fitted_elbo_draws(vi.auto_normal(banana), jax.random.key(1))
    guide = vi.auto_flow(banana, nn_block_dim=4)
    if monkeypatch is not None:  # the twin: the flow fitted with its log-determinant left out of log q
        orig = vi_flows._site_point_masses
        monkeypatch.setattr(vi_flows, "_site_point_masses", lambda sites, u, extra: orig(sites, u, 0.0 * extra))
        guide = vi.auto_flow(banana, nn_block_dim=4)
    obj = vi.elbo(banana, guide, num_particles=4)
    fit = vi.fit(jax.random.key(0), obj, optax.adam(1e-2), num_steps=1500, progress=False)
    if monkeypatch is not None:
        monkeypatch.undo()  # evaluated with the true density (checked exactly above)
    draws = jax.jit(jax.vmap(lambda k: vi.log_weight(banana, ppl.substitute(guide, fit.params).simulate(k))))
    fl = np.asarray(draws(jax.random.split(jax.random.key(2), M_EVAL)))
    # H0: ELBO(flow) <= ELBO(mean field); z of the difference of two independent means (one-sided)
    diff = fl.mean() - mf.mean()
    se = math.sqrt(fl.var(ddof=1) / M_EVAL + mf.var(ddof=1) / M_EVAL)
    z_crit = float(jax.scipy.special.ndtri(1.0 - BUDGET.level("vi/flow_beats_mean_field")))
    return diff / se > z_crit, (fl.mean(), mf.mean(), diff / se, z_crit)


@pytest.mark.statistical
def test_flow_guide_fits_a_banana_better_than_mean_field():
    ok, info = flow_beats_mean_field()
    assert ok, info


@pytest.mark.statistical
def test_flow_twin_without_log_determinant_does_not(monkeypatch):
    ok, info = flow_beats_mean_field(monkeypatch)
    assert not ok, info
