"""LAPACK calls made one matrix at a time under ``vmap`` (a workaround for a jaxlib 0.10 deadlock).

jaxlib 0.10's CPU LAPACK kernels (``jaxlib/cpu/lapack_kernels.cc``: ``syevd``, ``potrf``,
``getrf``, ``geqrf``, ``trsm``, ...) split a *batch* of matrices into chunks, schedule the chunks on
XLA's intra-op thread pool and block the calling thread until they are done
(``ParallelBatchMap``: ``thread_pool.Schedule`` then ``BlockingCounter::Wait``), when the batch's
cost is above 2·10⁵ flops (e.g. ``eigh`` of two 100×100 matrices; not of two 26×26).  The calling
thread is often itself a worker of that pool (XLA's thunk executor runs independent thunks there).
When every worker of the pool is such a caller at once, nobody is left to run the chunks and the
program never finishes: no error, no CPU use.  On CPU with several devices
(``--xla_force_host_platform_device_count``) every device's program shares the one pool, whose
size is the machine's cores, so devices ≥ cores and a batched LAPACK call in each device's
program (the MCMC chains of a device are a ``vmap`` batch) is enough; issue 15's
``NUTS(adapt_mass_matrix="low_rank")`` on a 100-d Gaussian, 2 devices, 2 cores hung in its
first chunk (``gdb``: both ``tf_XLAEigen`` workers in ``lapack_ssyevd_ffi`` → ``ParallelBatchMap``
→ ``BlockingCounter::Wait``).  jax's commit 859992407d (2026-07-21, after 0.10.2) turns the
parallel path off in open-source builds.

:func:`one_at_a_time` makes ``vmap`` of a function a loop (``lax.map``) over the batch, so each
LAPACK call inside it has a batch of one, which jaxlib runs inline on the calling thread: nothing
is scheduled, nothing waits.  The values are the same (LAPACK factorises the matrices of a
batch one after another anyway); only the threads differ.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from inference._lapack import one_at_a_time
    >>> eigvals = one_at_a_time(lambda m: jnp.linalg.eigh(m)[0])
    >>> jax.vmap(eigvals)(jnp.stack([jnp.eye(2), 2.0 * jnp.eye(2)])).tolist()
    [[1.0, 1.0], [2.0, 2.0]]
"""

from __future__ import annotations

from typing import Callable

import jax

__all__ = ["one_at_a_time"]


def one_at_a_time(f: Callable) -> Callable:
    """``f`` (positional array arguments and results, pytrees allowed) such that ``jax.vmap`` of
    it runs ``f`` on one element of the batch at a time (``jax.custom_batching.sequential_vmap``),
    so the LAPACK calls inside it are never batched (module docstring: the jaxlib 0.10 deadlock).
    Unbatched, it is ``f``.  Not differentiable in reverse mode: use it for estimates (adaptation),
    not inside a log density."""
    return jax.custom_batching.sequential_vmap(f)
