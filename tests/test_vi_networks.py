"""Amortised guides (``vi.network``) and the compile-once property of ``vi.fit``."""

from __future__ import annotations

import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import vi
from ppl import dist

X = jnp.linspace(-2.0, 2.0, 16)


@ppl.model
def local_model(x):
    with ppl.plate("data", x.shape[0]):
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        ppl.sample("x", dist.Normal(z, 0.5), obs=x)


ENCODER = eqx.nn.Linear(1, 2, key=jax.random.key(0))


@ppl.model
def amortised_guide(x):
    net = vi.network("encoder", ENCODER)
    out = jax.vmap(net)(x[:, None])
    with ppl.plate("data", x.shape[0]):
        ppl.sample("z", dist.Normal(out[:, 0], jnp.exp(out[:, 1])))


@pytest.mark.slow
def test_network_params_are_named_and_trained_to_the_exact_amortised_posterior():
    obj = vi.elbo(local_model, amortised_guide, num_particles=4)
    u = obj.init_params(jax.random.key(1), X)
    assert sorted(u) == ["encoder/bias", "encoder/weight"]
    np.testing.assert_array_equal(u["encoder/weight"], ENCODER.weight)
    res = vi.fit(jax.random.key(2), obj, optax.adam(optax.cosine_decay_schedule(0.05, 1500)), num_steps=1500, data=X)
    # z_i | x_i ~ N(0.8 x_i, 0.2): the linear encoder can represent it exactly
    trained = vi.network_from_params(res.params, "encoder", ENCODER)
    out = jax.vmap(trained)(X[:, None])
    np.testing.assert_allclose(out[:, 0], 0.8 * X, atol=0.05)
    np.testing.assert_allclose(jnp.exp(out[:, 1]), np.sqrt(0.2), atol=0.03)
    with pytest.raises(vi.VIError, match="decoder"):
        vi.network_from_params(res.params, "decoder", ENCODER)


class _CompileLog(logging.Handler):
    def __init__(self):
        super().__init__()
        self.compiled: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling"):
            self.compiled.append(msg[:120])


def test_second_fit_with_the_same_shapes_compiles_nothing():
    @ppl.model
    def m(x):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("d", x.shape[0]):
            ppl.sample("x", dist.Normal(mu, 1.0), obs=x)

    x1, x2 = jnp.arange(4.0), jnp.arange(4.0) + 1.0
    obj = vi.iwae(m, vi.auto_normal(m, x1), 4)
    opt = optax.adam(1e-2)
    vi.fit(jax.random.key(0), obj, opt, num_steps=20, data=x1)
    log = _CompileLog()
    logger = logging.getLogger("jax")
    logger.addHandler(log)
    try:
        with jax.log_compiles():
            res = vi.fit(jax.random.key(1), obj, opt, num_steps=20, data=x2)
    finally:
        logger.removeHandler(log)
    assert res.history.shape == (20,)
    assert log.compiled == []


def test_a_fresh_optimizer_with_the_same_hyperparameters_compiles_nothing():
    """Issue 19: the program cache keys the optimizer by its structure, not its identity; a
    different learning rate is a different program (the key must not ignore hyperparameters)."""

    @ppl.model
    def m(x):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.sample("x", dist.Normal(mu, 1.0), obs=x)

    obj = vi.elbo(m, vi.auto_normal(m, 0.5))
    sched = lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(optax.exponential_decay(1e-2, 10, 0.5)))  # noqa: E731
    vi.fit(jax.random.key(0), obj, sched(), 0.5, num_steps=10, progress=False)

    def compiles(opt):
        log = _CompileLog()
        logger = logging.getLogger("jax")
        logger.addHandler(log)
        try:
            with jax.log_compiles():
                vi.fit(jax.random.key(1), obj, opt, 0.5, num_steps=10, progress=False)
        finally:
            logger.removeHandler(log)
        return log.compiled

    assert compiles(sched()) == []
    other = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(optax.exponential_decay(2e-2, 10, 0.5)))
    assert compiles(other) != []
