"""SMC: our particle filter vs a hand-written JAX filter; our tempered SMC vs Blackjax's.

Cases
-----
``pf_N<N>``: bootstrap particle filter on a linear Gaussian state-space model
(x_0 ~ N(0, 1), x_t = 0.9 x_{t-1} + N(0, 0.5), y_t = x_t + N(0, 1)), T = 100 simulated points,
systematic resampling at every step t > 0, N = 10² … 10⁵, float32.

- ``ours``: ``smc.particle_filter(key, step, x0, ys, N)`` (a ``ppl`` step model; with the default
  ``record``: per-step log Ẑ, ESS, resampling flags and filtering means);
- ``ours+paths``: the same with ``record="all"`` (also the (T, N) ancestors and each particle's
  traced-back genealogy), to show what the genealogy costs;
- ``handwritten``: the same algorithm in plain JAX (one ``lax.scan``: systematic resampling,
  Normal transition, Normal likelihood; returns log Ẑ and filtering means).

Columns: ``warm (ms)`` best of 5 jitted calls, ``ratio`` ours / handwritten, ``Mps/s``
particle-steps per second (N·T / warm), ``|Δ log Z|`` mean |log Ẑ − log Z_Kalman| over 8 keys,
``mem (MiB)`` the compiled program's peak memory from XLA's ``memory_analysis()``: temporaries
+ arguments + outputs (on a GPU also the device's ``peak_bytes_in_use`` after the runs).

``german_credit``: adaptive tempered SMC (target conditional ESS 0.5, 5 HMC steps of 10
leapfrog per tempering step, N = 256, systematic resampling) on Bayesian logistic regression,
German credit (Inference Gym's recipe).  ``ours``: ``smc.tempered_smc(kernel="hmc")`` (the
library's ``mcmc.HMC`` bound to the tempered model; inverse mass from the particle variances,
step size adapted per step); ``blackjax``:
``blackjax.adaptive_tempered_smc`` with ``blackjax.hmc`` (fixed step 0.02, unit mass; Blackjax
does not tune it), the same NumPy-free log density.  Columns: ``wall`` first call (compile
included), ``warm``, log Ẑ (two keys), tempering steps, particle·MCMC-steps/s.

``pf_scale`` (``python -m benchmarks.bench_smc --scale [--max N]``): our filter alone for
N = 10³ … 10⁶ on every local device (the particle axis is sharded when there are several; set
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` for CPU devices, ``PPL_SHARDING=0`` to
compare with one), with time, particle-steps/s and memory per configuration.

Run: ``python -m benchmarks.run smc``.  One run; on a shared machine the numbers are noisy.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.runner import RESULTS_DIR, machine_info

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
A, Q, R, T = 0.9, 0.5, 1.0, 100


def lgssm_data(seed=0):
    rng = np.random.default_rng(seed)
    x, ys = rng.normal(), []
    for _ in range(T):
        x = A * x + rng.normal() * math.sqrt(Q)
        ys.append(x + rng.normal() * math.sqrt(R))
    return jnp.asarray(ys, dtype=jnp.float32)


def ours_pf(N, record=None):
    import ppl
    from inference import smc
    from ppl import dist

    @ppl.model
    def x0():
        return ppl.sample("x0", dist.Normal(0.0, 1.0))

    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(A * x_prev, math.sqrt(Q)))
        ppl.sample("y", dist.Normal(x, math.sqrt(R)), obs=y_t)
        return x, x

    def run(key, ys):
        if record is None:
            res = smc.particle_filter(key, step, x0, ys, N)
            return res.log_evidence, res.filter_means
        res = smc.particle_filter(key, step, x0, ys, N, record=record)
        return res.log_evidence, res.filter_means, res.paths

    return run


def handwritten_pf(N):
    sq, sr = math.sqrt(Q), math.sqrt(R)

    def logpdf(y, m, s):
        return -0.5 * ((y - m) / s) ** 2 - jnp.log(s) - 0.5 * math.log(2 * math.pi)

    def run(key, ys):
        k0, kl = jax.random.split(key)
        x = jax.random.normal(k0, (N,))
        lw = jnp.zeros((N,))
        logz = jnp.zeros(())

        def body(c, inp):
            x, lw, logz = c
            t, k, y = inp
            kr, kx = jax.random.split(k)
            # systematic resampling (t > 0)
            lse = jax.scipy.special.logsumexp(lw)
            W = jnp.exp(lw - lse)
            C = jnp.cumsum(W).at[-1].set(1.0)
            u = (jnp.arange(N) + jax.random.uniform(kr, ())) / N
            a = jnp.clip(jnp.searchsorted(C, u, side="right"), 0, N - 1)
            a = jnp.where(t > 0, a, jnp.arange(N))
            logz = logz + jnp.where(t > 0, lse - math.log(N), 0.0)
            lw = jnp.where(t > 0, jnp.zeros_like(lw), lw)
            x = x[a]
            x = A * x + sq * jax.random.normal(kx, (N,))
            lw = lw + logpdf(y, x, sr)
            mean = jnp.sum(jax.nn.softmax(lw) * x)
            return (x, lw, logz), mean

        (x, lw, logz), means = jax.lax.scan(body, (x, lw, logz), (jnp.arange(T), jax.random.split(kl, T), ys))
        return logz + jax.scipy.special.logsumexp(lw) - math.log(N), means

    return run


def _best(f, *args, reps=5):
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return min(ts)


def memory(f, *args) -> dict:
    """Peak memory of the compiled program ``jax.jit(f)(*args)`` (bytes), from XLA's analysis;
    on a GPU also the device's peak bytes in use so far."""
    out = {}
    try:
        ma = jax.jit(f).lower(*args).compile().memory_analysis()
        if ma is not None:
            out = {"temp": int(ma.temp_size_in_bytes), "argument": int(ma.argument_size_in_bytes),
                   "output": int(ma.output_size_in_bytes)}
            out["total"] = out["temp"] + out["argument"] + out["output"]
    except Exception:  # noqa: BLE001 - a backend without the analysis
        pass
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["device_peak"] = int(stats["peak_bytes_in_use"])
    return out


