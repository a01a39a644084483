"""Mass-matrix adaptation side by side (issue 15): our NUTS with each adaptation against NumPyro,
Blackjax (window adaptation, and its low-rank adaptation) and nutpie 0.16 + PyMC (diagonal, and
``low_rank_modified_mass_matrix=True``).

Models: kilpisjarvi and diamonds (posteriordb data), German credit with the sparse gamma-scale
logistic prior (Inference Gym's ``SparseLogisticRegression``), and a 100-d Gaussian with a random
dense covariance of condition number 1e4.  Each sampler runs ``--chains`` chains × (``--warmup`` +
``--draws``) end to end in a fresh process (compile time counted, ours as the peers'); reported:
min bulk ESS over all parameters (NumPyro's ``effective_sample_size`` on the constrained draws),
gradient evaluations (leapfrog steps, warmup included), seconds, min-ESS per 1000 gradients and
per second.

    python benchmarks/bench_adaptation.py                       # full run (slow)
    python benchmarks/bench_adaptation.py --models kilpisjarvi --warmup 500 --draws 500

Ours runs with this interpreter (the project's venv); the peers run in subprocesses with
``--peer-python`` (default ``../bench-venv/bin/python``), importing nothing from this project.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
MODELS = ("kilpisjarvi", "diamonds", "german_sparse", "gauss100")
OURS = ("diag", "dense", "fisher_diag", "low_rank")
PEERS = ("numpyro", "blackjax_window", "blackjax_low_rank", "nutpie_diag", "nutpie_low_rank")
WARM = os.environ.get("BENCH_WARM") == "1"  # --warm: also time a second run in the same process (ours, nutpie)


# -- data (numpy only: shared by ours and the peers) ------------------------------------------------


def data(name: str) -> dict:
    if name == "kilpisjarvi":
        d = json.load(open(DATA / "posteriordb" / "kilpisjarvi_mod-kilpisjarvi" / "data.json"))
        return {k: np.asarray(d[k], float) for k in ("x", "y")} | {k: float(d[k]) for k in ("pmualpha", "psalpha", "pmubeta", "psbeta")}
    if name == "diamonds":
        d = json.load(open(DATA / "posteriordb" / "diamonds-diamonds" / "data.json"))
        X = np.asarray(d["X"], float)[:, 1:]  # brms: the intercept column dropped, the rest centred
        return {"Xc": X - X.mean(0), "Y": np.asarray(d["Y"], float)}
    if name == "german_sparse":
        raw = np.asarray(json.load(open(DATA / "german_credit_numeric.json"))["raw"], float)
        X = raw[:, :24]
        X = (X - X.mean(0)) / X.std(0)
        return {"X": np.concatenate([X, np.ones((X.shape[0], 1))], 1), "y": raw[:, 24] - 1}
    if name == "gauss100":
        rng = np.random.default_rng(100)
        q, _ = np.linalg.qr(rng.normal(size=(100, 100)))
        cov = (q * np.logspace(0, 4, 100)) @ q.T
        return {"chol": np.linalg.cholesky((cov + cov.T) / 2)}
    raise ValueError(name)


def min_ess(samples: dict) -> float:
    from numpyro.diagnostics import effective_sample_size

    out = math.inf
    for v in samples.values():
        v = np.asarray(v, float)
        v = v.reshape(v.shape[0], v.shape[1], -1)
        out = min(out, float(np.min(effective_sample_size(v))))
    return out


# -- ours ---------------------------------------------------------------------------------------------


def ours_model(name: str):
    import jax.numpy as jnp

    import ppl
    from ppl import dist

    d = data(name)
    if name == "kilpisjarvi":
        x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])

        @ppl.model
        def m():
            a = ppl.sample("alpha", dist.Normal(d["pmualpha"], d["psalpha"]))
            b = ppl.sample("beta", dist.Normal(d["pmubeta"], d["psbeta"]))
            s = ppl.sample("sigma", dist.ImproperUniform(dist.constraints.positive, (), ()))
            ppl.sample("y", dist.Normal(a + b * x, s), obs=y)
        return m
    if name == "diamonds":
        X, Y = jnp.asarray(d["Xc"]), jnp.asarray(d["Y"])

        @ppl.model
        def m():
            b = ppl.sample("b", dist.ImproperUniform(dist.constraints.real, (), (X.shape[1],)))
            c = ppl.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
            s = ppl.sample("sigma", dist.TruncatedDistribution(dist.StudentT(3.0, 0.0, 10.0), low=0.0))
            ppl.sample("Y", dist.Normal(c + X @ b, s), obs=Y)
        return m
    if name == "german_sparse":
        X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"])

        @ppl.model
        def m():
            tau = ppl.sample("global_scale", dist.Gamma(0.5, 0.5))
            lam = ppl.sample("local_scales", dist.Gamma(0.5 * jnp.ones(X.shape[1]), 0.5))
            w = ppl.sample("unscaled_weights", dist.Normal(jnp.zeros(X.shape[1]), 1.0))
            ppl.sample("y", dist.Bernoulli(logits=X @ (tau * lam * w)), obs=y)
        return m
    L = jnp.asarray(d["chol"])

    @ppl.model
    def m():
        ppl.sample("x", dist.MultivariateNormal(jnp.zeros(L.shape[0]), scale_tril=L))
    return m


def run_ours(name: str, adapt: str, warmup: int, draws: int, chains: int, seed: int = 0) -> dict:
    import jax

    from inference import mcmc

    adapt, *opts = adapt.split(",")  # e.g. "low_rank,mass_matrix_rank=100": kernel options
    kw = {k: json.loads(v) for k, v in (o.split("=", 1) for o in opts)}
    kernel = mcmc.NUTS(adapt_mass_matrix=True if adapt == "diag" else adapt, **kw)
    t0 = time.perf_counter()
    model = ours_model(name)
    run = mcmc.sample(jax.random.key(seed), kernel, model, num_warmup=warmup, num_samples=draws,
                      num_chains=chains, progress=False)
    samples = {k: np.asarray(v) for k, v in run.samples.items()}
    secs = time.perf_counter() - t0
    grads = int(np.sum(np.asarray(run.info["num_steps"])))
    if run.warmup_info is not None:
        grads += int(np.sum(np.asarray(run.warmup_info["num_steps"])))
    out = {"ess": min_ess(samples), "grads": grads, "seconds": secs,
           "divergences": int(np.sum(np.asarray(run.info["diverging"])))}
    if WARM:  # the same run again in this process (another key): compiled programs reused
        t0 = time.perf_counter()
        again = mcmc.sample(jax.random.key(seed + 1), kernel, model, num_warmup=warmup, num_samples=draws,
                            num_chains=chains, progress=False)
        jax.block_until_ready(again.samples)
        out["warm_seconds"] = time.perf_counter() - t0
    return out


# -- peers (run under --peer-python; nothing from this project is imported) -----------------------------


def numpyro_model(name: str):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    d = data(name)
    if name == "kilpisjarvi":
        x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])

        def m():
            a = numpyro.sample("alpha", dist.Normal(d["pmualpha"], d["psalpha"]))
            b = numpyro.sample("beta", dist.Normal(d["pmubeta"], d["psbeta"]))
            s = numpyro.sample("sigma", dist.ImproperUniform(dist.constraints.positive, (), ()))
            numpyro.sample("y", dist.Normal(a + b * x, s), obs=y)
        return m
    if name == "diamonds":
        X, Y = jnp.asarray(d["Xc"]), jnp.asarray(d["Y"])

        def m():
            b = numpyro.sample("b", dist.ImproperUniform(dist.constraints.real, (), (X.shape[1],)))
            c = numpyro.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
            s = numpyro.sample("sigma", dist.TruncatedDistribution(dist.StudentT(3.0, 0.0, 10.0), low=0.0))
            numpyro.sample("Y", dist.Normal(c + X @ b, s), obs=Y)
        return m
    if name == "german_sparse":
        X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"])

        def m():
            tau = numpyro.sample("global_scale", dist.Gamma(0.5, 0.5))
            lam = numpyro.sample("local_scales", dist.Gamma(0.5 * jnp.ones(X.shape[1]), 0.5))
            w = numpyro.sample("unscaled_weights", dist.Normal(jnp.zeros(X.shape[1]), 1.0))
            numpyro.sample("y", dist.Bernoulli(logits=X @ (tau * lam * w)), obs=y)
        return m
    L = jnp.asarray(d["chol"])

    def m():
        numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(L.shape[0]), scale_tril=L))
    return m


def run_numpyro(name, warmup, draws, chains, seed=0):
    import jax
    from numpyro.infer import MCMC, NUTS

    t0 = time.perf_counter()
    mc = MCMC(NUTS(numpyro_model(name)), num_warmup=warmup, num_samples=draws, num_chains=chains,
              chain_method="vectorized", progress_bar=False)
    mc.run(jax.random.key(seed), extra_fields=("num_steps",))
    samples = {k: np.asarray(v) for k, v in mc.get_samples(group_by_chain=True).items()}
    secs = time.perf_counter() - t0
    grads = int(np.sum(np.asarray(mc.get_extra_fields()["num_steps"])))  # sampling only: warmup not recorded
    return {"ess": min_ess(samples), "grads": grads, "seconds": secs, "grads_note": "sampling only"}


def run_blackjax(name, low_rank, warmup, draws, chains, seed=0):
    import blackjax
    import jax
    import jax.flatten_util
    import jax.numpy as jnp
    from numpyro.infer.util import initialize_model

    t0 = time.perf_counter()
    key = jax.random.key(seed)
    k_init, k_warm, k_draw = jax.random.split(key, 3)
    info, potential_fn, transform, _ = initialize_model(k_init, numpyro_model(name), dynamic_args=False)
    flat0, unravel = jax.flatten_util.ravel_pytree(info.z)

    def logdensity(x):
        return -potential_fn(unravel(x))

    inits = jax.vmap(lambda k: jax.random.uniform(k, flat0.shape, flat0.dtype, -2.0, 2.0))(jax.random.split(k_init, chains))
    if low_rank:
        from blackjax.adaptation.low_rank_adaptation import window_adaptation_low_rank

        warm = window_adaptation_low_rank(blackjax.nuts, logdensity)
    else:
        warm = blackjax.window_adaptation(blackjax.nuts, logdensity)

    def one(k_w, k_d, x0):
        (state, params), winfo = warm.run(k_w, x0, num_steps=warmup)
        kern = blackjax.nuts(logdensity, **params)

        def body(s, k):
            s, i = kern.step(k, s)
            return s, (s.position, i.num_integration_steps)

        _, (xs, steps) = jax.lax.scan(body, state, jax.random.split(k_d, draws))
        return xs, jnp.sum(steps) + jnp.sum(winfo.info.num_integration_steps)

    xs, steps = jax.jit(jax.vmap(one))(jax.random.split(k_warm, chains), jax.random.split(k_draw, chains), inits)
    samples = jax.vmap(jax.vmap(lambda x: transform(unravel(x))))(xs)
    samples = {k: np.asarray(v) for k, v in samples.items()}
    secs = time.perf_counter() - t0
    return {"ess": min_ess(samples), "grads": int(np.sum(np.asarray(steps))), "seconds": secs}


def pymc_model(name):
    import pymc as pm
    import pytensor.tensor as pt

    d = data(name)
    with pm.Model() as m:
        if name == "kilpisjarvi":
            a = pm.Normal("alpha", d["pmualpha"], d["psalpha"])
            b = pm.Normal("beta", d["pmubeta"], d["psbeta"])
            s = pm.HalfFlat("sigma")
            pm.Normal("y", a + b * d["x"], s, observed=d["y"])
        elif name == "diamonds":
            b = pm.Flat("b", shape=d["Xc"].shape[1])
            c = pm.StudentT("Intercept", nu=3.0, mu=8.0, sigma=10.0)
            s = pm.HalfStudentT("sigma", nu=3.0, sigma=10.0)
            pm.Normal("Y", c + pt.dot(d["Xc"], b), s, observed=d["Y"])
        elif name == "german_sparse":
            k = d["X"].shape[1]
            tau = pm.Gamma("global_scale", 0.5, 0.5)
            lam = pm.Gamma("local_scales", 0.5, 0.5, shape=k)
            w = pm.Normal("unscaled_weights", 0.0, 1.0, shape=k)
            pm.Bernoulli("y", logit_p=pt.dot(d["X"], tau * lam * w), observed=d["y"])
        else:
            pm.MvNormal("x", mu=np.zeros(100), chol=d["chol"])
    return m


def run_nutpie(name, low_rank, warmup, draws, chains, seed=0):
    import nutpie

    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(pymc_model(name))
    kw = {"low_rank_modified_mass_matrix": True} if low_rank else {}
    idata = nutpie.sample(compiled, draws=draws, tune=warmup, chains=chains, seed=seed, progress_bar=False, cores=chains, **kw)
    secs = time.perf_counter() - t0
    warm = {}
    if WARM:  # the compiled model sampled again (another seed)
        t1 = time.perf_counter()
        nutpie.sample(compiled, draws=draws, tune=warmup, chains=chains, seed=seed + 1, progress_bar=False, cores=chains, **kw)
        warm = {"warm_seconds": time.perf_counter() - t1}
    post = idata.posterior
    samples = {k: np.asarray(post[k]) for k in post.data_vars}
    grads = int(np.asarray(idata.sample_stats["n_steps"]).sum())
    if "warmup_sample_stats" in idata:
        grads += int(np.asarray(idata.warmup_sample_stats["n_steps"]).sum())
    return {"ess": min_ess(samples), "grads": grads, "seconds": secs, **warm}


def run_peer(peer, name, warmup, draws, chains):
    if peer == "numpyro":
        return run_numpyro(name, warmup, draws, chains)
    if peer.startswith("blackjax"):
        return run_blackjax(name, peer.endswith("low_rank"), warmup, draws, chains)
    return run_nutpie(name, peer.endswith("low_rank"), warmup, draws, chains)


# -- driver --------------------------------------------------------------------------------------------


def one(variant: str, name: str, args) -> dict:
    """One (sampler, model) in a fresh process: compile time included, no cache shared."""
    if variant.startswith("ours:"):
        python = sys.executable
        env = {**os.environ, "PYTHONPATH": str(REPO)}
    else:
        python, env = args.peer_python, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [python, __file__, "--one", variant, name, str(args.warmup), str(args.draws), str(args.chains)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {args.timeout}s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--variants", nargs="*", default=[f"ours:{a}" for a in OURS] + list(PEERS))
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--peer-python", default=str(REPO.parent / "bench-venv" / "bin" / "python")
                    if (REPO.parent / "bench-venv").exists() else "/work/bench-venv/bin/python")
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--warm", action="store_true", help="also time a second run in the same process (ours, nutpie)")
    args = ap.parse_args()
    if args.warm:
        os.environ["BENCH_WARM"] = "1"  # (inherited by the --one subprocesses)
    if args.one:
        variant, name, w, d, c = args.one
        import jax

        jax.config.update("jax_enable_x64", False)
        if variant.startswith("ours:"):
            r = run_ours(name, variant[5:], int(w), int(d), int(c))
        else:
            r = run_peer(variant, name, int(w), int(d), int(c))
        print("RESULT " + json.dumps(r), flush=True)
        return
    rows = []
    print(f"NUTS, {args.chains} chains x ({args.warmup} warmup + {args.draws} draws), end to end (compile included)")
    print("| model | sampler | min ESS | gradients | seconds | min-ESS / 1000 grad | min-ESS / s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        for v in args.variants:
            r = one(v, name, args)
            rows.append({"model": name, "sampler": v, **r})
            if "error" in r:
                print(f"| {name} | {v} | error: {r['error']} | | | | |", flush=True)
                continue
            note = " (sampling only)" if r.get("grads_note") else ""
            warm = f" (warm {r['warm_seconds']:.1f})" if "warm_seconds" in r else ""
            print(f"| {name} | {v} | {r['ess']:.0f} | {r['grads']}{note} | {r['seconds']:.1f}{warm} | "
                  f"{1000 * r['ess'] / r['grads']:.2f} | {r['ess'] / r['seconds']:.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
