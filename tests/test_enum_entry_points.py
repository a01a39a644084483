"""Issue 14 audit: every public entry point that runs a model with summed-out discrete sites
refuses a model that reduces such a site across its plate, naming the site, instead of
returning numbers of the wrong marginal.

The check (``ppl.enum.check_summed_out``) needs concrete inputs; entry points that trace the
model (a user's ``jit``, a driver's compiled programs) used to skip it and returned the wrong
marginal silently.  Before this audit these returned numbers for the ``counts`` model below:
``jit`` of ``ppl.marginal_log_density`` and of ``ppl.infer_discrete`` (so ``Run.discrete`` of a
run that was not checked, which is a ``jit(vmap(infer_discrete))``), ``vi.fit`` with
``vi.trace_enum_elbo``, and ``smc.tempered_smc`` (which was wrong for *any* model with
summed-out sites: its weights tempered the likelihood at one prior draw of them; it refused
such models by name, and now tempers the marginal model and checks at its concrete inputs:
``test_smc_marginal.py``).  Already refusing: ``mcmc.sample`` (gradient kernels; its own
test is in ``test_enum_reductions.py``), ``vi.map`` / ``vi.laplace`` / ``vi.pathfinder`` and
the autoguides (they build the view at concrete inputs), ``sequential`` (through its
``infer``).  Not enumerating at all (nothing to check): ``mcmc.Gibbs`` and ``block_gibbs``
(the discrete sites are sampled, with an exact MH correction), ``smc.resample_move`` (trace
kernels), ``ppl.predictive``, ``inference.causal``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
import semantics
from inference import mcmc, sequential, smc, vi
from ppl import dist
from ppl.errors import ModelError
from tests._enum_models import REFUSED, counts, fine, mixture

Y = jnp.array([0.1, 2.0, -1.0])


@ppl.model
def guide(y):
    ppl.sample("mu", dist.Normal(ppl.param("loc", jnp.zeros(2)), 0.1).to_event(1))


def laplace(key, model, *args, **kwargs):
    return vi.laplace(model, *args, max_steps=3, **kwargs)


ENTRY_POINTS = {
    # failed before the audit (returned numbers)
    "jit(marginal_log_density)": lambda m: jax.jit(lambda mu: ppl.marginal_log_density(m, {"mu": mu}, Y))(jnp.zeros(2)),
    "jit(infer_discrete)": lambda m: jax.jit(lambda mu: ppl.infer_discrete(m, {"mu": mu}, Y, key=jax.random.key(0)))(
        jnp.zeros(2)),
    "vi.fit(trace_enum_elbo)": lambda m: vi.fit(jax.random.key(0), vi.trace_enum_elbo(m, guide), optax.adam(1e-2), Y,
                                                num_steps=2, progress=False),
    "smc.tempered_smc": lambda m: smc.tempered_smc(jax.random.key(0), m, np.asarray(Y), num_particles=64),
    # refused before too (the unconstrained view is built at concrete inputs)
    "mcmc.sample(RWM)": lambda m: mcmc.sample(jax.random.key(0), mcmc.RWM(), m, Y, num_warmup=2, num_samples=2,
                                              progress=False),
    "vi.fit(elbo, auto_normal)": lambda m: vi.fit(jax.random.key(0), vi.elbo(m, vi.auto_normal(m, Y)),
                                                  optax.adam(1e-2), Y, num_steps=2, progress=False),
    "vi.map": lambda m: vi.map(m, Y, max_steps=3),
    "vi.laplace": lambda m: vi.laplace(m, Y, max_steps=3),
    "vi.pathfinder": lambda m: vi.pathfinder(jax.random.key(0), m, Y, num_paths=1, num_draws=4, max_steps=3),
    "sequential(laplace)": lambda m: sequential.sequential(jax.random.key(0), laplace, m, [{"y": Y[:2]}, {"y": Y[2:]}],
                                                           sites=["mu"], num_draws=8),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_refuses_a_reduction_across_the_plate(entry):
    with pytest.raises(ModelError, match=REFUSED):
        ENTRY_POINTS[entry](counts)


@pytest.mark.parametrize("entry", ["jit(marginal_log_density)", "jit(infer_discrete)", "vi.fit(trace_enum_elbo)",
                                   "smc.tempered_smc"])
def test_the_newly_checked_entry_points_still_run_an_elementwise_model(entry):
    ENTRY_POINTS[entry](fine)


def test_a_jitted_marginal_with_traced_values_checks_at_stand_ins_in_the_supports():
    """The values a jitted call holds are traced: the check runs at concrete stand-ins, which must
    lie in each site's support (a Dirichlet, a positive scale, a given discrete site), and the
    compiled marginal is the eager one, exact against ``semantics.enumerate``."""

    @ppl.model
    def mix(y):
        w = ppl.sample("w", dist.Dirichlet(jnp.ones(3)))
        s = ppl.sample("s", dist.HalfNormal(2.0))
        g = ppl.sample("g", dist.Bernoulli(0.5))
        mu = ppl.sample("mu", dist.Normal(0, 5).expand([3]).to_event(1))
        with ppl.plate("data", y.shape[0]):
            z = ppl.sample("z", dist.Categorical(w))
            ppl.sample("y", dist.Normal(mu[z] + g, s), obs=y)

    vals = {"w": jnp.array([0.2, 0.3, 0.5]), "s": jnp.asarray(1.3), "g": jnp.asarray(1),
            "mu": jnp.array([-1.0, 0.0, 2.0])}
    got = jax.jit(lambda v: ppl.marginal_log_density(mix, v, Y))(vals)
    want = semantics.enumerate(ppl.substitute(mix, vals), Y).log_total_mass()
    assert abs(float(got) - float(want)) < 1e-10 * max(1.0, abs(float(want)))


def test_check_summed_out_cannot_check_traced_inputs_and_says_so():
    assert ppl.enum.check_summed_out(fine, (Y,)) is True
    assert jax.jit(lambda y: jnp.asarray(ppl.enum.check_summed_out(counts, (y,))))(Y).item() is False


def test_tempered_smc_tempers_the_marginal_model():
    """It returned numbers before issue 14's marginal path: for this element-by-element mixture a
    log evidence of -13.35 against the exact -9.04 (4000 particles, three seeds agreeing), its
    weights tempering p(y | x, z) at one prior draw of z instead of the marginal likelihood; then
    it refused such models.  Now it tempers the marginal model (laws: test_smc_marginal.py and
    test_smc_stats.py); the model reducing z across its plate is refused above, by name."""

    @ppl.model
    def mixture(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
        with ppl.plate("data", y.shape[0]):
            z = ppl.sample("z", dist.Bernoulli(0.3))
            ppl.sample("y", dist.Normal(mu * z, 1.0), obs=y)

    out = smc.tempered_smc(jax.random.key(0), mixture, jnp.array([0.1, 2.5, 3.0, -1.0]), num_particles=256, kernel="hmc")
    assert bool(jnp.isfinite(out.log_evidence)) and out.samples["mu"].shape == (256,)


# --- the check's own failures are explicit (hcheck): before, each of these returned False with no
# word, and the entry point went on without the refusal of cross-plate reductions -----------------

def _reducing(prior):
    """``counts`` with its continuous site drawn from `prior` (a function of the model's inputs)."""

    @ppl.model
    def reducing(y):
        mixture(y, prior)

    return reducing


def test_a_site_without_a_bijection_gets_a_prior_draw_as_stand_in_and_is_checked():
    """ProjectedNormal's support (the sphere) has no bijection: no stand-in was made, the check
    was skipped, and a jitted marginal returned numbers of the wrong marginal (-6.26)."""
    m = _reducing(lambda: dist.ProjectedNormal(jnp.ones(2)))
    with pytest.raises(ModelError, match=REFUSED):
        jax.jit(lambda u: ppl.marginal_log_density(m, {"mu": u}, Y))(jnp.array([0.6, 0.8]))


def test_a_model_failing_at_values_in_its_supports_is_refused_naming_it_and_the_cause():
    def broken():
        raise IndexError("tuple index out of range")

    with pytest.raises(ModelError, match=r"model 'reducing' raised IndexError \(tuple index out of range\)"):
        ppl.enum.check_summed_out(_reducing(broken), (Y,))


@ppl.model
def _stepped(y):
    mu = ppl.sample("mu", dist.Normal(0, 5).expand([2]).to_event(1))

    def step(c, t):
        x = ppl.sample("x", dist.Normal(c, 1.0))
        return x, x

    ppl.scan(step, 0.0, jnp.arange(2))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(0.3))
        ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y)
    ppl.factor("few_ones", -0.5 * jnp.sum(z))


