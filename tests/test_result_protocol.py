"""One result protocol for every family (issue 13): ``draws`` with leading batch axes, ``info``,
``sample(key, n)``, ``predictive(key, model, *args, num_samples=n)`` and ``to_arviz()``, checked
on a tiny model for MCMC (``mcmc.sample``), each SMC driver and VI (``vi.fit``); and the meaning
of the weighted helpers (resampling by weight, the calling convention of ``predictive``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import mcmc, smc, vi
from inference._result import Result, WeightedDraws, resample_draws, to_inference_data, weighted_predictive
from inference.smc import Particles, SMCResult
from ppl import dist

Y = jnp.array([0.3, 1.1, -0.4])
N = 16


@ppl.model
def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


@ppl.model
def predict_y(n):
    """The same sites, predicting n new observations."""
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("data", n):
        ppl.sample("y", dist.Normal(mu, 1.0))


@ppl.model
def guide(y):
    loc = ppl.param("loc", 0.0)
    scale = ppl.param("scale", 1.0, constraint=dist.constraints.positive)
    ppl.sample("mu", dist.Normal(loc, scale))


def step(x, y):
    x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
    ppl.sample("y", dist.Normal(x, 0.5), obs=y)
    return x, None


@ppl.model
def ssm(ys):
    return ppl.scan(step, 0.0, xs=ys, name="step")


def step_free(x, _):
    x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
    ppl.sample("y", dist.Normal(x, 0.5))
    return x, None


@ppl.model
def ssm_predict(n):
    """The same sites, the observations drawn (n steps)."""
    return ppl.scan(step_free, 0.0, length=n, name="step")


def _groups(idata) -> set:
    g = idata.groups
    g = g() if callable(g) else g
    return {str(x).strip("/") for x in g} - {""}


def _posterior(idata, name):
    return np.asarray(idata["posterior"][name])


def _run(family: str):
    """(result, address, its batch shape, extra event shape of the address, predictive model, args)."""
    key = jax.random.key(0)
    if family == "mcmc":
        run = mcmc.sample(key, mcmc.RWM(), normal_mean, Y, num_warmup=10, num_samples=6, num_chains=2, progress=False)
        return run, "mu", (2, 6), (), predict_y, (3,)
    if family == "vi":
        res = vi.fit(key, vi.elbo(normal_mean, guide), optax.adam(0.1), num_steps=5, data=Y, progress=False)
        return res, "mu", None, (), predict_y, (3,)
    if family == "particle_filter":
        res = smc.particle_filter(key, step, 0.0, Y, N, record="all")
        return res, "step/x", (N,), (3,), ssm_predict, (3,)
    if family == "tempered_smc":
        res = smc.tempered_smc(key, normal_mean, Y, num_particles=N, betas=jnp.array([0.5, 1.0]), num_mcmc_steps=1)
        return res, "mu", (N,), (), predict_y, (3,)
    if family == "resample_move":
        res = smc.resample_move(key, normal_mean, [Y[:1], Y[1:]], N, mcmc.Regenerate("mu"))
        return res, "mu", (N,), (), predict_y, (3,)
    raise AssertionError(family)


FAMILIES = ["mcmc", "vi", "particle_filter", "tempered_smc", "resample_move"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_satisfies_the_result_protocol(family):
    res, addr, batch, event, model, args = _run(family)
    assert isinstance(res, Result)
    assert isinstance(res.info, dict) and res.info
    draws = res.draws
    assert isinstance(draws, dict)
    if batch is None:  # VI: draws at fit time are not required
        assert all(np.shape(v)[:1] for v in draws.values())
    else:
        assert np.shape(draws[addr]) == batch + event
        assert all(np.all(np.isfinite(np.asarray(v))) for v in draws.values())
    s = res.sample(jax.random.key(1), 5)
    assert np.shape(s[addr]) == (5,) + event
    pred = res.predictive(jax.random.key(2), model, *args, num_samples=4)
    out = "step/y" if family == "particle_filter" else "y"
    assert np.shape(pred[out]) == (4, 3)
    # predictions are drawn, not the data handed back (a prediction equal to Y is the bug)
    assert float(np.std(np.asarray(pred[out]), axis=0).min()) > 0.0
    assert not np.allclose(np.asarray(pred[out]), np.asarray(Y))
    # a site observed through the model's arguments is refused by name, never returned as the data
    observing = ssm if family == "particle_filter" else normal_mean
    with pytest.raises(ppl.ModelError, match="is observed in this call"):
        res.predictive(jax.random.key(2), observing, Y, num_samples=4)
    idata = res.to_arviz()
    assert "posterior" in _groups(idata)
    if batch is not None:  # (chain, draw, ...): MCMC's chains, or the particles as one chain
        assert _posterior(idata, addr).shape == (batch if len(batch) == 2 else (1,) + batch) + event


@pytest.mark.parametrize("family", ["particle_filter", "tempered_smc", "resample_move"])
def test_smc_results_are_weighted(family):
    res, addr, batch, event, *_ = _run(family)
    assert isinstance(res, WeightedDraws)
    w = np.asarray(res.weights)
    assert w.shape == batch and np.isclose(w.sum(), 1.0) and np.all(w >= 0)
    np.testing.assert_array_equal(np.asarray(res.log_weights), np.asarray(res.particles.log_weights))
    assert float(res.info["log_evidence"]) == float(res.log_evidence)
    idata = res.to_arviz()
    np.testing.assert_allclose(np.asarray(idata["sample_stats"]["log_weight"]).reshape(-1), np.asarray(res.log_weights))
    resampled = res.to_arviz(jax.random.key(3), 7)
    assert _posterior(resampled, addr).shape == (1, 7) + event


def test_resample_move_sample_is_the_protocol_resampling():
    res, addr, *_ = _run("resample_move")
    k = jax.random.key(4)
    old = res.sample(k, 9)  # the driver's own method, unchanged
    new = resample_draws(k, res.draws, res.log_weights, 9)
    np.testing.assert_array_equal(np.asarray(old[addr]), np.asarray(new[addr]))
    assert np.shape(res.sample(k)[addr]) == ()  # one draw, as before


def _degenerate_filter_result() -> SMCResult:
    """Four particles, all the weight on particle 2, paths known."""
    lw = jnp.log(jnp.array([0.0, 0.0, 1.0, 0.0]))
    paths = {"a/x": jnp.arange(8.0).reshape(4, 2)}
    return SMCResult(particles=Particles(jnp.zeros(4), lw, jnp.arange(4)), log_evidence=jnp.log(0.25), paths=paths)


def test_sample_and_predictive_resample_by_weight():
    res = _degenerate_filter_result()
    s = res.sample(jax.random.key(0), 6)
    np.testing.assert_array_equal(np.asarray(s["a/x"]), np.tile([4.0, 5.0], (6, 1)))
    assert res.info == {"log_evidence": res.log_evidence}
    w = resample_draws(jax.random.key(1), {"m": jnp.array([1.0, 2.0])}, jnp.array([-jnp.inf, 0.0]), 5)
    np.testing.assert_array_equal(np.asarray(w["m"]), np.full(5, 2.0))

    @ppl.model
    def sharp(n):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("data", n):
            ppl.sample("y", dist.Normal(mu, 1e-9))

    pred = weighted_predictive("t", jax.random.key(2), {"mu": jnp.array([3.0, -3.0])}, jnp.array([0.0, -jnp.inf]),
                               sharp, (2,), {}, num_samples=5)
    np.testing.assert_allclose(np.asarray(pred["y"]), np.full((5, 2), 3.0), atol=1e-6)
    # without weights: uniform picks, or the draws as they are
    same = weighted_predictive("t", jax.random.key(2), {"mu": jnp.array([3.0, -3.0])}, None, sharp, (2,), {})
    np.testing.assert_allclose(np.asarray(same["y"]), [[3.0, 3.0], [-3.0, -3.0]], atol=1e-6)


def test_predictive_follows_the_calling_convention():
    res = _degenerate_filter_result()

    @ppl.model
    def clashing(num_samples):
        ppl.sample("a/x", dist.Normal(0.0, 1.0))

    with pytest.raises(ppl.ArgumentError, match="num_samples"):
        res.predictive(jax.random.key(0), clashing, 3, num_samples=4)
    with pytest.raises(ppl.ArgumentError, match="batch_ndims"):
        weighted_predictive("t", jax.random.key(0), {"mu": jnp.zeros(2)}, None, predict_y, (), {"batch_ndims": 2})
    with pytest.raises(ppl.ArgumentError, match="no draws"):
        weighted_predictive("t", jax.random.key(0), {}, None, predict_y, (3,), {})
    no_paths = smc.particle_filter(jax.random.key(0), step, 0.0, Y, N)
    assert no_paths.draws == {} and isinstance(no_paths, Result)
    for call in (lambda: no_paths.sample(jax.random.key(0), 2), lambda: no_paths.predictive(jax.random.key(0), ssm, Y),
                 lambda: no_paths.to_arviz()):
        with pytest.raises(ppl.ArgumentError, match="paths were not recorded"):
            call()


def test_to_inference_data_drops_empty_groups():
    idata = to_inference_data({"posterior": {"mu": np.arange(6.0).reshape(2, 3)}, "sample_stats": {}})
    assert _groups(idata) == {"posterior"}
    np.testing.assert_array_equal(_posterior(idata, "mu"), np.arange(6.0).reshape(2, 3))
