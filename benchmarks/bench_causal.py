"""Exact interventional queries on random binary Bayesian networks: ``causal.query`` vs pgmpy.

Cases
-----
``bn<N>_do``: P(target | do(x = 1)) and ``bn<N>_do_given``: P(target | evidence, do(x = 1))
(intervene, then condition) on a random DAG of N binary variables (each with up to 3 parents
among the earlier ones, random CPTs, fixed seed), target = the last node, x = a node with
parents, evidence = another late node.

Variants
--------
- ``pgmpy``: ``pgmpy.inference.VariableElimination`` on the mutilated network (x's incoming
  edges removed and its CPD a point mass at 1: the same surgery), built once; one
  ``.query(...)`` per call.
- ``ours``: ``causal.query(d, target, given=..., do=...)`` on the model's diagram (built once,
  its tables computed on the first query and reused: a new ``do`` slices them, no recompile).

Columns: ``first call (s)`` is the first query (ours: tables built and compiled; pgmpy: its
first query); ``call p10 (µs)`` the 10th percentile of repeated queries (median in the JSON).
No in-loop column: neither variant is a jittable function of its inputs.  Before timing, the
two answers are compared (``Δ`` in the notes, max absolute difference): a fast wrong answer
is not a result.

pgmpy is for the benchmark environment only: ``.venv/bin/pip install pgmpy`` (not a project
dependency); without it the pgmpy rows read "unavailable".
"""

from __future__ import annotations

import math
import statistics
import time

import jax
import numpy as np

from benchmarks.runner import Suite, Timing


def random_network(n: int, seed: int = 0, max_parents: int = 3):
    rng = np.random.default_rng(seed)
    names = [f"v{i}" for i in range(n)]
    parents = {}
    for i, v in enumerate(names):
        k = int(rng.integers(0, min(max_parents, i) + 1))
        parents[v] = sorted(rng.choice(names[:i], size=k, replace=False).tolist(), key=names.index) if k else []
    cpts = {}
    for v in names:
        w = rng.uniform(0.05, 1.0, size=(2,) * len(parents[v]) + (2,))
        cpts[v] = w / w.sum(-1, keepdims=True)
    return names, {v: 2 for v in names}, parents, cpts


def _pgmpy_network(spec, do: dict):
    from pgmpy.factors.discrete import TabularCPD

    try:
        from pgmpy.models import DiscreteBayesianNetwork as BN
    except ImportError:  # older pgmpy
        from pgmpy.models import BayesianNetwork as BN
    names, cards, parents, cpts = spec
    par = {v: ([] if v in do else parents[v]) for v in names}
    bn = BN([(p, v) for v in names for p in par[v]])
    bn.add_nodes_from(names)
    for v in names:
        if v in do:
            table = np.eye(2)[do[v]].reshape(2, 1)
        else:
            # pgmpy's CPD: rows = values of v, columns = parent configurations (first parent slowest)
            table = cpts[v].reshape(-1, 2).T
        bn.add_cpds(TabularCPD(v, 2, table, evidence=par[v] or None, evidence_card=[2] * len(par[v]) or None))
    bn.check_model()
    return bn


def _timing(case: str, variant: str, first: float, times: list[float], **extra) -> Timing:
    t = Timing(case=case, variant=variant)
    t.first_call_s = first
    t.call_us = sorted(times)[len(times) // 10] * 1e6
    t.call_us_median = statistics.median(times) * 1e6
    t.repeats = len(times)
    t.extra.update(extra)
    return t


def _repeat(fn, min_time: float, min_reps: int) -> list[float]:
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main(quick: bool = False) -> Suite:
    jax.config.update("jax_enable_x64", True)
    from inference import causal
    from inference.causal import testing

    suite = Suite("causal_query", baseline="pgmpy")
    sizes = [20] if quick else [20, 30]
    min_time, min_reps = (0.2, 3) if quick else (2.0, 10)
    for n in sizes:
        spec = random_network(n, seed=n)
        names, _, parents, _ = spec
        target = names[-1]
        x = next(v for v in names[n // 3 :] if parents[v])
        ev = names[-2]
        d = causal.diagram(testing.build(spec, name=f"bn{n}"))
        for case, given in ((f"bn{n}_do", {}), (f"bn{n}_do_given", {ev: 1})):
            t0 = time.perf_counter()
            ours = np.asarray(causal.query(d, target, given=given, do={x: 1}).table)
            first = time.perf_counter() - t0
            times = _repeat(lambda: np.asarray(causal.query(d, target, given=given, do={x: 1}).table), min_time, min_reps)
            row = _timing(case, "ours", first, times, do=f"{x}=1", given=",".join(given) or "-")
            try:
                from pgmpy.inference import VariableElimination
            except ImportError as exc:
                suite.unavailable(case, "pgmpy", f"pgmpy not installed ({exc}); .venv/bin/pip install pgmpy")
                suite.results.append(row)
                continue
            ve = VariableElimination(_pgmpy_network(spec, {x: 1}))

            def pg():
                return ve.query([target], evidence=dict(given), show_progress=False).values

            t0 = time.perf_counter()
            ref = np.asarray(pg())
            pfirst = time.perf_counter() - t0
            ptimes = _repeat(pg, min_time, min_reps)
            suite.results.append(_timing(case, "pgmpy", pfirst, ptimes))
            row.extra["Δ"] = f"{float(np.max(np.abs(ours - ref))):.1e}"
            suite.results.append(row)
    for t in suite.results:
        t.loop_us = math.nan
    return suite


if __name__ == "__main__":
    main(quick=False).report()
