"""Gradient of the log density: generated (``ppl``) vs hand-written JAX vs NumPyro.

Cases
-----
- ``eight_schools_nc``: non-centred eight schools (posteriordb data when available).
- ``logistic_N5000_D20``: Bayesian logistic regression, synthetic data, fixed seed.

Variants (all compute the gradient of the *potential*, the negative log density in
unconstrained space including the log-Jacobian, over one flat vector)
- ``handwritten``: pure ``jax.numpy``;
- ``numpyro``: ``numpyro.infer.util.initialize_model(...).potential_fn`` (+ ``ravel_pytree``);
- ``ppl``: ``ppl.unconstrained(model, *args).potential``.

Before timing, each variant's potential is compared with the hand-written one at the same
point (``Δpotential`` in the notes, absolute difference): a fast but wrong density is not a result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.runner import Suite

REPO = Path(__file__).resolve().parents[1]
EIGHT_SCHOOLS_JSON = REPO.parent / "shared" / "data" / "posteriordb" / (
    "eight_schools-eight_schools_noncentered") / "data.json"

_LOG_2PI = math.log(2 * math.pi)


def _normal_lpdf(x, loc, scale):
    z = (x - loc) / scale
    return -0.5 * z * z - jnp.log(scale) - 0.5 * _LOG_2PI


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def eight_schools_data():
    if EIGHT_SCHOOLS_JSON.exists():
        d = json.loads(EIGHT_SCHOOLS_JSON.read_text())
        source = "posteriordb"
        y, sigma = d["y"], d["sigma"]
    else:
        source = "classic"
        y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
        sigma = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]
    return jnp.asarray(y, dtype=float), jnp.asarray(sigma, dtype=float), source


def logistic_data(n=5000, d=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    w = rng.standard_normal(d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-X @ w))).astype(np.float64)
    return jnp.asarray(X, dtype=float), jnp.asarray(y, dtype=float)


# --------------------------------------------------------------------------------------
# hand-written potentials (flat unconstrained vector)
# --------------------------------------------------------------------------------------
def eight_schools_potential(x, y, sigma):
    """x = [mu, log tau, theta_trans[0..J-1]]."""
    mu, log_tau, theta_trans = x[0], x[1], x[2:]
    tau = jnp.exp(log_tau)
    lp = _normal_lpdf(mu, 0.0, 5.0)
    # HalfCauchy(5): log(2) - log(pi) - log(5) - log1p((tau/5)^2), plus log|d tau / d log tau|
    lp += math.log(2.0 / (math.pi * 5.0)) - jnp.log1p((tau / 5.0) ** 2) + log_tau
    lp += jnp.sum(_normal_lpdf(theta_trans, 0.0, 1.0))
    lp += jnp.sum(_normal_lpdf(y, mu + tau * theta_trans, sigma))
    return -lp


def logistic_potential(w, X, y):
    logits = X @ w
    lp = jnp.sum(_normal_lpdf(w, 0.0, 1.0))
    # log sigmoid terms; this softplus form differentiates more cheaply than jax.nn.softplus
    softplus = jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    lp += jnp.sum(y * logits - softplus)
    return -lp


# --------------------------------------------------------------------------------------
# numpyro
# --------------------------------------------------------------------------------------
def numpyro_models():
    import numpyro
    import numpyro.distributions as nd

    def eight_schools_nc(sigma, y=None):
        mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
        with numpyro.plate("school", sigma.shape[0]):
            theta_trans = numpyro.sample("theta_trans", nd.Normal(0.0, 1.0))
            numpyro.sample("y", nd.Normal(mu + tau * theta_trans, sigma), obs=y)

    def logistic(X, y=None):
        w = numpyro.sample("w", nd.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", nd.Bernoulli(logits=X @ w), obs=y)

    return eight_schools_nc, logistic


def numpyro_flat_potential(model, *args):
    """(flat potential, flat init, unravel) from numpyro's initialize_model."""
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.key(0), model, model_args=args, dynamic_args=False)
    init_params = info.param_info.z
    flat0, unravel = ravel_pytree(init_params)
    potential_fn = info.potential_fn
    return (lambda x: potential_fn(unravel(x))), flat0, unravel


