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
- the U-turn checks of the sub-trees ending at a leaf are one vectorised expression over the
  ``max_tree_depth`` checkpoints (masked to the ones that apply), not an inner loop;
- the carry is a few flat vectors per chain.

Under ``vmap`` (chains) a loop with one body is cheaper to trace and compile, and each
iteration runs fewer, larger fused operations than the nested loops of the recursive
formulation.  ``tests/test_mcmc_nuts.py`` checks that the two give the same transition law.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

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


def _velocity(inverse_mass_matrix: jax.Array, r: jax.Array) -> jax.Array:
    """M⁻¹ r for a diagonal (1-d) or dense (2-d) inverse mass matrix; r may have leading axes."""
    if inverse_mass_matrix.ndim == 1:
        return inverse_mass_matrix * r
    return r @ inverse_mass_matrix.T


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
    inverse_mass_matrix: jax.Array,
    step_size: jax.Array,
    key: Any,
    max_tree_depth: int = 10,
    max_delta_energy: float = 1000.0,
) -> Trajectory:
    """One NUTS transition from ``x`` with momentum ``r`` (a draw from N(0, M)).

    ``value_and_grad(x) -> (U(x), ∇U(x))``.  The trajectory doubles in the direction of a fair
    coin until its ends make a U-turn, a sub-tree of the last doubling makes one, a leapfrog
    step's energy error exceeds ``max_delta_energy`` (a divergence), or ``max_tree_depth``
    doublings; the returned point is a multinomial draw from the trajectory (biased towards the
    last doubling), which leaves π ∝ exp(−U) invariant.

    Example:
        >>> out = nuts_trajectory(jax.value_and_grad(U), x, *jax.value_and_grad(U)(x), r,
        ...                       jnp.ones_like(x), 0.1, key)
        >>> out.x, out.depth, out.accept_prob
    """
    K = int(max_tree_depth)
    dtype = x.dtype
    step_size = jnp.asarray(step_size, dtype)
    k_dir, k_step = jax.random.split(key)
    directions = jax.random.bernoulli(k_dir, 0.5, (K,))  # the direction of each doubling
    v0 = _velocity(inverse_mass_matrix, r)
    energy0 = potential_energy + 0.5 * jnp.dot(v0, r)
    zeros_ck = jnp.zeros((K,) + x.shape, dtype)
    ck_index = jnp.arange(K)
    itype = jnp.int32

    # (x, r, grad) of each end of the trajectory: index 0 = left, 1 = right
    init = dict(
        ends_x=jnp.stack([x, x]), ends_r=jnp.stack([r, r]), ends_g=jnp.stack([grad, grad]),
        # the trajectory's draw and log weight (log Σ exp(−ΔH)), momentum sum
        x=x, pe=potential_energy, g=grad, e=energy0, w=jnp.zeros((), dtype), r_sum=r,
        # the current doubling's (sub-tree's) draw, log weight, momentum sum
        sx=x, spe=potential_energy, sg=grad, se=energy0, sw=jnp.zeros((), dtype), s_r_sum=r,
        r_ck=zeros_ck, r_sum_ck=zeros_ck,
        depth=jnp.zeros((), itype), leaf=jnp.zeros((), itype), steps=jnp.zeros((), itype),
        sum_accept=jnp.zeros((), dtype), diverging=jnp.zeros((), bool), done=jnp.zeros((), bool),
    )

    def body(c):
        right = directions[c["depth"]]
        side = right.astype(itype)
        x0, r0, g0 = c["ends_x"][side], c["ends_r"][side], c["ends_g"][side]
        eps = jnp.where(right, step_size, -step_size)
        # one leapfrog step from the end of the trajectory in this doubling's direction
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
        u_leaf, u_merge = jax.random.uniform(jax.random.fold_in(k_step, c["steps"]), (2,), dtype)

        # the sub-tree of this doubling: uniform progressive sampling of its draw
        first = c["leaf"] == 0
        sw = jnp.where(first, w1, jnp.logaddexp(c["sw"], w1))
        take = first | (u_leaf < jnp.exp(w1 - sw))
        sx, spe, sg, se = (jnp.where(take, a, b) for a, b in ((x1, c["sx"]), (pe1, c["spe"]), (g1, c["sg"]), (e1, c["se"])))
        s_r_sum = jnp.where(first, r1, c["s_r_sum"] + r1)
        ends_x = c["ends_x"].at[side].set(x1)
        ends_r = c["ends_r"].at[side].set(r1)
        ends_g = c["ends_g"].at[side].set(g1)

        # U-turns of the sub-trees of this doubling that end at this leaf (checkpoints: the
        # momentum and momentum sum at the first leaf of each pending sub-tree)
        n = c["leaf"]
        lo, hi = _checkpoint_range(n)
        store = ((n % 2) == 0) & (ck_index == hi)
        r_ck = jnp.where(store[:, None], r1, c["r_ck"])
        r_sum_ck = jnp.where(store[:, None], s_r_sum, c["r_sum_ck"])
        sub_sum = s_r_sum - r_sum_ck + r_ck
        sub_turn = _turning(_velocity(inverse_mass_matrix, r_ck), v1, r_ck, r1, sub_sum)
        turning = jnp.any(sub_turn & (ck_index >= lo) & (ck_index <= hi))

        # end of the doubling: merge the sub-tree into the trajectory (biased progressive sampling)
        end = (n + 1 == (1 << c["depth"])) | turning | diverging
        valid = ~turning & ~diverging
        move = valid & (u_merge < _merge_probability(sw, c["w"]))
        r_sum = c["r_sum"] + s_r_sum
        v_ends = _velocity(inverse_mass_matrix, ends_r)
        whole_turn = _turning(v_ends[0], v_ends[1], ends_r[0], ends_r[1], r_sum)
        depth = c["depth"] + 1
        stop = end & (turning | diverging | whole_turn | (depth >= K))

        new = dict(
            ends_x=ends_x, ends_r=ends_r, ends_g=ends_g,
            sx=sx, spe=spe, sg=sg, se=se, sw=sw, s_r_sum=s_r_sum, r_ck=r_ck, r_sum_ck=r_sum_ck,
            steps=c["steps"] + 1, sum_accept=c["sum_accept"] + accept, diverging=diverging, done=stop,
        )
        merged = dict(
            x=jnp.where(move, sx, c["x"]), pe=jnp.where(move, spe, c["pe"]),
            g=jnp.where(move, sg, c["g"]), e=jnp.where(move, se, c["e"]),
            w=jnp.logaddexp(c["w"], sw), r_sum=r_sum, depth=depth, leaf=jnp.zeros((), itype),
        )
        for k, v in merged.items():
            new[k] = jnp.where(end, v, c[k])
        new["leaf"] = jnp.where(end, 0, n + 1)
        return new

    c = jax.lax.while_loop(lambda c: ~c["done"], body, init)
    return Trajectory(
        c["x"], c["pe"], c["g"], c["e"], c["depth"], c["steps"],
        c["sum_accept"] / jnp.maximum(c["steps"], 1).astype(dtype), c["diverging"],
    )
