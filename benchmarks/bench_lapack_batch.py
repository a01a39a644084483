"""Issue 15 hang (h15hang): ``low_rank``'s estimate for 4 chains (470×100 draws and gradients each)
under ``vmap``, with batched LAPACK calls (before the fix) against one chain at a time
(:func:`inference._lapack.one_at_a_time`, after): wall and CPU ms per estimate on one device, and
the largest difference between the two estimates.

    python -m benchmarks.bench_lapack_batch
"""

from __future__ import annotations

import functools
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from inference._lapack import one_at_a_time
from inference.mcmc.adaptation_fisher import low_rank_metric


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(chains: int = 4, rows: int = 470, d: int = 100, reps: int = 20) -> None:
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(chains, rows, d)), jnp.float32)
    G = jnp.asarray(rng.normal(size=(chains, rows, d)), jnp.float32)
    w = jnp.ones((chains, rows), jnp.float32)
    f = functools.partial(low_rank_metric, max_rank=d)
    batched, sequential = jax.jit(jax.vmap(f)), jax.jit(jax.vmap(one_at_a_time(f)))
    a, b = batched(X, G, w), sequential(X, G, w)
    print("max |difference|: values", float(jnp.max(jnp.abs(a.values - b.values))),
          "scale", float(jnp.max(jnp.abs(a.scale - b.scale))))
    for name, g in (("batched", batched), ("one_at_a_time", sequential)) * 2:
        jax.block_until_ready(g(X, G, w))
        c0, t0 = _cpu(), time.perf_counter()
        for _ in range(reps):
            jax.block_until_ready(g(X, G, w))
        print(f"{name}: {1e3 * (time.perf_counter() - t0) / reps:.1f} ms wall, "
              f"{1e3 * (_cpu() - c0) / reps:.1f} ms CPU per estimate of {chains} chains")


if __name__ == "__main__":
    main()