def _mib(m: dict, k: str = "total") -> str:
    return f"{m[k] / 2**20:.1f}" if k in m else "n/a"


def bench_pf(Ns):
    from semantics import oracles

    ys = lgssm_data()
    kf = oracles.kalman_filter(np.asarray(ys, dtype=float), A=A, Q=Q, H=1.0, R=R, m0=0.0, P0=1.0)
    rows = []
    for N in Ns:
        row = {"case": f"pf_N{N}", "N": N}
        makers = (("ours", ours_pf), ("ours+paths", lambda n: ours_pf(n, "all")), ("handwritten", handwritten_pf))
        for name, make in makers:
            fn = make(N)
            f = jax.jit(fn)
            t0 = time.perf_counter()
            jax.block_until_ready(f(jax.random.key(0), ys))
            first = time.perf_counter() - t0
            warm = _best(f, jax.random.key(1), ys, reps=3 if N >= 10**5 else 5)
            errs = [abs(float(f(jax.random.key(10 + i), ys)[0]) - kf.log_evidence) for i in range(8)]
            row[name] = {"first_s": first, "warm_s": warm, "abs_dlogZ": float(np.mean(errs)),
                         "memory": memory(fn, jax.random.key(1), ys)}
        row["ratio"] = row["ours"]["warm_s"] / row["handwritten"]["warm_s"]
        row["ratio_paths"] = row["ours+paths"]["warm_s"] / row["handwritten"]["warm_s"]
        rows.append(row)
    return rows


def bench_pf_scaling(Ns=(10**3, 10**4, 10**5, 10**6)):
    """Our bootstrap filter for growing N on every local device (sharded particle axis)."""
    from inference import sharding

    ys = lgssm_data()
    rows = []
    for N in Ns:
        fn = ours_pf(N)
        f = jax.jit(fn)
        t0 = time.perf_counter()
        jax.block_until_ready(f(jax.random.key(0), ys))
        first = time.perf_counter() - t0
        warm = _best(f, jax.random.key(1), ys, reps=3 if N >= 10**5 else 5)
        rows.append({"case": f"pf_scale_N{N}", "N": N, "devices": sharding.num_devices(),
                     "platform": jax.devices()[0].platform, "first_s": first, "warm_s": warm,
                     "Mps_per_s": N * T / warm / 1e6, "memory": memory(fn, jax.random.key(1), ys)})
    return rows


def report_scaling(rows):
    print("\n## smc: particle filter scaling (linear Gaussian, T = 100)\n")
    print("| N | devices | platform | warm (s) | Mps/s | mem (MiB) | first (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['N']} | {r['devices']} | {r['platform']} | {r['warm_s']:.4f} | {r['Mps_per_s']:.2f} | "
              f"{_mib(r['memory'])} | {r['first_s']:.2f} |")


def german_credit():
    raw = np.asarray(json.loads((DATA / "german_credit_numeric.json").read_text())["raw"], dtype=float)
    feats = raw[:, :24]
    feats = (feats - feats.mean(0)) / feats.std(0)
    X = np.concatenate([feats, np.ones((raw.shape[0], 1))], axis=1)
    return jnp.asarray(X, dtype=jnp.float32), jnp.asarray(raw[:, 24] - 1, dtype=jnp.float32)


N_TEMPER, MCMC_STEPS, LEAPFROG = 256, 5, 10


