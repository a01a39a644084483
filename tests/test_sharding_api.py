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
