"""A small, dependency-free benchmark runner for jitted JAX functions.

For each (case, variant) it measures

- ``first_call_s``: wall time of the first call (trace + lower + compile + run);
- ``compile_s``: XLA backend compile time during that call, read from JAX's monitoring
  events (``/jax/core/compile/backend_compile_duration``);
- ``compiles`` / ``recompiles``: backend compilations in total and after the first call
  (a steady-state recompile is a bug: one compiled program per function and shapes);
- ``call_us``: 10th percentile of the wall time of one dispatched call,
  ``jax.block_until_ready`` included (what a user calling from Python pays; a low quantile
  because on a shared machine the distribution is bimodal -- a thread hand-off either waits
  for a busy core or not); ``call_us_median`` is kept in the JSON;
- ``loop_us``: time per evaluation when the function is evaluated ``loop_length`` times
  inside one jitted ``lax.scan`` with a data dependency between iterations (what an MCMC
  or optimisation loop pays; dispatch overhead excluded).

Results are written as JSON to ``benchmarks/results/<suite>.json`` and printed as a markdown
table with ratios to a named baseline variant of the same case.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class _CompileCounter:
    """Counts XLA backend compilations (and their durations) through jax.monitoring."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            jax.monitoring.register_event_duration_secs_listener(self._listener)
            self._installed = True

    def _listener(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == _COMPILE_EVENT:
            self.count += 1
            self.seconds += duration

    def snapshot(self) -> tuple[int, float]:
        return self.count, self.seconds


COMPILES = _CompileCounter()


@dataclass
class Timing:
    case: str
    variant: str
    available: bool = True
    reason: str = ""
    first_call_s: float = math.nan
    compile_s: float = math.nan
    compiles: int = 0
    recompiles: int = 0
    call_us: float = math.nan
    call_us_median: float = math.nan
    call_us_iqr: float = math.nan
    loop_us: float = math.nan
    repeats: int = 0
    loop_length: int = 0
    extra: dict = field(default_factory=dict)


def _perturb_first_arg(args: tuple, out: Any) -> tuple:
    """Make the next iteration depend on this one (defeats loop-invariant code motion)."""
    leaves = [jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(out)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    s = sum(leaves) if leaves else jnp.zeros(())
    first = jax.tree_util.tree_map(
        lambda a: a + (1e-12 * s).astype(a.dtype)
        if jnp.issubdtype(jnp.result_type(a), jnp.inexact) else a,
        args[0],
    )
    return (first,) + tuple(args[1:])


def _quantile(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * len(ys)))]


def _median_iqr(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 4:
        return statistics.median(xs), math.nan
    q = statistics.quantiles(xs, n=4)
    return statistics.median(xs), q[2] - q[0]


def time_fn(
    fn: Callable,
    *args: Any,
    case: str = "",
    variant: str = "",
    repeats: int = 200,
    warmup: int = 5,
    loop_length: int = 100,
    loop_repeats: int = 20,
    min_time_s: float = 0.2,
) -> Timing:
    """Time ``jax.jit(fn)(*args)``; see the module docstring for what is measured.

    ``repeats`` is a minimum: calls continue until ``min_time_s`` of measurements are taken.
    Set ``loop_length=0`` to skip the in-loop measurement.
    """
    COMPILES.install()
    jitted = jax.jit(fn)

    c0, s0 = COMPILES.snapshot()
    t0 = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    first = time.perf_counter() - t0
    c1, s1 = COMPILES.snapshot()

    for _ in range(warmup):
        jax.block_until_ready(jitted(*args))
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start) < min_time_s:
        t = time.perf_counter()
        jax.block_until_ready(jitted(*args))
        times.append(time.perf_counter() - t)
        if len(times) > 100 * repeats:
            break
    c2, _ = COMPILES.snapshot()
    med, iqr = _median_iqr(times)

    result = Timing(
        case=case,
        variant=variant,
        first_call_s=first,
        compile_s=s1 - s0,
        compiles=c2 - c0,
        recompiles=c2 - c1,
        call_us=_quantile(times, 0.1) * 1e6,
        call_us_median=med * 1e6,
        call_us_iqr=iqr * 1e6,
        repeats=len(times),
    )
    cache_size = getattr(jitted, "_cache_size", None)
    if callable(cache_size):
        result.extra["jit_cache_size"] = int(cache_size())

    if loop_length:

        def looped(*a):
            def body(carry, _):
                out = fn(*carry)
                return _perturb_first_arg(carry, out), None

            carry, _ = jax.lax.scan(body, tuple(a), None, length=loop_length)
            return carry[0]

        looped_jit = jax.jit(looped)
        jax.block_until_ready(looped_jit(*args))
        c3, _ = COMPILES.snapshot()
        ltimes = []
        for _ in range(loop_repeats):
            t = time.perf_counter()
            jax.block_until_ready(looped_jit(*args))
            ltimes.append(time.perf_counter() - t)
        c4, _ = COMPILES.snapshot()
        # best of: other processes only ever add time to a compiled loop
        result.loop_us = min(ltimes) / loop_length * 1e6
        result.loop_length = loop_length
        result.recompiles += c4 - c3
    return result


