"""Chains in turn: on CPU, a model that runs a sequential loop (``ppl.scan``) has its chains take
each step one after another (``lax.map``) instead of as a ``vmap`` batch (issue 14: the enumerated
HMM's batched gradient cost 5x one chain's, see ``_Program._in_turn``).  Nothing crosses chains in
a step, so the draws must be those of the batch, up to rounding; models without a loop keep the
batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from inference import mcmc
from inference._lapack import runs_loop
from inference.mcmc import _program
from ppl import dist

Y = jnp.array([0.3, -0.4, 1.1, 0.8, -0.2, 0.5])


@ppl.model
def ar1(y):
    phi = ppl.sample("phi", dist.Uniform(-1.0, 1.0))

    def step(x, yt):
        x = ppl.sample("x", dist.Normal(phi * x, 1.0))
        ppl.sample("y", dist.Normal(x, 0.5), obs=yt)
        return x, None

    ppl.scan(step, jnp.zeros(()), y, name="t")


@ppl.model
def hmm(y):
    p = ppl.sample("p", dist.Beta(2.0, 2.0))

    def step(z, yt):
        trans = jnp.stack([jnp.stack([p, 1 - p]), jnp.stack([1 - p, p])])
        z = ppl.sample("z", dist.Categorical(probs=trans[z]))
        ppl.sample("y", dist.Normal(2.0 * z - 1.0, 1.0), obs=yt)
        return z, None

    ppl.scan(step, jnp.array(0), y, name="t")  # the default int, as Categorical draws


@ppl.model
def plated(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


def _decisions(monkeypatch) -> list:
    seen: list = []
    orig = _program._Program._in_turn

    def spy(self, keys, dyn):
        seen.append(orig(self, keys, dyn))
        return seen[-1]

    monkeypatch.setattr(_program._Program, "_in_turn", spy)
    return seen


def test_runs_loop_sees_a_scan_model_and_not_a_plate_model():
    k = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    assert runs_loop(lambda k: ar1.simulate(k, Y).choices, k)
    assert not runs_loop(lambda k: plated.simulate(k, Y).choices, k)


def test_scan_models_take_steps_in_turn_and_plate_models_in_a_batch(monkeypatch):
    seen = _decisions(monkeypatch)
    kw = dict(num_warmup=5, num_samples=5, progress=False)
    mcmc.sample(jax.random.key(0), mcmc.RWM(), ar1, Y, num_chains=2, chunk_size=3, **kw)
    assert seen and all(seen)
    seen.clear()
    mcmc.sample(jax.random.key(0), mcmc.RWM(), plated, Y, num_chains=2, chunk_size=3, **kw)
    assert seen and not any(seen)
    seen.clear()
    mcmc.sample(jax.random.key(0), mcmc.RWM(), ar1, Y, num_chains=1, chunk_size=3, **kw)  # one chain: no batch
    assert seen and not any(seen)


@pytest.mark.slow
def test_chains_in_turn_draw_what_the_batch_draws(monkeypatch):
    # the same keys, adaptation and trees per chain: a planted swap of the chains' keys or states
    # in the map, or a state shared across chains, makes the two runs differ
    kw = dict(num_warmup=15, num_samples=10, num_chains=3, progress=False)
    with monkeypatch.context() as m:
        seen = _decisions(m)
        a = mcmc.sample(jax.random.key(11), mcmc.NUTS(), hmm, Y, chunk_size=4, **kw)
    assert seen and all(seen)  # run a took its steps in turn (else the comparison says nothing)
    with monkeypatch.context() as m:
        m.setattr(_program._Program, "_in_turn", lambda self, keys, dyn: False)  # the batch
        b = mcmc.sample(jax.random.key(11), mcmc.NUTS(), hmm, Y, chunk_size=5, **kw)
    np.testing.assert_allclose(a.samples["p"], b.samples["p"], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(a.info["num_steps"], b.info["num_steps"])
    assert np.std(a.samples["p"][:, -1]) > 0  # the chains differ
