"""Several hosts (issue 8): two JAX processes joined by ``jax.distributed.initialize`` over
localhost, 4 CPU devices each, split particles, samples and chains over all 8 devices.

Each process computes every result twice, sharded over the 8 global devices and with
``PPL_SHARDING=0`` (on its own first device), and checks they agree; the test then checks that
both processes hold the same numbers (every process sees the whole result).
"""

from __future__ import annotations

import json

import pytest

from tests._multidevice import run_on_processes

CODE = """
import json, math
import numpy as np, jax, jax.numpy as jnp
import ppl
from ppl import dist
from inference import mcmc, sharding, smc, vi

assert sharding.num_devices() == 8
results = {}

# --- shard_batch: every process passes the whole batch, the global array is that batch
batch = np.arange(16.0 * 3).reshape(16, 3)
placed = sharding.shard_batch(batch)
assert placed.shape == (16, 3) and len(placed.sharding.device_set) == 8, placed.sharding
np.testing.assert_array_equal(sharding.to_host(placed), batch)

# --- a particle filter (resampling gathers particles across hosts)
@ppl.model
def x0():
    return ppl.sample("x0", dist.Normal(0.0, 1.0))

def step(x_prev, y_t):
    x = ppl.sample("x", dist.Normal(0.9 * x_prev, math.sqrt(0.5)))
    ppl.sample("y", dist.Normal(x, 1.0), obs=y_t)
    return x, x

ys = jnp.asarray(np.random.default_rng(0).normal(size=20))

def pf():
    res = jax.jit(lambda key, ys: smc.particle_filter(key, step, x0, ys, 64))(jax.random.key(0), ys)
    return sharding.to_host({"logz": res.log_evidence, "means": res.filter_means})

# --- a VI objective's value and gradient (a mean over particles across hosts)
@ppl.model
def model(x):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("d", x.shape[0]):
        ppl.sample("x", dist.Normal(mu, 1.0), obs=x)

@ppl.model
def guide(x):
    ppl.sample("mu", dist.Normal(ppl.param("m", 0.1), ppl.param("s", 0.9, constraint=dist.constraints.positive)))

x = jnp.array([0.3, 1.2, 0.7])
obj = vi.iwae(model, guide, num_particles=16)
u = obj.init_params(jax.random.key(0), x)

def grad():
    v, g = jax.jit(lambda k, u: obj.grad(k, u, x))(jax.random.key(1), u)
    return sharding.to_host({"value": v, **{f"g/{k}": g[k] for k in g}})

# --- NUTS chains
y = jnp.array([0.3, 1.2, -0.4, 2.0])

@ppl.model
def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    with ppl.plate("d", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

def nuts():
    run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), normal_mean, y, num_warmup=30,
                      num_samples=20, num_chains=8, progress=False)
    return {"mu": np.asarray(run.samples["mu"])}

for name, fn in [("pf", pf), ("vi", grad), ("nuts", nuts)]:
    os.environ.pop("PPL_SHARDING", None)
    sharded = fn()
    os.environ["PPL_SHARDING"] = "0"
    local = fn()
    for k in local:
        np.testing.assert_allclose(np.asarray(sharded[k]), np.asarray(local[k]), rtol=1e-6, atol=1e-9, err_msg=f"{name}/{k}")
    results[name] = {k: np.asarray(v).ravel()[:8].tolist() for k, v in sharded.items()}
print(json.dumps(results))
"""


@pytest.mark.slow
def test_two_processes_split_the_batch_and_agree():
    outs = run_on_processes(CODE, num_processes=2, devices_per_process=4)
    a, b = (json.loads(o.strip().splitlines()[-1]) for o in outs)
    assert a == b
    assert set(a) == {"pf", "vi", "nuts"}
