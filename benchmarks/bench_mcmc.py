"""NUTS end to end: ours (``inference.mcmc``) vs NumPyro ``MCMC(NUTS)`` vs Blackjax NUTS.

Every sampler runs 4 chains x (1000 warmup + 1000 draws) with Stan-style window adaptation
(diagonal mass matrix, target acceptance 0.8), float32, on

- ``eight_schools_nc``: non-centred eight schools (posteriordb data);
- ``logistic_N5000_D20``: Bayesian logistic regression, synthetic data, seed 0;
- ``german_credit``: logistic regression on UCI German credit (Inference Gym's recipe).

Variants
- ``ours``: ``mcmc.sample(key, mcmc.NUTS(), model, ..., num_chains=4, progress=False)``;
- ``numpyro``: ``MCMC(NUTS(model), chain_method="vectorized", progress_bar=False)`` (its fastest
  single-device mode);
- ``numpyro+bar``: NumPyro's default for 4 chains on one device (``sequential``, progress bar on;
  the bar is printed to a discarded stream);
- ``blackjax``: ``blackjax.window_adaptation(blackjax.nuts, logdensity)`` vmapped over chains, then
  a ``lax.scan`` of ``blackjax.nuts`` steps; the log density is NumPyro's potential of the same
  model (so all samplers differentiate the same function up to the front end).

Columns: ``wall`` (first run in this process: trace + compile + run), ``warm`` (a second run with
another key: no compilation), ``grads/s`` (leapfrog steps of the sampling phase, all chains, per
second of sampling-phase wall time), ``minESS`` (smallest bulk ESS over all scalar parameters),
``minESS/s`` (over ``wall`` and over ``warm``), and for eight schools ``first draw`` (a fresh
Python process: imports, model, compile, and a first draw of 4 chains; wall time of the process),
cold (no persistent compilation cache) and, for ``ours``, with ppl's persistent compilation cache
warm (``first draw, cached``; filled by an earlier process).  Ratios are to ``ours``.  Also: the
cost of our progress display (eight schools, best of 5).

Scaling (``python -m benchmarks.bench_mcmc --scaling [--max-chains 1024] [--cases eight_schools_nc]``): NUTS on eight
schools (and the logistic regression) with 1, 4, 16, ..., 1024 chains, 200 warmup + 200 draws
each, on all local devices (chains sharded when there are several; ``PPL_SHARDING=0`` to compare):
wall time warm, gradient evaluations per second over all chains, min-ESS per second.  The rows go
to ``benchmarks/results/mcmc_scaling.json`` with the machine they came from.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_logdensity import eight_schools_data, logistic_data, ppl_models
from benchmarks.runner import RESULTS_DIR, machine_info

REPO = Path(__file__).resolve().parents[1]
GERMAN = REPO.parent / "shared" / "data" / "german_credit_numeric.json"
CHAINS, WARMUP, DRAWS = 4, 1000, 1000


def german_credit_data():
    raw = np.asarray(json.loads(GERMAN.read_text())["raw"], dtype=float)
    feats = raw[:, :24]
    feats = (feats - feats.mean(0)) / feats.std(0)
    X = np.concatenate([feats, np.ones((raw.shape[0], 1))], axis=1)
    return jnp.asarray(X, dtype=jnp.float32), jnp.asarray(raw[:, 24] - 1, dtype=jnp.float32)


# -- models in both front ends ---------------------------------------------------------------------


def ours_models():
    """Our eight schools (non-centred) and logistic regression: the log-density benchmark's."""
    _, eight_schools_nc, logistic = ppl_models()
    return eight_schools_nc, logistic


def numpyro_models():
    from benchmarks.bench_logdensity import numpyro_models as m

    return m()


def _min_ess(samples: dict) -> float:
    from inference.mcmc import ess_bulk

    return float(min(np.min(ess_bulk(np.asarray(v, dtype=float))) for v in samples.values()))


def _timed(f):
    t = time.perf_counter()
    out = f()
    jax.block_until_ready(out)
    return out, time.perf_counter() - t


# -- samplers: each returns (samples dict (chains, draws, ...), sampling-phase grads, sampling s) ----


def ours_variant(model, args, kwargs):
    from inference import mcmc

    kw = dict(num_warmup=WARMUP, num_samples=DRAWS, num_chains=CHAINS, progress=False)

    def go(key):
        run = mcmc.sample(key, mcmc.NUTS(), model, *args, **kw, **kwargs)
        jax.block_until_ready(run.samples)
        return run

    def sampling(run, key):
        t = time.perf_counter()
        more = run.resume(key)
        jax.block_until_ready(more.samples)
        s = time.perf_counter() - t
        return float(np.sum(np.asarray(more.info["num_steps"]))), s

    return go, lambda run: run.samples, sampling


