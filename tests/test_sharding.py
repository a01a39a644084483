"""The sharding utilities: a batch axis is split across devices, results do not change."""

from __future__ import annotations

import jax
import pytest
import jax.numpy as jnp
import numpy as np

from inference import sharding
from tests._multidevice import run_on_devices


def test_single_device_is_a_no_op():
    x = {"a": jnp.arange(6.0).reshape(3, 2), "b": 1.0}
    if jax.device_count() == 1:
        assert sharding.num_devices() == 1
        assert sharding.shard_batch(x) is x
        assert sharding.constrain_batch(x) is x
    np.testing.assert_array_equal(sharding.to_host(x)["a"], np.asarray(x["a"]))


@pytest.mark.slow
def test_eight_devices_split_the_batch_and_keep_the_numbers():
    out = run_on_devices(
        """
        import numpy as np, jax, jax.numpy as jnp
        from inference import sharding

        assert sharding.num_devices() == 8
        x = sharding.shard_batch(jnp.arange(16.0 * 3).reshape(16, 3))
        assert len(x.sharding.device_set) == 8, x.sharding
        odd = sharding.shard_batch(jnp.zeros((5, 2)))          # 5 does not split over 8
        assert len(odd.sharding.device_set) == 1

        def resample(key):                                      # draw, then a cross-shard gather
            y = sharding.constrain_batch(jax.random.normal(key, (64, 3)))
            i = jax.random.categorical(key, -jnp.sum(y**2, 1), shape=(64,))
            return y[i], y
        a, y = jax.jit(resample)(jax.random.key(0))
        assert len(y.sharding.device_set) == 8
        os.environ["PPL_SHARDING"] = "0"
        assert sharding.num_devices() == 1
        b, yb = jax.jit(lambda k: resample(k))(jax.random.key(0))   # a new trace: unsharded
        assert len(yb.sharding.device_set) == 1, yb.sharding
        np.testing.assert_allclose(sharding.to_host(a), sharding.to_host(b), rtol=1e-12)
        print("ok")
        """
    )
    assert out.strip().endswith("ok")
