"""hcheck: a model's own LAPACK in SMC and VI particles on several CPU devices.

Run in a process with 2 forced CPU devices::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m benchmarks.bench_particles_lapack

Prints, for a GP (``MultivariateNormal`` covariance n×n from a sampled length scale), wall and
CPU seconds of a warm second call (compiled programs reused) of ``smc.tempered_smc`` (64
particles, 5 fixed βs, 2 RWM steps) and ``vi.fit`` (ELBO of 8 particles, 50 steps), on 2
devices (each device looping over its particles: ``inference._lapack.map_batch``; before, these
never returned) and with ``PPL_SHARDING=0`` (one device, the particles vectorised); and the
first-call seconds of ``calls_lapack`` / ``batches_lapack`` on a model without LAPACK (the
per-primitive CPU lowering, once per process)."""

from __future__ import annotations

import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import ppl  # noqa: E402
from inference import _lapack, sharding, smc, vi  # noqa: E402
from ppl import dist  # noqa: E402


@ppl.model
def gp(x, y):
    ls = ppl.sample("ls", dist.LogNormal(0.0, 1.0))
    k = jnp.exp(-0.5 * ((x[:, None] - x[None, :]) / ls) ** 2) + 0.1 * jnp.eye(x.shape[0])
    ppl.sample("y", dist.MultivariateNormal(jnp.zeros(x.shape[0]), k), obs=y)


@ppl.model
def lin(x, y):
    a = ppl.sample("a", dist.Normal(0.0, 1.0))
    s = ppl.sample("s", dist.HalfNormal(1.0))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", dist.StudentT(4.0, a * x, s), obs=y)


def timed(f):
    w, c = time.perf_counter(), time.process_time()
    out = f()
    jax.block_until_ready(out)
    return out, time.perf_counter() - w, time.process_time() - c


def main(n: int = 60) -> None:
    x = jnp.linspace(0.0, 1.0, n)
    y = jnp.sin(6 * x)
    u = jax.ShapeDtypeStruct((2,), jnp.float64)
    view = ppl.unconstrained(lin, x, y)
    _, w, _ = timed(lambda: _lapack.calls_lapack(jax.value_and_grad(view.log_density), u))
    print(f"calls_lapack, first call, model without LAPACK: {w:.3f} s")
    _, w, _ = timed(lambda: _lapack.batches_lapack(jax.value_and_grad(view.log_density), jax.ShapeDtypeStruct((8, 2), jnp.float64)))
    print(f"batches_lapack, next call (lowerings cached): {w:.3f} s")
    runs = {
        "tempered_smc": lambda: smc.tempered_smc(jax.random.key(0), gp, x, y, num_particles=64,
                                                 betas=jnp.linspace(0.0, 1.0, 5), num_mcmc_steps=2).log_evidence,
        "vi.fit": lambda: vi.fit(jax.random.key(0), vi.elbo(gp, vi.auto_normal(gp, x, y), num_particles=8),
                                 optax.adam(1e-2), x, y, num_steps=50, progress=False).params,
    }
    for name, f in runs.items():
        for setting in ("1", "0"):
            os.environ["PPL_SHARDING"] = setting
            _, w0, _ = timed(f)
            _, w, c = timed(f)
            print(f"{name:13s} devices={sharding.num_devices()} first {w0:6.2f} s  warm {w:6.2f} s wall {c:6.2f} CPU s")
    os.environ.pop("PPL_SHARDING", None)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