# --------------------------------------------------------------------------------------
# ppl
# --------------------------------------------------------------------------------------
def ppl_models():
    import ppl
    from ppl import dist

    @ppl.model
    def eight_schools_nc(sigma, y=None):
        mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
        tau = ppl.sample("tau", dist.HalfCauchy(5.0))
        with ppl.plate("school", sigma.shape[0]):
            theta_trans = ppl.sample("theta_trans", dist.Normal(0.0, 1.0))
            ppl.sample("y", dist.Normal(mu + tau * theta_trans, sigma), obs=y)

    @ppl.model
    def logistic(X, y=None):
        w = ppl.sample("w", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
        with ppl.plate("data", X.shape[0]):
            ppl.sample("y", dist.Bernoulli(logits=X @ w), obs=y)

    return ppl, eight_schools_nc, logistic


# --------------------------------------------------------------------------------------
def _check(name, potential, x, reference, x_ref):
    """|potential(x) - reference(x_ref)| where x and x_ref denote the same point."""
    return float(abs(potential(x) - reference(x_ref)))


def main(quick: bool = False) -> Suite:
    suite = Suite("logdensity_grad", baseline="handwritten")
    kw = dict(repeats=50 if quick else 300, loop_length=20 if quick else 200,
              loop_repeats=5 if quick else 30)

    y, sigma, source = eight_schools_data()
    X, yl = logistic_data()
    D = X.shape[1]
    J = sigma.shape[0]
    es_case, lr_case = "eight_schools_nc", f"logistic_N{X.shape[0]}_D{D}"
    # One evaluation point per case, shared by every variant (same constrained values).
    x_es = jnp.concatenate([jnp.array([0.3, 0.2]), jnp.linspace(-1.0, 1.0, J)])
    c_es = {"mu": x_es[0], "tau": jnp.exp(x_es[1]), "theta_trans": x_es[2:]}
    x_lr = jnp.linspace(-0.5, 0.5, D)
    c_lr = {"w": x_lr}

    # -- hand-written (every variant closes over its data, as a sampler's potential does) --
    es_hand = lambda x: eight_schools_potential(x, y, sigma)  # noqa: E731
    lr_hand = lambda w: logistic_potential(w, X, yl)  # noqa: E731
    suite.add(es_case, "handwritten", jax.grad(es_hand), x_es, data=source)
    suite.add(lr_case, "handwritten", jax.grad(lr_hand), x_lr)

    # -- numpyro (flat order is alphabetical by site: mu, tau, theta_trans) --------------
    try:
        np_es, np_lr = numpyro_models()
        for case, model, args, x, hand in [(es_case, np_es, (sigma, y), x_es, es_hand),
                                           (lr_case, np_lr, (X, yl), x_lr, lr_hand)]:
            pot, _, _ = numpyro_flat_potential(model, *args)
            err = _check("numpyro", pot, x, hand, x)
            suite.add(case, "numpyro", jax.grad(pot), x, Δpotential=f"{err:.1e}")
    except Exception as exc:  # noqa: BLE001
        suite.unavailable(es_case, "numpyro", f"{type(exc).__name__}: {exc}")

    # -- ppl ---------------------------------------------------------------------------
    try:
        ppl, ppl_es, ppl_lr = ppl_models()
    except Exception as exc:  # noqa: BLE001
        reason = f"ppl not ready ({type(exc).__name__}: {exc})"
        suite.unavailable(es_case, "ppl", reason)
        suite.unavailable(lr_case, "ppl", reason)
    else:
        for case, model, args, c, x_hand, hand in [
            (es_case, ppl_es, (sigma, y), c_es, x_es, es_hand),
            (lr_case, ppl_lr, (X, yl), c_lr, x_lr, lr_hand),
        ]:
            try:
                view = ppl.unconstrained(model, *args)
                x = view.to_unconstrained(c)
                err = _check("ppl", view.potential, x, hand, x_hand)
                suite.add(case, "ppl", jax.grad(view.potential), x, Δpotential=f"{err:.1e}")
            except Exception as exc:  # noqa: BLE001
                suite.unavailable(case, "ppl", f"{type(exc).__name__}: {exc}")

    return suite.run(rounds=1 if quick else 5, **kw)


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv).report()
