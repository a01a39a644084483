"""Issue 19, fourth pass: the warm wall time of ``vi.fit`` against NumPyro's jitted ``lax.scan`` of
``svi.update``, interleaved, min of ``ROUNDS`` runs each (the machine is shared; the min is the
least disturbed run), at 1, 250 and 2000 steps on the three problems of ``bench_vi --guides``
(full-rank guides, Adam 1e-2; ours with a fresh ``optax.adam(1e-2)`` per call, as a user writes it).

``python -m benchmarks.vi_fixed_cost [--rounds N]``"""

from __future__ import annotations

import json
import sys
import time

import jax
import numpy as np
import optax

from benchmarks.bench_vi import _guide_problems

STEPS = (1, 250, 2000)


def rows(rounds: int = 15) -> list[dict]:
    from inference import vi
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal

    out = []
    for name, model, model_np, data in _guide_problems():
        obj = vi.elbo(model, vi.auto_multivariate_normal(model, data))
        svi = SVI(model_np, AutoMultivariateNormal(model_np), optax.adam(1e-2), Trace_ELBO())
        st = svi.init(jax.random.key(2), data)
        loops = {n: jax.jit(lambda st, n=n: jax.lax.scan(lambda s, _: svi.update(s, data), st, None, length=n)) for n in STEPS}

        def ours(n):
            return vi.fit(jax.random.key(3), obj, optax.adam(1e-2), data, num_steps=n, progress=False).params

        calls = {("ours", n): (lambda n=n: ours(n)) for n in STEPS}
        calls.update({("numpyro", n): (lambda n=n: loops[n](st)) for n in STEPS})
        for f in calls.values():
            jax.block_until_ready(f())  # compile
        times = {k: [] for k in calls}
        for _ in range(rounds):
            for k, f in calls.items():
                t = time.perf_counter()
                jax.block_until_ready(f())
                times[k].append(time.perf_counter() - t)
        row = {"problem": name, "rounds": rounds}
        for n in STEPS:
            a, b = min(times[("ours", n)]), min(times[("numpyro", n)])
            row[str(n)] = {"ours_ms": 1e3 * a, "numpyro_ms": 1e3 * b, "ratio": a / b}
        out.append(row)
        print(name, {n: f"{row[str(n)]['ours_ms']:.2f} / {row[str(n)]['numpyro_ms']:.2f} ms ({row[str(n)]['ratio']:.2f})"
                     for n in STEPS}, flush=True)
    return out


if __name__ == "__main__":
    r = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 15
    print(json.dumps(rows(r), indent=1))
