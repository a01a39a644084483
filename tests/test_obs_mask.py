"""``ppl.sample(name, d, obs=y, obs_mask=mask)``: NumPyro's partially observed site (issue 17c).

Where the mask is False the value is a latent to impute: sites ``y_observed`` (observed, masked
to the True entries) and ``y_unobserved`` (latent, full shape) and a deterministic ``y`` that
combines them.  Laws (float64, exact): on a conjugate normal model with missing entries the
model's log density is the closed-form joint posterior of the mean, the missing values and the
latent's unused entries (each N(mu, 1) given mu, integrating to 1) up to a constant (the log
evidence); it equals NumPyro's log density plus the unused entries' log density (NumPyro masks
them out, leaving them flat: see ``ppl.sample``).  The
planted twin (the observed site not masked, so the latent's values are scored as data) breaks
the first law.  NUTS imputes: its draws of the missing values match their exact posterior mean
(budget ``obs_mask/nuts_imputed_means``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pytest
from numpyro.infer.util import log_density as numpyro_log_density

import ppl
from inference import mcmc, vi
from ppl import dist
from ppl.errors import ModelError
from semantics import stats
from _budget import BUDGET

Y = jnp.array([0.3, jnp.nan, 1.2, jnp.nan, -0.4, 2.0])
MASK = ~jnp.isnan(Y)
PRIOR_SD = 2.0


@ppl.model
def model(y, mask):
    mu = ppl.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with ppl.plate("n", y.shape[0]):
        return ppl.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)


@ppl.model
def twin_unmasked_observation(y, mask):
    """Planted bug: the observed site scores every entry, the latent's as if they were data."""
    mu = ppl.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with ppl.plate("n", y.shape[0]):
        with ppl.mask(mask=~mask):
            lat = ppl.sample("y_unobserved", dist.Normal(mu, 1.0))
        ppl.sample("y_observed", dist.Normal(mu, 1.0), obs=jnp.where(mask, y, lat))


def exact_log_posterior(mu, y_missing):
    """log p(mu, latent | y_observed): mu | y_obs ~ N(m, v), each latent entry | mu ~ N(mu, 1)."""
    y_obs = Y[MASK]
    prec = 1 / PRIOR_SD**2 + y_obs.size
    m, v = jnp.sum(y_obs) / prec, 1 / prec
    return dist.Normal(m, jnp.sqrt(v)).log_prob(mu) + jnp.sum(dist.Normal(mu, 1.0).log_prob(y_missing))


def law_gaps(m):
    """log_density − exact log posterior at random points: constant iff the law holds."""
    k1, k2 = jax.random.split(jax.random.key(0))
    mus = jax.random.normal(k1, (12,))
    lat = 3 * jax.random.normal(k2, (12, Y.shape[0]))
    ld = jax.vmap(lambda mu, u: m.log_density({"mu": mu, "y_unobserved": u}, Y, MASK))(mus, lat)
    ex = jax.vmap(exact_log_posterior)(mus, lat)
    return np.asarray(ld - ex)


def test_log_density_is_the_exact_posterior_up_to_the_evidence():
    gaps = law_gaps(model)
    np.testing.assert_allclose(gaps, gaps[0], rtol=0, atol=1e-10)


def test_planted_twin_unmasked_observation_is_caught():
    gaps = law_gaps(twin_unmasked_observation)
    assert np.ptp(gaps) > 1.0


def test_value_combines_data_and_imputation_and_nan_never_leaks():
    tr = model.simulate(jax.random.key(1), Y, MASK)
    assert set(tr.choices) >= {"mu", "y_unobserved", "y_observed"}
    y = np.asarray(tr.retval)
    np.testing.assert_array_equal(y[np.asarray(MASK)], np.asarray(Y)[np.asarray(MASK)])
    np.testing.assert_array_equal(y[~np.asarray(MASK)], np.asarray(tr.choices["y_unobserved"])[~np.asarray(MASK)])
    g = jax.grad(lambda mu: model.log_density({"mu": mu, "y_unobserved": jnp.zeros(6)}, Y, MASK))(0.5)
    assert np.isfinite(g)  # the NaN entries of the data reach neither the density nor its gradient


def test_matches_numpyro_log_density():
    def nmodel(y, mask):
        mu = numpyro.sample("mu", ndist.Normal(0.0, PRIOR_SD))
        with numpyro.plate("n", y.shape[0]):
            numpyro.sample("y", ndist.Normal(mu, 1.0), obs=y, obs_mask=mask)

    y0 = jnp.where(MASK, Y, 0.0)  # NumPyro reads the masked-out entries, so give it finite ones
    for mu in (0.0, 0.7):
        lat = jnp.linspace(-1.0, 2.0, 6)
        ours = model.log_density({"mu": mu, "y_unobserved": lat}, Y, MASK)
        theirs, _ = numpyro_log_density(nmodel, (y0, MASK), {}, {"mu": mu, "y_unobserved": lat})
        unused = jnp.sum(jnp.where(MASK, dist.Normal(mu, 1.0).log_prob(lat), 0.0))
        np.testing.assert_allclose(float(ours), float(theirs + unused), rtol=1e-12)


def test_every_view_sees_the_unobserved_part_as_a_latent():
    assert set(ppl.unconstrained(model, Y, MASK).sites) == {"mu", "y_unobserved"}
    guide = vi.auto_normal(model, Y, MASK)
    assert "y_unobserved" in guide.simulate(jax.random.key(0), Y, MASK).choices
    pred = ppl.predictive(model, None, Y, MASK, key=jax.random.key(0), num_samples=3)
    assert pred["y"].shape == (3, 6) and not np.isnan(np.asarray(pred["y"])).any()


@pytest.mark.statistical
def test_nuts_imputes_the_missing_values():
    run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), model, Y, MASK, num_warmup=200, num_samples=600, progress=False)
    y_obs = Y[MASK]
    mean = jnp.sum(y_obs) / (1 / PRIOR_SD**2 + y_obs.size)  # E[y_missing | y_obs] = E[mu | y_obs]
    draws = np.asarray(run.samples["y_unobserved"]).reshape(-1, 6)[:, ~np.asarray(MASK)]
    ess = float(np.min(np.asarray(mcmc.ess_bulk(draws[None]))))
    for j in range(draws.shape[1]):
        res = stats.z_test(draws[:, j], float(mean), alpha=BUDGET.level("obs_mask/nuts_imputed_means"),
                           sd=float(np.std(draws[:, j])) * np.sqrt(draws.shape[0] / ess))
        res.assert_()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"obs": None, "obs_mask": MASK}, "obs_mask was given without obs"),
        ({"obs": Y, "obs_mask": MASK.astype(int)}, "obs_mask must be a boolean array, got dtype"),
        ({"obs": Y, "obs_mask": jnp.ones(4, bool)}, r"obs_mask has shape \(4,\), which does not broadcast"),
    ],
)
def test_bad_obs_mask_is_a_clear_error(kwargs, match):
    m = ppl.model(lambda: ppl.sample("y", dist.Normal(jnp.zeros(6), 1.0), **kwargs))
    with pytest.raises(ModelError, match=match):
        m.simulate(jax.random.key(0))
