"""The NUTS trajectory as one flat loop over leapfrog steps.

:func:`nuts_trajectory` computes the same transition as NumPyro's ``hmc_util.build_tree``
(multinomial NUTS with biased progressive sampling between doublings, uniform progressive
sampling inside a doubling, and the iterative U-turn checks on every sub-tree of a doubling;
Betancourt 2017, Phan et al. 2019), so it leaves π ∝ exp(−U) invariant for the same reasons.
It is organised for the compiler rather than for the reader of the recursion:

- one ``lax.while_loop`` whose body is *one leapfrog step* plus the bookkeeping of the step's
  place in the tree (which doubling, which leaf of it).  The end of a doubling (merging the new
  sub-tree into the trajectory, the U-turn check of the whole trajectory) is computed in the
  same body and applied with ``where``; there is no nested loop and no ``cond``;
- the U-turn checks of the sub-trees ending at a leaf are a small inner loop over the
  checkpoints that apply (their range is index arithmetic on the leaf's number);
- the carry is three arrays per chain (vectors, scalars, integers): under ``vmap`` a loop
  selects every carry array between the new and the old value at every step.

Under ``vmap`` (chains) a loop with one body is cheaper to trace and compile, and each
iteration runs fewer, larger fused operations than the nested loops of the recursive
formulation.  ``tests/test_mcmc_nuts.py`` checks that the two give the same transition law.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import _bits
from .metric import velocity as metric_velocity

__all__ = ["Trajectory", "nuts_trajectory"]


class Trajectory(NamedTuple):
    """The chosen point of the trajectory and what the driver reports about it."""

    x: jax.Array  #: the draw (flat, unconstrained)
    potential_energy: jax.Array  #: U at the draw
    grad: jax.Array  #: ∇U at the draw
    energy: jax.Array  #: H = U + K at the draw
    depth: jax.Array  #: number of doublings
    num_steps: jax.Array  #: leapfrog steps taken
    accept_prob: jax.Array  #: mean of min(1, exp(H0 − H)) over the new points (what dual averaging targets)
    diverging: jax.Array  #: an energy error above ``max_delta_energy`` (or a NaN) ended the trajectory


# Rows of the loop's vector carry: the two ends of the trajectory (index 0 = left, 1 = right:
# position, momentum, gradient), the trajectory's draw (position, gradient), the current
# doubling's draw, the momentum sums of the trajectory and of the doubling, the velocities M⁻¹r
# of the two ends (kept, not recomputed: with a dense or low-rank metric each is a d×d product),
# then K checkpoint momenta and K checkpoint momentum sums.
_X_END, _R_END, _G_END, _X, _G, _SUB_X, _SUB_G, _R_SUM, _SUB_R_SUM, _V_END, _R_CK = 0, 2, 4, 6, 7, 8, 9, 10, 11, 12, 14
# the scalar carry: the draw's U and H, the trajectory's log weight, the doubling draw's U and H,
# the doubling's log weight, the sum of acceptance probabilities
_PE, _E, _W, _SUB_PE, _SUB_E, _SUB_W, _SUM_ACCEPT = range(7)
# the integer carry
_DEPTH, _LEAF, _STEPS, _DIVERGING, _DONE = range(5)


def _velocity(inverse_mass_matrix: Any, r: jax.Array) -> jax.Array:
    """M⁻¹ r for a diagonal (1-d), dense (2-d) or low-rank (:class:`~inference.mcmc.metric.LowRankMetric`)
    inverse mass matrix; r may have leading axes."""
    return metric_velocity(inverse_mass_matrix, r)


def _turning(v_left, v_right, r_left, r_right, r_sum):
    """The generalised no-U-turn criterion (Betancourt 2017, A.4.2) of a (sub-)trajectory with
    end momenta r_left, r_right (velocities v = M⁻¹ r) and momentum sum r_sum."""
    rho = r_sum - (r_left + r_right) / 2
    return (jnp.sum(v_left * rho, -1) <= 0) | (jnp.sum(v_right * rho, -1) <= 0)


def _checkpoint_range(n: jax.Array) -> tuple[jax.Array, jax.Array]:
    """For leaf ``n`` of a doubling (0-based), the checkpoints [lo, hi] of the sub-trees that end
    at it: hi = popcount(n >> 1), and as many as n has trailing one bits."""
    hi = jax.lax.population_count(n >> 1)
    trailing_ones = jax.lax.population_count((~n & (n + 1)) - 1)
    return hi - trailing_ones + 1, hi


def _merge_probability(w_new: jax.Array, w_old: jax.Array) -> jax.Array:
    """Biased progressive sampling (Betancourt 2017, A.3.2): the probability that the draw moves
    to the new doubling, min(1, W_new / W_old), from the log weights of the new doubling and of
    the trajectory before it."""
    return jnp.minimum(1.0, jnp.exp(w_new - w_old))


def nuts_trajectory(
    value_and_grad: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    x: jax.Array,
    potential_energy: jax.Array,
    grad: jax.Array,
    r: jax.Array,
    inverse_mass_matrix: Any,
    step_size: jax.Array,
    key: Any,
    max_tree_depth: int = 10,
    max_delta_energy: float = 1000.0,
    depth_limit: Any = None,
    directions: Any = None,
) -> Trajectory:
    """One NUTS transition from ``x`` with momentum ``r`` (a draw from N(0, M)).

    ``value_and_grad(x) -> (U(x), ∇U(x))``.  The trajectory doubles in the direction of a fair
    coin until its ends make a U-turn, a sub-tree of the last doubling makes one, a leapfrog
    step's energy error exceeds ``max_delta_energy`` (a divergence), or ``max_tree_depth``
    doublings (or ``depth_limit``, traced, if smaller: an adaptation's cap in early warmup); the returned point is a multinomial draw from the trajectory (biased towards the
    last doubling), which leaves π ∝ exp(−U) invariant.

    Randomness (:mod:`inference.mcmc._bits`): bit i of ``directions`` (a uint32 word; default:
    word 0 of ``key``'s block 0) is the direction of doubling i (1 = right); leapfrog step s
    draws its two uniforms from block 1 + s of ``key``, one hash per step.  A caller that
    draws the momentum from ``key``'s block 0 passes the block's next word as ``directions``.

    Example:
        >>> from inference.mcmc.nuts import nuts_trajectory
        >>> vg = jax.value_and_grad(lambda x: 0.5 * jnp.sum(x**2))
        >>> x, r = jnp.ones(2), jnp.array([0.5, -0.5])
        >>> out = nuts_trajectory(vg, x, *vg(x), r, jnp.ones_like(x), 0.1, jax.random.key(0))
        >>> out.x.shape, bool(out.num_steps >= 1)
        ((2,), True)
    """
    K = int(max_tree_depth)
    dtype = x.dtype
    step_size = jnp.asarray(step_size, dtype)
    if directions is None:
        directions = _bits.step_words(key, 1)[0]
    directions = jnp.asarray(directions, jnp.uint32)  # bit i: doubling i goes right
    v0 = _velocity(inverse_mass_matrix, r)
    energy0 = potential_energy + 0.5 * jnp.dot(v0, r)
    # The carry is three arrays (under vmap each carry array costs a select per step).
    # V: vectors (rows), S: scalars, I: integers.
    V0 = jnp.concatenate([jnp.stack([x, x, r, r, grad, grad, x, grad, x, grad, r, r, v0, v0]),
                          jnp.zeros((2 * K,) + x.shape, dtype)])
    S0 = jnp.stack([potential_energy, energy0, 0.0, potential_energy, energy0, 0.0, 0.0]).astype(dtype)
    I0 = jnp.zeros((5,), jnp.int32)
    ck = jnp.arange(K)  # checkpoint slots
    K_stop = K if depth_limit is None else jnp.minimum(K, jnp.asarray(depth_limit, jnp.int32))

    def body(c):
        V, S, I = c
        depth, n, steps = I[_DEPTH], I[_LEAF], I[_STEPS]
        # (a shift, not indexing: under vmap a per-chain index is a gather, slow on CPU)
        right = (jax.lax.shift_right_logical(directions, depth.astype(jnp.uint32)) & 1) == 1
        # one leapfrog step from the end of the trajectory in this doubling's direction
        x0 = jnp.where(right, V[_X_END + 1], V[_X_END])
        r0 = jnp.where(right, V[_R_END + 1], V[_R_END])
        g0 = jnp.where(right, V[_G_END + 1], V[_G_END])
        eps = jnp.where(right, step_size, -step_size)
        r_half = r0 - 0.5 * eps * g0
        x1 = x0 + eps * _velocity(inverse_mass_matrix, r_half)
        pe1, g1 = value_and_grad(x1)
        r1 = r_half - 0.5 * eps * g1
        v1 = _velocity(inverse_mass_matrix, r1)
        e1 = pe1 + 0.5 * jnp.dot(v1, r1)
        delta = e1 - energy0
        delta = jnp.where(jnp.isnan(delta), jnp.inf, delta)
        w1 = -delta
        diverging = delta > max_delta_energy
        accept = jnp.minimum(1.0, jnp.exp(-delta))
        u_leaf, u_merge = _bits.loop_uniforms(key, steps, 2, dtype)  # one hash of (key, steps)

        # the sub-tree of this doubling: uniform progressive sampling of its draw
        first = n == 0
        sw = jnp.where(first, w1, jnp.logaddexp(S[_SUB_W], w1))
        take = first | (u_leaf < jnp.exp(w1 - sw))
        sx, sg = jnp.where(take, x1, V[_SUB_X]), jnp.where(take, g1, V[_SUB_G])
        spe, se = jnp.where(take, pe1, S[_SUB_PE]), jnp.where(take, e1, S[_SUB_E])
        s_r_sum = jnp.where(first, r1, V[_SUB_R_SUM] + r1)

        # U-turns of the sub-trees of this doubling that end at this leaf (checkpoints: the
        # momentum and momentum sum at the first leaf of each pending sub-tree)
        lo, hi = _checkpoint_range(n)
        store = ((n % 2) == 0) & (ck == hi)
        r_ck = jnp.where(store[:, None], r1, V[_R_CK:_R_CK + K])
        r_sum_ck = jnp.where(store[:, None], s_r_sum, V[_R_CK + K:])

        def check(c):  # the sub-tree from checkpoint i to this leaf
            i, _ = c
            r_i = r_ck[i]
            sub_sum = s_r_sum - r_sum_ck[i] + r_i
            return i - 1, _turning(_velocity(inverse_mass_matrix, r_i), v1, r_i, r1, sub_sum)

        # a small loop over the (usually 0-2) checkpoints that apply, not a vectorised check of
        # all K (benchmarks/RESULTS.md has the measurement)
        _, turning = jax.lax.while_loop(lambda c: (c[0] >= lo) & ~c[1], check, (hi, jnp.zeros((), bool)))

        # end of the doubling: merge the sub-tree into the trajectory (biased progressive
        # sampling) and check the whole trajectory for a U-turn
        end = (n + 1 == (1 << depth)) | turning | diverging
        move = end & ~turning & ~diverging & (u_merge < _merge_probability(sw, S[_W]))
        r_left, r_right = jnp.where(right, V[_R_END], r1), jnp.where(right, r1, V[_R_END + 1])
        r_sum = V[_R_SUM] + s_r_sum
        v_left, v_right = jnp.where(right, V[_V_END], v1), jnp.where(right, v1, V[_V_END + 1])
        stop = end & (turning | diverging | _turning(v_left, v_right, r_left, r_right, r_sum) | (depth + 1 >= K_stop))

        V = jnp.concatenate([
            jnp.stack([
                jnp.where(right, V[_X_END], x1), jnp.where(right, x1, V[_X_END + 1]), r_left, r_right,
                jnp.where(right, V[_G_END], g1), jnp.where(right, g1, V[_G_END + 1]),
                jnp.where(move, sx, V[_X]), jnp.where(move, sg, V[_G]), sx, sg,
                jnp.where(end, r_sum, V[_R_SUM]), s_r_sum, v_left, v_right,
            ]),
            r_ck, r_sum_ck,
        ])
        S = jnp.stack([
            jnp.where(move, spe, S[_PE]), jnp.where(move, se, S[_E]), jnp.where(end, jnp.logaddexp(S[_W], sw), S[_W]),
            spe, se, sw, S[_SUM_ACCEPT] + accept,
        ])
        I = jnp.stack([
            jnp.where(end, depth + 1, depth), jnp.where(end, 0, n + 1), steps + 1,
            diverging.astype(jnp.int32), stop.astype(jnp.int32),
        ])
        return V, S, I

    V, S, I = jax.lax.while_loop(lambda c: c[2][_DONE] == 0, body, (V0, S0, I0))
    return Trajectory(
        V[_X], S[_PE], V[_G], S[_E], I[_DEPTH], I[_STEPS],
        S[_SUM_ACCEPT] / jnp.maximum(I[_STEPS], 1).astype(dtype), I[_DIVERGING] == 1,
    )
