"""Chains in turn vs a vmap batch on CPU (issue 14, session J; ``_Program._in_turn``).

Two measurements:

- ``--forward``: the forward algorithm of a K-state chain (value and gradient, T steps) under
  ``vmap`` over C chains, µs per call (best of 5 in a jitted loop of 50): XLA:CPU runs a small
  ``while`` loop as one function and a larger one op by op, and the batch makes the loop larger.
  Run it again under ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=N``
  to see the threshold's effect.
- default: NUTS (4 chains, 1000 + 1000) on the enumerated HMM of ``bench_discrete``, an AR(1)
  latent ``ppl.scan`` model, the mixture and Dawid–Skene, with the chains forced in turn or in a
  batch (``--mode turn|batch``; ``auto`` is the library's choice): cold and warm walls, min ESS.

Usage::

    python -m benchmarks.bench_chains_in_turn --forward
    python -m benchmarks.bench_chains_in_turn --cases hmm,ar1 --mode batch
    python -m benchmarks.bench_chains_in_turn --cases hmm,ar1 --mode turn
"""

from __future__ import annotations

import argparse
import time


def forward(Ks=(3, 8), Cs=(1, 2, 3, 4, 8), T: int = 500) -> None:
    import jax
    import jax.numpy as jnp

    def lik(params, y):
        lt, mu = params
        lt = jax.nn.log_softmax(lt, -1)
        emit = -0.5 * (y[:, None] - mu) ** 2

        def fwd(la, e):
            return jax.nn.logsumexp(la[:, None] + lt, axis=0) + e, None

        la, _ = jax.lax.scan(fwd, lt[0] + emit[0], emit[1:])
        return jax.nn.logsumexp(la)

    y = jax.random.normal(jax.random.key(0), (T,))
    vg = jax.value_and_grad(lik)
    for K in Ks:
        p = (jax.random.normal(jax.random.key(1), (K, K)), jnp.arange(K) * 1.0)
        row = []
        for C in Cs:
            pc = jax.tree.map(lambda a: jnp.broadcast_to(a, (C,) + a.shape), p)

            @jax.jit
            def loop(pc):
                def body(pc, _):
                    _, g = jax.vmap(vg, (0, None))(pc, y)
                    return jax.tree.map(lambda a, b: a + 1e-6 * b, pc, g), None
                return jax.lax.scan(body, pc, None, length=50)[0]

            jax.block_until_ready(loop(pc))
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                jax.block_until_ready(loop(pc))
                best = min(best, time.perf_counter() - t)
            row.append(f"C={C}: {best / 50 * 1e6:.0f}")
        print(f"K={K}, T={T} (µs per value-and-grad):", ", ".join(row), flush=True)


def models():
    import jax.numpy as jnp
    import numpyro.distributions as dist

    import ppl
    from benchmarks.bench_discrete import data, models as discrete

    @ppl.model
    def ar1(y):
        phi = ppl.sample("phi", dist.Uniform(-1, 1))
        s = ppl.sample("s", dist.HalfNormal(1.0))

        def step(x, yt):
            x = ppl.sample("x", dist.Normal(phi * x, s))
            ppl.sample("y", dist.Normal(x, 0.5), obs=yt)
            return x, None

        ppl.scan(step, jnp.zeros(()), y, name="t")

    import jax
    y_ar = jnp.cumsum(jax.random.normal(jax.random.key(3), (200,))) * 0.3
    out = {"ar1": (ar1, (y_ar,), ("phi", "s"))}
    for case in ("hmm", "mixture", "dawid_skene"):
        out[case] = (discrete("ppl")[case][0], tuple(jnp.asarray(a) for a in data(case)), None)
    return out


def sample(cases, mode: str, keys: int) -> None:
    import jax
    import numpy as np

    from benchmarks.bench_discrete import _ess
    from inference import mcmc
    from inference.mcmc import _program

    if mode != "auto":
        _program._Program._in_turn = lambda self, k, d: mode == "turn"
    ms = models()
    for case in cases:
        m, args, keep = ms[case]
        for key in range(keys):
            t = time.perf_counter()
            run = mcmc.sample(jax.random.key(key), mcmc.NUTS(), m, *args, num_warmup=1000, num_samples=1000,
                              num_chains=4, progress=False)
            jax.block_until_ready(run.samples)
            wall = time.perf_counter() - t
            draws = {k: v for k, v in run.samples.items() if keep is None or k in keep}
            grads = int(np.sum(np.asarray(run.info["num_steps"])))
            print(f"{case} {mode} key {key}: wall {wall:.2f} s ({'cold' if key == 0 else 'warm'}), "
                  f"min ESS {_ess(draws):.0f}, gradients {grads}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--forward", action="store_true")
    ap.add_argument("--cases", default="hmm,ar1,mixture,dawid_skene")
    ap.add_argument("--mode", choices=("auto", "turn", "batch"), default="auto")
    ap.add_argument("--keys", type=int, default=3)
    a = ap.parse_args()
    if a.forward:
        forward()
    else:
        sample(a.cases.split(","), a.mode, a.keys)


if __name__ == "__main__":
    main()
