"""Quickstart: the eight schools model end to end.

Run with ``make demo`` (or ``.venv/bin/python examples/quickstart.py``). Takes well under a
minute on a laptop CPU. Exercises the modelling language (simulate, log_density, condition,
generate, do, predictive), then each inference family that is available.
"""

from __future__ import annotations

import importlib
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

T0 = time.perf_counter()

# Eight schools (Rubin 1981): estimated coaching effects and their standard errors.
Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


@ppl.model
def eight_schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta = ppl.sample("theta", dist.Normal(mu, tau))
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)))


def fmt(x) -> str:
    return np.array2string(np.asarray(x), precision=2, suppress_small=True, floatmode="fixed")


def language() -> dict:
    summary = {}

    section("simulate")
    tr = eight_schools.simulate(jax.random.key(0), SIGMA)
    print("addresses:", sorted(tr.choices))
    print("mu =", fmt(tr["mu"]), " tau =", fmt(tr["tau"]))
    print("theta =", fmt(tr["theta"]))
    print("log density =", fmt(tr.log_density))
    summary["simulate"] = "ok"

    section("log_density")
    lp = eight_schools.log_density(tr.choices, SIGMA)
    assert jnp.allclose(lp, tr.log_density), (lp, tr.log_density)
    lp0 = eight_schools.log_density({"mu": 0.0, "tau": 1.0, "theta": jnp.zeros(8), "y": Y}, SIGMA)
    print("log p(mu=0, tau=1, theta=0, y) =", fmt(lp0))
    summary["log_density"] = "ok (matches the trace)"

    section("condition")
    posterior = ppl.condition(eight_schools, {"y": Y})
    ptr = posterior.simulate(jax.random.key(1), SIGMA)
    assert jnp.allclose(ptr["y"], Y)
    print("y is observed:", fmt(ptr["y"]), " log likelihood =", fmt(ptr.log_likelihood))
    summary["condition"] = "ok"

    section("generate: importance sampling from the prior")
    n = 20_000
    keys = jax.random.split(jax.random.key(2), n)
    traces, log_w = jax.jit(jax.vmap(lambda k: posterior.generate(k, {}, SIGMA)))(keys)
    w = jax.nn.softmax(log_w)
    ess = 1.0 / jnp.sum(w**2)
    log_z = jax.scipy.special.logsumexp(log_w) - jnp.log(n)
    post_mu = jnp.sum(w * traces["mu"])
    post_tau = jnp.sum(w * traces["tau"])
    print(f"{n} weighted draws, ESS = {float(ess):.0f}, log p(y) ~ {float(log_z):.3f}")
    print(f"E[mu | y] ~ {float(post_mu):.2f}   E[tau | y] ~ {float(post_tau):.2f}")
    assert jnp.isfinite(log_z) and ess > 10
    summary["generate"] = f"ok (ESS {float(ess):.0f}/{n}, E[mu|y] ~ {float(post_mu):.2f})"

    section("do: intervene on tau")
    surgery = ppl.do(eight_schools, {"tau": 1.0})
    dtr = surgery.simulate(jax.random.key(3), SIGMA)
    print("theta under do(tau=1) =", fmt(dtr["theta"]))
    summary["do"] = "ok"

    section("predictive: posterior predictive check")
    idx = jax.random.choice(jax.random.key(4), n, shape=(1000,), p=w)
    samples = {k: traces[k][idx] for k in ("mu", "tau", "theta")}
    y_rep = ppl.predictive(eight_schools, samples, SIGMA, key=jax.random.key(5))["y"]
    p_max = jnp.mean(y_rep.max(axis=1) >= Y.max())
    print("y_rep shape:", y_rep.shape, f" P(max y_rep >= max y) ~ {float(p_max):.2f}")
    summary["predictive"] = f"ok (p-value of max: {float(p_max):.2f})"
    return summary


def _exports(module) -> list[str]:
    return sorted(n for n in dir(module) if not n.startswith("_"))


def demo_mcmc(mcmc) -> str:
    if not (hasattr(mcmc, "sample") and hasattr(mcmc, "NUTS")):
        return "not yet available"
    posterior = ppl.condition(eight_schools, {"y": Y})
    # the centred parameterisation: a few divergences and a low ESS for tau are expected
    run = mcmc.sample(jax.random.key(10), mcmc.NUTS(), posterior, SIGMA,
                      num_warmup=300, num_samples=300, num_chains=2)
    mu = run.samples["mu"]
    if hasattr(run, "summary"):
        print(run.summary())
    return f"NUTS ok, E[mu | y] ~ {float(jnp.mean(mu)):.2f} from samples of shape {mu.shape}"


