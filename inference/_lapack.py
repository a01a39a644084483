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

__all__ = ["one_at_a_time", "calls_lapack", "batches_lapack", "lowers_to_lapack", "map_batch", "LAPACK_PRIMITIVES"]

#: the primitives jaxlib 0.10.2 lowers to a ``lapack_*`` custom call on CPU (checked against the
#: lowered HLO of each: potrf, syevd/sytrd, getrf, geqrf/orgqr, gesdd, gees, geev, gehrd, trsm,
#: gtsv; tests/test_lapack_devices.py lists them); ``lu`` inside ``jnp.linalg.solve`` / ``inv`` /
#: ``det`` and ``qr`` inside ``lstsq`` included.  Only a fast path: :func:`calls_lapack` decides
#: every other primitive by what its CPU lowering emits (:func:`lowers_to_lapack`).
LAPACK_PRIMITIVES = frozenset({
    "cholesky", "eigh", "eig", "lu", "qr", "geqrf", "geqp3", "householder_product",
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


_LOWERED: dict = {}  # (primitive name, input dtypes) -> whether its CPU lowering calls LAPACK


def _has_sub_jaxprs(eqn) -> bool:
    return any(True for v in eqn.params.values() for _ in _sub_jaxprs(v))


def lowers_to_lapack(eqn) -> bool:
    """Whether one jaxpr equation's primitive, lowered for CPU on its own, emits a custom call
    to a ``lapack_*`` kernel (:data:`LAPACK_PRIMITIVES` at once; any other decided once per
    primitive name and input dtypes, then cached; one that cannot be lowered alone: no).
    Equations holding sub-jaxprs (``jit``, ``cond``, ``scan``, ...) are not lowered here: their
    bodies are searched instead."""
    name = eqn.primitive.name
    if "lapack" in name or "lapack" in str(eqn.params.get("target_name", "")).lower():  # a hand-written ffi_call
        return True
    if name in LAPACK_PRIMITIVES:
        return True
    key = (name, tuple(str(getattr(v.aval, "dtype", "")) for v in eqn.invars))
    hit = _LOWERED.get(key)
    if hit is None:
        try:
            avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars]
            prim, params = eqn.primitive, dict(eqn.params)
            traced = jax.jit(lambda *a: prim.bind(*a, **params)).trace(*avals)
            text = traced.lower(lowering_platforms=("cpu",)).as_text()
            hit = "lapack_" in text
        except Exception:  # noqa: BLE001 - not lowerable alone (none of jax's linalg primitives)
            hit = False
        _LOWERED[key] = hit
    return hit


def calls_lapack(fun: Callable, *args, **kwargs) -> bool:
    """Whether ``fun(*args, **kwargs)`` (arrays or ``jax.ShapeDtypeStruct``; traced, not run) calls
    a LAPACK-backed primitive (one whose CPU lowering emits a ``lapack_*`` custom call:
    :func:`lowers_to_lapack`, a few milliseconds per new primitive, then cached),
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
    leaves = []  # the equations without sub-jaxprs, to be decided by their lowering
    for eqn in _leaf_eqns(jax.make_jaxpr(functools.partial(fun, **kwargs))(*args).jaxpr):
        if eqn.primitive.name in LAPACK_PRIMITIVES:  # the known ones first: no lowering
            return True
        leaves.append(eqn)
    return any(lowers_to_lapack(eqn) for eqn in leaves)


def runs_loop(fun: Callable, *args) -> bool:
    """Whether ``fun(*args)`` (arrays or ``jax.ShapeDtypeStruct``; traced, not run) runs a
    sequential loop: a ``scan`` or ``while`` primitive anywhere in its jaxpr or sub-jaxprs.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from inference._lapack import runs_loop
        >>> x = jax.ShapeDtypeStruct((5,), jnp.float32)
        >>> runs_loop(lambda x: jax.lax.scan(lambda c, v: (c + v, None), 0.0, x)[0], x), runs_loop(jnp.sum, x)
        (True, False)
    """
    return any(eqn.primitive.name in ("scan", "while") for eqn in _eqns(jax.make_jaxpr(fun)(*args).jaxpr))


def _eqns(jaxpr, skip: tuple = ()):
    """Every equation of ``jaxpr`` and of its sub-jaxprs (each visited once), not looking inside
    the equations whose primitive is named in ``skip``."""
    seen: set[int] = set()
    todo = [jaxpr]
    while todo:
        j = todo.pop()
        if id(j) in seen:
            continue
        seen.add(id(j))
        for eqn in j.eqns:
            yield eqn
            if eqn.primitive.name not in skip:
                for v in eqn.params.values():
                    todo.extend(_sub_jaxprs(v))


def _leaf_eqns(jaxpr):
    """Every equation without sub-jaxprs in ``jaxpr`` and its sub-jaxprs, except under
    :func:`one_at_a_time` (``custom_vmap_call``: one matrix per call)."""
    for eqn in _eqns(jaxpr, skip=("custom_vmap_call",)):
        if eqn.primitive.name != "custom_vmap_call" and not _has_sub_jaxprs(eqn):
            yield eqn


_PROBE = 7919  # a batch length no model's own dimension is likely to equal (traced, never run)


def batches_lapack(fun, *args) -> bool:
    """Whether ``jax.vmap(fun)`` over ``args`` (arrays or ``jax.ShapeDtypeStruct`` with a leading
    batch axis; traced, not run) makes a LAPACK call whose operands carry that batch axis: a
    call on per-element matrices (a covariance depending on each particle's parameters), not
    one on a matrix shared by the whole batch (a fixed covariance: unbatched under ``vmap``,
    it runs inline and cannot deadlock).  Found by tracing the ``vmap`` at a batch length of
    7919 and looking for that length in the batch dims of the LAPACK equations' matrices.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from inference._lapack import batches_lapack
        >>> xs, k = jax.ShapeDtypeStruct((4, 3), jnp.float32), jnp.eye(3)
        >>> batches_lapack(lambda x: jnp.linalg.cholesky(k + jnp.diag(x ** 2)).sum(), xs)
        True
        >>> batches_lapack(lambda x: jnp.linalg.solve(k, x).sum(), xs)
        False
    """
    probe = jax.tree.map(lambda v: jax.ShapeDtypeStruct((_PROBE,) + tuple(v.shape[1:]), v.dtype), args)
    for eqn in _leaf_eqns(jax.make_jaxpr(jax.vmap(fun))(*probe).jaxpr):
        if eqn.invars and _PROBE in _batch_dims(eqn) and lowers_to_lapack(eqn):
            return True
    return False


def _batch_dims(eqn) -> tuple:
    """The dims of a LAPACK equation's first operand that jaxlib treats as a batch (all but the
    matrix's two; all but the vector's one for ``tridiagonal_solve``'s diagonals).  A right-hand
    side batched against one matrix (``solve(k, x)`` under ``vmap``) is folded into its columns:
    one call, not a batch."""
    shape = tuple(getattr(eqn.invars[0].aval, "shape", ()))
    return shape[:-1] if eqn.primitive.name == "tridiagonal_solve" else shape[:-2]


def _inside_per_device() -> bool:
    """Whether this trace is inside :func:`inference.sharding.per_device` (its axis is bound)."""
    from inference import sharding

    try:
        jax.lax.axis_size(sharding.AXIS)
    except NameError:
        return False
    return True


def map_batch(fun: Callable, *args):
    """``jax.vmap(fun)(*args)`` (every argument with a leading batch axis), except where batching
    ``fun``'s LAPACK calls could deadlock (module docstring): in a program on several CPU devices
    (:func:`inference.sharding.num_devices` > 1: traced, or run now on a batch spread over
    devices), for a batch of two or more in which ``vmap`` would batch a LAPACK call
    (:func:`batches_lapack`).  There each device loops over its own share of
    the batch (``lax.map`` inside :func:`inference.sharding.per_device`; over the whole batch,
    which the devices then hold whole, when it does not split evenly).  The values are the
    vmapped ones up to rounding; the loop costs the vectorisation, on those runs only.  For the
    batch axes of SMC particles and VI particles (MCMC chains: ``_Program._one_at_a_time``).

    Example:
        >>> import jax.numpy as jnp
        >>> from inference._lapack import map_batch
        >>> map_batch(lambda m: jnp.linalg.cholesky(m)[1, 1], jnp.stack([jnp.eye(2), 4.0 * jnp.eye(2)])).tolist()
        [1.0, 2.0]
    """
    from inference import sharding

    n = sharding.num_devices()
    leaves = jax.tree.leaves(args)
    size = leaves[0].shape[0] if leaves else 0
    if n == 1 or size < 2 or sharding.mesh().devices.flat[0].platform != "cpu":
        return jax.vmap(fun)(*args)
    if not any(isinstance(v, jax.core.Tracer) for v in leaves) and all(
            len(getattr(v, "sharding", None).device_set) == 1 for v in leaves if hasattr(v, "sharding")):
        return jax.vmap(fun)(*args)  # run now on one device: one program, nothing to deadlock
    if not batches_lapack(fun, *args):
        return jax.vmap(fun)(*args)

    def loop(*a):
        return jax.lax.map(lambda t: fun(*t), a)

    if size % n or _inside_per_device():
        return loop(*args)
    return sharding.per_device(loop, in_axes=tuple(0 for _ in args), out_axes=0)(*args)
