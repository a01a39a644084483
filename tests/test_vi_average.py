"""Issue 19, fourth pass: iterate averaging (Polyak–Ruppert) in ``vi.fit``.

* **The average is the average of the right iterates** (exact): ``vi.fit(..., average=a)``
  returns as ``uparams`` the mean of the iterates after steps n − ⌈a·n⌉ + 1 .. n, computed here
  by hand from the last iterates of fits of 1 .. n steps (the same key: the same trajectory);
  ``last_params`` is the last iterate; the result does not depend on the chunk size (a window
  that straddles chunks); the average of a window one step off is *not* what is returned (the
  test can tell the windows apart).  With ``patience`` the window is the same steps of the
  requested run; a run stopped before it returns the average of the steps it reached (stated
  in ``fit``'s docstring), checked here.
* **It helps where it should** (deterministic, fixed keys; no false-alarm budget): on an exactly
  Gaussian posterior with a mean-field Gaussian guide, at a constant Adam rate the last iterate
  jitters on a plateau; the averaged fit's KL(q‖p) = log Z − ELBO (closed form) is below the last
  iterate's for each of 4 keys, and less than half of it on average.
* **Bad input**: ``average`` outside [0, 1] is an ``ArgumentError`` naming it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import vi
from ppl import dist
from ppl.errors import ArgumentError

Y = jnp.array([0.8, -1.3, 2.0])


@ppl.model
def model(y):
    mu = ppl.sample("mu", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
    ppl.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


@ppl.model
def guide(y):
    loc = ppl.param("loc", jnp.zeros(3))
    scale = ppl.param("scale", jnp.ones(3), constraint=dist.constraints.positive)
    ppl.sample("mu", dist.Normal(loc, scale).to_event(1))


OBJ = vi.elbo(model, guide)


C = 5  # one chunk size for every test here: its two programs compile once


def _fit(n, key=0, lr=0.1, **kw):
    return vi.fit(jax.random.key(key), OBJ, optax.adam(lr), Y, num_steps=n, progress=False, **kw)


def _by_hand(iterates, first, last):
    """Mean of the unconstrained iterates after steps first .. last (1-based)."""
    return {k: np.mean([np.asarray(iterates[n][k]) for n in range(first, last + 1)], axis=0) for k in iterates[last]}


def test_the_average_is_the_mean_of_the_last_iterates_and_the_last_iterate_is_kept():
    n, a = 12, 0.25  # the window: ceil(3) steps, after steps 10, 11, 12
    iterates = {m: _fit(m, chunk_size=C, average=a).last_uparams for m in range(1, n + 1)}  # the last iterates
    r = _fit(n, chunk_size=C, average=a)  # chunks of 5 + 5 + 2 steps: the window straddles two
    assert r.averaged_steps == math.ceil(a * n) == 3
    want = _by_hand(iterates, n - 2, n)
    for k in want:
        np.testing.assert_allclose(np.asarray(r.uparams[k]), want[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(r.last_uparams[k]), np.asarray(iterates[n][k]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(r.params["scale"]), np.exp(want["scale"]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(r.last_params["scale"]), np.exp(np.asarray(iterates[n]["scale"])), rtol=1e-6)
    # the test tells the windows apart: one step more or less is another average
    for wrong in (_by_hand(iterates, n - 3, n), _by_hand(iterates, n - 1, n), _by_hand(iterates, n - 3, n - 1)):
        assert not np.allclose(np.asarray(r.uparams["loc"]), wrong["loc"], rtol=1e-5, atol=1e-6)
    # one chunk of 12 steps (the whole fit as one program: start, steps, finish): the same fit
    r2 = _fit(n, average=a)
    np.testing.assert_allclose(np.asarray(r2.uparams["loc"]), np.asarray(r.uparams["loc"]), rtol=1e-6)
    np.testing.assert_allclose(r2.history, r.history, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(r2.last_params["scale"]), np.asarray(r.last_params["scale"]), rtol=1e-6)
    assert r2.averaged_steps == 3 and r2.num_steps == n
    # average=0: the last iterate, nothing averaged
    r0 = _fit(n, chunk_size=C, average=0.0)
    assert r0.averaged_steps == 0 and r0.info["averaged_steps"] == 0
    np.testing.assert_array_equal(np.asarray(r0.uparams["loc"]), np.asarray(iterates[n]["loc"]))


def test_patience_averages_the_steps_of_the_window_it_reached():
    r = _fit(400, lr=0.1, average=0.5, patience=1, chunk_size=C, min_delta=0.5)
    assert r.stopped_early and r.num_steps < 400
    assert r.averaged_steps == max(0, r.num_steps - 200)
    if r.averaged_steps == 0:
        np.testing.assert_array_equal(np.asarray(r.uparams["loc"]), np.asarray(r.last_uparams["loc"]))


def _kl_to_posterior(params):
    """KL(q ‖ p(mu | y)) = log Z − ELBO, closed form: posterior N(y/2, 1/2) per coordinate."""
    m, s2 = np.asarray(Y) / 2, 0.5
    loc, scale = np.asarray(params["loc"], float), np.asarray(params["scale"], float)
    return float(np.sum(np.log(np.sqrt(s2) / scale) + (scale**2 + (loc - m) ** 2) / (2 * s2) - 0.5))


def test_on_a_gaussian_posterior_the_averaged_fit_is_closer_to_log_z_than_the_last_iterate():
    kl_avg, kl_last = [], []
    for key in range(4):
        r = _fit(600, key=key, lr=0.1, average=0.5, chunk_size=C)
        assert r.averaged_steps == 300
        kl_avg.append(_kl_to_posterior(r.params))
        kl_last.append(_kl_to_posterior(r.last_params))
    assert all(a < b for a, b in zip(kl_avg, kl_last)), (kl_avg, kl_last)
    assert np.mean(kl_avg) < 0.5 * np.mean(kl_last), (kl_avg, kl_last)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half", True])
def test_average_outside_0_1_is_an_error_naming_it(bad):
    with pytest.raises(ArgumentError, match="average must be a fraction"):
        _fit(5, average=bad)


# -- h19b: average="auto", the adaptive window (the running mean restarts while the fit improves) --


def _auto_by_hand(values, iterates, n, fast_tc, slow_tc, margin, cap):
    """The rule of ``average="auto"`` replayed in NumPy from the per-step objective values (the
    fit's history) and the last iterates: ``(mean, count)`` of the iterates after the last step
    that still counted as improving, within the last ⌈cap·n⌉ steps."""
    fast = slow = var = 0.0
    first = n - math.ceil(cap * n) + 1  # 1-based: the iterate after step t may enter when t >= first
    start, restarts = None, 0
    for t in range(1, n + 1):
        v = float(values[t - 1])
        af, as_ = max(1.0 / t, 1.0 / fast_tc), max(1.0 / t, 1.0 / slow_tc)
        var = var + as_ * (((v - fast) ** 2 if t > 1 else 0.0) - var)
        fast, slow = fast + af * (v - fast), slow + as_ * (v - slow)
        improving = fast - slow > margin * math.sqrt(var / (2.0 * fast_tc))
        if improving:
            start, restarts = None, restarts + (t >= first)
        if t >= first and start is None:
            start = t
    count = n - start + 1 if start is not None else 0
    return (_by_hand(iterates, start, n) if count else None), count, restarts


class _Iterates(dict):
    """The last iterate of a fit of m steps, fitted when first asked for."""

    def __init__(self, fit_m):
        super().__init__()
        self.fit_m = fit_m

    def __missing__(self, m):
        self[m] = self.fit_m(m)
        return self[m]


def test_auto_average_restarts_the_mean_while_the_objective_improves():
    """The exact rule by hand: the restarts (from the fit's history), the mean of the iterates since
    the last one (from fits of fewer steps, same key), and the final check (the objective at the
    mean and at the last iterate with the same draws): kept at 60 steps, refused at 10."""
    import sys

    fm = sys.modules["inference.vi.fit"]
    rule = (fm.AUTO_FAST, fm.AUTO_SLOW, fm.AUTO_MARGIN, fm.AUTO_CAP)
    k_run = jax.random.split(jax.random.key(0))[1]  # the steps' key: step t draws with fold_in(k_run, t)

    def value(u, n):  # the check's pair p draws with the key of step n + p, as many draws as a step
        return np.mean([float(OBJ.surrogate(jax.random.fold_in(k_run, n + p), u, Y, num_samples=16)[1])
                        for p in range(fm.AUTO_CHECK)])

    kept = []
    for n in (60, 10):  # lr 0.1, 16 draws: at 60 steps still improving at steps 45-48 (in the capped window)
        kw = dict(lr=0.1, num_samples=16, average="auto")
        iterates = _Iterates(lambda m: _fit(m, chunk_size=C, **kw).last_uparams)  # the ones the mean needs
        r = _fit(n, chunk_size=C, **kw)
        mean, count, restarts = _auto_by_hand(r.history, iterates, n, *rule)
        assert 0 < count <= math.ceil(fm.AUTO_CAP * n)
        keep = value(mean, n) >= value(iterates[n], n)
        kept.append(keep)
        want = mean if keep else iterates[n]
        assert r.averaged_steps == (count if keep else 0)
        for k in want:
            np.testing.assert_allclose(np.asarray(r.uparams[k]), want[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(r.last_uparams["loc"]), np.asarray(iterates[n]["loc"]), rtol=1e-6)
        # the check's iterations after the last step change nothing: the trajectory of the plain fit
        plain = _fit(n, chunk_size=C, **{**kw, "average": 0})
        np.testing.assert_allclose(r.history, plain.history, rtol=1e-5, atol=1e-6)  # other programs: rounding
        for k in plain.last_uparams:
            np.testing.assert_allclose(np.asarray(r.last_uparams[k]), np.asarray(plain.last_uparams[k]), rtol=1e-6)
        if n == 60:
            assert restarts >= 1 and count < math.ceil(fm.AUTO_CAP * n), (restarts, count)  # the rule acted
            # the planted twin: a rule that never restarts averages the whole capped window, another mean
            never = _fit(n, chunk_size=C, **{**kw, "average": rule[3]})  # the window of the last half (exact above)
            assert not np.allclose(np.asarray(r.uparams["loc"]), np.asarray(never.uparams["loc"]), rtol=1e-5, atol=1e-6)
        # one chunk (the whole fit as one program): the same fit
        r1 = _fit(n, **kw)
        assert r1.averaged_steps == r.averaged_steps
        np.testing.assert_allclose(np.asarray(r1.uparams["loc"]), np.asarray(r.uparams["loc"]), rtol=1e-6)
        # with patience (never stopping here) the check is a program of its own: the same draws, the same fit
        rp = _fit(n, chunk_size=C, patience=10**6, **kw)
        assert rp.averaged_steps == r.averaged_steps
        np.testing.assert_allclose(np.asarray(rp.uparams["loc"]), np.asarray(r.uparams["loc"]), rtol=1e-6)
    assert kept == [True, False]  # both outcomes of the final check are exercised
