"""Issue 14: NUTS on models with finite discrete latent sites summed out.

Cases: (a) a 3-component Gaussian mixture, N = 1000; (b) an HMM with K = 3 states, T = 500;
(c) the Dawid–Skene annotation model on NumPyro's ``examples/annotation.py`` data (Dawid and
Skene 1979, Table 1: 45 items, 7 annotations each by 5 annotators, 4 classes).
Variants: ``ppl-enum`` (the model as written, discrete sites summed out by ``ppl.enum``),
``ppl-hand`` (the hand-marginalised model in our language: ``MixtureSameFamily`` / a forward
algorithm in ``lax.scan``), ``numpyro-funsor`` (NumPyro's NUTS with ``infer={"enumerate":
"parallel"}``, run with the benchmark environment's python).  Each (case, variant) runs in its
own process (peak RSS = memory); reported: the gradient's cost inside a jitted loop, the NUTS
wall time (tracing and compilation included), the part of it spent tracing, lowering and
compiling (the union of JAX's own compile-time events' intervals; NumPyro recompiles on every
run, so a second run cannot time it warm), the min bulk ESS (each chain's smallest ESS over the
continuous components, summed over chains: the labels are not identified, see ``_ess``),
min-ESS/s of the wall time less compilation and of the whole wall time, min-ESS per 1000
gradient evaluations of the sampling phase (load-independent), the XLA temporary memory of the
gradient's program and the process's peak RSS; for our variants also a second run with another
key in the same process (``warm_s``: the programs are cached, so sampling only).

    python -m benchmarks.bench_discrete [--warmup 1000 --samples 1000 --chains 4]

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


#: Dawid and Skene (1979), Table 1, as in NumPyro's examples/annotation.py (get_data): the
#: annotator of each of the 7 positions (annotator 1 assessed every item 3 times) and the
#: 45 items' 7 labels (classes 1..4; both shifted to start at 0 in `data`)
DS_POSITIONS = [1, 1, 1, 2, 3, 4, 5]
DS_ANNOTATIONS = [
    [1, 1, 1, 1, 1, 1, 1], [3, 3, 3, 4, 3, 3, 4], [1, 1, 2, 2, 1, 2, 2], [2, 2, 2, 3, 1, 2, 1],
    [2, 2, 2, 3, 2, 2, 2], [2, 2, 2, 3, 3, 2, 2], [1, 2, 2, 2, 1, 1, 1], [3, 3, 3, 3, 4, 3, 3],
    [2, 2, 2, 2, 2, 2, 3], [2, 3, 2, 2, 2, 2, 3], [4, 4, 4, 4, 4, 4, 4], [2, 2, 2, 3, 3, 4, 3],
    [1, 1, 1, 1, 1, 1, 1], [2, 2, 2, 3, 2, 1, 2], [1, 2, 1, 1, 1, 1, 1], [1, 1, 1, 2, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2, 1], [2, 2, 2, 1, 3, 2, 2],
    [2, 2, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2, 1], [2, 2, 2, 3, 2, 2, 2], [2, 2, 1, 2, 2, 2, 2],
    [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [2, 3, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1], [1, 1, 2, 1, 1, 2, 1], [1, 1, 1, 1, 1, 1, 1], [3, 3, 3, 3, 2, 3, 3],
    [1, 1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2, 2], [2, 2, 2, 3, 2, 3, 2], [4, 3, 3, 4, 3, 4, 3],
    [2, 2, 1, 2, 2, 3, 2], [2, 3, 2, 3, 2, 3, 3], [3, 3, 3, 3, 4, 3, 2], [1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1], [1, 2, 1, 2, 1, 1, 1], [2, 3, 2, 2, 2, 2, 2], [1, 2, 1, 1, 1, 1, 1],
    [2, 2, 2, 2, 2, 2, 2],
]
DS_ANNOTATORS, DS_CLASSES = 5, 4


def data(case: str):
    """The case's data: a tuple of the model's arguments (NumPy arrays)."""
    import numpy as np

    if case == "dawid_skene":
        return np.array(DS_POSITIONS) - 1, np.array(DS_ANNOTATIONS) - 1
    rng = np.random.RandomState(0)
    if case == "mixture":
        z = rng.choice(3, size=1000, p=[0.3, 0.4, 0.3])
        return ((np.array([-4.0, 0.0, 4.0])[z] + rng.randn(1000)).astype("float32"),)
    K, T = 3, 500
    trans = np.full((K, K), 0.05) + 0.85 * np.eye(K)
    trans /= trans.sum(1, keepdims=True)
    z, zs = 0, []
    for _ in range(T):
        z = rng.choice(K, p=trans[z])
        zs.append(z)
    return ((np.array([-3.0, 0.0, 3.0])[zs] + rng.randn(T)).astype("float32"),)


def models(lib: str):
    """case -> (the model as written, the hand-marginalised model), with `lib`'s primitives."""
    import jax
    import jax.numpy as jnp

    if lib == "ppl":
        import ppl
        from ppl import dist

        sample, plate, factor = ppl.sample, ppl.plate, ppl.factor
        scan = ppl.scan
        deco = ppl.model

        def vindex(beta, positions, c):  # beta[positions, c, :] broadcasts as NumPyro's Vindex does
            return beta[positions, c, :]
    else:
        import numpyro
        import numpyro.distributions as dist
        from numpyro.contrib.control_flow import scan as _scan
        from numpyro.ops.indexing import Vindex

        def vindex(beta, positions, c):
            return Vindex(beta)[positions, c, :]

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

    A, C = DS_ANNOTATORS, DS_CLASSES

    @deco
    def dawid_skene(positions, annotations):
        # NumPyro's examples/annotation.py, dawid_skene, with the sizes as constants
        I, P = annotations.shape
        with plate("annotator", A, dim=-2):
            with plate("class", C):
                beta = sample("beta", dist.Dirichlet(jnp.ones(C)))
        pi = sample("pi", dist.Dirichlet(jnp.ones(C)))
        with plate("item", I, dim=-2):
            c = sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})
            with plate("position", P):
                sample("y", dist.Categorical(vindex(beta, positions, c)), obs=annotations)

    @deco
    def dawid_skene_hand(positions, annotations):
        # log p(y_i) = logsumexp_c [log pi_c + sum_j log beta[positions_j, c, y_ij]]
        I, P = annotations.shape
        with plate("annotator", A, dim=-2):
            with plate("class", C):
                beta = sample("beta", dist.Dirichlet(jnp.ones(C)))
        pi = sample("pi", dist.Dirichlet(jnp.ones(C)))
        lb = jnp.log(beta)[positions]                     # (P, C, C): position, class, label
        ll = lb[jnp.arange(P), :, annotations].sum(1)     # (I, C)
        with plate("item", I):
            factor("y", jax.nn.logsumexp(jnp.log(pi) + ll, -1))

    return {"mixture": (mixture, mixture_hand), "hmm": (hmm, hmm_hand),
            "dawid_skene": (dawid_skene, dawid_skene_hand)}