def numpyro_variant(model, args, kwargs, bar: bool):
    from numpyro.infer import MCMC, NUTS

    method = "sequential" if bar else "vectorized"

    # one MCMC object: NumPyro caches its compiled program per object, so the second run
    # (another key) is warm; a fresh MCMC object would compile again
    m = MCMC(NUTS(model), num_warmup=WARMUP, num_samples=DRAWS, num_chains=CHAINS,
             chain_method=method, progress_bar=bar)

    def silent(f):
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return f()

    def go(key):
        m.post_warmup_state = None
        silent(lambda: m.run(key, *args, extra_fields=("num_steps",), **kwargs))
        jax.block_until_ready(m.get_samples())
        return {k: np.asarray(v) for k, v in m.get_samples(group_by_chain=True).items()}

    def sampling(out, key):
        # the post-warmup phase alone: continue from the last state (tuning frozen); the first
        # such run compiles NumPyro's sampling-only program, the second is timed
        m.post_warmup_state = m.last_state
        for _ in range(2):
            t = time.perf_counter()
            silent(lambda: m.run(m.post_warmup_state.rng_key, *args, extra_fields=("num_steps",), **kwargs))
            jax.block_until_ready(m.get_samples())
            s = time.perf_counter() - t
        return float(np.sum(np.asarray(m.get_extra_fields()["num_steps"]))), s

    return go, lambda out: out, sampling


def blackjax_variant(model, args, kwargs):
    import blackjax
    from numpyro.infer.util import initialize_model

    init = initialize_model(jax.random.key(0), model, model_args=args, model_kwargs=kwargs)
    from jax.flatten_util import ravel_pytree

    x0, unravel = ravel_pytree(init.param_info.z)
    pot = init.potential_fn
    logdensity = lambda x: -pot(unravel(x))  # noqa: E731
    postprocess = init.postprocess_fn

    @jax.jit
    def warm(key):
        k_init, k_adapt = jax.random.split(key)
        x_init = jax.random.uniform(k_init, (CHAINS,) + x0.shape, minval=-2.0, maxval=2.0)
        adapt = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (states, params), _ = jax.vmap(lambda k, x: adapt.run(k, x, num_steps=WARMUP))(jax.random.split(k_adapt, CHAINS), x_init)
        return states, params

    @jax.jit
    def draw(key, states, params):
        def one_chain(k, state, p):
            kernel = blackjax.nuts(logdensity, **p)

            def body(s, kk):
                s, info = kernel.step(kk, s)
                return s, (s.position, info.num_integration_steps)

            return jax.lax.scan(body, state, jax.random.split(k, DRAWS))[1]

        return jax.vmap(one_chain)(jax.random.split(key, CHAINS), states, params)

    def go(key):
        k1, k2 = jax.random.split(key)
        states, params = warm(k1)
        pos, steps = draw(k2, states, params)
        jax.block_until_ready(pos)
        return states, params, pos, steps

    def samples(out):
        pos = out[2]
        flat = pos.reshape((-1, pos.shape[-1]))
        cons = jax.vmap(lambda x: postprocess(unravel(x)))(flat)
        return {k: np.asarray(v).reshape((CHAINS, DRAWS) + v.shape[1:]) for k, v in cons.items()}

    def sampling(out, key):
        states, params = out[0], out[1]
        (_, steps), s = _timed(lambda: draw(key, states, params))
        return float(np.sum(np.asarray(steps))), s

    return go, samples, sampling


# -- time to first draw in a fresh process -----------------------------------------------------------

FRESH = {
    "ours": """
        import jax, jax.numpy as jnp
        from inference import mcmc
        from benchmarks.bench_mcmc import ours_models
        from benchmarks.bench_logdensity import eight_schools_data
        y, sigma, _ = eight_schools_data()
        m, _ = ours_models()
        run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), m, sigma, y=y, num_warmup=0, num_samples=1, num_chains=4, progress=False)
        jax.block_until_ready(run.samples)
    """,
    "numpyro": """
        import jax, jax.numpy as jnp
        from numpyro.infer import MCMC, NUTS
        from benchmarks.bench_logdensity import eight_schools_data, numpyro_models
        y, sigma, _ = eight_schools_data()
        m, _ = numpyro_models()
        mc = MCMC(NUTS(m), num_warmup=0, num_samples=1, num_chains=4, chain_method="vectorized", progress_bar=False)
        mc.run(jax.random.key(0), sigma, y=y)
        jax.block_until_ready(mc.get_samples())
    """,
}


