"""Issue 15 follow-up (h15gp): a model's own LAPACK on several CPU devices, one chain at a time.

Run in a process with 2 forced CPU devices::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m benchmarks.bench_model_lapack

Prints, for a GP (``MultivariateNormal`` covariance n×n from a sampled length scale; default NUTS,
4 chains, 100 + 100 steps): wall and CPU seconds of a warm second run (compiled programs reused)
on 2 devices (chains one at a time per device) and with ``PPL_SHARDING=0`` (one device, the 4
chains vectorised), and the gradient count; and for a model without LAPACK the seconds spent in
the detection (:func:`inference._lapack.calls_lapack`, the extra unbatched trace of one chain's
step, paid at trace time only in the per-device CPU case)."""

from __future__ import annotations

import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ppl  # noqa: E402
from inference import _lapack, mcmc  # noqa: E402
from inference.mcmc import _program  # noqa: E402
from ppl import dist  # noqa: E402


def gp_model():
    @ppl.model
    def gp(x, y):
        ls = ppl.sample("ls", dist.LogNormal(0.0, 1.0))
        k = jnp.exp(-0.5 * ((x[:, None] - x[None, :]) / ls) ** 2) + 0.1 * jnp.eye(x.shape[0])
        ppl.sample("y", dist.MultivariateNormal(jnp.zeros(x.shape[0]), k), obs=y)

    return gp


def timed(f):
    t, c = time.perf_counter(), time.process_time()
    r = f()
    return r, time.perf_counter() - t, time.process_time() - c


def main(n: int = 60) -> None:
    assert jax.device_count() == 2, "run with XLA_FLAGS=--xla_force_host_platform_device_count=2"
    x = jnp.linspace(0.0, 1.0, n)
    y = jnp.sin(6 * x)
    gp = gp_model()
    kw = dict(num_warmup=100, num_samples=100, num_chains=4, progress=False)
    for label, sharded in (("2 devices, one chain at a time", True), ("PPL_SHARDING=0, vmap of 4", False)):
        if not sharded:
            os.environ["PPL_SHARDING"] = "0"
        run = lambda: mcmc.sample(jax.random.key(0), mcmc.NUTS(), gp, x, y, **kw)  # noqa: E731
        run()  # compile
        r, wall, cpu = timed(run)
        grads = int(np.sum(r.info["num_steps"])) if "num_steps" in r.info else -1
        print(f"GP n={n} {label}: warm run {wall:.2f} s wall, {cpu:.2f} CPU s, sampling-phase leapfrog steps {grads}")
        os.environ.pop("PPL_SHARDING", None)

    spent = [0.0]
    orig = _lapack.calls_lapack

    def counting(*a, **k):
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            spent[0] += time.perf_counter() - t

    _program.calls_lapack = counting

    @ppl.model
    def normal(y):
        mu = ppl.sample("mu", dist.Normal(jnp.zeros(10), 1.0).to_event(1))
        ppl.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)

    _, wall, _ = timed(lambda: mcmc.sample(jax.random.key(0), mcmc.NUTS(), normal, jnp.ones(10), num_warmup=20,
                                           num_samples=10, num_chains=4, progress=False))
    print(f"no-LAPACK model, 2 devices: first run {wall:.2f} s wall (trace + compile), of which detection {spent[0]:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