def _ess(samples: dict) -> float:
    """Σ over chains of each chain's smallest bulk ESS over all continuous components.

    The mixture's and Dawid–Skene's class labels are not identified: each chain settles in its
    own permutation, so component k of one chain is another class than component k of the
    next.  Pooling chains (ESS across chains: ~1) or summing per component across chains (it
    pairs a chain's worst class with other chains' better ones) is not label-free; a chain's
    minimum over all components is."""
    import numpy as np
    from numpyro.diagnostics import effective_sample_size

    flat = [np.asarray(v, dtype=np.float64) for v in samples.values()]
    flat = np.concatenate([v.reshape(v.shape[:2] + (-1,)) for v in flat], axis=-1)
    return float(sum(np.min(effective_sample_size(flat[c : c + 1])) for c in range(flat.shape[0])))


def _grad_cost(potential, x0) -> tuple[float, float]:
    """(µs per value-and-grad inside one jitted scan of 200 dependent evaluations, best of 5;
    MiB of XLA temporaries of the value-and-grad program)."""
    import jax

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
    mem = jax.jit(vg).lower(x0).compile().memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", float("nan")) / 2**20 if mem is not None else float("nan")
    return best / 200 * 1e6, temp


CONTINUOUS = ("w", "mu", "trans", "beta", "pi")
_COMPILE_EVENTS = ("/jax/core/compile/backend_compile_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/jaxpr_trace_duration")
_intervals: list = []


