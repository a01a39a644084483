"""Subsampled plates (``ppl.plate(name, N, subsample_size=B)``) under VI, and their refusal
where a density is needed (issue 17c).

The law: with the guide's plate indices replayed into the model (shared by plate name) and every
site in the plate scaled by N/B, the ELBO's gradient estimate is unbiased for the gradient of
the full-data ELBO.  Checked by t-tests per gradient component against the closed-form
full-data ELBO gradient (budget ``vi/subsample_unbiased``); the planted twins (the model's plate
not sharing the guide's indices, the N/B scale factor dropped) are rejected by the same check
with the same seed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import mcmc, smc, vi
from ppl import dist
from ppl.errors import ArgumentError, ModelError
from semantics import stats
from _budget import BUDGET

N, B = 4, 2
X = jnp.array([0.8, -0.5, 1.7, 0.2])
N_DRAWS = 2000
LOG2PI = math.log(2 * math.pi)


def make_model(plate_name="n", scale=1.0):
    @ppl.model
    def model(x):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate(plate_name, N, subsample_size=B) as idx, ppl.scale(scale=scale):
            z = ppl.sample("z", dist.Normal(mu, 1.0))
            ppl.sample("x", dist.Normal(z, 1.0), obs=x[idx])

    return model


@ppl.model
def guide(x):
    m = ppl.param("m", 0.3)
    s = ppl.param("s", 0.7, constraint=dist.constraints.positive)
    a = ppl.param("a", jnp.array([0.5, -0.2, 1.1, 0.0]))
    ppl.sample("mu", dist.Normal(m, s))
    with ppl.plate("n", N, subsample_size=B) as idx:
        ppl.sample("z", dist.Normal(a[idx], 1.0))


def full_elbo(u):
    """The full-data ELBO in closed form (q(z_i) = N(a_i, 1), q(mu) = N(m, s))."""
    m, s, a = u["m"], jnp.exp(u["s"]), u["a"]
    prior = -0.5 * LOG2PI - 0.5 * (m**2 + s**2)
    local = jnp.sum(-0.5 * LOG2PI - 0.5 * ((a - m) ** 2 + 1 + s**2))
    lik = jnp.sum(-0.5 * LOG2PI - 0.5 * ((X - a) ** 2 + 1))
    entropy = 0.5 * jnp.log(2 * math.pi * math.e * s**2) + N * 0.5 * math.log(2 * math.pi * math.e)
    return prior + local + lik + entropy


def bad_components(model, seed=0):
    obj = vi.elbo(model, guide)
    u = obj.init_params(jax.random.key(1), X)
    truth = jax.grad(full_elbo)(u)
    keys = jax.random.split(jax.random.key(seed), N_DRAWS)
    draws = jax.jit(jax.vmap(lambda k: obj.grad(k, u, X)[1]))(keys)
    bad = []
    for k in ("m", "s", "a"):
        x, t = np.asarray(draws[k]).reshape(N_DRAWS, -1), np.ravel(np.asarray(truth[k]))
        for j in range(t.size):
            res = stats.z_test(x[:, j], float(t[j]), alpha=BUDGET.level("vi/subsample_unbiased"))
            if not res.ok:
                bad.append(f"{k}[{j}]: {res.message}")
    return bad


@pytest.mark.statistical
def test_subsampled_elbo_gradient_is_unbiased_for_the_full_data_elbo():
    assert bad_components(make_model()) == []


@pytest.mark.statistical
@pytest.mark.parametrize(
    "twin", [make_model(plate_name="n_model"), make_model(scale=B / N)], ids=["indices_not_shared", "scale_dropped"]
)
def test_planted_twins_are_caught(twin):
    assert bad_components(twin) != []


def test_model_replays_the_guide_indices_and_scales_by_n_over_b():
    """One pass, by hand: the model's plate draws nothing of its own when the guide has it."""

    @ppl.model
    def model(x):
        with ppl.plate("n", N, subsample_size=B) as idx:
            ppl.deterministic("idx", idx)
            ppl.sample("z", dist.Normal(0.0, 1.0))

    @vi.objective
    def check(x):
        tr = vi.sample(guide, x)
        lp = model.log_density({"z": tr.choices["z"]}, x)
        z = tr.choices["z"]
        return lp - (N / B) * jnp.sum(dist.Normal(0.0, 1.0).log_prob(z))

    obj = check
    u = vi.elbo(make_model(), guide).init_params(jax.random.key(1), X)
    vals = jax.jit(jax.vmap(lambda k: obj.estimate(k, u, X)))(jax.random.split(jax.random.key(0), 4))
    np.testing.assert_allclose(np.asarray(vals), 0.0, atol=1e-5)


def test_autoguide_with_global_latents_fits_a_subsampled_model():
    @ppl.model
    def model(x):
        mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
        with ppl.plate("n", 20, subsample_size=5) as idx:
            ppl.sample("x", dist.Normal(mu, 1.0), obs=x[idx])

    x = jnp.linspace(-1.0, 2.0, 20)
    res = vi.fit(jax.random.key(0), vi.elbo(model, vi.auto_normal(model, x)), optax.adam(0.1), x, num_steps=150)
    # exact posterior mean 20 * 0.5 / 20.25 = 0.494, sd 0.22: the fit lands near it
    assert abs(float(res.params["auto/loc"][0]) - 0.494) < 0.3


def test_autoguide_refuses_a_local_latent_in_a_subsampled_plate():
    with pytest.raises(ArgumentError, match=r"latent site 'z' lies inside plate 'n', which subsamples \(2 of 4\)"):
        vi.auto_normal(make_model(), X)


@pytest.mark.parametrize("run", ["nuts", "log_density", "tempered_smc", "regenerate", "smc_init"])
def test_density_based_inference_refuses_a_subsampled_plate(run):
    model = make_model()
    with pytest.raises(ModelError, match="plate 'n' subsamples .* subsampling changes the target"):
        if run == "nuts":
            mcmc.sample(jax.random.key(0), mcmc.NUTS(), model, X, num_warmup=5, num_samples=5)
        elif run == "log_density":
            model.log_density({"mu": 0.0, "z": jnp.zeros(B)}, X)
        elif run == "tempered_smc":
            smc.tempered_smc(jax.random.key(0), model, X, num_particles=10)
        elif run == "regenerate":  # a trace kernel: model.update under the hood
            mcmc.sample(jax.random.key(0), mcmc.Regenerate("mu"), model, X, num_warmup=2, num_samples=2, progress=False)
        else:  # importance weights: model.generate under the hood
            smc.init(jax.random.key(0), model, 5, X)


def test_vectorised_particles_share_indices_within_each_particle():
    """Several particles (one vmapped block): each guide's indices reach its own model scoring;
    nothing leaks out of the block, and the same key gives the same gradient eagerly and jitted."""
    obj = vi.elbo(make_model(), guide, num_particles=3)
    u = obj.init_params(jax.random.key(1), X)
    eager = obj.grad(jax.random.key(0), u, X)[1]["a"]
    jitted = jax.jit(lambda k: obj.grad(k, u, X)[1]["a"])(jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(eager)))
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), rtol=1e-6, atol=1e-9)