def demo_causal(causal) -> str:
    if not hasattr(causal, "diagram"):
        return "not yet available"

    @ppl.model
    def smoking():  # a genotype confounds smoking and cancer
        genotype = ppl.sample("genotype", dist.Bernoulli(0.5))
        smoke = ppl.sample("smoke", dist.Bernoulli(jnp.where(genotype > 0, 0.8, 0.2)))
        tar = ppl.sample("tar", dist.Bernoulli(jnp.where(smoke > 0, 0.9, 0.1)))
        p_cancer = 0.05 + 0.25 * tar + 0.3 * genotype
        ppl.sample("cancer", dist.Bernoulli(p_cancer))

    d = causal.diagram(smoking)
    print(d)
    result = f"diagram ok ({len(d.boxes)} boxes)" if hasattr(d, "boxes") else "diagram ok"
    if hasattr(causal, "query"):
        p_do = causal.query(d, "cancer", do={"smoke": 1})
        p_obs = causal.query(d, "cancer", given={"smoke": 1})
        table_do = np.asarray(getattr(p_do, "table", p_do))
        table_obs = np.asarray(getattr(p_obs, "table", p_obs))
        print("P(cancer | do(smoke=1)) =", fmt(table_do), "  P(cancer | smoke=1) =", fmt(table_obs))
        result += (f", P(cancer=1 | do(smoke=1)) = {float(table_do.reshape(-1)[-1]):.3f}"
                   f" vs P(cancer=1 | smoke=1) = {float(table_obs.reshape(-1)[-1]):.3f}")
    return result


def demo_smc(smc) -> str:
    if not hasattr(smc, "particle_filter"):
        return "not yet available"

    @ppl.model
    def x0():
        return ppl.sample("x0", dist.Normal(0.0, 1.0))

    def step(x_prev, y_t):  # a local-level model, written as for ppl.scan
        x = ppl.sample("x", dist.Normal(0.9 * x_prev, 0.7))
        ppl.sample("y", dist.Normal(x, 1.0), obs=y_t)
        return x, x

    ys = jnp.asarray(np.random.default_rng(0).normal(size=30))
    res = smc.particle_filter(jax.random.key(20), step, x0, ys, num_particles=1000, name="ts")
    return (f"bootstrap particle filter ok, log Z-hat = {float(res.log_evidence):.3f}, "
            f"resampled {int(np.sum(res.resampled))} of {ys.shape[0]} steps")


def demo_vi(vi) -> str:
    if not (hasattr(vi, "fit") and hasattr(vi, "elbo")):
        return "not yet available"
    import optax

    posterior = ppl.condition(eight_schools, {"y": Y})
    guide = vi.auto_normal(posterior, SIGMA)  # a mean-field normal guide built from the model
    result = vi.fit(jax.random.key(30), vi.elbo(posterior, guide), optax.adam(0.05), SIGMA,
                    num_steps=4000)
    draws = result.sample_posterior(jax.random.key(31), guide, SIGMA, num_samples=1000)
    return (f"ELBO fit ok, final ELBO ~ {float(np.mean(np.asarray(result.history)[-50:])):.2f}, "
            f"E_q[mu] ~ {float(jnp.mean(draws['mu'])):.2f}")


def demo_listing(module) -> str:
    names = _exports(module)
    return f"present, exports {names[:8]}" if names else "not yet available"


def inference_families() -> dict:
    demos = {"mcmc": demo_mcmc, "smc": demo_smc, "vi": demo_vi, "causal": demo_causal}
    summary = {}
    for family, demo in demos.items():
        section(f"inference.{family}")
        try:
            module = importlib.import_module(f"inference.{family}")
        except ImportError as exc:
            summary[family] = f"not yet available ({exc})"
            print(summary[family])
            continue
        try:
            summary[family] = demo(module)
        except Exception as exc:  # noqa: BLE001 - report every family, then fail at the end
            traceback.print_exc(limit=2)
            summary[family] = f"FAILED: {type(exc).__name__}: {exc}"[:200]
        print(summary[family])
    return summary


def main() -> None:
    print(f"ppl quickstart -- jax {jax.__version__} on {jax.default_backend()}")
    results = language()
    results.update({f"inference.{k}": v for k, v in inference_families().items()})
    section("summary")
    width = max(map(len, results))
    for name, status in results.items():
        print(f"  {name:<{width}}  {status}")
    print(f"\ndone in {time.perf_counter() - T0:.1f} s")
    failed = [name for name, status in results.items() if str(status).startswith("FAILED")]
    if failed:
        raise SystemExit(f"quickstart: the demo of {', '.join(failed)} failed (see above)")


if __name__ == "__main__":
    main()
