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

:func:`calls_lapack` says whether a function's (unbatched) jaxpr holds a LAPACK-backed primitive
outside such a loop: the MCMC programs run a device's chains one at a time when a *model's* own
LAPACK calls would otherwise be batched over them on several CPU devices
(``inference/mcmc/_program.py``).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from inference._lapack import one_at_a_time
    >>> eigvals = one_at_a_time(lambda m: jnp.linalg.eigh(m)[0])
    >>> jax.vmap(eigvals)(jnp.stack([jnp.eye(2), 2.0 * jnp.eye(2)])).tolist()
    [[1.0, 1.0], [2.0, 2.0]]
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.extend

__all__ = ["one_at_a_time", "calls_lapack", "LAPACK_PRIMITIVES"]

#: the primitives jaxlib 0.10 lowers to a ``lapack_*`` custom call on CPU (checked against the
#: lowered HLO of each: potrf, syevd/sytrd, getrf, geqrf/orgqr, gesdd, gees, geev, gehrd, trsm,
#: gtsv); ``lu`` inside ``jnp.linalg.solve`` / ``inv`` / ``det`` and ``qr`` inside ``lstsq`` included
LAPACK_PRIMITIVES = frozenset({
    "cholesky", "cholesky_update", "eigh", "eig", "lu", "qr", "geqrf", "geqp3", "householder_product",
    "svd", "schur", "hessenberg", "triangular_solve", "tridiagonal", "tridiagonal_solve",
})


def one_at_a_time(f: Callable) -> Callable:
    """``f`` (positional array arguments and results, pytrees allowed) such that ``jax.vmap`` of
    it runs ``f`` on one element of the batch at a time (``jax.custom_batching.sequential_vmap``),
    so the LAPACK calls inside it are never batched (module docstring: the jaxlib 0.10 deadlock).
    Unbatched, it is ``f``.  Not differentiable in reverse mode: use it for estimates (adaptation),
    not inside a log density."""
    return jax.custom_batching.sequential_vmap(f)


def _sub_jaxprs(value):
    """The jaxprs inside one equation parameter (a jaxpr, a closed jaxpr, or tuples of them)."""
    core = jax.extend.core
    if isinstance(value, core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def _is_lapack(eqn) -> bool:
    name = eqn.primitive.name
    if name in LAPACK_PRIMITIVES or "lapack" in name:
        return True
    return "lapack" in str(eqn.params.get("target_name", "")).lower()  # a hand-written ffi_call


def calls_lapack(fun: Callable, *args, **kwargs) -> bool:
    """Whether ``fun(*args, **kwargs)`` (arrays or ``jax.ShapeDtypeStruct``; traced, not run) calls
    a LAPACK-backed primitive (:data:`LAPACK_PRIMITIVES`, or a custom call naming ``lapack``),
    looking inside every sub-jaxpr (``jit``, ``cond``, ``while``, ``scan``, ``custom_jvp``,
    ``custom_linear_solve``, ...) except those under :func:`one_at_a_time`, whose LAPACK calls
    are never batched.  Trace ``fun`` unbatched (one chain): what ``vmap`` would batch.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from inference._lapack import calls_lapack
        >>> m = jax.ShapeDtypeStruct((3, 3), jnp.float32)
        >>> calls_lapack(lambda a: jnp.linalg.cholesky(a).sum(), m), calls_lapack(lambda a: (a @ a).sum(), m)
        (True, False)
    """
    jaxpr = jax.make_jaxpr(functools.partial(fun, **kwargs))(*args).jaxpr
    seen: set[int] = set()
    todo = [jaxpr]
    while todo:
        j = todo.pop()
        if id(j) in seen:
            continue
        seen.add(id(j))
        for eqn in j.eqns:
            if eqn.primitive.name == "custom_vmap_call":  # one_at_a_time: one matrix per call
                continue
            if _is_lapack(eqn):
                return True
            for v in eqn.params.values():
                todo.extend(_sub_jaxprs(v))
    return False
