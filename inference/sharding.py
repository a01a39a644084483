"""Sharding a leading batch axis (chains, particles, Monte Carlo samples) across devices.

Every inference family keeps its many independent copies on a leading axis.  When JAX sees
several devices (several GPUs, several hosts after ``jax.distributed.initialize()``, or CPU
devices forced with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``), the functions here
lay that axis out across all of them; with one device they do nothing.  The computation itself
is unchanged: :func:`constrain_batch` only decides *where* each slice of the axis lives, and
XLA inserts the collectives (a resampling gather, a mean over particles) that cross devices;
:func:`per_device` runs work that never crosses the batch (MCMC chains) as one program per
device.  So results are the same numbers as on one device for the same key, up to
floating-point rounding (a device's share of the batch, or a cross-device reduction, is
vectorised differently).

Control: ``PPL_SHARDING=0`` in the environment turns sharding off (read through
:func:`ppl.config.sharding_requested`, at trace time, so it is part of
:func:`ppl.config.trace_key`); an axis whose length is not
a multiple of the device count is left unsharded (replicated), never padded.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from inference import sharding
    >>> x = sharding.shard_batch(jnp.zeros((8, 3)))       # split over devices when several
    >>> y = jax.jit(lambda x: sharding.constrain_batch(x * 2))(x)
    >>> sharding.to_host(y).shape
    (8, 3)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ppl import config as ppl_config

__all__ = ["AXIS", "enabled", "num_devices", "mesh", "batch_sharding", "shard_batch", "constrain_batch", "per_device",
           "device_slice", "to_host"]

#: the name of the mesh axis the batch dimension is laid out along
AXIS = "batch"


def enabled() -> bool:
    """Whether sharding is on: more than one device and ``PPL_SHARDING`` not set to 0."""
    if not ppl_config.sharding_requested():
        return False
    return jax.device_count() > 1


def num_devices() -> int:
    """How many devices a sharded batch axis is split over (1 when sharding is off)."""
    return jax.device_count() if enabled() else 1


@functools.lru_cache(maxsize=None)
def _mesh(devices: tuple) -> Mesh:
    return Mesh(np.asarray(devices, dtype=object), (AXIS,))


def mesh() -> Mesh:
    """A one-dimensional mesh over all (global) devices, axis name :data:`AXIS`."""
    return _mesh(tuple(jax.devices()))


def _shardable(x: Any) -> bool:
    n = num_devices()
    return n > 1 and hasattr(x, "shape") and len(x.shape) >= 1 and x.shape[0] % n == 0 and x.shape[0] > 0


def batch_sharding(ndim: int = 1) -> NamedSharding:
    """The sharding that splits an array's leading axis over :func:`mesh`."""
    return NamedSharding(mesh(), PartitionSpec(AXIS, *([None] * (ndim - 1))))


def shard_batch(tree: Any) -> Any:
    """Place every array leaf whose leading axis divides evenly across the devices (outside jit).

    Every process passes the whole batch (after ``jax.distributed.initialize()`` too); each
    keeps the slices that belong to its own devices.

    Leaves that cannot be split (scalars, awkward lengths) are left where they are.  With one
    device, or sharding off, the tree is returned unchanged.
    """
    if num_devices() == 1:
        return tree

    def put(x):
        if not _shardable(x):
            return x
        if jax.process_count() > 1:  # every process holds the whole batch; each keeps its slices
            host = np.asarray(x)
            return jax.make_array_from_callback(host.shape, batch_sharding(host.ndim), lambda idx: host[idx])
        return jax.device_put(x, batch_sharding(np.ndim(x)))

    return jax.tree.map(put, tree)


def constrain_batch(tree: Any) -> Any:
    """Inside ``jit``: ask XLA to keep every array leaf's leading axis split across devices.

    Use it where a batch is created inside a compiled program (particles drawn from a replicated
    key, chains initialised by ``vmap``), so the work that follows runs on all devices.  A no-op
    with one device.
    """
    if num_devices() == 1:
        return tree

    def constrain(x):
        if not _shardable(x):
            return x
        return jax.lax.with_sharding_constraint(x, batch_sharding(np.ndim(x)))

    return jax.tree.map(constrain, tree)


def _spec(axis: int | None) -> PartitionSpec:
    return PartitionSpec() if axis is None else PartitionSpec(*([None] * axis), AXIS)


def per_device(f, in_axes, out_axes):
    """``f`` run by every device on its own slice of the batch axis, as a separate program
    (``jax.shard_map`` over :func:`mesh`); call the result inside ``jit``.

    ``in_axes`` / ``out_axes`` say, like ``jax.vmap``'s, where each argument's / output's batch
    axis is (a prefix tree of ints, or ``None`` for a value every device gets whole).  Inside
    ``f`` arrays have their per-device length; nothing is shared between devices unless ``f``
    says so with a collective over :data:`AXIS`.

    Why not :func:`constrain_batch`: under GSPMD a ``vmap``-ed ``while_loop`` (a NUTS tree, an
    init retry loop) keeps *one* loop for the whole batch, so every iteration all-reduces its
    predicate across devices and every device waits for the slowest element anywhere; here each
    device runs its own loop for its own elements.  Use it only when the batch length is a
    multiple of :func:`num_devices` (check with the length first; it raises otherwise).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from inference import sharding
        >>> f = sharding.per_device(lambda x, c: x * c, in_axes=(0, None), out_axes=0)
        >>> jax.jit(f)(jnp.arange(8.0), 2.0).tolist()
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]
    """
    is_none = lambda a: a is None  # noqa: E731 - None is a leaf of the axis trees here
    return jax.shard_map(
        f,
        mesh=mesh() if enabled() else _mesh(tuple(jax.devices()[:1])),
        in_specs=jax.tree.map(_spec, in_axes, is_leaf=is_none),
        out_specs=jax.tree.map(_spec, out_axes, is_leaf=is_none),
        # unchecked: ``f`` is ordinary batched code (loops whose carry starts from constants)
        # that knows nothing of which values differ between devices
        check_vma=False,
    )


def device_slice(x: Any) -> Any:
    """Inside :func:`per_device`: the rows of ``x`` (a batch every device holds whole, e.g. keys
    split from one key) that belong to this device, as :func:`per_device` would hand them out.

    So a batch drawn whole and then split gives every element the numbers it gets on one device
    (same key, same result).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from inference import sharding
        >>> f = sharding.per_device(lambda x: sharding.device_slice(x) + 1, in_axes=None, out_axes=0)
        >>> jax.jit(f)(jnp.arange(4)).tolist()
        [1, 2, 3, 4]
    """
    n = num_devices()
    if n == 1:
        return x
    m = x.shape[0] // n
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(AXIS) * m, m)


def to_host(tree: Any) -> Any:
    """Gather every leaf to a NumPy array on this host (all processes' shards after
    ``jax.distributed.initialize()``)."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x) if hasattr(x, "shape") else x

    return jax.tree.map(get, tree)
