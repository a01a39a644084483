"""Scaling: NUTS over many chains and the particle filter over many particles, by device count.

Each configuration runs in a fresh process (JAX fixes its device count at start-up):

- on CPU, with ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` for D in 1, 2, 8 (the
  devices share the machine's cores, so this shows the cost of sharding, not a speed-up beyond
  the core count);
- on an accelerator (``JAX_PLATFORMS=cuda``), with the devices the machine has.

Cases
-----
``nuts_C<chains>``: NUTS, logistic regression (N = 500, D = 5, synthetic, seeded), 200 warmup +
200 draws per chain, chains 1 -> 1024. Columns: ``first`` (compile included), ``warm`` (the same
run again: nothing compiles), chain-draws per second (warm).

``pf_N<particles>``: bootstrap particle filter on the linear Gaussian model of
``bench_smc`` (T = 100), particles 10^3 -> 10^6. Columns: ``first``, ``warm`` (best of 3),
particle-steps per second, |log Z - log Z_Kalman|.

Run: ``python -m benchmarks.run scaling`` (``--quick``: fewer sizes).  Stand-alone:
``python -m benchmarks.bench_scaling [--quick] [--devices 1,2,8]``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# worker (one process, one device count)


def _worker(quick: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import ppl
    from inference import mcmc, sharding, smc
    from ppl import dist

    from benchmarks.bench_smc import A, Q, R, lgssm_data

    rows: list[dict] = []
    devices = jax.device_count()

    # --- NUTS over chains
    rng = np.random.default_rng(0)
    n, d = 500, 5
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-X @ w))).astype(np.float32)
    X, y = jnp.asarray(X, jnp.float32), jnp.asarray(y)

    @ppl.model
    def logreg(X, y):
        beta = ppl.sample("beta", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
        with ppl.plate("data", X.shape[0]):
            ppl.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)

    chains = [1, 16, 256] if quick else [1, 4, 16, 64, 256, 1024]
    steps = 50 if quick else 200
    for c in chains:
        times = []
        for rep in range(2):
            t0 = time.perf_counter()
            run = mcmc.sample(jax.random.key(rep), mcmc.NUTS(), logreg, X, y,
                              num_warmup=steps, num_samples=steps, num_chains=c, progress=False)
            jax.block_until_ready(run.samples)
            times.append(time.perf_counter() - t0)
        rows.append(dict(case=f"nuts_C{c}", devices=devices, sharded=sharding.num_devices(),
                         first_s=times[0], warm_s=times[1], rate=c * steps / times[1], unit="chain-draws/s"))

    # --- particle filter over particles
    ys = lgssm_data()

    @ppl.model
    def x0():
        return ppl.sample("x0", dist.Normal(0.0, 1.0))

    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(A * x_prev, math.sqrt(Q)))
        ppl.sample("y", dist.Normal(x, math.sqrt(R)), obs=y_t)
        return x, x

    from semantics.oracles import kalman_filter

    try:
        exact = float(kalman_filter(np.asarray(ys, np.float64), A, Q, 1.0, R, 0.0, 1.0).log_evidence)
    except Exception:  # noqa: BLE001 - the oracle's signature is not this benchmark's concern
        exact = math.nan

    Ns = [1000, 10_000, 100_000] if quick else [1000, 10_000, 100_000, 1_000_000]
    T = int(ys.shape[0])
    for N in Ns:
        run = jax.jit(lambda key, ys, N=N: smc.particle_filter(key, step, x0, ys, N).log_evidence)
        t0 = time.perf_counter()
        logz = float(run(jax.random.key(0), ys))
        first = time.perf_counter() - t0
        warm = math.inf
        for rep in range(3):
            t0 = time.perf_counter()
            jax.block_until_ready(run(jax.random.key(rep + 1), ys))
            warm = min(warm, time.perf_counter() - t0)
        rows.append(dict(case=f"pf_N{N}", devices=devices, sharded=sharding.num_devices(),
                         first_s=first, warm_s=warm, rate=N * T / warm, unit="particle-steps/s",
                         logz_error=abs(logz - exact)))
    return rows


# ---------------------------------------------------------------------------------------------
# driver


def _device_counts(argv: list[str]) -> tuple[list[int], str]:
    for i, a in enumerate(argv):
        if a == "--devices" and i + 1 < len(argv):
            return [int(x) for x in argv[i + 1].split(",")], os.environ.get("JAX_PLATFORMS", "cpu")
    platform = os.environ.get("JAX_PLATFORMS", "")
    if platform and platform != "cpu":
        return [0], platform  # 0: whatever the accelerator machine has
    return [1, 2, 8], "cpu"


def run_config(devices: int, quick: bool, platform: str) -> list[dict]:
    env = dict(os.environ)
    if platform == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "benchmarks.bench_scaling", "--worker"] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker with {devices} devices failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class ScalingSuite:
    def __init__(self, rows: list[dict], platform: str) -> None:
        self.rows, self.platform = rows, platform

    def report(self) -> None:
        from benchmarks.runner import RESULTS_DIR, machine_info

        print(f"\n## scaling ({self.platform})\n")
        print("| case | devices | first (s) | warm (s) | rate | vs 1 device | |Δ log Z| |")
        print("|---|---|---|---|---|---|---|")
        base = {r["case"]: r["rate"] for r in self.rows if r["devices"] == min(x["devices"] for x in self.rows)}
        for r in sorted(self.rows, key=lambda r: (r["case"][:2], int(r["case"].split("_")[1][1:]), r["devices"])):
            err = f"{r['logz_error']:.2f}" if "logz_error" in r else ""
            print(f"| {r['case']} | {r['devices']} | {r['first_s']:.2f} | {r['warm_s']:.3f} | "
                  f"{r['rate']:.3g} {r['unit']} | {r['rate'] / base[r['case']]:.2f}x | {err} |")
        RESULTS_DIR.mkdir(exist_ok=True)
        out = {"machine": machine_info(), "platform": self.platform, "rows": self.rows}
        (RESULTS_DIR / f"scaling_{self.platform}.json").write_text(json.dumps(out, indent=1))


def main(quick: bool = False, argv: list[str] | None = None) -> ScalingSuite:
    counts, platform = _device_counts(argv or [])
    rows: list[dict] = []
    for d in counts:
        rows += run_config(d, quick, platform)
    return ScalingSuite(rows, platform)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        print(json.dumps(_worker("--quick" in sys.argv)))
    else:
        main(quick="--quick" in sys.argv, argv=sys.argv[1:]).report()
