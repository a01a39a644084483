"""A NUTS step's random numbers from counter blocks of its key (:mod:`inference.mcmc._bits`).

Exact: the floats are made from words as ``jax.random.uniform`` / ``normal`` make them from
``jax.random.bits`` (float32 and float64, bit for bit); same key, same words; keys of another
implementation (``rbg``) and raw ``uint32[2]`` keys work.  Statistical: what one NUTS step
draws (its momentum, its doubling directions, the uniforms of its first leapfrog steps) is
jointly independent and fair: 7 binary features of it are uniform over their 128 cells (a
χ² test), and the momentum is N(0, 1) (KS).  The planted bug (mutant
``mcmc/nuts-bits-loop-block-collides``) draws leapfrog step s's uniforms from block s instead
of 1 + s, so step 0 reuses the momentum's words: the joint test fails.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as st

from _budget import BUDGET
from inference.mcmc import _bits
from inference.mcmc.gradient import _momentum_and_word
from semantics.stats import chi2_test

ALPHA = BUDGET.level("mcmc/nuts_bits")


@pytest.mark.exact
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_floats_from_words_are_jax_randoms_arithmetic(dtype):
    k = jax.random.key(11)
    n = 4099
    if dtype == jnp.float64:
        b = np.asarray(jax.random.bits(k, (n,), jnp.uint64))
        words = jnp.asarray(np.stack([b >> 32, b & 0xFFFFFFFF], -1).reshape(-1).astype(np.uint32))
    else:
        words = jax.random.bits(k, (n,), jnp.uint32)
    np.testing.assert_array_equal(np.asarray(_bits.uniform_from_words(words, dtype)),
                                  np.asarray(jax.random.uniform(k, (n,), dtype)))
    np.testing.assert_array_equal(np.asarray(_bits.normal_from_words(words, dtype)),
                                  np.asarray(jax.random.normal(k, (n,), dtype)))
    u = np.asarray(_bits.loop_uniforms(k, 5, 2, dtype))
    assert u.dtype == np.dtype(dtype) and np.all((u >= 0) & (u < 1))


@pytest.mark.exact
def test_same_key_same_words_and_other_key_kinds():
    k = jax.random.key(3)
    a = _bits.step_words(k, 9)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(_bits.step_words(jax.random.key(3), 9)))
    # a raw uint32[2] key is the default (threefry) key with that data
    np.testing.assert_array_equal(np.asarray(_bits.step_words(jax.random.PRNGKey(3), 9)), np.asarray(a))
    # blocks differ; under jit and vmap the same as eagerly
    f = jax.jit(jax.vmap(lambda k, s: _bits.loop_uniforms(k, s, 2, jnp.float32), in_axes=(None, 0)))
    us = np.asarray(f(k, jnp.arange(4)))
    assert len({tuple(r) for r in us.tolist()}) == 4
    np.testing.assert_array_equal(us[2], np.asarray(_bits.loop_uniforms(k, 2, 2, jnp.float32)))
    # another implementation takes the public route (fold_in + bits), deterministically
    kr = jax.random.key(3, impl="rbg")
    r1, w1 = _momentum_and_word(kr, jnp.ones(5))
    r2, w2 = _momentum_and_word(jax.random.key(3, impl="rbg"), jnp.ones(5))
    np.testing.assert_array_equal(np.asarray(r1), np.asarray(r2))
    assert int(w1) == int(w2) and r1.shape == (5,) and np.all(np.isfinite(np.asarray(r1)))


def _step_features(keys):
    """Per key: what one NUTS step draws, as 7 bits that are fair and independent when the
    scheme is right (signs of the first and last momenta, directions of doublings 0 and 9,
    the two uniforms of leapfrog step 0 and the first of step 1), and the momentum."""

    def one(k):
        r, word = _momentum_and_word(k, jnp.ones(3))
        u0 = _bits.loop_uniforms(k, 0, 2, r.dtype)
        u1 = _bits.loop_uniforms(k, 1, 2, r.dtype)
        bits = jnp.stack([r[0] < 0, r[2] < 0, (word & 1) == 1, ((word >> 9) & 1) == 1,
                          u0[0] < 0.5, u0[1] < 0.5, u1[0] < 0.5])
        return bits, r

    return jax.jit(jax.vmap(one))(keys)


@pytest.mark.statistical
def test_a_steps_draws_are_independent_and_fair():
    M = 40_000
    bits, r = (np.asarray(a) for a in _step_features(jax.random.split(jax.random.key(5), M)))
    cell = bits.astype(np.int64) @ (1 << np.arange(bits.shape[1]))
    counts = np.bincount(cell, minlength=128)
    res = chi2_test(counts, np.full(128, 1 / 128), ALPHA)
    assert res.ok, f"the step's draws are not independent fair bits: {res}"
    p = st.kstest(r.reshape(-1)[: M], "norm").pvalue
    assert p > ALPHA, f"the momentum is not N(0, 1): KS p = {p:.3g}"
