"""Value tests of ``inference.sharding``'s names that no other test named: ``AXIS``, ``enabled``,
``mesh`` and ``batch_sharding`` — on this process's devices, and in a subprocess with 4 CPU
devices (``tests/_multidevice.py``), where the layout is checked shard by shard."""

from __future__ import annotations

import jax
import pytest
from jax.sharding import PartitionSpec

from inference import sharding

from tests._multidevice import run_on_devices

pytestmark = pytest.mark.exact


def test_layout_on_this_process(monkeypatch):
    n = jax.device_count()
    monkeypatch.delenv("PPL_SHARDING", raising=False)
    assert sharding.enabled() == (n > 1) and sharding.num_devices() == n
    assert sharding.mesh().axis_names == (sharding.AXIS,) and sharding.mesh().devices.size == n
    assert sharding.batch_sharding(3).spec == PartitionSpec(sharding.AXIS, None, None)
    monkeypatch.setenv("PPL_SHARDING", "off")
    assert not sharding.enabled() and sharding.num_devices() == 1


def test_per_device_and_device_slice_on_this_process():
    import jax.numpy as jnp
    import numpy as np

    n = jax.device_count()
    f = jax.jit(sharding.per_device(lambda x, c: x * c + sharding.device_slice(jnp.arange(4.0 * n)), in_axes=(0, None),
                                    out_axes=0))
    np.testing.assert_array_equal(f(jnp.ones(4 * n), 2.0), 2.0 + np.arange(4.0 * n))


def test_four_devices_split_the_leading_axis():
    out = run_on_devices(
        """
        import numpy as np, jax.numpy as jnp
        from inference import sharding
        assert sharding.AXIS == "batch" and sharding.enabled() and sharding.num_devices() == 4
        m = sharding.mesh()
        assert m.axis_names == ("batch",) and m.devices.shape == (4,)
        x = sharding.shard_batch(jnp.arange(24.0).reshape(8, 3))
        assert x.sharding.is_equivalent_to(sharding.batch_sharding(2), 2)
        rows = sorted((s.index[0].start, np.asarray(s.data).tolist()) for s in x.addressable_shards)
        assert [r[0] for r in rows] == [0, 2, 4, 6]
        assert all(np.array_equal(d, np.arange(24.0).reshape(8, 3)[i:i + 2]) for i, d in rows)
        odd = sharding.shard_batch(jnp.zeros((6, 2)))  # 6 rows do not split over 4 devices: left alone
        assert not odd.sharding.is_equivalent_to(sharding.batch_sharding(2), 2)
        os.environ["PPL_SHARDING"] = "0"
        assert not sharding.enabled() and sharding.num_devices() == 1
        print("ok")
        """,
        n=4,
    )
    assert out.strip().endswith("ok")


def test_per_device_runs_each_devices_loops_alone_and_device_slice_hands_out_its_rows():
    out = run_on_devices(
        """
        import numpy as np, jax, jax.numpy as jnp
        from inference import sharding

        def count_up(n):  # a while loop per element: its trip count is the element's
            return jax.lax.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, c[1] * 1.5), (0, 1.0))[1]

        n = jnp.arange(8)
        f = jax.jit(sharding.per_device(jax.vmap(count_up), in_axes=0, out_axes=0))
        np.testing.assert_allclose(f(n), 1.5 ** np.arange(8))
        assert f(n).sharding.is_equivalent_to(sharding.batch_sharding(1), 1)
        # each device runs its own loop: nothing crosses devices (GSPMD all-reduces the
        # vmapped loop's predicate on every iteration)
        hlo = f.lower(n).compile().as_text()
        assert "all-reduce" not in hlo and "all-gather" not in hlo, hlo
        gspmd = jax.jit(jax.vmap(count_up), in_shardings=sharding.batch_sharding(1))
        assert "all-reduce" in gspmd.lower(n).compile().as_text()   # so the check above can fail
        # replicated in, each device's rows out: the rows a sharded batch gives it
        g = jax.jit(sharding.per_device(lambda k, c: sharding.device_slice(k) * c, in_axes=(None, None), out_axes=0))
        np.testing.assert_array_equal(g(jnp.arange(8.0), 3.0), 3.0 * np.arange(8.0))
        keys = jax.random.split(jax.random.key(0), 8)
        h = jax.jit(sharding.per_device(lambda k: jax.random.normal(sharding.device_slice(jax.random.split(k, 8))[0])[None],
                                        in_axes=None, out_axes=0))
        np.testing.assert_array_equal(np.asarray(h(jax.random.key(0))),   # one number per device
                                      np.asarray(jax.vmap(jax.random.normal)(keys))[::2])
        print("ok")
        """,
        n=4,
    )
    assert out.strip().endswith("ok")
