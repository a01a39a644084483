"""Issue 14: NUTS on models with finite discrete latent sites summed out.

Cases: (a) a 3-component Gaussian mixture, N = 1000; (b) an HMM with K = 3 states, T = 500.
Variants: ``ppl-enum`` (the model as written, discrete sites summed out by ``ppl.enum``),
``ppl-hand`` (the hand-marginalised model in our language: ``MixtureSameFamily`` / a forward
algorithm in ``lax.scan``), ``numpyro-funsor`` (NumPyro's NUTS with ``infer={"enumerate":
"parallel"}``, run with the benchmark environment's python).  Each (case, variant) runs in its
own process (peak RSS = memory); reported: the gradient's cost inside a jitted loop, the NUTS
wall time (compilation included), min bulk ESS over the continuous parameters (each chain's
ESS, summed over chains: the labels are not identified) and min-ESS/s.

    python benchmarks/bench_discrete.py [--warmup 500 --samples 500 --chains 2]

Not part of ``make bench`` (it needs /work/bench-venv for the peer).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

PEER_PYTHON = os.environ.get("BENCH_PEER_PYTHON", "/work/bench-venv/bin/python")
OUR_PYTHON = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))


def data(case: str):
    import numpy as np

    rng = np.random.RandomState(0)
    if case == "mixture":
        z = rng.choice(3, size=1000, p=[0.3, 0.4, 0.3])
        return (np.array([-4.0, 0.0, 4.0])[z] + rng.randn(1000)).astype("float32")
    K, T = 3, 500
    trans = np.full((K, K), 0.05) + 0.85 * np.eye(K)
    trans /= trans.sum(1, keepdims=True)
    z, zs = 0, []
    for _ in range(T):
        z = rng.choice(K, p=trans[z])
        zs.append(z)
    return (np.array([-3.0, 0.0, 3.0])[zs] + rng.randn(T)).astype("float32")


def models(lib: str):
    """(mixture, hmm, mixture_hand, hmm_hand) written with `lib`'s primitives."""
    import jax
    import jax.numpy as jnp

    if lib == "ppl":
        import ppl
        from ppl import dist

        sample, plate, factor = ppl.sample, ppl.plate, ppl.factor
        scan = ppl.scan
        deco = ppl.model
    else:
        import numpyro
        import numpyro.distributions as dist
        from numpyro.contrib.control_flow import scan as _scan

        sample, plate, factor = numpyro.sample, numpyro.plate, numpyro.factor

        def scan(f, init, xs, name):
            return _scan(f, init, xs)

        def deco(f):
            return f

    K = 3

    @deco
    def mixture(y):
        w = sample("w", dist.Dirichlet(jnp.ones(K)))
        mu = sample("mu", dist.Normal(jnp.array([-1.0, 0.0, 1.0]), 10.0).to_event(1))
        with plate("data", y.shape[0]):
            z = sample("z", dist.Categorical(w), infer={"enumerate": "parallel"})
            sample("y", dist.Normal(mu[z], 1.0), obs=y)

    @deco
    def mixture_hand(y):
        w = sample("w", dist.Dirichlet(jnp.ones(K)))
        mu = sample("mu", dist.Normal(jnp.array([-1.0, 0.0, 1.0]), 10.0).to_event(1))
        with plate("data", y.shape[0]):
            sample("y", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(mu, 1.0)), obs=y)

    @deco
    def hmm(y):
        trans = sample("trans", dist.Dirichlet(jnp.ones(K) + 4 * jnp.eye(K)).to_event(1))
        mu = sample("mu", dist.Normal(jnp.array([-3.0, 0.0, 3.0]), 1.0).to_event(1))

        def step(z_prev, y_t):
            z = sample("z", dist.Categorical(probs=trans[z_prev]), infer={"enumerate": "parallel"})
            sample("y", dist.Normal(mu[z], 1.0), obs=y_t)
            return z, None

        scan(step, jnp.zeros((), jnp.int32), y, name="hmm")

    @deco
    def hmm_hand(y):
        trans = sample("trans", dist.Dirichlet(jnp.ones(K) + 4 * jnp.eye(K)).to_event(1))
        mu = sample("mu", dist.Normal(jnp.array([-3.0, 0.0, 3.0]), 1.0).to_event(1))
        emit = dist.Normal(mu, 1.0).log_prob(y[:, None])
        lt = jnp.log(trans)

        def fwd(la, e):
            return jax.nn.logsumexp(la[:, None] + lt, axis=0) + e, None

        la, _ = jax.lax.scan(fwd, lt[0] + emit[0], emit[1:])
        factor("lik", jax.nn.logsumexp(la))

    return {"mixture": (mixture, mixture_hand), "hmm": (hmm, hmm_hand)}