def _closing_over_a_tracer(scale):
    m = _reducing(lambda: dist.Normal(0.0, scale).expand([2]).to_event(1))
    return ppl.marginal_log_density(m, {"mu": jnp.zeros(2)}, Y) + ppl.marginal_log_density(m, {"mu": jnp.ones(2)}, Y)


def test_where_the_check_cannot_run_the_entry_point_warns_once_naming_the_model_and_why(recwarn):
    """Three models the check cannot stand values in for: it says so (an InferenceWarning naming
    the entry point and the model, once per pair), instead of going on silently."""
    guide_u = ppl.model(lambda y: ppl.sample("mu", dist.ProjectedNormal(ppl.param("loc", jnp.ones(2)))))
    no_stand_in = _reducing(lambda: dist.ImproperUniform(dist.constraints.sphere, (), (2,)))
    cases = [
        # a site with neither a bijection nor a sampler, inside vi.fit's check
        (lambda: vi.fit(jax.random.key(0), vi.trace_enum_elbo(no_stand_in, guide_u), optax.adam(1e-2), Y,
                        num_steps=2, progress=False),
         r"vi\.fit\(trace_enum_elbo\): .* model 'reducing'.* no stand-in can be made at site 'mu'"),
        # a site sampled in each step of a ppl.scan
        (lambda: ppl.enum.check_summed_out(_stepped, (Y,)),
         r"ppl\.enum\.check_summed_out: .* model '_stepped'.* \['step/x'\] are traced"),
        # a model closing over its caller's traced value (two calls: one warning)
        (lambda: jax.jit(_closing_over_a_tracer)(5.0),
         r"ppl\.marginal_log_density: .* model 'reducing'.* the model depends on a value traced"),
    ]
    for run, says in cases:
        recwarn.clear()
        run()
        got = [str(w.message) for w in recwarn if issubclass(w.category, ppl.InferenceWarning)]
        assert len(got) == 1 and re.search(says, got[0]), got
        assert "could not run" in got[0] and "would give a wrong marginal" in got[0]
