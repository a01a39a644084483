"""Compare two source trees of the library end to end: time to first draw and NUTS min-ESS/s.

Usage::

    python -m benchmarks.before_after --before /path/to/old/checkout --after . [--rounds 3]

Used for refactors that must not change speed (issue 13: "first-draw and min-ESS/s within
noise, before/after").  Each measurement runs in a fresh Python process whose working directory
and ``sys.path[0]`` are the tree measured, so that tree's ``ppl``/``inference``/``semantics`` (and
its ``benchmarks`` helpers) are the ones imported.  The rounds interleave the two trees
(before, after, before, after, ...) so that a machine whose load drifts affects both alike; the
table reports the best round of each (and the median, in the JSON).

Measured, for ours only (the peers are in ``bench_mcmc``):

- ``first draw, fresh process (s)``: wall time of a new process that imports the library, builds
  non-centred eight schools, compiles and draws once with 4 chains; no persistent cache.
- ``first draw ready``: the same runs, from the launch of the process to the draw being ready
  (the process's own exit left out).
- ``first draw, cached (s)``: the same with the library's persistent compilation cache filled by an
  earlier process (the default a user gets from the second run on).
- ``minESS/s (warm)``: NUTS, 4 chains x (1000 warmup + 1000 draws), smallest bulk ESS over all
  scalar parameters divided by the wall time of a second run (no compilation), for eight schools
  and logistic regression (N=5000, D=20).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

FIRST_DRAW = """
    import jax
    from inference import mcmc
    from benchmarks.bench_mcmc import ours_models
    from benchmarks.bench_logdensity import eight_schools_data
    y, sigma, _ = eight_schools_data()
    m, _ = ours_models()
    run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), m, sigma, y=y, num_warmup=0, num_samples=1,
                      num_chains=4, progress=False)
    jax.block_until_ready(run.samples)
    import time
    print("READY", time.time())
"""

ESS = """
    import json, time, jax
    import numpy as np
    from inference import mcmc
    from benchmarks.bench_mcmc import ours_models, _min_ess
    from benchmarks.bench_logdensity import eight_schools_data, logistic_data
    y, sigma, _ = eight_schools_data()
    X, yl = logistic_data()
    es, lr = ours_models()
    cases = {"eight_schools_nc": (es, (sigma,), {"y": y}), "logistic_N5000_D20": (lr, (X,), {"y": yl})}
    out = {}
    for name, (m, a, k) in cases.items():
        def go(seed):
            t = time.perf_counter()
            run = mcmc.sample(jax.random.key(seed), mcmc.NUTS(), m, *a, num_warmup=1000, num_samples=1000,
                              num_chains=4, progress=False, **k)
            jax.block_until_ready(run.samples)
            return run, time.perf_counter() - t
        _, wall = go(0)
        run, warm = go(1)
        out[name] = {"wall_s": wall, "warm_s": warm, "min_ess": _min_ess(run.samples)}
    print("RESULT" + json.dumps(out))
"""


def _python(tree: Path, code: str, env: dict) -> tuple[float, str]:
    global _LAUNCHED
    _LAUNCHED = time.time()
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, '.')\n" + textwrap.dedent(code)],
        cwd=tree, env={**os.environ, **env}, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t
    if p.returncode:
        raise RuntimeError(f"{tree}: {p.stderr[-2000:]}")
    return wall, p.stdout


_LAUNCHED = 0.0


def _first_draw(tree: Path, env: dict) -> tuple[float, float]:
    """(process wall time, time from launch to the draw being ready: the process's exit excluded)."""
    wall, out = _python(tree, FIRST_DRAW, env)
    return wall, float(out.split("READY", 1)[1].split()[0]) - _LAUNCHED


def measure(tree: Path, ess: bool = True) -> dict:
    off = {"PPL_COMPILATION_CACHE": "0", "JAX_ENABLE_COMPILATION_CACHE": "false"}
    cold, cold_ready = _first_draw(tree, off)
    with tempfile.TemporaryDirectory() as d:
        on = {"PPL_COMPILATION_CACHE": "1", "PPL_CACHE_DIR": d}
        _python(tree, FIRST_DRAW, on)  # fills the cache
        cached, cached_ready = min(_first_draw(tree, on) for _ in range(2))
    row = {"first_draw_s": cold, "first_draw_ready_s": cold_ready, "first_draw_cached_s": cached,
           "first_draw_cached_ready_s": cached_ready, "ess": {}}
    if ess:
        _, out = _python(tree, ESS, off)
        row["ess"] = json.loads(out.split("RESULT", 1)[1])
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, type=Path)
    ap.add_argument("--after", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--first-draw-only", action="store_true", help="skip the NUTS min-ESS/s runs")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "before_after.json")
    a = ap.parse_args(argv)
    trees = {"before": a.before.resolve(), "after": a.after.resolve()}
    rows: dict[str, list[dict]] = {k: [] for k in trees}
    for r in range(a.rounds):
        for name, tree in trees.items():
            rows[name].append(measure(tree, ess=not a.first_draw_only))
            print(f"round {r + 1}/{a.rounds} {name}: {json.dumps(rows[name][-1])}", file=sys.stderr, flush=True)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, "rounds": rows}, indent=1))

    def med(name: str, f) -> float:
        return statistics.median(f(x) for x in rows[name])

    metrics = [
        ("first draw, fresh process (s)", lambda x: x["first_draw_s"], "lower"),
        ("first draw ready, fresh process (s)", lambda x: x["first_draw_ready_s"], "lower"),
        ("first draw, cached (s)", lambda x: x["first_draw_cached_s"], "lower"),
        ("first draw ready, cached (s)", lambda x: x["first_draw_cached_ready_s"], "lower"),
    ]
    for case in rows["before"][0]["ess"]:
        metrics.append((f"{case} minESS/s (warm)", lambda x, c=case: x["ess"][c]["min_ess"] / x["ess"][c]["warm_s"], "higher"))
        metrics.append((f"{case} wall, first run (s)", lambda x, c=case: x["ess"][c]["wall_s"], "lower"))
    print("| metric | before (best) | after (best) | after ÷ before | before (median) | after (median) |")
    print("|---|---|---|---|---|---|")
    for label, f, better in metrics:
        pick = min if better == "lower" else max
        b = pick(f(x) for x in rows["before"])
        af = pick(f(x) for x in rows["after"])
        print(f"| {label} | {b:.3g} | {af:.3g} | {af / b:.2f} | {med('before', f):.3g} | {med('after', f):.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
