"""Scaling: NUTS over many chains and the particle filter over many particles, by device count.

Each configuration runs in a fresh process (JAX fixes its device count at start-up):

- on CPU, with ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` for D in 1, 2, 8 (the
  devices share the machine's cores, so this shows the cost of sharding, not a speed-up beyond
  the core count);
- on an accelerator (``JAX_PLATFORMS=cuda``), with the devices the machine has.

Cases
-----
``nuts_C<chains>``: NUTS on the logistic regression of ``bench_mcmc`` (N = 5000, D = 20), 200
warmup + 200 draws per chain, chains 1 -> 1024 (``bench_mcmc.scaling``). Columns: ``first``
(compile included), ``warm`` (the same run again: nothing compiles), chain-draws per second.

``pf_N<particles>``: bootstrap particle filter on the linear Gaussian model of ``bench_smc``
(T = 100), particles 10^3 -> 10^6 (``bench_smc.bench_pf_scaling``). Columns: ``first``,
``warm``, particle-steps per second.

Run: ``python -m benchmarks.run scaling`` (``--quick``: fewer sizes).  Stand-alone:
``python -m benchmarks.bench_scaling [--quick] [--devices 1,2,8]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# worker (one process, one device count)


def _worker(quick: bool) -> list[dict]:
    """Both scaling sweeps in this process (``bench_mcmc.scaling``, ``bench_smc.bench_pf_scaling``)."""
    import jax

    from benchmarks import bench_mcmc, bench_smc

    devices = jax.device_count()
    rows: list[dict] = []
    steps = 50 if quick else 200
    for r in bench_mcmc.scaling(max_chains=256 if quick else 1024, warmup=steps, draws=steps,
                                cases=("logistic_N5000_D20",)):
        if "error" in r:
            continue
        rows.append(dict(case=f"nuts_C{r['chains']}", devices=devices, first_s=r["first_s"], warm_s=r["warm_s"],
                         rate=r["chains"] * steps / r["warm_s"], unit="chain-draws/s"))
    Ns = (10**3, 10**4, 10**5) if quick else (10**3, 10**4, 10**5, 10**6)
    for r in bench_smc.bench_pf_scaling(Ns):
        rows.append(dict(case=f"pf_N{r['N']}", devices=devices, first_s=r["first_s"], warm_s=r["warm_s"],
                         rate=r["Mps_per_s"] * 1e6, unit="particle-steps/s"))
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
        print("| case | devices | first (s) | warm (s) | rate | vs fewest devices |")
        print("|---|---|---|---|---|---|")
        base = {r["case"]: r["rate"] for r in self.rows if r["devices"] == min(x["devices"] for x in self.rows)}
        for r in sorted(self.rows, key=lambda r: (r["case"][:2], int(r["case"].split("_")[1][1:]), r["devices"])):
            print(f"| {r['case']} | {r['devices']} | {r['first_s']:.2f} | {r['warm_s']:.3f} | "
                  f"{r['rate']:.3g} {r['unit']} | {r['rate'] / base[r['case']]:.2f}x |")
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
