"""Issue 14 follow-up: size and compile time of the enumerated HMM's gradient program.

Counts the jaxpr equations (nested sub-jaxprs included) of ``value_and_grad`` of the potential,
as traced and after dead-code elimination of the outer jaxpr (what ``jit`` lowers), times
``jit(...).lower().compile()`` and the gradient's cost inside a jitted loop (the variants
interleaved, best of ``--repeat``) for a case of ``bench_discrete.py`` (the HMM, K = 3, T = 500,
by default), written as the model as written (``ppl-enum``: a ``Categorical`` site in a
``ppl.scan`` / a plate) and hand-marginalised (``ppl-hand``).  Times on a shared, loaded
machine are noisy: compare within one run.

    python -m benchmarks.bench_enum_compile [--case hmm|mixture|dawid_skene] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # this checkout's ppl, not an installed one


def count_eqns(jaxpr) -> int:
    """Equations of a (closed) jaxpr, those of every sub-jaxpr (scan/cond/pjit bodies) included."""
    from jax.extend.core import ClosedJaxpr, Jaxpr

    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    n = 0
    for eq in jaxpr.eqns:
        n += 1
        for p in eq.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                if isinstance(sub, (Jaxpr, ClosedJaxpr)):
                    n += count_eqns(sub)
    return n


def dce_count(closed) -> int:
    """Equations left after dead-code elimination of the outer jaxpr (sub-jaxprs counted whole)."""
    from jax._src.interpreters import partial_eval as pe

    jaxpr = closed.jaxpr
    kept, _ = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
    return count_eqns(kept)


def measure(case: str, repeat: int) -> list[dict]:
    import jax

    import ppl
    from bench_discrete import _grad_cost, data, models

    args = tuple(jax.numpy.asarray(a) for a in data(case))
    rows, vgs = [], []
    for variant, m in zip(("ppl-enum", "ppl-hand"), models("ppl")[case]):
        view = ppl.unconstrained(m, *args)
        vg = jax.value_and_grad(view.potential)
        t = time.perf_counter()
        jpr = jax.make_jaxpr(vg)(view.init)
        trace = time.perf_counter() - t
        rows.append({"case": case, "variant": variant, "eqns": count_eqns(jpr), "eqns_dce": dce_count(jpr),
                     "trace_s": trace, "lower_compile_s": float("inf"), "grad_us": float("inf")})
        vgs.append((vg, view))
    for _ in range(repeat):  # the variants interleaved: load changes hit both alike
        for row, (vg, view) in zip(rows, vgs):
            t = time.perf_counter()
            jax.jit(vg).lower(view.init).compile()
            row["lower_compile_s"] = min(row["lower_compile_s"], time.perf_counter() - t)
            jax.clear_caches()
            row["grad_us"] = min(row["grad_us"], _grad_cost(view.potential, view.init)[0])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="hmm")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"load average {os.getloadavg()}")
    print("| case | variant | jaxpr equations | after DCE | trace (s) | lower+compile, best of n (s) | grad in loop, best of n (µs) |")
    print("|---|---|---|---|---|---|---|")
    for r in measure(a.case, a.repeat):
        print(f"| {r['case']} | {r['variant']} | {r['eqns']} | {r['eqns_dce']} | {r['trace_s']:.2f} | "
              f"{r['lower_compile_s']:.2f} | {r['grad_us']:.1f} |")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
