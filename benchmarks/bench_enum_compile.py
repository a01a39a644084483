"""Issue 14 follow-up: size and compile time of the enumerated HMM's gradient program.

Counts the jaxpr equations (nested sub-jaxprs included) of ``value_and_grad`` of the potential
and times ``jit(...).lower().compile()`` for the HMM (K = 3, T = 500) of
``bench_discrete.py``, written with ``ppl.scan`` (``ppl-enum``) and as a hand forward algorithm
(``ppl-hand``).  Compile times on a shared, loaded machine are noisy: compare within one run.

    python benchmarks/bench_enum_compile.py [--case hmm|mixture] [--repeat 3]
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


def measure(case: str, repeat: int) -> list[dict]:
    import jax

    import ppl
    from bench_discrete import data, models

    y = jax.numpy.asarray(data(case))
    rows = []
    for variant, m in zip(("ppl-enum", "ppl-hand"), models("ppl")[case]):
        view = ppl.unconstrained(m, y)
        vg = jax.value_and_grad(view.potential)
        t = time.perf_counter()
        jpr = jax.make_jaxpr(vg)(view.init)
        trace = time.perf_counter() - t
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            jax.jit(vg).lower(view.init).compile()
            best = min(best, time.perf_counter() - t)
            jax.clear_caches()
        rows.append({"case": case, "variant": variant, "eqns": count_eqns(jpr), "trace_s": trace,
                     "lower_compile_s": best})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="hmm")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"load average {os.getloadavg()}")
    print("| case | variant | jaxpr equations | trace (s) | lower+compile, best of n (s) |")
    print("|---|---|---|---|---|")
    for r in measure(a.case, a.repeat):
        print(f"| {r['case']} | {r['variant']} | {r['eqns']} | {r['trace_s']:.2f} | {r['lower_compile_s']:.2f} |")


if __name__ == "__main__":
    main()
