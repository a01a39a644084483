"""Issue 14: no silent wrong marginal when a summed-out plated site is used across its plate.

Enumeration lays a plated site's support along a dimension of its own, shared by the plate's
elements; a reduction of the site across its plate (``jnp.sum(z)``, ``z.mean()``, ``max``,
``min``, a sum of ``mu[z]``, an element reading its neighbour) reduces the support instead and
the marginal is wrong with no shape error.  ``ppl.enum`` refuses such models (naming the site)
by relabelled runs (``_check_elementwise``).

The law, on hypothesis-generated models with and without such uses (float64): either the
model is refused with a ModelError that names the offending site, or its marginal equals the
log total mass of ``semantics.enumerate`` (1e-10) — never a silent wrong answer; a model that
uses the site element by element is never refused.  Planted twin: a check that accepts every
relabelled run lets a wrong marginal through, and the law catches it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
import semantics
from ppl import dist
from ppl.errors import ModelError
from tests._enum_models import REFUSED, counts, fine

TOL = 1e-10
ELEMENTWISE = ("obs", "factor", "child", "where")
REDUCTIONS = (None, "sum", "mean", "max", "min", "sum_of_mu", "roll")


def build(n, K, ew, red, seed):
    rng = np.random.default_rng(seed)
    pz = jnp.asarray(rng.dirichlet(np.ones(K)))
    P = jnp.asarray(rng.dirichlet(np.ones(K), size=K))
    mu = jnp.asarray(rng.normal(0, 2, K))
    y = jnp.asarray(rng.normal(0, 1.5, n))

    @ppl.model
    def m():
        c = ppl.sample("c", dist.Normal(0.0, 1.0))
        with ppl.plate("data", n):
            z = ppl.sample("z", dist.Categorical(probs=pz))
            if ew == "obs":
                ppl.sample("y", dist.Normal(mu[z] + c, 1.0), obs=y)
            elif ew == "factor":
                ppl.factor("fz", -0.3 * z**2 + c * z)
            elif ew == "child":
                w = ppl.sample("w", dist.Categorical(probs=P[z]))
                ppl.sample("y", dist.Normal(mu[w], 1.0), obs=y)
            else:
                ppl.sample("y", dist.Normal(jnp.where(z > 0, c, -c), 1.0), obs=y)
            if red == "roll":  # element i's observation reads element i-1's value too
                ppl.sample("r", dist.Normal(mu[jnp.roll(z, 1, axis=-1)], 1.0), obs=y)
        if red == "sum":
            ppl.factor("r", 0.4 * jnp.sum(z))
        elif red == "mean":
            ppl.sample("r", dist.Normal(jnp.mean(z) * c, 1.0), obs=0.2)
        elif red == "max":
            ppl.factor("r", 0.7 * jnp.max(z))
        elif red == "min":
            ppl.factor("r", -0.9 * jnp.min(z))
        elif red == "sum_of_mu":
            ppl.factor("r", 0.1 * jnp.sum(mu[z]))

    return m


def outcome(m, c):
    """("refused", message) or ("value", marginal, exact log mass): what a gradient sampler gets
    (the unconstrained view checks the model once; its log density is the compiled marginal)."""
    try:
        ppl.unconstrained(m)
    except ModelError as e:
        return ("refused", str(e))
    want = semantics.enumerate(ppl.substitute(m, {"c": c})).log_total_mass()
    got = float(jax.jit(lambda cc: ppl.marginal_log_density(m, {"c": cc}))(jnp.asarray(c)))
    return ("value", got, want)


def assert_law(m, c, red):
    out = outcome(m, c)
    if out[0] == "refused":
        assert red is not None, f"an element-by-element model was refused: {out[1]}"
        assert "site 'r'" in out[1] and "'z'" in out[1] and "element by element" in out[1], out[1]
        return out
    _, got, want = out
    assert abs(got - want) < TOL * max(1.0, abs(want)), f"silent wrong marginal ({red}): {got} vs {want}"
    return out


@settings(max_examples=5, deadline=None)
@given(st.integers(1, 2), st.integers(2, 3), st.sampled_from(ELEMENTWISE), st.sampled_from(REDUCTIONS),
       st.integers(0, 10**6), st.floats(-1.5, 1.5))
def test_a_model_is_refused_or_its_marginal_is_exact(n, K, ew, red, seed, c):
    if ew == "child":
        K = 2  # K^(2n) joint values for semantics
    assert_law(build(n, K, ew, red, seed), c, red)


@pytest.mark.parametrize("red", [r for r in REDUCTIONS if r is not None])
def test_every_reduction_across_the_plate_is_refused_naming_the_site(red, monkeypatch):
    m = build(2, 2, "obs", red, seed=2)
    out = assert_law(m, 0.6, red)
    assert out[0] == "refused"
    # the refusal is needed: without the check the marginal is wrong (a jitted call checks too,
    # at concrete stand-ins of its traced values: the check is switched off here)
    monkeypatch.setattr(ppl.enum, "check_summed_out", lambda *a, **k: True)
    unchecked = float(jax.jit(lambda cc: ppl.marginal_log_density(m, {"c": cc}))(jnp.asarray(0.6)))
    want = semantics.enumerate(ppl.substitute(m, {"c": 0.6})).log_total_mass()
    assert abs(unchecked - want) > 1e-6


def test_an_eager_marginal_log_density_refuses_too():
    m = build(3, 2, "obs", "sum", seed=1)
    with pytest.raises(ModelError, match="site 'r' uses the summed-out discrete site"):
        ppl.marginal_log_density(m, {"c": jnp.asarray(0.3)})


def test_planted_twin_a_check_that_accepts_everything_is_caught(monkeypatch):
    monkeypatch.setattr(ppl.enum, "_agrees", lambda *a, **k: True)
    with pytest.raises(AssertionError, match="silent wrong marginal"):
        assert_law(build(2, 2, "obs", "mean", seed=2), 0.6, "mean")


@pytest.mark.parametrize("as_numpy", [False, True])
def test_nuts_refuses_a_reduction_across_the_plate_before_sampling(as_numpy):
    """mcmc.sample binds the model's view to traced inputs inside its programs, where the check
    is skipped: the driver must check at the run's concrete inputs (it did not: NUTS sampled the
    wrong marginal silently), and must still run a model that uses the site element by element."""
    from inference import mcmc

    y = np.array([0.1, 2.0, -1.0]) if as_numpy else jnp.array([0.1, 2.0, -1.0])
    kw = dict(num_warmup=5, num_samples=5, num_chains=2, progress=False)
    with pytest.raises(ModelError, match=REFUSED):
        mcmc.sample(jax.random.key(0), mcmc.NUTS(), counts, y, **kw)
    run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), fine, y, **kw)
    assert run.samples["mu"].shape == (2, 5, 2)
