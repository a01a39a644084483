"""Issue 14 audit (haudit): the cold-process cost of the element-by-element check of summed-out
sites where it is new: the first call of a jitted ``ppl.marginal_log_density`` and
``vi.fit(vi.trace_enum_elbo)`` (200 steps) on the 3-component mixture, N = 999.

    python benchmarks/check_cost_enum.py on|off jit|vi     # one cold process per row
"""
import sys, time, resource
import jax, jax.numpy as jnp, numpy as np, optax
import ppl
from ppl import dist
from inference import vi
import inference.vi.fit as F
mode, which = sys.argv[1], sys.argv[2]
if mode == "off":
    ppl.enum.check_summed_out = lambda *a, **k: True
    F.check_summed_out = lambda *a, **k: None
rng = np.random.default_rng(0)
y = jnp.asarray(np.concatenate([rng.normal(m, 1, 333) for m in (-5, 0, 5)]))
@ppl.model
def mix(y):
    w = ppl.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = ppl.sample("mu", dist.Normal(0, 10).expand([3]).to_event(1))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Categorical(w))
        ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y)
@ppl.model
def guide(y):
    ppl.sample("w", dist.Dirichlet(ppl.param("a", jnp.ones(3), constraint=dist.constraints.positive)))
    ppl.sample("mu", dist.Normal(ppl.param("loc", jnp.array([-1.0, 0.0, 1.0])), 0.1).to_event(1))
t0, c0 = time.perf_counter(), time.process_time()
if which == "vi":
    vi.fit(jax.random.key(0), vi.trace_enum_elbo(mix, guide), optax.adam(1e-2), y, num_steps=200, progress=False)
else:
    f = jax.jit(lambda w, mu: ppl.marginal_log_density(mix, {"w": w, "mu": mu}, y))
    f(jnp.ones(3) / 3, jnp.zeros(3)).block_until_ready()
print(f"{which} check={mode}: wall {time.perf_counter()-t0:.2f}s cpu {time.process_time()-c0:.2f}s")
