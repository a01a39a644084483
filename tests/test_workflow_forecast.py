"""Issue 16: forecasting with a ``ppl.scan`` model.

A value given for the first T steps of a scanned address covers those steps; run for T + H steps,
the model simulates the last H from the carry the prefix left.  Statistical check on a linear
Gaussian state-space model: the H-step-ahead predictive mean and variance of ``y`` from
``ppl.predictive`` (draws of x_{1:T} whose last state is the Kalman filter's x_T | y_{1:T}) match
the Kalman oracle's prediction step (``semantics.oracles.kalman_filter``).  Budget:
``workflow/forecast_moments``.  Planted twin: forecasting from the prior (the draws of the
filtered state not used) must fail the same check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist, randomness
from semantics.oracles import kalman_filter
from semantics.stats import z_test

from _budget import BUDGET

A, Q, R = 0.8, 0.5, 0.3
T, H, N = 6, 3, 4000
Y = np.array([2.5, 3.1, 2.8, 3.6, 3.0, 3.3])


@ppl.model
def lgssm(steps):
    def step(x_prev, _):
        x = ppl.sample("x", dist.Normal(A * x_prev, Q**0.5))
        ppl.sample("y", dist.Normal(x, R**0.5))
        return x, None

    ppl.scan(step, 0.0, length=steps, name="ts")


def oracle_forecast():
    """Mean and variance of y_{T+h} | y_{1:T}, h = 1..H: the Kalman filter then its prediction step."""
    kf = kalman_filter(Y, A=A, Q=Q, H=1.0, R=R, m0=0.0, P0=0.0)
    m, P = float(kf.means[-1, 0]), float(kf.covs[-1, 0, 0])
    out = []
    for _ in range(H):
        m, P = A * m, A * A * P + Q
        out.append((m, P + R))
    return kf, out


def filtered_draws(key):
    """N draws of x_{1:T} whose last state is x_T | y_{1:T} (the forecast depends on x_T only)."""
    kf, _ = oracle_forecast()
    xT = kf.means[-1, 0] + np.sqrt(kf.covs[-1, 0, 0]) * np.asarray(jax.random.normal(key, (N,)))
    return np.concatenate([np.broadcast_to(kf.means[:-1, 0], (N, T - 1)), xT[:, None]], axis=1)


def forecast_checks(y_future):
    """One z-test of the mean (known sd) and one chi² test of the variance per horizon."""
    alpha = BUDGET.level("workflow/forecast_moments")
    _, moments = oracle_forecast()
    results = []
    for h, (mean, var) in enumerate(moments):
        y = np.asarray(y_future[:, h], dtype=np.float64)
        results.append(z_test(y, mean, alpha=alpha, sd=np.sqrt(var)))
        q = (N - 1) * np.var(y, ddof=1) / var
        p = 2 * min(stats.chi2.cdf(q, N - 1), stats.chi2.sf(q, N - 1))
        results.append((p >= alpha, f"h={h + 1}: var {np.var(y, ddof=1):.4g} vs {var:.4g} (p = {p:.3g})"))
    return [(bool(r), str(r)) if not isinstance(r, tuple) else r for r in results]


@pytest.mark.statistical
def test_forecast_matches_kalman_prediction():
    xs = filtered_draws(jax.random.key(1))
    pp = ppl.predictive(lgssm, {"ts/x": xs}, T + H, key=jax.random.key(2))
    assert pp["ts/y"].shape == (N, T + H) and pp["ts/x"].shape == (N, T + H)
    np.testing.assert_array_equal(np.asarray(pp["ts/x"][:, :T]), xs)   # the prefix is the draws
    results = forecast_checks(np.asarray(pp["ts/y"][:, T:]))
    assert all(ok for ok, _ in results), [msg for ok, msg in results if not ok]

    # planted twin: forecasting from the prior (the filtered state not used) is caught
    prior = ppl.predictive(lgssm, None, T + H, key=jax.random.key(2), num_samples=N)
    results = forecast_checks(np.asarray(prior["ts/y"][:, T:]))
    assert not all(ok for ok, _ in results)


def test_observed_prefix_conditions_and_the_rest_is_simulated():
    cond = ppl.condition(lgssm, {"ts/y": jnp.asarray(Y)})
    tr = jax.jit(lambda k: cond.simulate(k, T + H))(jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(tr["ts/y"][:T]), Y)
    assert np.all(np.asarray(tr["ts/y"][T:]) != 0) and tr["ts/y"].shape == (T + H,)
    # the trace's density is the model's density at its values: the prefix is scored as data
    np.testing.assert_allclose(float(tr.log_density), float(lgssm.log_density(
        {"ts/x": tr["ts/x"], "ts/y": tr["ts/y"]}, T + H)), rtol=1e-12)
    # the eager path (Python loop, as under the exact enumerator) draws the same values
    with randomness.interpreter(_Eager()):
        tr_e = cond.simulate(jax.random.key(0), T + H)
    np.testing.assert_allclose(np.asarray(tr_e["ts/y"]), np.asarray(tr["ts/y"]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(tr_e["ts/x"]), np.asarray(tr["ts/x"]), rtol=1e-12)
    # a value longer than the scan is refused, naming the address
    with pytest.raises(ppl.ModelError, match="'ts/y'.*leading axis must be 9"):
        ppl.condition(lgssm, {"ts/y": jnp.zeros(T + H + 1)}).simulate(jax.random.key(0), T + H)


class _Eager:
    """jax.random draws, with combinators run as Python loops."""

    eager = True

    def draw(self, key, d, sample_shape, name):
        return d.sample(key, sample_shape)
