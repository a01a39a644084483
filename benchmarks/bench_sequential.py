"""Sequential Bayesian linear regression (issue 20): time per posterior update and accuracy of
NUTS, tempered SMC, VI (full-rank Gaussian, ELBO) and the exact path, each followed by a
Gaussian fitted to its draws (the exact path: the exact moments).

The task is ``examples/sequential_blr.py``'s: 5 tasks of 8 points, 2 weights; the exact
posterior after each task is the batch conjugate posterior.  Accuracy: KL(exact ‖ fitted
Gaussian) after the last task.  Times are wall-clock seconds per update (one task: the
inference, compilation included: the first task compiles the original model's program, the second the
model with a fitted prior whose numbers are an argument, later tasks of the same shapes reuse it
when the inference's programs are cached on the model — and the refit), median over the 5 tasks; ``run`` = the same minus the first call's compile, measured
by running the same inference twice on task 5.

Run: ``python benchmarks/bench_sequential.py [--quick]`` from the repository root; prints a
markdown table (paste into ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from sequential_blr import batch_posterior, blr, kl_gauss, tasks  # noqa: E402

from inference import mcmc, smc, vi  # noqa: E402
from inference import sequential as seq  # noqa: E402


def methods(quick: bool) -> dict:
    nw, ns = (200, 500) if quick else (500, 2000)
    steps = 800 if quick else 2000
    npart = 500 if quick else 2000

    def nuts(key, model, *a, **kw):
        return mcmc.sample(key, mcmc.NUTS(), model, *a, num_warmup=nw, num_samples=ns, progress=False, **kw)

    def tsmc(key, model, *a, **kw):
        return smc.tempered_smc(key, model, *a, num_particles=npart, kernel="hmc", **kw)

    def advi(key, model, *a, **kw):
        guide = vi.auto_multivariate_normal(model, *a, **kw)
        return vi.fit(key, vi.elbo(model, guide), optax.adam(0.02), *a, num_steps=steps, num_samples=4, progress=False, **kw)

    def exact(key, model, *a, **kw):
        return vi.laplace(model, *a, **kw)

    return {"NUTS": (nuts, seq.Gaussian(), ns), "tempered SMC (HMC moves)": (tsmc, seq.Gaussian(), npart),
            "VI (full-rank ELBO)": (advi, seq.Gaussian(), ns), "exact (Laplace = exact, exact moments)": (exact, seq.Gaussian(exact=True), ns)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    batches = tasks()
    m, S = batch_posterior(batches)
    rows = []
    for name, (infer, est, nd) in methods(a.quick).items():
        times = []

        def timed(key, model, *args, _infer=infer, **kw):
            t0 = time.perf_counter()
            out = _infer(key, model, *args, **kw)
            jax.block_until_ready(jax.tree.leaves(getattr(out, "draws", {}) or {}))
            times.append(time.perf_counter() - t0)
            return out

        t0 = time.perf_counter()
        res = seq.sequential(jax.random.key(0), timed, blr, batches, estimator=est, num_draws=nd)
        total = time.perf_counter() - t0
        q = res.posterior.density
        kl = kl_gauss(m, S, np.asarray(q.mean), np.asarray(q.cov))
        ev = res.info["log_evidence_total"]
        rows.append((name, total / len(batches), float(np.median(times)), kl, ev, times))
        print(f"{name}: {total / len(batches):.2f} s/update, KL {kl:.4f}", file=sys.stderr)
    print("| inference | s per update (all) | s per update (inference only, median) | inference s: task 1 / task 2 / tasks 3–5 median | KL(exact ‖ fitted) after 5 tasks | Σ log evidence |")
    print("|---|---|---|---|---|---|")
    for name, tot, med, kl, ev, ts in rows:
        print(f"| {name} | {tot:.2f} | {med:.2f} | {ts[0]:.2f} / {ts[1]:.2f} / {float(np.median(ts[2:])):.2f} | {kl:.2e} | {ev:.3f} |")


if __name__ == "__main__":
    main()
