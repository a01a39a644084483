"""Issue 19 (h19c): the wall time of a VI fit as a user meets it, ours against NumPyro's SVI, on
the three problems of ``bench_vi --guides`` (full-rank guides, Adam 1e-2 constant), at 250 and
2000 steps.  Three arms:

* **cold** — each fit in a fresh process, compile included: ours ``vi.fit(key, vi.elbo(model,
  vi.auto_multivariate_normal(model, data)), optax.adam(1e-2), data, num_steps=n,
  progress=False).params`` against NumPyro's ``SVI(model, AutoMultivariateNormal(model),
  optax.adam(1e-2), Trace_ELBO()).run(key, n, data, progress_bar=False).params`` (``svi.run``
  builds and compiles its loop on every call).  Both end at the constrained parameters, on the
  host.  The time is that of the call (wall and CPU seconds of the process), after the imports
  and the problem's setup; JAX's persistent compilation cache off for both
  (``PPL_COMPILATION_CACHE=0``: ppl would otherwise turn it on, NumPyro does not).
* **warm, whole job** — ours a second ``vi.fit`` call (fresh ``optax.adam`` object, another key)
  against NumPyro's ``svi.init`` + a jitted ``lax.scan`` of ``svi.update`` + ``svi.get_params``
  (its loop compiled beforehand: the best a NumPyro user can do without ``svi.run``).
* **warm, bare scan** — NumPyro's jitted scan alone from an initialised state
  (``benchmarks/vi_fixed_cost.py``'s arm, kept for transparency).

Warm arms interleaved, min of ``--rounds`` rounds (the machine is shared: the min is the least
disturbed run); cold arms interleaved by repetition, min of ``--reps`` processes.

``python -m benchmarks.vi_user_wall [--cold] [--warm] [--reps 3] [--rounds 15]``"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

STEPS = (250, 2000)


def _problem(i):
    from benchmarks.bench_vi import _guide_problems

    return _guide_problems()[i]


def one_cold(lib: str, i: int, n: int) -> dict:
    """In this (fresh) process: the first fit of problem i with n steps, compile included."""
    import jax
    import numpy as np
    import optax

    name, model, model_np, data = _problem(i)
    if lib == "ours":
        from inference import vi

        c, t = time.process_time(), time.perf_counter()
        obj = vi.elbo(model, vi.auto_multivariate_normal(model, data))
        params = vi.fit(jax.random.key(0), obj, optax.adam(1e-2), data, num_steps=n, progress=False).params
        params = jax.device_get(params)
    else:
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.infer.autoguide import AutoMultivariateNormal

        c, t = time.process_time(), time.perf_counter()
        svi = SVI(model_np, AutoMultivariateNormal(model_np), optax.adam(1e-2), Trace_ELBO())
        params = jax.device_get(svi.run(jax.random.key(0), n, data, progress_bar=False).params)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(params))
    return {"lib": lib, "problem": name, "steps": n, "wall_s": wall, "cpu_s": cpu}


def cold_rows(reps: int = 3) -> list[dict]:
    env = {**os.environ, "PPL_COMPILATION_CACHE": "0"}
    out = {}
    for _ in range(reps):
        for i in range(3):
            for n in STEPS:
                for lib in ("ours", "numpyro"):
                    r = subprocess.run([sys.executable, "-m", "benchmarks.vi_user_wall", "--one", lib, str(i), str(n)],
                                       env=env, capture_output=True, text=True, check=True)
                    row = json.loads(r.stdout.strip().splitlines()[-1])
                    out.setdefault((i, n, lib), []).append(row)
    rows = []
    for i in range(3):
        for n in STEPS:
            o, p = out[(i, n, "ours")], out[(i, n, "numpyro")]
            name = o[0]["problem"]
            row = {"problem": name, "steps": n, "reps": reps,
                   "ours_wall_s": min(r["wall_s"] for r in o), "numpyro_wall_s": min(r["wall_s"] for r in p),
                   "ours_cpu_s": min(r["cpu_s"] for r in o), "numpyro_cpu_s": min(r["cpu_s"] for r in p),
                   "all": {"ours": [(r["wall_s"], r["cpu_s"]) for r in o], "numpyro": [(r["wall_s"], r["cpu_s"]) for r in p]}}
            row["wall_ratio"] = row["ours_wall_s"] / row["numpyro_wall_s"]
            row["cpu_ratio"] = row["ours_cpu_s"] / row["numpyro_cpu_s"]
            rows.append(row)
            print(f"cold {name:30s} {n:5d}: ours {row['ours_wall_s']:.2f} s ({row['ours_cpu_s']:.2f} cpu) / numpyro "
                  f"{row['numpyro_wall_s']:.2f} s ({row['numpyro_cpu_s']:.2f} cpu): wall {row['wall_ratio']:.2f}, "
                  f"cpu {row['cpu_ratio']:.2f}", flush=True)
    return rows


def warm_rows(rounds: int = 15) -> list[dict]:
    import jax
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal

    from inference import vi

    rows = []
    for i in range(3):
        name, model, model_np, data = _problem(i)
        obj = vi.elbo(model, vi.auto_multivariate_normal(model, data))
        svi = SVI(model_np, AutoMultivariateNormal(model_np), optax.adam(1e-2), Trace_ELBO())
        st0 = svi.init(jax.random.key(2), data)
        loops = {n: jax.jit(lambda st, n=n: jax.lax.scan(lambda s, _: svi.update(s, data), st, None, length=n)[0])
                 for n in STEPS}

        def ours(n):
            return jax.device_get(vi.fit(jax.random.key(3), obj, optax.adam(1e-2), data, num_steps=n,
                                         progress=False).params)

        def job(n):  # NumPyro's whole job: init, the compiled loop, the constrained parameters
            st = svi.init(jax.random.key(3), data)
            return jax.device_get(svi.get_params(loops[n](st)))

        calls = {}
        for n in STEPS:
            calls[("ours", n)] = lambda n=n: ours(n)
            calls[("numpyro_job", n)] = lambda n=n: job(n)
            calls[("numpyro_scan", n)] = lambda n=n: jax.block_until_ready(loops[n](st0))
        for f in calls.values():
            f()  # compile
        times = {k: [] for k in calls}
        for _ in range(rounds):
            for k, f in calls.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
        for n in STEPS:
            a, b, c = (min(times[(k, n)]) for k in ("ours", "numpyro_job", "numpyro_scan"))
            row = {"problem": name, "steps": n, "rounds": rounds, "ours_ms": 1e3 * a, "numpyro_job_ms": 1e3 * b,
                   "numpyro_scan_ms": 1e3 * c, "ratio_job": a / b, "ratio_scan": a / c}
            rows.append(row)
            print(f"warm {name:30s} {n:5d}: ours {1e3 * a:.2f} ms / numpyro job {1e3 * b:.2f} ms ({a / b:.2f}) / "
                  f"bare scan {1e3 * c:.2f} ms ({a / c:.2f})", flush=True)
    return rows


if __name__ == "__main__":
    if "--one" in sys.argv:
        j = sys.argv.index("--one")
        print(json.dumps(one_cold(sys.argv[j + 1], int(sys.argv[j + 2]), int(sys.argv[j + 3]))))
        sys.exit(0)
    reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 3
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 15
    both = "--cold" not in sys.argv and "--warm" not in sys.argv
    out = {}
    if both or "--warm" in sys.argv:
        out["warm"] = warm_rows(rounds)
    if both or "--cold" in sys.argv:
        out["cold"] = cold_rows(reps)
    print(json.dumps(out, indent=1))