def _ess(samples: dict) -> float:
    import numpy as np
    from numpyro.diagnostics import effective_sample_size

    # ESS of each chain, summed over chains: the mixture's and the HMM's labels are not
    # identified, and two chains in two label permutations would give an ESS of 1 across chains
    out = []
    for v in samples.values():
        v = np.asarray(v, dtype=np.float64)
        v = v.reshape(v.shape[:2] + (-1,))
        per = sum(np.atleast_1d(effective_sample_size(v[c : c + 1])) for c in range(v.shape[0]))
        out.extend(np.atleast_1d(per).tolist())
    return float(min(out))


def _grad_cost(potential, x0) -> float:
    """µs per value-and-grad inside one jitted scan of 200 dependent evaluations (best of 5)."""
    import jax
    import jax.numpy as jnp

    vg = jax.value_and_grad(potential)

    @jax.jit
    def loop(x):
        def body(x, _):
            v, g = vg(x)
            return x + 1e-6 * g + 0 * v, None
        return jax.lax.scan(body, x, None, length=200)[0]

    loop(x0).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        loop(x0).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return best / 200 * 1e6


def one(case: str, variant: str, warmup: int, samples: int, chains: int) -> dict:
    import jax
    import jax.numpy as jnp

    y = jnp.asarray(data(case))
    if variant.startswith("ppl"):
        import ppl
        from inference import mcmc

        m = models("ppl")[case][0 if variant == "ppl-enum" else 1]
        view = ppl.unconstrained(m, y)
        cost = _grad_cost(view.potential, view.init)
        t = time.perf_counter()
        run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), m, y, num_warmup=warmup, num_samples=samples,
                          num_chains=chains, progress=False)
        jax.block_until_ready(run.samples)
        wall = time.perf_counter() - t
        ess = _ess(run.samples)
    else:
        import numpyro
        from numpyro.infer import MCMC, NUTS
        from numpyro.infer.util import initialize_model

        m = models("numpyro")[case][0]
        info = initialize_model(jax.random.key(0), m, model_args=(y,))
        cost = _grad_cost(lambda x: info.potential_fn(unravel(x)), ravel(info.param_info.z))
        t = time.perf_counter()
        mc = MCMC(NUTS(m), num_warmup=warmup, num_samples=samples, num_chains=chains,
                  chain_method="vectorized", progress_bar=False)
        mc.run(jax.random.key(0), y)
        s = mc.get_samples(group_by_chain=True)
        jax.block_until_ready(s)
        wall = time.perf_counter() - t
        ess = _ess({k: v for k, v in s.items() if k in ("w", "mu", "trans")})
    return {"case": case, "variant": variant, "grad_us": cost, "wall_s": wall, "min_ess": ess,
            "ess_per_s": ess / wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


_unravel = None


def ravel(tree):
    global _unravel
    from jax.flatten_util import ravel_pytree

    flat, _unravel = ravel_pytree(tree)
    return flat


def unravel(x):
    return _unravel(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--one", nargs=2, metavar=("CASE", "VARIANT"))
    ap.add_argument("--cases", default="mixture,hmm")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], a.one[1], a.warmup, a.samples, a.chains)))
        return
    rows = []
    root = os.path.dirname(HERE)
    for case in a.cases.split(","):
        for variant, py in (("ppl-enum", OUR_PYTHON), ("ppl-hand", OUR_PYTHON), ("numpyro-funsor", PEER_PYTHON)):
            cmd = [py, os.path.abspath(__file__), "--one", case, variant, "--warmup", str(a.warmup),
                   "--samples", str(a.samples), "--chains", str(a.chains)]
            env = dict(os.environ, PPL_COMPILATION_CACHE="0")
            if variant == "numpyro-funsor":
                env.pop("PYTHONPATH", None)
            else:
                env["PYTHONPATH"] = root
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
            if r.returncode:
                print(f"{case} {variant} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| case | variant | grad in loop (µs) | NUTS wall (s) | min ESS | min-ESS/s | ÷ ppl-enum ESS/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = next((b for b in rows if b["case"] == r["case"] and b["variant"] == "ppl-enum"), r)
        print(f"| {r['case']} | {r['variant']} | {r['grad_us']:.1f} | {r['wall_s']:.1f} | {r['min_ess']:.0f} | "
              f"{r['ess_per_s']:.1f} | {r['ess_per_s'] / base['ess_per_s']:.2f} | {r['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