def fresh_first_draw(variant: str, cache_dir: str | None = None) -> float:
    """Wall time of a fresh process to a first draw; with ``cache_dir``, ppl's persistent
    compilation cache in that directory (run once before to fill it), else no cache at all."""
    import os

    code = textwrap.dedent(FRESH[variant])
    if cache_dir is None:
        env = {"PPL_COMPILATION_CACHE": "0", "JAX_ENABLE_COMPILATION_CACHE": "false"}
    else:
        env = {"PPL_COMPILATION_CACHE": "1", "PPL_CACHE_DIR": cache_dir}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, **env},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def fresh_first_draw_cached(variant: str, repeats: int = 2) -> float:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        fresh_first_draw(variant, d)  # fills the cache
        return min(fresh_first_draw(variant, d) for _ in range(repeats))


# -- progress overhead ---------------------------------------------------------------------------------


def progress_overhead(model, args, kwargs, repeats: int) -> dict:
    from inference import mcmc

    out = {}
    for progress in (False, True):
        kw = dict(num_warmup=WARMUP, num_samples=DRAWS, num_chains=CHAINS, progress=progress)
        ts = []
        for r in range(repeats + 1):  # the first run compiles
            with contextlib.redirect_stderr(io.StringIO()):
                _, s = _timed(lambda: mcmc.sample(jax.random.key(r), mcmc.NUTS(), model, *args, **kw, **kwargs).samples)
            if r:
                ts.append(s)
        out[progress] = ts
    best_off, best_on = min(out[False]), min(out[True])
    med_off, med_on = float(np.median(out[False])), float(np.median(out[True]))
    return {"off_best_s": best_off, "on_best_s": best_on, "overhead_best": best_on / best_off - 1,
            "off_median_s": med_off, "on_median_s": med_on, "overhead_median": med_on / med_off - 1}


# -- the suite -------------------------------------------------------------------------------------------


class MCMCSuite:
    name = "mcmc_nuts"

    def __init__(self):
        self.rows: list[dict] = []
        self.progress: dict = {}

    def markdown(self) -> str:
        head = ("| case | variant | wall (s) | warm (s) | wall ÷ ours | warm ÷ ours | grads/s | grads/s ÷ ours "
                "| minESS | minESS/s (wall) | minESS/s (wall) ÷ ours | minESS/s (warm) | minESS/s (warm) ÷ ours "
                "| first draw, fresh process (s) | first draw, cached (s) |")
        rows = [head, "|" + "---|" * 15]
        base = {r["case"]: r for r in self.rows if r["variant"] == "ours"}

        def rat(a, b):
            return f"{a / b:.2f}" if b and a == a and b == b else "–"

        for r in self.rows:
            if "error" in r:
                rows.append(f"| {r['case']} | {r['variant']} | unavailable: {r['error']} |" + " |" * 13)
                continue
            b = base.get(r["case"], {})
            fd = f"{r['first_draw_s']:.1f}" if "first_draw_s" in r else "–"
            fdc = f"{r['first_draw_cached_s']:.1f}" if "first_draw_cached_s" in r else "–"
            rows.append(
                f"| {r['case']} | {r['variant']} | {r['wall_s']:.1f} | {r['warm_s']:.1f} | {rat(r['wall_s'], b.get('wall_s'))} "
                f"| {rat(r['warm_s'], b.get('warm_s'))} | {r['grads_per_s']:.3g} | {rat(r['grads_per_s'], b.get('grads_per_s'))} "
                f"| {r['min_ess']:.0f} | {r['min_ess'] / r['wall_s']:.3g} "
                f"| {rat(r['min_ess'] / r['wall_s'], b and b['min_ess'] / b['wall_s'])} | {r['min_ess'] / r['warm_s']:.3g} "
                f"| {rat(r['min_ess'] / r['warm_s'], b and b['min_ess'] / b['warm_s'])} | {fd} | {fdc} |"
            )
        md = "\n".join(rows)
        if self.progress:
            p = self.progress
            md += (f"\n\nProgress display on eight schools (4 chains × 2000 steps, warm): off {p['off_best_s']:.3f} s, "
                   f"on {p['on_best_s']:.3f} s (best of runs): overhead {100 * p['overhead_best']:+.1f}% "
                   f"(medians {p['off_median_s']:.3f} / {p['on_median_s']:.3f} s: {100 * p['overhead_median']:+.1f}%)")
        return md

    def report(self) -> str:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        path.write_text(json.dumps({"suite": self.name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                    "machine": machine_info(), "rows": self.rows, "progress": self.progress}, indent=2))
        md = self.markdown()
        print(f"\n## {self.name}\n\n{md}\n\n(written to {path})")
        return md


