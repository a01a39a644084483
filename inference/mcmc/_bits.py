"""A NUTS step's random numbers from few hashes of its key (counter-based, one call per use).

Threefry-2x32 is a counter-based pseudo-random function: ``H(key, counter)`` for distinct
counters are independent uniform words.  ``jax.random.split`` / ``fold_in`` / ``normal`` /
``uniform`` each make one such call, and every call inlines a few hundred instructions into the
compiled program; a NUTS step made seven (the momentum, the step's key split, the directions'
split and draw, and a ``fold_in`` + ``uniform`` at every leapfrog step).  Here a step's key is
hashed on explicit counters instead, each counter used once:

- block 0 (:func:`step_words`): the momentum's normals and one word of doubling directions;
- block ``1 + s`` (:func:`loop_uniforms`): the two uniforms of leapfrog step ``s``.

So a step costs one hash before its tree and one per leapfrog step.  The values are turned
into floats exactly as ``jax.random.uniform`` / ``normal`` turn ``jax.random.bits`` into them
(:func:`uniform_from_words`, :func:`normal_from_words`; ``tests/test_mcmc_bits.py`` checks the
equality bit for bit).  Keys of another implementation (``jax.random.key(0, impl="rbg")``) take
the public route, one ``fold_in`` per block then ``jax.random.bits``: same key, same numbers,
the same independence, two calls per use.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["step_words", "loop_uniforms", "words_per_value", "uniform_from_words", "normal_from_words"]


def _typed(key: Any) -> jax.Array:
    """A typed key (a raw ``uint32[2]`` key is read with the default implementation)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def _threefry_block(key: jax.Array, block: Any, n: int) -> jax.Array:
    """``n`` uint32 words of ``H(key, (block, j))``, j = 0 .. ⌈n/2⌉ − 1 (each counter pair
    gives two words), by one call of ``jax.extend.random.threefry_2x32``."""
    from jax.extend.random import threefry_2x32

    kd = jax.random.key_data(key)
    m = (n + 1) // 2
    hi = jnp.broadcast_to(jnp.asarray(block, jnp.uint32), (m,))
    counts = jnp.concatenate([hi, jnp.arange(m, dtype=jnp.uint32)])  # x0 = hi words, x1 = lo words
    return threefry_2x32((kd[0], kd[1]), counts)[:n]


def _words(key: Any, block: Any, n: int) -> jax.Array:
    """``n`` uint32 words that depend on (key, block) only; distinct blocks are independent."""
    key = _typed(key)
    if str(jax.random.key_impl(key)) == "threefry2x32":
        return _threefry_block(key, block, n)
    # any other implementation: its own fold_in and bits (public API; two calls)
    return jax.random.bits(jax.random.fold_in(key, block), (n,), jnp.uint32)


def words_per_value(dtype: Any) -> int:
    """uint32 words per float of ``dtype`` (as ``jax.random.uniform`` draws it: 64 bits for
    float64, 32 bits otherwise)."""
    return 2 if np.dtype(dtype).itemsize == 8 else 1


def _bits_of(words: jax.Array, dtype: Any) -> jax.Array:
    """The unsigned integers of ``dtype``'s width from ``words`` (1-d: :func:`words_per_value`
    consecutive words per value, high word first)."""
    nbits = np.dtype(dtype).itemsize * 8
    if nbits == 64:
        w = words.reshape((-1, 2)).astype(jnp.uint64)
        return (w[..., 0] << jnp.uint64(32)) | w[..., 1]
    if nbits == 32:
        return words
    # 16-bit floats: jax.random.uniform draws 16 bits; take a word's low 16 bits
    return words.astype(jnp.uint16)


def uniform_from_words(words: jax.Array, dtype: Any, minval: Any = 0.0, maxval: Any = 1.0) -> jax.Array:
    """Uniforms in [minval, maxval) from random words, the arithmetic of ``jax.random.uniform``
    (the top mantissa bits under exponent 0, minus 1, scaled)."""
    dtype = np.dtype(dtype)
    finfo = jnp.finfo(dtype)
    nbits, nmant = finfo.bits, finfo.nmant
    bits = _bits_of(words, dtype)
    uint = bits.dtype
    float_bits = jax.lax.shift_right_logical(bits, jnp.array(nbits - nmant, uint))
    float_bits = float_bits | jnp.asarray(np.array(1.0, dtype).view(uint), uint)
    floats = jax.lax.bitcast_convert_type(float_bits, dtype) - jnp.array(1.0, dtype)
    minval, maxval = jnp.asarray(minval, dtype), jnp.asarray(maxval, dtype)
    return jnp.maximum(minval, floats * (maxval - minval) + minval)


def normal_from_words(words: jax.Array, dtype: Any) -> jax.Array:
    """Standard normals from random words, the arithmetic of ``jax.random.normal``
    (√2 erf⁻¹ of a uniform on (−1, 1))."""
    dtype = np.dtype(dtype)
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    u = uniform_from_words(words, dtype, lo, np.array(1.0, dtype))
    return jnp.asarray(np.sqrt(2), dtype) * jax.lax.erf_inv(u)


def step_words(key: Any, n: int) -> jax.Array:
    """Block 0 of the step's key: ``n`` uint32 words (one hash)."""
    return _words(key, 0, n)


def loop_uniforms(key: Any, step: Any, num: int, dtype: Any) -> jax.Array:
    """``num`` uniforms on [0, 1) of leapfrog step ``step`` (block ``1 + step``; one hash)."""
    wpv = words_per_value(dtype)
    return uniform_from_words(_words(key, jnp.asarray(step, jnp.uint32) + jnp.uint32(1), num * wpv), dtype)