def machine_info() -> dict:
    devices = jax.devices()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": devices[0].device_kind if devices else "?",
        "x64": bool(jax.config.jax_enable_x64),
    }


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by None so the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class Suite:
    """Collects timings of several variants per case and reports ratios to ``baseline``."""

    def __init__(self, name: str, baseline: str = "handwritten") -> None:
        self.name = name
        self.baseline = baseline
        self.results: list[Timing] = []
        self._pending: list[tuple] = []

    def add(self, case: str, variant: str, fn: Callable, *args: Any, **extra: Any) -> None:
        """Register a variant; :meth:`run` times all registered variants."""
        self._pending.append((case, variant, fn, args, extra))

    def run(self, rounds: int = 3, **kwargs: Any) -> "Suite":
        """Time the registered variants round-robin, `rounds` times, keeping the best round.

        Interleaving spreads slow phases of a shared machine over all variants; compile
        statistics come from the first round (later rounds re-jit and so re-compile).
        """
        best: dict[int, Timing] = {}
        failed: set[int] = set()
        for r in range(rounds):
            for i, (case, variant, fn, args, extra) in enumerate(self._pending):
                if i in failed:
                    continue
                try:
                    t = time_fn(fn, *args, case=case, variant=variant, **kwargs)
                except Exception as exc:  # noqa: BLE001 - a failing variant is reported, not fatal
                    failed.add(i)
                    best.pop(i, None)
                    self.unavailable(case, variant, f"{type(exc).__name__}: {exc}")
                    continue
                t.extra.update(extra)
                if i not in best:
                    best[i] = t
                else:
                    b = best[i]
                    b.call_us = min(b.call_us, t.call_us)
                    b.call_us_median, b.call_us_iqr = min(
                        (b.call_us_median, b.call_us_iqr), (t.call_us_median, t.call_us_iqr))
                    b.loop_us = min(b.loop_us, t.loop_us)
                    b.recompiles += t.recompiles
                    b.repeats += t.repeats
            # keep registration order
        for i in sorted(best):
            best[i].extra["rounds"] = rounds
            self.results.append(best[i])
        self._pending.clear()
        return self

    def time(self, case: str, variant: str, fn: Callable, *args: Any, **kwargs: Any) -> Timing:
        try:
            t = time_fn(fn, *args, case=case, variant=variant, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a failing variant is reported, not fatal
            t = self.unavailable(case, variant, f"{type(exc).__name__}: {exc}")
            return t
        self.results.append(t)
        return t

    def unavailable(self, case: str, variant: str, reason: str) -> Timing:
        reason = reason.strip().splitlines()[0][:160] if reason.strip() else "unavailable"
        t = Timing(case=case, variant=variant, available=False, reason=reason)
        self.results.append(t)
        return t

    def _baseline(self, case: str) -> Timing | None:
        for t in self.results:
            if t.case == case and t.variant == self.baseline and t.available:
                return t
        return None

    def markdown(self) -> str:
        head = (
            f"| case | variant | first call (s) | compile (s) | compiles | recompiles "
            f"| call p10 (µs) | call ÷ {self.baseline} | in-loop (µs/eval) | in-loop ÷ {self.baseline} | notes |"
        )
        rows = [head, "|" + "---|" * 11]
        cases = list(dict.fromkeys(t.case for t in self.results))
        ordered = sorted(self.results, key=lambda t: (cases.index(t.case), t.variant != self.baseline))
        for t in ordered:
            base = self._baseline(t.case)
            if not t.available:
                rows.append(f"| {t.case} | {t.variant} | – | – | – | – | – | – | – | – | unavailable: {t.reason} |")
                continue

            def ratio(a: float, b: float | None) -> str:
                return f"{a / b:.2f}" if b and not math.isnan(a) and not math.isnan(b) else "–"

            notes = ", ".join(f"{k}={v}" for k, v in t.extra.items() if k not in ("jit_cache_size", "rounds"))
            rows.append(
                f"| {t.case} | {t.variant} | {t.first_call_s:.3f} | {t.compile_s:.3f} | {t.compiles} "
                f"| {t.recompiles} | {t.call_us:.1f} | {ratio(t.call_us, base and base.call_us)} "
                f"| {t.loop_us:.3f} | {ratio(t.loop_us, base and base.loop_us)} | {notes} |"
            )
        return "\n".join(rows)

    def write(self, directory: Path = RESULTS_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        payload = {
            "suite": self.name,
            "baseline": self.baseline,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine_info(),
            "results": [asdict(t) for t in self.results],
        }
        path.write_text(json.dumps(_finite(payload), indent=2))
        return path

    def report(self) -> str:
        path = self.write()
        md = self.markdown()
        print(f"\n## {self.name}\n")
        print(md)
        print(f"\n(written to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path})")
        return md
