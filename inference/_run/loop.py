"""The chunked loop: a compiled ``lax.scan`` of a fixed number of steps, called from a host loop.

Step ``t`` of a run gets the key ``fold_in(key, t)``, so what a run computes depends on its key
only, not on the chunk size or on interruptions of the host loop.  Every chunk has the same
length (one compiled program); the steps of the last chunk that fall past the end of the run
(``t >= n_end``) leave the carry unchanged and output zeros, which the host drops.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["scan_chunk", "host_loop"]


def scan_chunk(step: Callable, key: Any, carry: Any, t0: Any, n_end: Any, length: int, record: Callable | None = None,
               full: bool = False):
    """``lax.scan`` over steps ``t = t0 .. t0 + length - 1`` of ``step(fold_in(key, t), carry, t)
    -> (carry, out)``; returns ``(carry, outs)`` with outs stacked along a leading step axis.

    Steps with ``t >= n_end`` (a traced bound: the same program serves every run length) keep
    the carry and output zeros of ``out``'s shapes: a ``lax.cond`` on a scalar, so the step is
    not computed for them.  ``record(carry, out) -> (carry, out)``, when given, is applied after
    every step (also past the end), e.g. to read the draws off the new state.

    ``full=True`` (static) promises that every step of the chunk is live (``t0 + length <=
    n_end``, checked by the caller on the host): the steps then run with no branch around them,
    which XLA can fuse across (issue 19: on CPU the per-step ``lax.cond`` cost 1–3 µs of a
    7–25 µs VI step).  A driver calls the full program for every chunk but a partial last one, so
    at most two programs per chunk length; the results are the same (the live steps are).

    Example:
        >>> from inference._run.loop import scan_chunk
        >>> step = lambda k, c, t: (c + 1, t)
        >>> c, ts = scan_chunk(step, jax.random.key(0), 0, jnp.int32(3), jnp.int32(5), 4)
        >>> int(c), ts.tolist()
        (2, [3, 4, 0, 0])
        >>> c, ts = scan_chunk(step, jax.random.key(0), 0, jnp.int32(3), jnp.int32(7), 4, full=True)
        >>> int(c), ts.tolist()
        (4, [3, 4, 5, 6])
    """

    def body(carry, i):
        t = t0 + i
        if full:  # every step live (the caller's promise): no branch
            new, out = step(jax.random.fold_in(key, t), carry, t)
            return record(new, out) if record is not None else (new, out)

        def live(c):
            return step(jax.random.fold_in(key, t), c, t)

        def past_the_end(c):  # the carry unchanged, placeholder outputs (dropped on the host)
            out = jax.eval_shape(live, c)[1]
            return c, jax.tree.map(lambda v: jnp.zeros(v.shape, v.dtype), out)

        # ``t < n_end`` is one scalar for the whole carry: a branch, not a select over it
        new, out = jax.lax.cond(t < n_end, live, past_the_end, carry)
        if record is not None:
            new, out = record(new, out)
        return new, out

    return jax.lax.scan(body, carry, jnp.arange(length))


def host_loop(run_chunk: Callable, state: Any, t_start: int, n: int, chunk_size: int, collect: Callable,
              after: Callable | None = None) -> tuple[Any, int, bool]:
    """Run steps ``t_start .. n - 1`` chunk by chunk from the host.

    ``run_chunk(state, t0) -> (state, out)`` dispatches one chunk (asynchronously); the next
    chunk is dispatched before the previous one's outputs are handed to ``collect(out, t0, m)``
    (``m``: its steps before ``n``), so copying to the host overlaps the device's work.  After
    each collected chunk, ``after(state, done, last)`` is called (progress, checkpoints); when
    it returns True the loop stops (e.g. early stopping; a chunk already dispatched is dropped).

    Returns ``(state, done, interrupted)``: the state after the last collected chunk, the steps
    done, and whether Ctrl-C (``KeyboardInterrupt``) stopped the loop; the state then matches
    the outputs collected, so the run can be resumed from it.

    Example:
        >>> from inference._run.loop import host_loop
        >>> seen = []
        >>> host_loop(lambda s, t0: (s + 3, t0), 0, 0, 8, 3, lambda out, t0, m: seen.append((t0, m)))
        (9, 8, False)
        >>> seen
        [(0, 3), (3, 3), (6, 2)]
    """
    k = int(chunk_size)
    done_state, done = state, t_start
    pending = None  # (t0, state after that chunk, its outputs): dispatched, not yet collected
    t0 = t_start
    try:
        while True:
            nxt = None
            if t0 < n:  # dispatch the next chunk before collecting the previous one
                state, out = run_chunk(state, t0)
                nxt = (t0, state, out)
                t0 += k
            if pending is not None:
                p0, p_state, p_out = pending
                m = min(k, n - p0)
                collect(p_out, p0, m)
                done_state, done = p_state, p0 + m
                del p_out, pending
                if after is not None and after(done_state, done, nxt is None):
                    break
            if nxt is None:
                break
            pending = nxt
    except KeyboardInterrupt:
        return done_state, done, True
    return done_state, done, False