def bench_tempered():
    import blackjax

    import ppl
    from inference import smc
    from ppl import dist

    X, y = german_credit()
    d = X.shape[1]

    @ppl.model
    def logistic(X, y):
        w = ppl.sample("w", dist.Normal(jnp.zeros(d), 1.0).to_event(1))
        ppl.sample("y", dist.Bernoulli(logits=X @ w).to_event(1), obs=y)

    def ours(key):
        r = smc.tempered_smc(key, logistic, X, y, num_particles=N_TEMPER, kernel="hmc",
                             num_mcmc_steps=MCMC_STEPS, num_leapfrog=LEAPFROG, target_ess=0.5)
        return r.log_evidence, r.num_steps

    def logprior(w):
        return jnp.sum(jax.scipy.stats.norm.logpdf(w))

    def loglik(w):
        z = X @ w
        return jnp.sum(y * z - jnp.logaddexp(0.0, z))

    alg = blackjax.adaptive_tempered_smc(
        logprior, loglik, blackjax.hmc.build_kernel(), blackjax.hmc.init,
        # leading axis 1: parameters shared by all particles
        dict(step_size=jnp.array([0.02]), inverse_mass_matrix=jnp.ones((1, d)), num_integration_steps=jnp.array([LEAPFROG])),
        blackjax.smc.resampling.systematic, 0.5, num_mcmc_steps=MCMC_STEPS,
    )

    def bj(key):
        k0, key = jax.random.split(key)
        state = alg.init(jax.random.normal(k0, (N_TEMPER, d)))

        def cond(c):
            return (c[0].tempering_param < 1.0) & (c[2] < 200)

        def body(c):
            s, lz, n, k = c
            k, sub = jax.random.split(k)
            s, info = alg.step(sub, s)
            return s, lz + info.log_likelihood_increment, n + 1, k

        s, lz, n, _ = jax.lax.while_loop(cond, body, (state, jnp.zeros(()), 0, key))
        return lz, n

    rows = []
    for name, fn in (("ours", ours), ("blackjax", bj)):
        f = jax.jit(fn)
        t0 = time.perf_counter()
        lz0, n0 = jax.block_until_ready(f(jax.random.key(0)))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        lz1, n1 = jax.block_until_ready(f(jax.random.key(1)))
        warm = time.perf_counter() - t0
        steps = int(n1)
        rows.append({"case": "german_credit", "variant": name, "first_s": first, "warm_s": warm,
                     "log_Z": [float(lz0), float(lz1)], "tempering_steps": [int(n0), steps],
                     "particle_mcmc_steps_per_s": N_TEMPER * steps * MCMC_STEPS / warm})
    return rows


class SMCSuite:
    def __init__(self, pf, tempered):
        self.pf, self.tempered = pf, tempered

    def report(self):
        print("\n## smc: bootstrap particle filter, linear Gaussian, T = 100 (float32)\n")
        print("| case | ours warm (ms) | handwritten warm (ms) | ratio | ours+paths (ms) | ratio+paths | ours Mps/s | hw Mps/s | "
              "ours first (s) | ours |ΔlogZ| | hw |ΔlogZ| | mem ours / +paths / hw (MiB) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in self.pf:
            o, h, a = r["ours"], r["handwritten"], r["ours+paths"]
            mps = lambda w: r["N"] * T / w / 1e6  # noqa: E731
            print(f"| {r['case']} | {o['warm_s'] * 1e3:.2f} | {h['warm_s'] * 1e3:.2f} | {r['ratio']:.2f} | "
                  f"{a['warm_s'] * 1e3:.2f} | {r['ratio_paths']:.2f} | "
                  f"{mps(o['warm_s']):.2f} | {mps(h['warm_s']):.2f} | {o['first_s']:.2f} | {o['abs_dlogZ']:.3f} | {h['abs_dlogZ']:.3f} | "
                  f"{_mib(o['memory'])} / {_mib(a['memory'])} / {_mib(h['memory'])} |")
        print(f"\n## smc: adaptive tempered SMC, German credit (N = {N_TEMPER}, {MCMC_STEPS} HMC × {LEAPFROG} leapfrog per step)\n")
        print("| variant | first (s) | warm (s) | log Ẑ (key 0, key 1) | steps | particle·MCMC steps/s |")
        print("|---|---|---|---|---|---|")
        for r in self.tempered:
            print(f"| {r['variant']} | {r['first_s']:.1f} | {r['warm_s']:.1f} | {r['log_Z'][0]:.2f}, {r['log_Z'][1]:.2f} | "
                  f"{r['tempering_steps'][0]}, {r['tempering_steps'][1]} | {r['particle_mcmc_steps_per_s']:.3g} |")
        RESULTS_DIR.mkdir(exist_ok=True)
        (RESULTS_DIR / "smc.json").write_text(json.dumps({"machine": machine_info(), "pf": self.pf, "tempered": self.tempered}, indent=1))


def main(quick: bool = False) -> SMCSuite:
    Ns = [100, 1000] if quick else [100, 1000, 10_000, 100_000]
    pf = bench_pf(Ns)
    tempered = [] if quick else bench_tempered()
    return SMCSuite(pf, tempered)


if __name__ == "__main__":
    import sys

    if "--scale" in sys.argv:
        top = int(sys.argv[sys.argv.index("--max") + 1]) if "--max" in sys.argv else 10**6
        report_scaling(bench_pf_scaling([n for n in (10**3, 10**4, 10**5, 10**6) if n <= top]))
    else:
        main(quick="--quick" in sys.argv).report()