def _count_compiles() -> None:
    """Record the intervals of JAX's own compile-time events (tracing to a jaxpr, lowering, XLA
    compilation; nested traces overlap, hence the union below).  NumPyro recompiles its sampler on every ``run`` (a second run cannot
    time it warm), and our drivers compile one program in a thread while tracing the next, so
    the compile time reported is the length of the union of these intervals."""
    import jax

    def listen(event, duration, **_):
        if event in _COMPILE_EVENTS:
            end = time.perf_counter()
            _intervals.append((end - duration, end))

    jax.monitoring.register_event_duration_secs_listener(listen)


def _compile_within(t0: float, t1: float) -> float:
    """Seconds of [t0, t1] during which some compilation was running."""
    total, cur_end = 0.0, t0
    for a, b in sorted(_intervals):
        a, b = max(a, cur_end), min(b, t1)
        if b > a:
            total += b - a
            cur_end = b
    return total


def one(case: str, variant: str, warmup: int, samples: int, chains: int, seeds: int = 1) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    args = tuple(jnp.asarray(a) for a in data(case))
    _count_compiles()
    if variant.startswith("ppl"):
        import ppl
        from inference import mcmc

        m = models("ppl")[case][0 if variant == "ppl-enum" else 1]
        view = ppl.unconstrained(m, *args)
        cost, temp = _grad_cost(view.potential, view.init)
        t = time.perf_counter()
        run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), m, *args, num_warmup=warmup,
                          num_samples=samples, num_chains=chains, progress=False)
        jax.block_until_ready(run.samples)
        wall = time.perf_counter() - t
        comp = _compile_within(t, t + wall)
        draws = dict(run.samples)
        grads = int(np.sum(np.asarray(run.info["num_steps"])))
        # a second run of the same shapes: our programs are cached, so this is sampling only
        t2 = time.perf_counter()
        run2 = mcmc.sample(jax.random.key(1), mcmc.NUTS(), m, *args, num_warmup=warmup,
                           num_samples=samples, num_chains=chains, progress=False)
        jax.block_until_ready(run2.samples)
        warm = {"warm_s": time.perf_counter() - t2, "min_ess_warm": _ess(dict(run2.samples))}
        warm["ess_per_s_warm"] = warm["min_ess_warm"] / warm["warm_s"]
        seed_ess = [_ess(dict(run.samples)), warm["min_ess_warm"]][:seeds]
        for s in range(2, seeds):  # further keys, warm (the programs are cached)
            r_s = mcmc.sample(jax.random.key(s), mcmc.NUTS(), m, *args, num_warmup=warmup,
                              num_samples=samples, num_chains=chains, progress=False)
            seed_ess.append(_ess(dict(r_s.samples)))
        seed_walls = [wall]  # only the first run is cold
    else:
        from numpyro.infer import MCMC, NUTS
        from numpyro.infer.util import initialize_model

        m = models("numpyro")[case][0]
        info = initialize_model(jax.random.key(0), m, model_args=args)
        cost, temp = _grad_cost(lambda x: info.potential_fn(unravel(x)), ravel(info.param_info.z))
        mc = MCMC(NUTS(m), num_warmup=warmup, num_samples=samples, num_chains=chains,
                  chain_method="vectorized", progress_bar=False)
        t = time.perf_counter()
        mc.run(jax.random.key(0), *args, extra_fields=("num_steps",))
        s = mc.get_samples(group_by_chain=True)
        jax.block_until_ready(s)
        wall = time.perf_counter() - t
        comp = _compile_within(t, t + wall)
        draws = {k: v for k, v in s.items() if k in CONTINUOUS}
        grads = int(np.sum(np.asarray(mc.get_extra_fields()["num_steps"])))
        warm = {}  # NumPyro recompiles on every run: no warm rerun
        seed_ess, seed_walls = [_ess(draws)], [wall]  # the first run's wall, as ours
        for s in range(1, seeds):  # further keys (for their ESS only), a fresh MCMC each
            mc = MCMC(NUTS(m), num_warmup=warmup, num_samples=samples, num_chains=chains,
                      chain_method="vectorized", progress_bar=False)
            mc.run(jax.random.key(s), *args)
            s_s = mc.get_samples(group_by_chain=True)
            seed_ess.append(_ess({k: v for k, v in s_s.items() if k in CONTINUOUS}))
    ess = _ess(draws)
    run_s = wall - comp
    return {"case": case, "variant": variant, "grad_us": cost, "grad_temp_mib": temp,
            "wall_s": wall, "compile_s": comp, "run_s": run_s, "min_ess": ess,
            "ess_per_s": ess / run_s, "ess_per_s_wall": ess / wall, "ess_per_1000_grad": 1000 * ess / grads,
            "grads": grads, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seeds": len(seed_ess), "min_ess_seed_mean": float(np.mean(seed_ess)),
            "min_ess_seed_sd": float(np.std(seed_ess, ddof=1)) if len(seed_ess) > 1 else float("nan"),
            "cold_wall_s": float(np.mean(seed_walls)),
            "ess_per_s_wall_seed_mean": float(np.mean(seed_ess)) / float(np.mean(seed_walls)), **warm}


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
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--one", nargs=2, metavar=("CASE", "VARIANT"))
    ap.add_argument("--cases", default="mixture,hmm,dawid_skene")
    ap.add_argument("--variants", default="ppl-enum,ppl-hand,numpyro-funsor")
    ap.add_argument("--repeat", type=int, default=1, help="processes per (case, variant), interleaved")
    ap.add_argument("--seeds", type=int, default=1,
                    help="keys per process: min ESS averaged over keys 0..seeds-1 (one seed's min ESS varies by ~7%%), "
                         "divided by the first (cold) run's wall time, for both")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], a.one[1], a.warmup, a.samples, a.chains, a.seeds)))
        return
    rows = []
    root = os.path.dirname(HERE)
    pythons = {"ppl-enum": OUR_PYTHON, "ppl-hand": OUR_PYTHON, "numpyro-funsor": PEER_PYTHON}
    for case in a.cases.split(","):
        for _ in range(a.repeat):
            for variant in a.variants.split(","):
                cmd = [pythons[variant], "-m", "benchmarks.bench_discrete", "--one", case, variant,
                       "--warmup", str(a.warmup), "--samples", str(a.samples), "--chains", str(a.chains),
                       "--seeds", str(a.seeds)]
                env = dict(os.environ, PPL_COMPILATION_CACHE="0", PYTHONPATH=root)
                load = os.getloadavg()[0]
                r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
                if r.returncode:
                    print(f"{case} {variant} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(dict(json.loads(r.stdout.strip().splitlines()[-1]), load=load))
                print(json.dumps(rows[-1]), flush=True)
    print("\n| case | variant | grad in loop (µs) | grad temp (MiB) | wall (s) | trace+compile (s) | wall − compile (s) "
          "| min ESS | min-ESS/s (wall − compile) | ÷ ppl-enum | min-ESS/s (wall) | min-ESS / 1000 grad | peak RSS (MiB) | load "
          "| warm rerun (s) | min-ESS/s warm |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = next((b for b in rows if b["case"] == r["case"] and b["variant"] == "ppl-enum"), r)
        print(f"| {r['case']} | {r['variant']} | {r['grad_us']:.1f} | {r['grad_temp_mib']:.2f} | {r['wall_s']:.1f} | "
              f"{r['compile_s']:.1f} | {r['run_s']:.1f} | {r['min_ess']:.0f} | {r['ess_per_s']:.1f} | "
              f"{r['ess_per_s'] / base['ess_per_s']:.2f} | {r['ess_per_s_wall']:.1f} | {r['ess_per_1000_grad']:.1f} | "
              f"{r['peak_rss_mib']:.0f} | {r['load']:.1f} | {r.get('warm_s', float('nan')):.1f} | "
              f"{r.get('ess_per_s_warm', float('nan')):.1f} |")
    if a.seeds > 1:
        print(f"\n| case | variant | seeds | min ESS mean ± sd | cold wall (s) | min-ESS/s (cold wall, seed-mean ESS) | ÷ ppl-enum |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            base = next((b for b in rows if b["case"] == r["case"] and b["variant"] == "ppl-enum"), r)
            print(f"| {r['case']} | {r['variant']} | {r['seeds']} | {r['min_ess_seed_mean']:.0f} ± {r['min_ess_seed_sd']:.0f} | "
                  f"{r['cold_wall_s']:.2f} | {r['ess_per_s_wall_seed_mean']:.1f} | "
                  f"{r['ess_per_s_wall_seed_mean'] / base['ess_per_s_wall_seed_mean']:.2f} |")


if __name__ == "__main__":
    main()