def main(quick: bool = False) -> MCMCSuite:
    global WARMUP, DRAWS
    if quick:
        WARMUP, DRAWS = 100, 100
    suite = MCMCSuite()
    y, sigma, _ = eight_schools_data()
    Xl, yl = logistic_data()
    Xg, yg = german_credit_data()
    o_es, o_lr = ours_models()
    n_es, n_lr = numpyro_models()
    cases = [
        ("eight_schools_nc", (o_es, n_es), (sigma,), {"y": y}),
        ("logistic_N5000_D20", (o_lr, n_lr), (Xl,), {"y": yl}),
        ("german_credit", (o_lr, n_lr), (Xg,), {"y": yg}),
    ]
    for case, (om, nm), args, kwargs in cases:
        variants = [
            ("ours", lambda: ours_variant(om, args, kwargs)),
            ("numpyro", lambda: numpyro_variant(nm, args, kwargs, bar=False)),
            ("numpyro+bar", lambda: numpyro_variant(nm, args, kwargs, bar=True)),
            ("blackjax", lambda: blackjax_variant(nm, args, kwargs)),
        ]
        for name, make in variants:
            row = {"case": case, "variant": name}
            try:
                go, samples, sampling = make()
                t = time.perf_counter()
                go(jax.random.key(1))
                wall = time.perf_counter() - t
                t = time.perf_counter()
                out = go(jax.random.key(2))
                warm = time.perf_counter() - t
                grads, s = sampling(out, jax.random.key(3))
                row.update(wall_s=wall, warm_s=warm, grads_per_s=grads / s, min_ess=_min_ess(samples(out)))
                if case == "eight_schools_nc" and name in FRESH and not quick:
                    row["first_draw_s"] = min(fresh_first_draw(name) for _ in range(2))
                    if name == "ours":
                        row["first_draw_cached_s"] = fresh_first_draw_cached(name)
            except Exception as exc:  # noqa: BLE001 - a failing variant is reported, not fatal
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            print(row, flush=True)
            suite.rows.append(row)
    suite.progress = progress_overhead(o_es, (sigma,), {"y": y}, repeats=2 if quick else 5)
    return suite


# -- scaling with the number of chains ---------------------------------------------------------------


def scaling(max_chains: int = 1024, warmup: int = 200, draws: int = 200, cases: tuple = ("eight_schools_nc", "logistic_N5000_D20")) -> list[dict]:
    """NUTS with 1, 4, 16, ... ``max_chains`` chains: warm wall time, gradient evaluations per
    second (all chains) and min-ESS per second, on every local device (chains sharded)."""
    from inference import mcmc, sharding

    y, sigma, _ = eight_schools_data()
    Xl, yl = logistic_data()
    o_es, o_lr = ours_models()
    table = {"eight_schools_nc": (o_es, (sigma,), {"y": y}), "logistic_N5000_D20": (o_lr, (Xl,), {"y": yl})}
    rows = []
    for case in cases:
        model, args, kwargs = table[case]
        counts = [c for c in (1, 4, 16, 64, 256, 1024, 4096) if c < max_chains] + [max_chains]
        for chains in counts:
            kw = dict(num_warmup=warmup, num_samples=draws, num_chains=chains, progress=False)
            try:
                t = time.perf_counter()
                mcmc.sample(jax.random.key(0), mcmc.NUTS(), model, *args, **kw, **kwargs)
                first = time.perf_counter() - t
                t = time.perf_counter()
                run = mcmc.sample(jax.random.key(1), mcmc.NUTS(), model, *args, **kw, **kwargs)
                warm = time.perf_counter() - t
                t = time.perf_counter()
                more = run.resume(jax.random.key(2))
                s = time.perf_counter() - t
                row = dict(case=case, chains=chains, devices=sharding.num_devices(), first_s=first, warm_s=warm,
                           grads_per_s=float(np.sum(more.info["num_steps"])) / s, min_ess=_min_ess(run.samples))
                row["min_ess_per_s"] = row["min_ess"] / warm
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory: reported, not fatal
                row = dict(case=case, chains=chains, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            print(row, flush=True)
            rows.append(row)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "mcmc_scaling.json"
    path.write_text(json.dumps({"suite": "mcmc_scaling", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                "machine": machine_info(), "devices": jax.device_count(), "rows": rows}, indent=2))
    print("\n| case | chains | devices | first run (s) | warm (s) | grads/s | min ESS | min ESS/s |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | {r['chains']} | unavailable: {r['error']} | | | | | |")
        else:
            print(f"| {r['case']} | {r['chains']} | {r['devices']} | {r['first_s']:.1f} | {r['warm_s']:.2f} "
                  f"| {r['grads_per_s']:.3g} | {r['min_ess']:.0f} | {r['min_ess_per_s']:.3g} |")
    print(f"(written to {path})")
    return rows


if __name__ == "__main__":
    if "--scaling" in sys.argv:
        top = int(sys.argv[sys.argv.index("--max-chains") + 1]) if "--max-chains" in sys.argv else 1024
        which = sys.argv[sys.argv.index("--cases") + 1].split(",") if "--cases" in sys.argv else ["eight_schools_nc", "logistic_N5000_D20"]
        scaling(max_chains=top, cases=tuple(which))
    else:
        main(quick="--quick" in sys.argv).report()
