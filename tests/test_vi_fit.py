"""vi.fit, user-written objectives, posteriors from fitted guides, and error messages."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import vi
from ppl import dist


@ppl.model
def coin(y):
    c = ppl.sample("c", dist.Bernoulli(probs=0.3))
    ppl.sample("y", dist.Normal(jnp.where(c == 1, 2.0, -1.0), 1.0), obs=y)


@ppl.model
def coin_guide(y):
    logit = ppl.param("logit", 0.0)
    ppl.sample("c", dist.Bernoulli(logits=logit), infer={"grad": "enum"})


def coin_posterior(y):
    lik = np.exp(-0.5 * (y - np.array([-1.0, 2.0])) ** 2)
    return 0.3 * lik[1] / (0.7 * lik[0] + 0.3 * lik[1])


@ppl.model
def nn_model(x):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("x", dist.Normal(mu, 1.0), obs=x)


@ppl.model
def nn_guide(x):
    loc = ppl.param("loc", 0.0)
    scale = ppl.param("scale", 1.0, constraint=dist.constraints.positive)
    ppl.sample("mu", dist.Normal(loc, scale))


X = jnp.array([0.8, 1.4, 0.3, 1.1])


def test_enumerated_elbo_fits_the_exact_posterior_deterministically():
    res = vi.fit(jax.random.key(0), vi.elbo(coin, coin_guide), optax.adam(0.1), num_steps=400, data=1.5)
    assert res.history.shape == (400,)
    assert float(jax.nn.sigmoid(res.params["logit"])) == pytest.approx(coin_posterior(1.5), abs=1e-4)
    # at the optimum the ELBO is log Z (the posterior is in the family)
    log_z = math.log(0.7 * math.exp(-0.5 * 2.5**2) / math.sqrt(2 * math.pi) + 0.3 * math.exp(-0.5 * 0.5**2) / math.sqrt(2 * math.pi))
    assert res.history[-1] == pytest.approx(log_z, abs=1e-6)
    assert np.all(res.history <= log_z + 1e-12)


def test_early_stopping_on_a_plateau():
    res = vi.fit(
        jax.random.key(0), vi.elbo(coin, coin_guide), optax.adam(0.1), num_steps=5000, data=1.5,
        patience=2, chunk_size=100,
    )
    assert res.stopped_early and res.num_steps < 5000
    assert res.history.shape == (res.num_steps,)
    assert float(jax.nn.sigmoid(res.params["logit"])) == pytest.approx(coin_posterior(1.5), abs=1e-3)


@pytest.mark.slow
def test_user_objective_constrained_params_and_predictive():
    @vi.objective
    def my_objective(x):
        tr = vi.sample(nn_guide, x)
        return nn_model.log_density(tr.choices, x) - tr.log_density

    res = vi.fit(
        jax.random.key(1), my_objective, optax.adam(optax.exponential_decay(5e-2, 1500, 0.02)),
        num_steps=1500, data=X, num_samples=8,
    )
    n = X.shape[0]
    assert float(res.params["scale"]) > 0
    assert float(res.params["loc"]) == pytest.approx(float(X.sum()) / (n + 1), abs=0.05)
    assert float(res.params["scale"]) == pytest.approx(math.sqrt(1 / (n + 1)), rel=0.1)
    draws = res.sample_posterior(jax.random.key(2), nn_guide, X, num_samples=300)
    assert draws["mu"].shape == (300,)
    @ppl.model
    def nn_predict(n):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("data", n):
            ppl.sample("x", dist.Normal(mu, 1.0))

    pred = ppl.predictive(nn_predict, draws, n, key=jax.random.key(3))
    assert pred["x"].shape == (300, n)
    # posterior predictive variance = 1 + posterior variance of mu (1/(n+1)): drawn, not the data
    assert float(np.var(np.asarray(pred["x"]))) == pytest.approx(1 + 1 / (n + 1), rel=0.15)


def test_data_forms_and_progress(capsys):
    obj = vi.elbo(coin, coin_guide)
    a = vi.fit(jax.random.key(0), obj, optax.adam(0.1), num_steps=20, data=(1.5,), progress=True)
    b = vi.fit(jax.random.key(0), obj, optax.adam(0.1), num_steps=20, data={"y": 1.5})
    c = vi.fit(jax.random.key(0), obj, optax.adam(0.1), 1.5, num_steps=20)
    np.testing.assert_allclose(a.history, b.history)
    np.testing.assert_allclose(a.history, c.history)
    assert "vi.fit: 20/20" in capsys.readouterr().err


def test_mixed_strategies_given_to_fit():
    @ppl.model
    def guide(y):
        logit = ppl.param("logit", 0.0)
        ppl.sample("c", dist.Bernoulli(logits=logit))

    res = vi.fit(
        jax.random.key(0), vi.elbo(coin, guide), optax.adam(0.05), num_steps=1500, data=1.5,
        strategies={"c": "mvd"},
    )
    assert float(jax.nn.sigmoid(res.params["logit"])) == pytest.approx(coin_posterior(1.5), abs=0.03)


def test_rws_learns_a_model_parameter():
    @ppl.model
    def model(y):
        m = ppl.param("m", 0.0)
        z = ppl.sample("z", dist.Normal(m, 1.0))
        ppl.sample("y", dist.Normal(z, 1.0), obs=y)

    @ppl.model
    def guide(y):
        loc = ppl.param("loc", 0.0)
        ppl.sample("z", dist.Normal(loc, math.sqrt(0.5)))

    res = vi.fit(jax.random.key(0), vi.rws(model, guide, 8), optax.adam(optax.exponential_decay(5e-2, 2000, 0.05)), num_steps=2000, data=2.0)
    # maximum likelihood: m = y; exact posterior mean (m + y) / 2 = y
    assert float(res.params["m"]) == pytest.approx(2.0, abs=0.15)
    assert float(res.params["loc"]) == pytest.approx(2.0, abs=0.15)


# -- errors ----------------------------------------------------------------------------------------


def test_errors_name_the_site():
    with pytest.raises(vi.VIError, match="'c'.*cannot be reparameterised"):
        vi.elbo(coin, coin_guide).with_strategies({"c": "reparam"}).grad(jax.random.key(0), {"logit": jnp.zeros(())}, 1.5)
    with pytest.raises(vi.VIError, match="unknown"):
        vi.elbo(coin, coin_guide).with_strategies({"c": "magic"})
    with pytest.raises(vi.VIError, match="'mu'.*'enum' needs a finite discrete"):
        obj = vi.elbo(nn_model, nn_guide).with_strategies({"mu": "enum"})
        obj.grad(jax.random.key(0), obj.init_params(jax.random.key(0), X), X)
    with pytest.raises(vi.VIError, match="outside an objective"):
        vi.sample(coin_guide, 1.5)
    with pytest.raises(vi.VIError, match="optax optimizer"):
        vi.fit(jax.random.key(0), vi.elbo(coin, coin_guide), 0.1, data=1.5)
    with pytest.raises(vi.VIError, match="init_params names 'nope'"):
        vi.fit(jax.random.key(0), vi.elbo(coin, coin_guide), optax.adam(0.1), data=1.5, init_params={"nope": 1.0})


def test_warm_fit_compiles_nothing_and_constrains_like_the_objective():
    """Issue 19: a second fit (fresh optax object, new data values, new key) adds no program-cache
    miss (the loop, the parameters' initialisation, the optimizer's init and the constraining are
    all cached), and the returned params are exactly ``objective.constrain`` of ``uparams``."""
    from _compiles import CompileCounter
    from inference._run.cache import PROGRAMS

    obj = vi.elbo(nn_model, vi.auto_multivariate_normal(nn_model, jnp.zeros(4)))
    vi.fit(jax.random.key(0), obj, optax.adam(1e-2), jnp.zeros(4), num_steps=5, progress=False)
    misses = PROGRAMS.misses
    with CompileCounter() as compiles:
        r = vi.fit(jax.random.key(1), obj, optax.adam(1e-2), jnp.ones(4), num_steps=5, progress=False)
    assert PROGRAMS.misses == misses and compiles.n == 0, (PROGRAMS.misses - misses, compiles.n)
    eager = obj.constrain(r.uparams)
    for k in eager:
        np.testing.assert_allclose(np.asarray(r.params[k]), np.asarray(eager[k]), rtol=1e-6, atol=1e-7)
